"""Experiments 16–17 (mlpjit/experiments/papers.py) in quick mode: the papers' numbers quoted
beside ours, a verdict per row, the figures; and the parts of Glorot & Bengio's analysis that
hold at any scale (the back-propagated gradients at initialization)."""

import re

import pytest

pytest.importorskip("matplotlib")

from conftest import quick_context  # noqa: E402  (tests/ is on sys.path)
from mlpjit.experiments import EXPERIMENTS, _load_all  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    _load_all()
    return quick_context(tmp_path_factory.mktemp("papers"), seeds=2)


def test_registered_after_the_classic_ones():
    _load_all()
    names = list(EXPERIMENTS)
    assert names[-2:] == ["glorot", "srivastava"] and len(names) == 17


def _check_figures(result, name):
    assert result.plots
    for p in result.plots:
        with open(p, "rb") as f:
            assert f.read(8) == PNG, p
        assert str(p).rsplit("/", 1)[-1].startswith(name)


def test_glorot_quick(ctx):
    from mlpjit.experiments.papers import GLOROT_PAPER
    result = EXPERIMENTS["glorot"][2](ctx)
    assert [(r["activation"], r["initialization"]) for r in result.table] == list(GLOROT_PAPER)
    for row in result.table:
        assert row["paper: test error"] == f"{GLOROT_PAPER[(row['activation'], row['initialization'])]:.2f}%"
        assert re.match(r"(within|outside) 2σ", row["row verdict"])
    assert result.supported in (True, False) and re.search(r"\d", result.verdict)
    _check_figures(result, "glorot")
    # (b) at initialization, whatever the training budget: with the standard initialization
    # tanh's dS shrinks toward the input (theory, linear regime: layer 1 / layer 5 = 1/9), with
    # the normalized one much less; dA stays level with both
    grads = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:-1]]
             for line in result.notes.splitlines() if line.startswith("| tanh")}
    standard, normalized = grads["tanh, standard"], grads["tanh, normalized"]
    assert standard[0] < 0.2 and normalized[0] > 0.4            # dS 1 (relative to dS 5)
    assert 0.5 < standard[5] < 2 and 0.5 < normalized[5] < 2    # dA 1
    assert "(a) The top hidden layer's mean output falls from 0.5" in result.verdict


def test_srivastava_quick(ctx):
    result = EXPERIMENTS["srivastava"][2](ctx)
    assert [r["network"] for r in result.table] == ["no dropout", "max-norm", "dropout", "dropout + max-norm"]
    assert [r["paper: test error"] for r in result.table] == ["1.62%", "1.35%", "1.25%", "1.06%"]
    assert result.table[0]["units at the max-norm bound"] == "—"
    assert result.table[1]["units at the max-norm bound"].endswith("%")
    assert result.supported in (True, False) and re.search(r"\d", result.verdict)
    _check_figures(result, "srivastava")
