"""Reliability: the plan and the stop are separate (exact resume for every schedule), SIGTERM
like SIGINT, memory checked before it is spent, a full disk, and a randomized test of the config
layer."""

import errno
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import mlpjit.io
from mlpjit.trainer import _Signals, parse_duration

from test_trainer import start_training

REPO = Path(__file__).resolve().parents[1]
SCHEDULES = [{"type": "constant"}, {"type": "step", "every": 1, "gamma": 0.5},
             {"type": "exponential", "gamma": 0.7}, {"type": "cosine", "min_lr": 0.001},
             {"type": "linear", "start": 0.01, "over": 2},
             {"type": "cosine", "per": "update"}, {"type": "linear", "start": 0.0, "over": 20, "per": "update"}]


def test_the_schedules_tried_are_every_registered_schedule():
    import mlpjit.schedules  # noqa: F401  (registers them)
    from mlpjit import registry
    shipped = {name for name, cls in registry.schedules.items() if cls.__module__ == "mlpjit.schedules"}
    assert {s["type"] for s in SCHEDULES} == shipped


def model_bytes(run):
    return (Path(run) / "model.npz").read_bytes()


def untimed(run):
    rows = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "eval_seconds")} for r in rows]


# --- the plan and the stop ------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s["type"] + ("_per_update" if "per" in s else "")
                                                     for s in SCHEDULES])
def test_stop_after_then_resume_equals_the_straight_run_for_every_schedule(schedule, mlpjit_main, cfg_file,
                                                                            helpers, tmp_path):
    cfg = helpers.spirals(points=90, epochs=4, batch_size=7, dropout=0.2, schedule=schedule)
    path = cfg_file(cfg)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert mlpjit_main("train", path, "--out", straight, "-q").code == 0
    r = mlpjit_main("train", path, "--out", split, "--stop-after", 1, "-q")
    assert r.code == 75 and f"resume with: mlpjit train --resume {split}" in r.err, r.err
    r = mlpjit_main("train", "--resume", split, "--stop-after", 2, "-q")
    assert r.code == 75 and "at epoch 3 of 4" in r.err, r.err
    assert mlpjit_main("train", "--resume", split, "-q").code == 0
    assert model_bytes(split) == model_bytes(straight)
    assert untimed(split) == untimed(straight)


@pytest.mark.parametrize("per", ["epoch", "update"])
def test_max_time_stops_mid_epoch_and_resume_is_exact(per, mlpjit_main, cfg_file, helpers, tmp_path):
    # 4,500 batches: well over the first 0.05 s on a fast machine with every kernel cached
    cfg = helpers.spirals(points=3000, epochs=3, batch_size=2, schedule={"type": "cosine", "per": per})
    cfg["train"]["compiled"] = False            # a check after every batch
    path = cfg_file(cfg)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert mlpjit_main("train", path, "--out", straight, "-q").code == 0
    r = mlpjit_main("train", path, "--out", split, "--max-time", "0.05s", "-q")
    assert r.code == 75 and "stopped at the time limit (--max-time)" in r.err, r.err
    while r.code == 75:
        r = mlpjit_main("train", "--resume", split, "--max-time", "0.3s", "-q")
    assert r.code == 0, r.err
    assert model_bytes(split) == model_bytes(straight)


def test_durations_and_bad_values(mlpjit_main, cfg_file, helpers):
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1h30m", "1d")] == \
        [90, 90, 1800, 7200, 5400, 86400]
    r = mlpjit_main("train", cfg_file(helpers.spirals()), "--max-time", "soon")
    assert r.code == 2 and "--max-time soon: 'soon' is not a duration (say 90s, 30m, 2h or 1h30m)" in r.err
    r = mlpjit_main("train", cfg_file(helpers.spirals()), "--stop-after", "0")
    assert r.code == 2 and "--stop-after" in r.err


@pytest.mark.parametrize("schedule,changes", [({"type": "cosine"}, True), ({"type": "step", "every": 1}, False)])
def test_a_larger_plan_on_resume_is_replanned_and_recorded(schedule, changes, mlpjit_main, cfg_file,
                                                           helpers, tmp_path):
    cfg = helpers.spirals(epochs=2, schedule=schedule)
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q").code == 0
    r = mlpjit_main("train", "--resume", run, "--epochs", 4)
    assert r.code == 0, r.err
    kind = schedule["type"]
    if changes:
        assert f"the plan changes from 2 to 4 epochs: the {kind} schedule is re-planned over 4 epochs " \
               f"from epoch 3 on" in r.out
    else:
        assert f"the {kind} schedule does not depend on the plan" in r.out
    rows = untimed(run)
    assert rows[2]["replanned"] == {"from": 2, "to": 4} and "replanned" not in rows[3]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["plan"] == 4
    assert summary["plan_changes"] == [{"at_epoch": 3, "from": 2, "to": 4, "schedule": kind, "lr_changed": changes}]


class _LinearToZero:
    """η·(1 − epoch/epochs): its rates depend on the plan."""

    def __init__(self):
        pass

    def lr(self, base, epoch, epochs):
        return base * (1.0 - epoch / epochs)


@pytest.mark.parametrize("declared", [True, None], ids=["declared", "measured"])
def test_a_users_plan_dependent_schedule_is_replanned_on_resume_and_says_so(declared, mlpjit_main, cfg_file,
                                                                            helpers, tmp_path):
    """No schedule name is compared anywhere: a schedule registered here, whose rates depend on
    train.epochs, is announced and recorded as re-planned exactly as cosine is, whether its
    registration says so (depends_on_plan=True) or the rates of the two plans show it."""
    import mlpjit
    name = f"linear_to_zero_{'declared' if declared else 'measured'}"
    cls = type(name, (_LinearToZero,), {})
    mlpjit.register_schedule(name, cls, depends_on_plan=declared)
    assert getattr(cls, "depends_on_plan", None) is declared
    cfg = helpers.spirals(epochs=2, schedule={"type": name})
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q").code == 0
    r = mlpjit_main("train", "--resume", run, "--epochs", 4)
    assert r.code == 0, r.err
    assert f"the plan changes from 2 to 4 epochs: the {name} schedule is re-planned over 4 epochs " \
           f"from epoch 3 on (learning rates 0.025, 0.0125, ...)" in r.out, r.out   # 0.05·(1 − 2/4), 0.05·(1 − 3/4)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["plan_changes"] == [{"at_epoch": 3, "from": 2, "to": 4, "schedule": name, "lr_changed": True}]


def test_register_schedule_checks_depends_on_plan():
    import mlpjit
    from mlpjit.registry import RegistryError
    with pytest.raises(RegistryError, match="depends_on_plan must be True or False"):
        mlpjit.register_schedule("bad_flag", type("BadFlag", (_LinearToZero,), {}), depends_on_plan="yes")
    from mlpjit.schedules import Constant, Cosine, Exponential, Step
    assert (Constant.depends_on_plan, Step.depends_on_plan, Exponential.depends_on_plan, Cosine.depends_on_plan) \
        == (False, False, False, True)


# --- signals ----------------------------------------------------------------------------------------

def test_a_second_signal_waits_while_the_checkpoint_is_written():
    s = _Signals()
    s._handle(signal.SIGTERM, None)
    assert s.flag and s.signum == signal.SIGTERM
    s.writing = True
    s._handle(signal.SIGINT, None)        # ignored: the write finishes first
    s.writing = False
    s._handle(signal.SIGINT, None)        # within a second of the first: the same stop
    s.first_at -= 2 * s.SAME_STOP
    with pytest.raises(KeyboardInterrupt):
        s._handle(signal.SIGINT, None)    # later, a second signal stops at once
    assert s.signum == signal.SIGTERM


def _start(helpers, args, folder):
    return start_training(helpers, args, folder, new_session=True)


def _wait_for(proc, path, test, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and test(path.read_text()):
            return
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) first")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"{path} never satisfied the test")


def test_sigterm_mid_epoch_checkpoints_and_resume_is_exact(helpers, mlpjit_main, tmp_path):
    cfg = helpers.spirals(points=40000, test_points=30, epochs=3, batch_size=1, dropout=0.2, units=32, seed=1)
    path = helpers.write_cfg(tmp_path / "long.yaml", cfg)
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert mlpjit_main("train", path, "--out", straight, "-q").code == 0
    proc = _start(helpers, ["train", path, "--out", run], tmp_path)
    try:
        _wait_for(proc, run / "metrics.jsonl", lambda t: t.count("\n") >= 1)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 143, err
    assert "interrupted (SIGTERM) in epoch" in err and f"resume with: mlpjit train --resume {run}" in err
    assert "Traceback" not in err
    assert mlpjit_main("train", "--resume", run, "-q").code == 0
    assert model_bytes(run) == model_bytes(straight)


def test_a_signal_in_an_epochs_last_chunk_stops_after_that_epoch(monkeypatch, mlpjit_main, cfg_file, helpers,
                                                                 tmp_path):
    """Ctrl-C while the first chunk runs (a first run's compile, say), when that chunk is the
    whole epoch: the run stops after the epoch with a checkpoint (exit 130), not at the end of
    the plan, and resume is exact."""
    import mlpjit.step
    path = cfg_file(helpers.spirals(points=60, epochs=3))
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert mlpjit_main("train", path, "--out", straight, "-q").code == 0
    original = mlpjit.step.CompiledStep.run
    calls = []

    def interrupted(self, *args):
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)        # lands while the chunk runs
        calls.append(1)
        return original(self, *args)
    monkeypatch.setattr(mlpjit.step.CompiledStep, "run", interrupted)
    r = mlpjit_main("train", path, "--out", run, "-q")
    assert r.code == 130 and "interrupted (SIGINT) after epoch 1 of 3; checkpoint written" in r.err, r.err
    assert len(calls) == 1
    assert mlpjit_main("train", "--resume", run, "-q").code == 0
    assert model_bytes(run) == model_bytes(straight)


def test_sigterm_stops_a_local_sweep_and_the_same_command_finishes_it(helpers, tmp_path):
    cfg = helpers.spirals(points=300000, test_points=30, epochs=3, batch_size=1, units=32)
    path = helpers.write_cfg(tmp_path / "s.yaml", cfg)
    out = tmp_path / "sweep"
    args = ["sweep", path, "--grid", "optimizer.lr=0.01,0.02,0.03", "--out", out]
    proc = _start(helpers, args, tmp_path)
    try:
        _wait_for(proc, tmp_path / "stdout.txt", lambda t: "[1/3] ok" in t)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "stdout.txt").read_text() + (tmp_path / "stderr.txt").read_text()
    assert rc == 143, text
    assert "sweep interrupted;" in text and "Traceback" not in text
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) >= 2      # header and the finished run(s)
    proc = subprocess.run(helpers.proc_cmd(*args), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=helpers.proc_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipping" in proc.stdout and "3 ok, 0 failed" in proc.stdout


# --- memory -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg,message", [
    ({"data": {"name": "spirals", "points": 2000000000}},
     r"error: data 'spirals' \(points: 2,000,000,000, test_points: 1,000\) needs about [\d.]+ GiB, but only [\d.]+ \w+ are available"),
    ({"data": {"name": "spirals", "points": 10 ** 30}}, r"error: data 'spirals' .* needs about .* PiB, but only"),
    ({"model": {"layers": [{"type": "dense", "units": 100000}, {"type": "dense", "units": 100000},
                           {"type": "dense", "units": 3}]}},
     r"error: model\.layers\.1 \(10,000,100,000 parameters\) needs about [\d.]+ GiB .*, but only"),
])
@pytest.mark.parametrize("command", ["config check", "train"])
def test_configs_too_big_for_the_machine_are_one_line(cfg, message, command, mlpjit_main, cfg_file, helpers,
                                                      tmp_path):
    base = helpers.spirals()
    base.update(cfg)
    r = mlpjit_main(*command.split(), cfg_file(base), *(["--out", tmp_path / "run"] if command == "train" else []))
    import re
    assert r.code == 2 and re.search(message, r.err) and r.err.count("\n") == 1, r.err
    assert not (tmp_path / "run").exists()


def test_the_whole_run_is_checked_against_the_memory_limit(mlpjit_main, cfg_file, helpers, monkeypatch):
    monkeypatch.setenv("MLPJIT_MEMORY_LIMIT", str(2 ** 20))     # 1 MiB
    r = mlpjit_main("config", "check", cfg_file(helpers.spirals(units=3000, batch_size=60)))
    assert r.code == 2 and "the run needs about" in r.err and "MLPJIT_MEMORY_LIMIT" in r.err, r.err
    monkeypatch.setenv("MLPJIT_MEMORY_LIMIT", str(2 ** 30))
    r = mlpjit_main("config", "check", cfg_file(helpers.spirals()))
    assert r.code == 0 and "of memory to train" in r.out


def test_a_memory_error_anywhere_is_one_line(mlpjit_main, cfg_file, helpers, monkeypatch, tmp_path):
    import mlpjit.trainer

    monkeypatch.chdir(tmp_path)             # no --out: the run folder goes under ./runs

    def boom(self, *a, **k):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")
    monkeypatch.setattr(mlpjit.core.TrainingCore, "_run_epoch", boom)
    path = cfg_file(helpers.spirals())
    r = mlpjit_main("train", path, "--set", "model.layers.0.units=20", "--epochs", "2")
    assert r.code == 2 and r.err.startswith("error: out of memory: Unable to allocate 74.5 GiB") and \
        r.err.count("\n") == 1, r.err
    # the line names what the command was given: the config file and the --set
    assert f", with {path} --set model.layers.0.units=20 (check the sizes" in r.err, r.err


def test_layer_weights_are_drawn_without_a_float64_copy():
    import tracemalloc
    import mlpjit
    tracemalloc.start()
    layer = mlpjit.Dense(2000, 3000, dtype=np.float32, seed=0)          # 24 MB of float32
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2.0 * layer.A.nbytes + (8 << 20), peak   # A, dA and one draw block; no float64 A


# --- a full disk, a read-only folder ----------------------------------------------------------------

def _fail_nth(monkeypatch, n, err):
    real = mlpjit.io._write_npz
    calls = {"n": 0}

    def write(f, arrays):
        calls["n"] += 1
        if calls["n"] >= n:
            raise OSError(err, os.strerror(err))
        return real(f, arrays)
    monkeypatch.setattr(mlpjit.io, "_write_npz", write)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS], ids=["full disk", "read-only"])
def test_a_failed_checkpoint_write_is_one_line_and_the_previous_one_stays(err, monkeypatch, mlpjit_main,
                                                                          cfg_file, helpers, run_files, tmp_path):
    run = tmp_path / "run"
    monkeypatch.setattr(mlpjit.core, "CHECKPOINT_SECONDS", 0.0)   # one after every epoch
    _fail_nth(monkeypatch, 3, err)                 # the checkpoints of epochs 1 and 2 go through
    r = mlpjit_main("train", cfg_file(helpers.spirals(epochs=4)), "--out", run, "-q")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"error: {run / 'checkpoint.npz'}: cannot write ({os.strerror(err)})")
    assert "(its previous version is kept)" in r.err
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []    # no temporary file left
    state, _ = run_files.checkpoint_state(run)
    assert state["epoch"] == 2
    monkeypatch.undo()
    assert mlpjit_main("train", "--resume", run, "-q").code == 0


def test_a_failed_metrics_append_and_sweep_csv_write_are_one_line(monkeypatch, mlpjit_main, cfg_file, helpers,
                                                                  tmp_path):
    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(mlpjit.io, "open", no_space, raising=False)
    run = tmp_path / "run"
    r = mlpjit_main("train", cfg_file(helpers.spirals()), "--out", run, "-q")
    assert r.code == 2 and f"{run / 'metrics.jsonl'}: cannot write (No space left on device)" in r.err
    monkeypatch.undo()
    _fail_nth(monkeypatch, 1, errno.ENOSPC)        # any .npz: the sweep's runs fail, the csv is written
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("sweep.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)
    monkeypatch.setattr(mlpjit.io.os, "replace", replace)
    r = mlpjit_main("sweep", cfg_file(helpers.spirals()), "--grid", "optimizer.lr=0.1,0.2",
                    "--out", tmp_path / "sweep")
    assert r.code == 2 and "sweep.csv: cannot write (No space left on device)" in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err


# --- a randomized test of the config layer ----------------------------------------------------------

SHIPPED = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "experiments").glob("*.yaml"))
BAD_VALUES = [None, "", "x", -1, 0, 1e30, 10 ** 40, float("nan"), float("inf"), True, [], {}, [1, "a"],
              "1e-3", -0.5, 2.5, {"name": "nope"}]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _mutate(doc, rng):
    doc = json.loads(json.dumps(doc))
    paths = list(_paths(doc))
    for _ in range(rng.randint(1, 2)):
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        what = rng.random()
        try:
            if what < 0.55:
                parent[key] = rng.choice(BAD_VALUES)
            elif what < 0.75 and isinstance(parent, dict):
                del parent[key]
            elif isinstance(parent, dict):
                parent[str(key) + rng.choice(["s", "_", "x"])] = parent.pop(key)
        except (KeyError, IndexError, TypeError):
            pass
        paths = list(_paths(doc))
    return doc


def _small(doc, mnist_dir):
    """The shipped config on data that loads in a moment (the mutations come after)."""
    data = doc.get("data") or {}
    if data.get("name") == "mnist":
        data["path"] = str(mnist_dir)
        data["validation"] = min(data.get("validation") or 0, 100)
    elif data.get("name") in ("spirals", "sine"):
        data["points"], data["test_points"] = 120, 30
    doc.setdefault("train", {})["epochs"] = 1
    doc["train"]["compiled"] = False
    return doc


def test_mutated_configs_only_ever_exit_0_2_or_3(mlpjit_main, mini_mnist, tmp_path):
    mnist = mini_mnist()
    rng = random.Random(1234)
    bases = [(p.name, _small(yaml.safe_load(p.read_text()), mnist)) for p in SHIPPED]
    started = time.monotonic()
    codes = {}
    trained = 0
    for case in range(300):
        name, base = bases[case % len(bases)]
        path = tmp_path / f"c{case}.yaml"
        if case % 10 == 9:      # YAML text cut at a random byte
            text = yaml.safe_dump(base)
            path.write_text(text[:rng.randrange(len(text))])
        else:
            path.write_text(yaml.safe_dump(_mutate(base, rng), allow_unicode=True))
        r = mlpjit_main("config", "check", path)
        codes[r.code] = codes.get(r.code, 0) + 1
        assert r.code in (0, 2), (name, path.read_text(), r.err)
        if r.code == 2:
            assert r.err.startswith("error: ") and r.err.count("\n") == 1, (name, r.err)
        elif trained < 20:
            trained += 1
            t = mlpjit_main("train", path, "--out", tmp_path / f"run{case}", "-q")
            assert t.code in (0, 2, 3), (name, path.read_text(), t.err)
            if t.code:
                assert t.err.startswith("error: ") and t.err.count("\n") == 1, (name, t.err)
    assert codes.get(2, 0) > 100 and codes.get(0, 0) > 5, codes
    assert time.monotonic() - started < 60


# --- schedules of any hyperparameter -----------------------------------------------------------------

MOMENTUM_RAMP = {"momentum": {"type": "linear", "start": 0.5, "over": 4}}


def test_a_momentum_ramp_from_yaml_is_the_same_compiled_layer_by_layer_and_resumed(mlpjit_main, cfg_file,
                                                                                 helpers, tmp_path):
    """μ(e) = 0.5 + (0.9 − 0.5)·min(1, e/4): 0.5, 0.6, 0.7, 0.8, 0.9, 0.9; the compiled step takes
    it as an argument (no recompile), the layer path reads it, and a resume continues it exactly."""
    cfg = helpers.spirals(epochs=6, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9})
    cfg["schedules"] = MOMENTUM_RAMP
    runs = {}
    for name, extra in (("compiled", []), ("layers", ["--set", "train.compiled=false"])):
        assert mlpjit_main("train", cfg_file(cfg), *extra, "--out", tmp_path / name, "-q").code == 0
        runs[name] = untimed(tmp_path / name)
    assert [r["momentum"] for r in runs["compiled"]] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 0.9])
    assert [r["train_loss"] for r in runs["compiled"]] == pytest.approx([r["train_loss"] for r in runs["layers"]],
                                                                        rel=1e-5)
    split = tmp_path / "split"
    assert mlpjit_main("train", cfg_file(cfg), "--out", split, "--stop-after", 2, "-q").code == 75
    assert mlpjit_main("train", "--resume", split, "-q").code == 0
    assert model_bytes(split) == model_bytes(tmp_path / "compiled")
    # the constant rate is the momentum's: without the ramp the losses differ
    flat = helpers.spirals(epochs=6, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9})
    assert mlpjit_main("train", cfg_file(flat, "flat.yaml"), "--out", tmp_path / "flat", "-q").code == 0
    assert untimed(tmp_path / "flat")[0]["train_loss"] != runs["compiled"][0]["train_loss"]


def test_a_momentum_ramp_from_code_and_bad_schedules(mlpjit_main, cfg_file, helpers):
    import mlpjit
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)); y = (X[:, 0] > 0).astype(int)
    model = mlpjit.Sequential([mlpjit.Dense(2, 2, dtype=np.float64, seed=0)])
    h = model.fit(X, y, loss="cross_entropy", optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9},
                  schedules=MOMENTUM_RAMP, epochs=5, batch_size=16, progress=False)
    assert h.history["momentum"] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    cfg = helpers.spirals(optimizer={"type": "adam", "lr": 0.01})
    cfg["schedules"] = {"momentum": "linear"}
    r = mlpjit_main("config", "check", cfg_file(cfg))
    assert r.code == 2 and "schedules.momentum: the adam optimizer has no hyperparameter 'momentum' to " \
                           "schedule (valid: beta1, beta2, eps, weight_decay)" in r.err, r.err
    cfg["schedules"] = {"lr": "cosine"}
    r = mlpjit_main("config", "check", cfg_file(cfg, "lr.yaml"))
    assert r.code == 2 and "the learning rate's schedule is the 'schedule' key" in r.err


def test_a_schedule_by_update_by_hand():
    """η(u) = η·min(1, u/2) by update (a warm-up over two updates), plain SGD, batches of one,
    no shuffling: update 0 has η = 0 and changes nothing, update 1 moves w by (η/2)·g₁ with g₁
    the gradient on the second example; by epoch both updates would have η(0) = 0."""
    import mlpjit
    X = np.array([[1.0], [2.0]])
    y = np.array([[0.0], [1.0]])
    lr = 0.1
    for per, compiled in (("update", True), ("update", False), ("epoch", True)):
        model = mlpjit.Sequential([mlpjit.Dense(1, 1, dtype=np.float64, seed=0)])
        A0, b0 = float(model.layers[0].A[0, 0]), float(model.layers[0].b[0])
        h = model.fit(X, y, loss="mse", optimizer={"type": "sgd", "lr": lr},
                      schedule={"type": "linear", "start": 0.0, "over": 2, "per": per},
                      epochs=1, batch_size=1, shuffle=False, compiled=compiled, progress=False)
        assert h.history["lr"] == [0.0]   # the epoch's first update's
        A, b = float(model.layers[0].A[0, 0]), float(model.layers[0].b[0])
        if per == "epoch":
            assert (A, b) == (A0, b0)
            continue
        # mse of one output: E = (s − t)², dE/ds = 2(s − t); s = A·x + b on x = 2, t = 1
        ds = 2 * (A0 * 2.0 + b0 - 1.0)
        assert A == pytest.approx(A0 - lr / 2 * ds * 2.0, rel=1e-12)
        assert b == pytest.approx(b0 - lr / 2 * ds, rel=1e-12)


def test_a_momentum_ramp_by_update_is_the_same_compiled_and_layer_by_layer(mlpjit_main, cfg_file, helpers,
                                                                          tmp_path):
    """μ ramps 0.5 → 0.9 over the first 25 updates (about three epochs) and η warms up by
    update; the compiled step reads each batch's values from its arguments, the layer path sets
    them before each step: the same losses; and not those of the same ramps by epoch."""
    cfg = helpers.spirals(epochs=3, batch_size=8, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9},
                          schedule={"type": "linear", "start": 0.0, "over": 30, "per": "update"})
    cfg["schedules"] = {"momentum": {"type": "linear", "start": 0.5, "over": 25, "per": "update"}}
    runs = {}
    for name, extra in (("compiled", []), ("layers", ["--set", "train.compiled=false"]),
                        ("by_epoch", ["--set", "schedules.momentum.per=epoch", "--set", "schedule.per=epoch"])):
        assert mlpjit_main("train", cfg_file(cfg), *extra, "--out", tmp_path / name, "-q").code == 0
        runs[name] = untimed(tmp_path / name)
    # 8 batches an epoch: the epochs start at updates 0, 8 and 16
    assert [r["momentum"] for r in runs["compiled"]] == pytest.approx([0.5, 0.5 + 0.4 * 8 / 25, 0.5 + 0.4 * 16 / 25])
    assert [r["lr"] for r in runs["compiled"]] == pytest.approx([0.0, 0.05 * 8 / 30, 0.05 * 16 / 30])
    assert [r["train_loss"] for r in runs["compiled"]] == pytest.approx([r["train_loss"] for r in runs["layers"]],
                                                                        rel=1e-5)
    assert runs["by_epoch"][0]["train_loss"] != pytest.approx(runs["compiled"][0]["train_loss"], rel=1e-3)


def test_hintons_momentum_ramp_with_dampening_is_the_same_compiled_and_layer_by_layer(mlpjit_main, cfg_file,
                                                                                     helpers, tmp_path):
    """Srivastava et al.'s recipe: momentum and dampening ramp together 0.5 → 0.9 (Δw ← μΔw −
    (1 − μ)ηg), by epoch: the compiled step reads τ per batch like μ; the same losses as the
    layer path, and other losses than the same ramp without dampening."""
    cfg = helpers.spirals(epochs=3, batch_size=8,
                          optimizer={"type": "sgd", "lr": 0.5, "momentum": 0.9, "dampening": 0.9})
    ramp = {"type": "linear", "start": 0.5, "over": 2}
    cfg["schedules"] = {"momentum": ramp, "dampening": dict(ramp)}
    undamped = dict(cfg, optimizer={"type": "sgd", "lr": 0.5, "momentum": 0.9}, schedules={"momentum": ramp})
    runs = {}
    for name, c, extra in (("compiled", cfg, []), ("layers", cfg, ["--set", "train.compiled=false"]),
                           ("undamped", undamped, [])):
        r = mlpjit_main("train", cfg_file(c), *extra, "--out", tmp_path / name, "-q")
        assert r.code == 0, r.err
        runs[name] = untimed(tmp_path / name)
    assert [r["dampening"] for r in runs["compiled"]] == pytest.approx([0.5, 0.7, 0.9])
    assert [r["train_loss"] for r in runs["compiled"]] == pytest.approx([r["train_loss"] for r in runs["layers"]],
                                                                        rel=1e-5)
    assert runs["undamped"][1]["train_loss"] != pytest.approx(runs["compiled"][1]["train_loss"], rel=1e-3)
    assert "dampening: 0.9" in (tmp_path / "compiled" / "config.yaml").read_text()
    assert "dampening" not in (tmp_path / "undamped" / "config.yaml").read_text()   # 0: left out


def test_a_plan_dependent_momentum_schedule_is_announced_on_resume(mlpjit_main, cfg_file, helpers, tmp_path):
    cfg = helpers.spirals(epochs=2, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9})
    cfg["schedules"] = {"momentum": {"type": "cosine", "min_lr": 0.5}}
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q").code == 0
    r = mlpjit_main("train", "--resume", run, "--epochs", 4)
    assert r.code == 0, r.err
    assert "the learning rates continue as they were (0.05, 0.05, ...), but the schedule of momentum is " \
           "re-planned over 4 epochs from epoch 3 on" in r.out, r.out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["plan_changes"] == [{"at_epoch": 3, "from": 2, "to": 4, "schedule": "constant",
                                        "lr_changed": False, "changed": ["momentum"]}]


def test_checkpoints_are_written_at_most_once_a_second_and_at_every_stop(monkeypatch, mlpjit_main, cfg_file,
                                                                         helpers, run_files, tmp_path):
    """40 epochs of a few milliseconds: a checkpoint after the first epoch and at the end, not 40
    (writing one costs about a millisecond); a stop (--stop-after) writes its own."""
    import mlpjit.core
    writes = []
    real = mlpjit.core.atomic_write_npz

    def counting(path, arrays, **kw):
        if Path(path).name == "checkpoint.npz":
            writes.append(json.loads(str(arrays["__state__"]))["epoch"])
        return real(path, arrays, **kw)
    monkeypatch.setattr(mlpjit.core, "atomic_write_npz", counting)
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(helpers.spirals(epochs=40)), "--out", run, "-q").code == 0
    assert writes[0] == 1 and writes[-1] == 40 and len(writes) < 10, writes
    writes.clear()
    assert mlpjit_main("train", cfg_file(helpers.spirals(epochs=40)), "--out", tmp_path / "s",
                       "--stop-after", 7, "-q").code == 75
    assert writes[-1] == 7 and run_files.checkpoint_state(tmp_path / "s")[0]["epoch"] == 7
