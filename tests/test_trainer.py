"""The trainer through the CLI: run folder contents, determinism, exact resume (at an epoch
boundary, after SIGINT mid-epoch, after SIGKILL), atomic writes, NaN stop, batch sizes,
early stopping."""

import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import mlpjit
from mlpjit.cli import cli
from mlpjit.config import load_config, resolved_dict
from mlpjit.io import atomic_write, atomic_write_npz, atomic_write_text, read_npz

from conftest import read_metrics, without_timing as untimed  # (tests/ is on sys.path)


def model_bytes(run_dir):
    return (Path(run_dir) / "model.npz").read_bytes()


def ok(res):
    assert res.code == 0, res.text
    assert "Traceback" not in res.text
    return res


# --- the run folder ------------------------------------------------------------------------

def test_run_folder_contents(mlpjit_main, cfg_file, spirals_cfg, run_files, tmp_path):
    cfg = spirals_cfg(points=60, test_points=30, validation=12, epochs=3, dropout=0.1)
    path = cfg_file(cfg)
    out = tmp_path / "run"
    ok(mlpjit_main("train", path, "--out", out, "--set", "optimizer.lr=0.07",
                   "--set", "model.layers.0.units=6", "--seed", 5, "--quiet"))
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "config.yaml", "metrics.jsonl", "model.npz", "summary.json"]

    # config.yaml: resolved (every default filled in), with the --set / --seed values
    saved = yaml.safe_load((out / "config.yaml").read_text())
    expected = resolved_dict(load_config(path, ["optimizer.lr=0.07", "model.layers.0.units=6",
                                                "seed=5"]))
    assert saved == expected
    assert saved["optimizer"]["lr"] == 0.07 and saved["seed"] == 5
    assert saved["model"]["layers"][0]["units"] == 6
    assert saved["train"]["eval_batch_size"] == 1000 and saved["dtype"] == "float32"
    assert saved["optimizer"]["nesterov"] is False and saved["clip"] is None

    # metrics.jsonl: one object per epoch with the required keys
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    required = {"epoch", "train_loss", "train_accuracy", "lr", "grad_norm", "grad_norms",
                "epoch_seconds", "val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    for r in rows:
        assert required <= set(r), required - set(r)
        assert set(r["grad_norms"]) == {"0.A", "2.A"}        # the dense layers' weights
        assert all(v > 0 and math.isfinite(v) for v in r["grad_norms"].values())
        assert r["lr"] == 0.07 and r["epoch_seconds"] >= 0
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1

    # model.npz loads and gives the logged test loss
    model = mlpjit.Sequential.load(out / "model.npz")
    assert model.in_features == 2 and model.layers[0].out_features == 6

    # summary.json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["epochs"] == 3
    assert summary["final"]["test_accuracy"] == rows[-1]["test_accuracy"]
    assert summary["final"]["val_loss"] == rows[-1]["val_loss"]
    assert summary["total_seconds"] >= summary["train_seconds"] >= 0
    import numba
    import platform
    assert summary["versions"] == {"python": platform.python_version(), "numpy": np.__version__,
                                   "numba": numba.__version__, "mlpjit": mlpjit.__version__}

    # checkpoint.npz loads, at the end of epoch 3
    state, arrays = run_files.checkpoint_state(out)
    assert state["epoch"] == 3 and state["batch"] == 0
    assert int(arrays["optimizer/t"]) == 3 * math.ceil(48 / 8)


def test_regression_metrics_have_no_accuracy(mlpjit_main, cfg_file, sine_cfg, tmp_path):
    out = tmp_path / "run"
    ok(mlpjit_main("train", cfg_file(sine_cfg()), "--out", out, "-q"))
    rows = read_metrics(out)
    assert len(rows) == 3
    assert "train_accuracy" not in rows[0] and "test_accuracy" not in rows[0]
    assert "test_loss" in rows[0] and "val_loss" not in rows[0]


def test_grad_norms_are_norms_of_dA(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    """Full batch, no shuffle: epoch 1's figures are those of the initial weights."""
    from mlpjit.data import load_dataset
    from mlpjit.trainer import build_model
    cfg = xor_cfg()
    path = cfg_file(cfg)
    out = tmp_path / "run"
    ok(mlpjit_main("train", path, "--out", out, "--epochs", 1, "-q"))
    row = read_metrics(out)[0]
    rcfg = resolved_dict(load_config(path))
    ds = load_dataset(dict(rcfg["data"]), rcfg["seed"])
    model, loss = build_model(rcfg, ds.n_features, ds.n_outputs, ds.task)
    X = ds.scaled(ds.X_train).astype(model.dtype)
    value = loss.forward(model.forward(X, training=True), ds.y_train)
    model.backward(loss.backward(), need_dX=False)
    grads = {name: g.astype(np.float64) for name, _, g in model.parameters()}
    assert row["train_loss"] == pytest.approx(value, rel=1e-6)
    for name in ("0.A", "1.A"):
        assert row["grad_norms"][name] == pytest.approx(np.linalg.norm(grads[name]), rel=1e-5)
    total = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert row["grad_norm"] == pytest.approx(total, rel=1e-5)


def test_lr_follows_the_schedule(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg(epochs=5, schedule={"type": "step", "every": 2, "gamma": 0.5})
    out = tmp_path / "run"
    ok(mlpjit_main("train", cfg_file(cfg), "--out", out, "-q"))
    assert [r["lr"] for r in read_metrics(out)] == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125])
    cfg = spirals_cfg(epochs=4, schedule={"type": "cosine"})
    out = tmp_path / "cos"
    ok(mlpjit_main("train", cfg_file(cfg, "c.yaml"), "--out", out, "-q"))
    expected = [0.05 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [r["lr"] for r in read_metrics(out)] == pytest.approx(expected)


# --- determinism -------------------------------------------------------------------------------

@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python_loop"])
def test_same_seed_bit_identical_different_seed_differs(compiled, mlpjit_main, cfg_file,
                                                         spirals_cfg, tmp_path):
    cfg = spirals_cfg(points=90, epochs=3, batch_size=5, dropout=0.3,
                      optimizer={"type": "adam", "lr": 0.01})
    cfg["train"]["compiled"] = compiled
    path = cfg_file(cfg)
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        runs[name] = tmp_path / name
        ok(mlpjit_main("train", path, "--out", runs[name], "--seed", seed, "-q"))
    assert model_bytes(runs["a"]) == model_bytes(runs["b"])
    assert untimed(read_metrics(runs["a"])) == untimed(read_metrics(runs["b"]))
    assert (runs["a"] / "config.yaml").read_bytes() == (runs["b"] / "config.yaml").read_bytes()
    assert model_bytes(runs["a"]) != model_bytes(runs["c"])
    wa = mlpjit.Sequential.load(runs["a"] / "model.npz").layers[0].A
    wc = mlpjit.Sequential.load(runs["c"] / "model.npz").layers[0].A
    assert not np.array_equal(wa, wc)


def test_dropout_masks_depend_on_the_seed_only(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    """Dropout is active in training: p=0.5 changes the result against p=0 with the same seed."""
    base = tmp_path / "p0"
    drop = tmp_path / "p5"
    ok(mlpjit_main("train", cfg_file(spirals_cfg(dropout=0.0), "a.yaml"), "--out", base, "-q"))
    ok(mlpjit_main("train", cfg_file(spirals_cfg(dropout=0.5), "b.yaml"), "--out", drop, "-q"))
    assert read_metrics(base)[0]["train_loss"] != read_metrics(drop)[0]["train_loss"]


# --- exact resume at an epoch boundary ------------------------------------------------------------

@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python_loop"])
def test_resume_at_epoch_boundary_is_bit_identical(compiled, mlpjit_main, cfg_file, spirals_cfg,
                                                   tmp_path):
    cfg = spirals_cfg(points=90, epochs=4, batch_size=7, dropout=0.2,
                      optimizer={"type": "adam", "lr": 0.01},
                      schedule={"type": "step", "every": 1, "gamma": 0.5})
    cfg["train"]["compiled"] = compiled
    path = cfg_file(cfg)
    straight, split = tmp_path / "straight", tmp_path / "split"
    ok(mlpjit_main("train", path, "--out", straight, "-q"))
    res = mlpjit_main("train", path, "--out", split, "--stop-after", 2, "-q")
    assert res.code == 75, res.text
    assert "stopped after 2 epochs (--stop-after 2) at epoch 2 of 4; checkpoint written" in res.err
    assert f"resume with: mlpjit train --resume {split}" in res.err
    assert [r["epoch"] for r in read_metrics(split)] == [1, 2] and not (split / "model.npz").exists()
    res = ok(mlpjit_main("train", "--resume", split))
    assert "resuming" in res.out and "epoch 3" in res.out
    assert model_bytes(split) == model_bytes(straight)
    rows = read_metrics(split)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert untimed(rows) == untimed(read_metrics(straight))
    assert [r["lr"] for r in rows] == [0.01, 0.005, 0.0025, 0.00125]
    assert (split / "config.yaml").read_text() == (straight / "config.yaml").read_text()
    summary = json.loads((split / "summary.json").read_text())
    assert summary["epochs"] == 4 and summary["final"] == json.loads(
        (straight / "summary.json").read_text())["final"]

    # a run that is already finished is left alone
    before = model_bytes(split)
    res = ok(mlpjit_main("train", "--resume", split))
    assert "already trained for 4 epochs" in res.out
    assert model_bytes(split) == before and len(read_metrics(split)) == 4


def test_resume_drops_a_metrics_line_the_checkpoint_does_not_cover(
        mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    """A kill between the metrics write and the checkpoint write leaves one extra line."""
    cfg = spirals_cfg(epochs=3, dropout=0.2)
    path = cfg_file(cfg)
    straight, split = tmp_path / "straight", tmp_path / "split"
    ok(mlpjit_main("train", path, "--out", straight, "-q"))
    assert mlpjit_main("train", path, "--out", split, "--stop-after", 1, "-q").code == 75
    ckpt = (split / "checkpoint.npz").read_bytes()
    assert mlpjit_main("train", "--resume", split, "--stop-after", 1, "-q").code == 75
    (split / "checkpoint.npz").write_bytes(ckpt)          # back to the end of epoch 1
    assert [r["epoch"] for r in read_metrics(split)] == [1, 2]
    ok(mlpjit_main("train", "--resume", split, "-q"))
    assert [r["epoch"] for r in read_metrics(split)] == [1, 2, 3]
    assert untimed(read_metrics(split)) == untimed(read_metrics(straight))
    assert model_bytes(split) == model_bytes(straight)


# --- interrupted mid-epoch, in-process (deterministic position) -------------------------------------

class _FlagAfter:
    """Stands in for the trainer's SIGINT handler: ``flag`` turns True at its n-th reading
    (the loop reads it once per batch, the compiled loop once per chunk)."""

    signum = signal.SIGINT
    writing = False

    def __init__(self, n):
        self.n = n
        self.reads = 0

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def flag(self):
        self.reads += 1
        return self.reads >= self.n


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python_loop"])
def test_interrupt_mid_epoch_then_resume_is_bit_identical(compiled, monkeypatch, mlpjit_main,
                                                          cfg_file, spirals_cfg, run_files,
                                                          tmp_path):
    import mlpjit.step
    import mlpjit.trainer
    monkeypatch.setattr(mlpjit.step, "CHUNK_EXAMPLES", 14)   # chunks of 2 batches of 7
    cfg = spirals_cfg(points=90, epochs=3, batch_size=7, dropout=0.25,
                      optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True})
    cfg["train"]["compiled"] = compiled
    path = cfg_file(cfg)
    straight, run = tmp_path / "straight", tmp_path / "run"
    ok(mlpjit_main("train", path, "--out", straight, "-q"))
    # 13 batches an epoch: stop in epoch 2 (python loop: after batch 2; compiled: after chunk 1)
    monkeypatch.setattr(mlpjit.core, "_Signals", _FlagAfter(15 if not compiled else 8))
    res = mlpjit_main("train", path, "--out", run, "-q")
    assert res.code == 130, res.text
    assert "Traceback" not in res.text
    assert f"resume with: mlpjit train --resume {run}" in res.err
    assert "interrupted (SIGINT) in epoch 2, after batch" in res.err
    state, _ = run_files.checkpoint_state(run)
    assert state["epoch"] == 1 and 0 < state["batch"] < 13
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    monkeypatch.undo()
    res = ok(mlpjit_main("train", "--resume", run))
    assert f"at epoch 2, batch {state['batch'] + 1}" in res.out
    assert model_bytes(run) == model_bytes(straight)
    assert untimed(read_metrics(run)) == untimed(read_metrics(straight))


# --- interrupted runs (real processes) -----------------------------------------------------------

LONG = dict(points=60000, test_points=30, epochs=5, batch_size=1, dropout=0.2, units=64, seed=1)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, helpers):
    """The long spirals config and a straight in-process run of it."""
    root = tmp_path_factory.mktemp("long")
    path = helpers.write_cfg(root / "long.yaml", helpers.spirals(**LONG))
    straight = root / "straight"
    res = CliRunner().invoke(cli, ["train", str(path), "--out", str(straight), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return path, straight


def start_training(helpers, args, log_dir, new_session=False):
    """``mlpjit ARGS`` in a process of its own, stdout and stderr into log_dir (``new_session``:
    in a session of its own, so that a signal sent to it reaches only what it starts)."""
    out = open(log_dir / "stdout.txt", "w")
    err = open(log_dir / "stderr.txt", "w")
    p = subprocess.Popen(helpers.proc_cmd(*args), stdout=out, stderr=err, cwd=log_dir,
                         env=helpers.proc_env(), start_new_session=new_session)
    out.close()
    err.close()
    return p


def wait_for_epochs(proc, run_dir, n, timeout=90):
    deadline = time.monotonic() + timeout
    metrics = Path(run_dir) / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and sum(1 for x in metrics.read_text().splitlines() if x.strip()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before {n} epochs were logged")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("training did not log an epoch in time")


def test_sigint_mid_epoch_then_resume_is_bit_identical(long_run, helpers, mlpjit_main, run_files,
                                                        tmp_path):
    path, straight = long_run
    run = tmp_path / "run"
    proc = start_training(helpers, ["train", path, "--out", run], tmp_path)
    try:
        wait_for_epochs(proc, run, 1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 130, err
    assert "Traceback" not in err
    assert f"resume with: mlpjit train --resume {run}" in err
    assert "interrupted (SIGINT) in epoch" in err and "checkpoint written" in err
    assert not (run / "model.npz").exists()
    state, arrays = run_files.checkpoint_state(run)
    assert state["batch"] > 0, "the interrupt should land inside an epoch"
    assert state["epoch"] in (1, 2)
    assert "perm" in arrays and arrays["perm"].shape == (60000,)
    assert [r["epoch"] for r in read_metrics(run)] == list(range(1, state["epoch"] + 1))

    res = ok(mlpjit_main("train", "--resume", run, "-q"))
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert model_bytes(run) == model_bytes(straight)
    assert untimed(rows) == untimed(read_metrics(straight))
    assert res.out.count("done: 5 epochs") == 1


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_works(long_run, helpers, mlpjit_main,
                                                               run_files, tmp_path):
    path, straight = long_run
    run = tmp_path / "run"
    proc = start_training(helpers, ["train", path, "--out", run, "--quiet"], tmp_path)
    try:
        wait_for_epochs(proc, run, 1)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL
    state, arrays = run_files.checkpoint_state(run)
    assert state["epoch"] >= 1
    rows = read_metrics(run)                        # whole lines only, nothing torn
    assert len(rows) >= state["epoch"]
    res = ok(mlpjit_main("train", "--resume", run, "-q"))
    assert "done: 5 epochs" in res.out
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]
    assert model_bytes(run) == model_bytes(straight)
    assert untimed(read_metrics(run)) == untimed(read_metrics(straight))
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert all(name.startswith(".") for name in leftovers)   # at most hidden temp files


# --- atomic writes ------------------------------------------------------------------------------

def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old contents")

    def broken(f):
        f.write(b"new, but only half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_write_new_file_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "new.bin", lambda f: (f.write(b"x"), int("nope")))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_npz_failure_midway(tmp_path):
    target = tmp_path / "model.npz"
    atomic_write_npz(target, {"a": np.arange(3)})
    good = target.read_bytes()
    # the second member cannot be written without pickle: fails after the first was written
    with pytest.raises(ValueError):
        atomic_write_npz(target, {"a": np.arange(1000), "b": np.array([object()], dtype=object)})
    assert target.read_bytes() == good
    assert np.array_equal(read_npz(target)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_atomic_write_success_replaces(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    atomic_write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    atomic_write_npz(tmp_path / "a.npz", {"x": np.ones(2)})
    first = (tmp_path / "a.npz").read_bytes()
    atomic_write_npz(tmp_path / "a.npz", {"x": np.ones(2)})
    assert (tmp_path / "a.npz").read_bytes() == first          # reproducible bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "t.txt"]


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    """A run folder's files are as readable as files written with open() (umask applies)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (os.stat(tmp_path / "atomic.txt").st_mode & 0o777) == (os.stat(plain).st_mode & 0o777)


# --- NaN stop -----------------------------------------------------------------------------------

def test_nan_stop_fresh_run(mlpjit_main, cfg_file, sine_cfg, tmp_path):
    cfg = sine_cfg()
    cfg["optimizer"] = {"type": "sgd", "lr": 1e6}
    out = tmp_path / "run"
    res = mlpjit_main("train", cfg_file(cfg), "--out", out, "-q")
    assert res.code == 3, res.text
    assert "Traceback" not in res.text
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("error: training diverged in epoch 1, batch ")
    assert re.search(r"batch \d+", line)
    assert "optimizer.lr" in line and "clip" in line
    assert not (out / "model.npz").exists()


def test_nan_stop_keeps_the_last_good_checkpoint(mlpjit_main, cfg_file, sine_cfg, run_files,
                                                 tmp_path, monkeypatch):
    out = tmp_path / "run"
    ok(mlpjit_main("train", cfg_file(sine_cfg()), "--out", out, "--epochs", 2, "-q"))
    good = (out / "checkpoint.npz").read_bytes()
    # the same run, resumed with a learning rate that blows up (an edited config.yaml is refused:
    # the schedule gives it instead)
    import mlpjit.schedules
    monkeypatch.setattr(mlpjit.schedules, "epoch_values", lambda config, base, epoch, epochs, n: np.full(n, 1e6))
    res = mlpjit_main("train", "--resume", out, "--epochs", 5, "-q")
    assert res.code == 3, res.text
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.text
    assert "epoch 3, batch" in lines[0]
    assert "last good checkpoint (epoch 2)" in lines[0]
    assert (out / "checkpoint.npz").read_bytes() == good
    state, _ = run_files.checkpoint_state(out)
    assert state["epoch"] == 2
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    # the kept checkpoint still resumes (with a sane learning rate again)
    monkeypatch.undo()
    ok(mlpjit_main("train", "--resume", out, "--epochs", 3, "-q"))
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]


def test_nan_stop_in_subprocess(mlpjit_proc, cfg_file, sine_cfg, tmp_path):
    cfg = sine_cfg()
    cfg["optimizer"] = {"type": "sgd", "lr": 1e6}
    out = tmp_path / "run"
    res = mlpjit_proc("train", cfg_file(cfg), "--out", out)
    assert res.code == 3
    assert "Traceback" not in res.text
    assert [line for line in res.err.splitlines() if line.strip()][-1].startswith(
        "error: training diverged in epoch 1")


# --- batch sizes --------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size,steps_per_epoch,last_batch", [
    (1, 50, 1), (7, 8, 1), (10, 5, 10), ("full", 1, 50), (64, 1, 50)])
def test_batch_sizes(batch_size, steps_per_epoch, last_batch, mlpjit_main, cfg_file, spirals_cfg,
                     run_files, tmp_path):
    cfg = spirals_cfg(points=50, epochs=2, batch_size=batch_size)
    out = tmp_path / "run"
    ok(mlpjit_main("train", cfg_file(cfg), "--out", out, "-q"))
    state, arrays = run_files.checkpoint_state(out)
    assert int(arrays["optimizer/t"]) == 2 * steps_per_epoch
    acc = state["acc"]                                  # the last epoch's accumulators
    assert acc["batches"] == steps_per_epoch and acc["seen"] == 50
    rows = read_metrics(out)
    assert len(rows) == 2 and all(math.isfinite(r["train_loss"]) for r in rows)


def test_partial_last_batch_weighs_by_examples(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    """train_loss is the mean over examples: with lr tiny (weights ~ fixed), a run with batches
    of 7 (last batch of 1) gives the same epoch loss as full batch."""
    losses = []
    for bs in (7, "full"):
        cfg = spirals_cfg(points=50, epochs=1, batch_size=bs,
                          optimizer={"type": "sgd", "lr": 1e-12})
        out = tmp_path / f"run{bs}"
        ok(mlpjit_main("train", cfg_file(cfg, f"{bs}.yaml"), "--out", out, "-q"))
        losses.append(read_metrics(out)[0]["train_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


# --- early stopping ---------------------------------------------------------------------------

def test_early_stopping(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg(epochs=10, validation=10)
    cfg["train"]["early_stopping"] = {"patience": 1, "metric": "val_loss", "min_delta": 1e9}
    out = tmp_path / "run"
    res = ok(mlpjit_main("train", cfg_file(cfg), "--out", out))
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1].get("early_stop") is True
    assert "(early stop)" in res.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert summary["early_stopping"]["stopped"] is True
    assert summary["early_stopping"]["best_epoch"] == 1
    assert (out / "model.npz").is_file()


def test_early_stopping_patience_counts(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg(epochs=10, optimizer={"type": "sgd", "lr": 1e-12})
    cfg["train"]["early_stopping"] = {"patience": 3, "metric": "train_loss", "min_delta": 1.0}
    out = tmp_path / "run"
    ok(mlpjit_main("train", cfg_file(cfg), "--out", out, "-q"))
    assert len(read_metrics(out)) == 4
    assert json.loads((out / "summary.json").read_text())["early_stopping"]["wait"] == 3


def test_early_stopping_on_a_missing_split(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg()
    cfg["train"]["early_stopping"] = {"metric": "val_loss"}
    out = tmp_path / "run"
    res = mlpjit_main("train", cfg_file(cfg), "--out", out)
    assert res.code == 2 and "Traceback" not in res.text
    assert "train.early_stopping.metric" in res.err and "data.validation" in res.err
    assert not out.exists()



# --- activation statistics on the probe batch -------------------------------------------------

def test_activation_stats_by_hand():
    """Dense(1, 2), identity, A = [[1, 3]], on X = [[1], [2]]: Y = [[1, 3], [2, 6]], mean 3 and
    std √((1 + 9 + 4 + 36)/4 − 9) = √3.5; the dropout (its output is its input at prediction)
    and the last layer are not hidden layers of their own."""
    from mlpjit.trainer import activation_stats
    first = mlpjit.Dense(1, 2, dtype=np.float64)
    first.A = np.array([[1.0, 3.0]])
    model = mlpjit.Sequential([first, mlpjit.Dropout(0.5, seed=0), mlpjit.Dense(2, 1, dtype=np.float64)])
    mean, std = activation_stats(model, np.array([[1.0], [2.0]]))
    assert mean == {"0": 3.0} and std == pytest.approx({"0": math.sqrt(3.5)})


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python_loop"])
def test_probes_every_k_batches_and_exactly_after_a_resume(compiled, monkeypatch, mlpjit_main,
                                                           cfg_file, spirals_cfg, tmp_path):
    """probes.jsonl has a line before the first batch and every 3 batches (a compiled chunk ends
    at each); metrics.jsonl has the same statistics after each epoch.  Interrupted in epoch 2 and
    resumed, the file equals the straight run's."""
    import mlpjit.step
    import mlpjit.trainer
    monkeypatch.setattr(mlpjit.step, "CHUNK_EXAMPLES", 14)   # chunks of 2 batches of 7
    cfg = spirals_cfg(points=90, epochs=3, batch_size=7, dropout=0.25)
    cfg["train"].update(compiled=compiled, probe_every=3, probe_rows=20)
    path = cfg_file(cfg)
    straight, run = tmp_path / "straight", tmp_path / "run"
    ok(mlpjit_main("train", path, "--out", straight, "-q"))
    probes = read_metrics(straight, "probes.jsonl")
    assert [p["step"] for p in probes] == list(range(0, 3 * 13 + 1, 3))   # 13 batches an epoch
    assert probes[1]["epoch"] == 0 and probes[5]["epoch"] == 1 and probes[5]["batch"] == 2
    metrics = read_metrics(straight)
    hidden = list(metrics[0]["act_mean"])
    assert hidden and set(probes[0]["act_std"]) == set(hidden)
    at_39 = probes[-1]    # after the last batch: the model metrics.jsonl's last line probed
    assert at_39["act_mean"] == metrics[-1]["act_mean"] and at_39["act_std"] == metrics[-1]["act_std"]
    monkeypatch.setattr(mlpjit.core, "_Signals", _FlagAfter(15 if not compiled else 11))
    assert mlpjit_main("train", path, "--out", run, "-q").code == 130
    assert read_metrics(run, "probes.jsonl")[-1]["epoch"] == 1
    monkeypatch.undo()
    ok(mlpjit_main("train", "--resume", run))
    assert read_metrics(run, "probes.jsonl") == probes
