"""Experiments 8–15 (mlpjit/experiments/extra.py) in quick mode, and their example scripts."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from conftest import quick_context  # noqa: E402  (tests/ is on sys.path)
from mlpjit.experiments import Result  # noqa: E402
from mlpjit.experiments import extra  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["activations", "dead_relu", "batch_size", "sine_layer", "smape", "fgsm", "linear_regions", "cnn"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return quick_context(tmp_path_factory.mktemp("extra"))


def test_registered_in_order():
    from mlpjit.experiments import EXPERIMENTS
    names = [n for n in EXPERIMENTS if n in NAMES]
    assert names == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_experiment_quick(ctx, name):
    fn = getattr(extra, name)
    result = fn(ctx)
    assert isinstance(result, Result)
    assert result.table and all(isinstance(row, dict) and row for row in result.table)
    assert re.search(r"\d", result.verdict), result.verdict
    assert "claim" in result.verdict
    assert result.supported in (True, False)
    assert result.plots
    for p in result.plots:
        p = Path(p)
        assert p.exists() and p.name.startswith(name) and p.suffix == ".png"
        assert p.read_bytes()[:8] == PNG


def test_count_regions_sawtooth():
    import numpy as np
    xs = np.linspace(-3, 3, 20000)
    assert extra.count_regions(extra._sawtooth(5), xs)[1] == 32
    # a 1-W-1 network has at most W + 1 pieces
    assert extra.count_regions(extra._random_relu([10], 0), xs)[1] <= 11


def _run_example(name, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_sine_layer_example():
    out = _run_example("sine_layer.py", "--quick")
    assert "gradcheck" in out
    m = re.search(r"RESULT layer_mse=([\d.]+) mlp_mse=([\d.]+) a=([-\d.,]+)", out)
    assert m, out
    a = [float(v) for v in m.group(3).split(",")]
    assert abs(a[0] - 2.0) < 0.05 and abs(a[2] - 1.5) < 0.05
    assert float(m.group(1)) < 0.02


def test_fgsm_example():
    out = _run_example("fgsm.py", "--quick")
    m = re.search(r"RESULT acc@0=([\d.]+) acc@0.05=([\d.]+) acc@0.1=([\d.]+) acc@0.2=([\d.]+)", out)
    assert m, out
    accs = [float(v) for v in m.groups()]
    assert accs[0] > 0.5 and accs[3] < accs[0]
