"""The examples run as scripts and print what they promise."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_xor_from_code():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "xor_from_code.py")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"RESULT two_layer_accuracy=([\d.]+) one_unit_accuracy=([\d.]+)", proc.stdout)
    assert m, proc.stdout
    assert float(m.group(1)) == 1.0
    assert float(m.group(2)) <= 0.75
    assert "two layers: loss" in proc.stdout and "accuracy 100%" in proc.stdout
    assert "one linear unit: loss" in proc.stdout
    assert re.search(r"step\s+500\s+loss", proc.stdout)


def test_tabular_example():
    import pytest
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "tabular.py"), "--quick"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"RESULT cli_accuracy=([\d.]+) mlpjit_sklearn_accuracy=([\d.]+) sklearn_accuracy=([\d.]+)",
                  proc.stdout)
    assert m, proc.stdout
    cli, ours, theirs = map(float, m.groups())
    assert cli > 0.9 and ours > 0.9 and ours >= theirs - 0.03
    assert "and on test_raw.csv (no label column): class,p_benign,p_malignant" in proc.stdout
