"""Experiments 1–7 (mlpjit/experiments/classic.py) in quick mode: each trains, returns a table, a
verdict with numbers in it and PNG figures; XOR checks the claim itself (it is cheap)."""

import re

import pytest

pytest.importorskip("matplotlib")

from mlpjit.experiments import EXPERIMENTS, Context, reproduce  # noqa: E402
from mlpjit.experiments import classic  # noqa: E402,F401  (registers the experiments)

CLASSIC = ["xor", "mnist_softmax", "mnist_mlp", "vanishing", "exploding", "dropout", "init"]
PNG = b"\x89PNG\r\n\x1a\n"


def _ctx(tmp_path):
    (tmp_path / "fig").mkdir()
    return Context(runs=tmp_path / "runs", figures=tmp_path / "fig", seeds=1, quick=True,
                   log=lambda *a: None)


def test_registered_in_order():
    assert [n for n in EXPERIMENTS if n in CLASSIC] == CLASSIC


@pytest.mark.parametrize("name", CLASSIC)
def test_quick_run(name, tmp_path):
    title, claim, fn = EXPERIMENTS[name]
    assert title and claim
    result = fn(_ctx(tmp_path))
    assert result.table and all(isinstance(row, dict) and row for row in result.table)
    assert isinstance(result.verdict, str) and re.search(r"\d", result.verdict)
    assert result.supported in (True, False)
    assert result.plots
    for p in result.plots:
        path = tmp_path / "fig" / p if not str(p).startswith("/") else p
        with open(path, "rb") as f:
            assert f.read(8) == PNG, p
        assert str(path).rsplit("/", 1)[-1].startswith(name)
    if name == "xor":
        acc = {(row["function"], row["model"]): row for row in result.table}
        for fn_name, width in (("AND", "Dense(2, 1)"), ("OR", "Dense(2, 1)"), ("NOT", "Dense(1, 1)")):
            assert acc[(fn_name, width)]["worst seed"] == "100.00%"
        single_xor = float(acc[("XOR", "Dense(2, 1)")]["best seed"].rstrip("%"))
        assert single_xor <= 75.0
        assert acc[("XOR", "2-4-1 tanh")]["worst seed"] == "100.00%"
        assert result.supported is True


def test_reproduce_xor_writes_report(tmp_path):
    reproduce(["xor"], out=tmp_path, quick=True, log=lambda *a: None)
    report = (tmp_path / "EXPERIMENTS.md").read_text()
    assert "XOR and logic" in report
    assert (tmp_path / "docs" / "experiments" / "xor.json").exists()
    assert (tmp_path / "docs" / "experiments" / "xor_loss.png").read_bytes()[:8] == PNG


def test_reproduce_again_reuses_the_runs_and_keeps_the_time_that_trained_them(tmp_path):
    import json
    reproduce(["xor"], out=tmp_path, quick=True, log=lambda *a: None)
    stored = tmp_path / "docs" / "experiments" / "xor.json"
    first = json.loads(stored.read_text())
    first["seconds"] = 1234.0          # as if training them had taken that long
    stored.write_text(json.dumps(first))
    reproduce(["xor"], out=tmp_path, quick=True, log=lambda *a: None)   # every run reused
    assert json.loads(stored.read_text())["seconds"] == 1234.0
    report = (tmp_path / "EXPERIMENTS.md").read_text()
    assert "`mlpjit reproduce xor --quick` (1234 s, quick)" in report
    assert "| [XOR and logic](#1-xor-and-logic) | yes | quick |" in report


def test_reproduce_in_pieces_stops_at_max_time_and_the_same_call_continues(tmp_path):
    """--max-time: the run being trained keeps its checkpoint and the experiment stores a partial
    result ('partial' in the report); the same call resumes that run and reuses the finished ones."""
    import json

    from mlpjit.core import Stopped
    from mlpjit.experiments import stored_kinds
    with pytest.raises(Stopped, match="time limit"):
        reproduce(["srivastava"], out=tmp_path, quick=True, log=lambda *a: None, max_time=0.0)
    stored = tmp_path / "docs" / "experiments" / "srivastava.json"
    partial = json.loads(stored.read_text())
    assert partial["complete"] is False and partial["verdict"].startswith("Partial: 0 of 4 runs")
    assert stored_kinds(tmp_path) == {"partial": ["srivastava"]}
    assert "| partial |" in (tmp_path / "EXPERIMENTS.md").read_text()
    # a run stopped part way (as at --max-time) keeps its checkpoint; the next call resumes it
    from mlpjit.config import apply_overrides, config_from_dict, dump_yaml, resolved_dict
    from mlpjit.experiments import Context
    from mlpjit.experiments import train as train_run
    from mlpjit.experiments.papers import _srivastava_cfg
    from mlpjit.trainer import Trainer
    ctx = Context(runs=tmp_path / "runs" / "experiments", figures=tmp_path / "f", quick=True,
                  log=lambda *a: None)
    cfg = _srivastava_cfg(ctx, 0.0, 0.0, None, 0, lr=0.1)
    cfg_obj = apply_overrides(config_from_dict(cfg), ["train.compiled=false"])
    run = ctx.run_dir("e17_srivastava", "half")
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg_obj))
    with pytest.raises(Stopped):
        Trainer(resolved_dict(cfg_obj), run, log=lambda *a: None, progress=False).fit(stop_after=1)
    assert not (run / "summary.json").exists() and (run / "checkpoint.npz").exists()
    lines = []
    ctx.log = lines.append
    _, summary, metrics = train_run(ctx, cfg, name="e17_srivastava/half")
    assert [r["epoch"] for r in metrics] == [1, 2] and ctx.trained == 1
    assert lines == [f"   resuming {run} at epoch 2"]
    reproduce(["srivastava"], out=tmp_path, quick=True, log=lambda *a: None)
    final = json.loads(stored.read_text())
    assert final["complete"] is True and final["quick"] is True
    assert stored_kinds(tmp_path) == {"quick": ["srivastava"]}


def test_reproduce_max_time_on_the_command_line(mlpjit_main, monkeypatch, tmp_path):
    """The time is up before the first run: exit 75, the partial table written, and the line
    that continues it; the same command without the limit finishes and the report says 'quick'."""
    from mlpjit.experiments import Context
    monkeypatch.setattr(Context, "time_left", lambda self: 0.0)
    r = mlpjit_main("reproduce", "srivastava", "--quick", "--out", tmp_path, "--max-time", "2h")
    assert r.code == 75, r.err
    assert f"continue with: mlpjit reproduce srivastava --out {tmp_path} --quick --max-time 2h" in r.err
    assert "| partial |" in (tmp_path / "EXPERIMENTS.md").read_text()
    monkeypatch.undo()
    r = mlpjit_main("reproduce", "srivastava", "--quick", "--out", tmp_path)
    assert r.code == 0, r.err
    assert "  quick    srivastava" in r.out
    r = mlpjit_main("reproduce", "srivastava", "--max-time", "soon")
    assert r.code == 2 and "--max-time soon:" in r.err
