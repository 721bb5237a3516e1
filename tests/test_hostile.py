"""Hostile and careless inputs, one regression test each (reliability, round three).  Each ends in
one line and exit 2 (or the documented signal exit) within a second or two, and touches nothing
outside the run folder.  Add a test here for every such bug found."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import proc_cmd, proc_env  # noqa: E402


def one_line(r, code=2):
    assert r.code == code, r.text
    assert "Traceback" not in r.text and r.err.count("\n") == 1, r.err
    return r.err


def _xor_run(mlpjit_main, cfg_file, xor_cfg, tmp_path, name="run", **train):
    cfg = xor_cfg()
    cfg["train"].update(train)
    run = tmp_path / name
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q").code == 0
    return run


# --- stop signals --------------------------------------------------------------------------------

def _start(args, cwd, **kw):
    return subprocess.Popen(proc_cmd(*args), cwd=cwd, env=proc_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _signal_after_first_epoch(proc, run, sig):
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(sig)
    t = time.monotonic()
    rc = proc.wait(30)
    return rc, time.monotonic() - t


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_a_signal_stops_a_run_of_tiny_epochs_within_a_second(sig, code, tmp_path):
    """XOR's epoch is one compiled call: the signal is seen after that epoch."""
    run = tmp_path / "run"
    proc = _start(["train", "xor", "--epochs", "200000", "--out", run], tmp_path)
    rc, seconds = _signal_after_first_epoch(proc, run, sig)
    err = proc.stderr.read()
    assert rc == code and seconds < 2.0, (rc, seconds, err)
    assert "checkpoint written" in err and "Traceback" not in err
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]    # no temp file, no lock


def test_a_signal_stops_a_long_epoch_within_a_second(tmp_path, helpers):
    """A long epoch is cut into compiled calls of about 0.2 s."""
    cfg = helpers.spirals(points=200000, test_points=30, epochs=200, batch_size=1, units=64)
    path = helpers.write_cfg(tmp_path / "c.yaml", cfg)
    run = tmp_path / "run"
    proc = _start(["train", path, "--out", run], tmp_path)
    deadline = time.monotonic() + 60
    while not (run / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.5)   # inside epoch 1, past the first (compiling) call
    proc.send_signal(signal.SIGINT)
    t = time.monotonic()
    rc = proc.wait(30)
    err = proc.stderr.read()
    assert rc == 130 and time.monotonic() - t < 2.0, err
    assert "interrupted (SIGINT)" in err and "checkpoint written" in err


def test_compiled_calls_of_any_size_give_the_same_run(monkeypatch, mlpjit_main, cfg_file, helpers, tmp_path):
    """The calls' sizes follow the clock; the numbers must not."""
    import mlpjit.core
    cfg = helpers.spirals(points=300, epochs=2, batch_size=4, dropout=0.3)
    out = {}
    for name, seconds in (("one_batch", 1e-9), ("whole", 1e9)):
        monkeypatch.setattr(mlpjit.core, "CHUNK_SECONDS", seconds)
        monkeypatch.setattr(mlpjit.core, "FIRST_CHUNK_EXAMPLES", 4 if seconds < 1 else 10 ** 6)
        run = tmp_path / name
        assert mlpjit_main("train", cfg_file(cfg, f"{name}.yaml"), "--out", run, "-q").code == 0
        out[name] = ((run / "model.npz").read_bytes(),
                     [{k: v for k, v in json.loads(x).items() if "seconds" not in k}
                      for x in (run / "metrics.jsonl").read_text().splitlines()])
    assert out["one_batch"] == out["whole"]


def test_training_in_a_thread_stops_when_its_stop_event_is_set(tmp_path, helpers):
    # a thread receives no signals (a Dask worker's task): the sweep stops it with an event
    import threading
    from mlpjit.core import Interrupted, stop_requested_by
    from mlpjit.trainer import Trainer

    from mlpjit.config import load_config, resolved_dict
    cfg = resolved_dict(load_config(helpers.write_cfg(tmp_path / "c.yaml", helpers.spirals(
        points=3000, test_points=30, epochs=100000, batch_size=1, units=16))))
    trainer = Trainer(cfg, tmp_path / "run", log=lambda *a, **k: None, progress=False)
    (tmp_path / "run").mkdir()
    stop, caught = threading.Event(), []

    def train():
        with stop_requested_by(stop):
            try:
                trainer.fit(cfg["train"]["epochs"])
            except Interrupted as e:
                caught.append((e.code, time.monotonic()))

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t = time.monotonic()
    thread.join(30)
    assert caught and caught[0][0] == 130 and caught[0][1] - t < 1.5
    assert (tmp_path / "run" / "checkpoint.npz").is_file() and trainer.epoch < 100000


def test_a_sweep_stops_on_ctrl_c_records_what_ran_and_starts_nothing_new(tmp_path, helpers):
    cfg = helpers.spirals(points=3000, test_points=30, epochs=3000, batch_size=1, units=32)
    path = helpers.write_cfg(tmp_path / "c.yaml", cfg)
    out = tmp_path / "sweep"
    proc = _start(["sweep", path, "--grid", "optimizer.lr=0.01,0.02,0.03,0.04,0.05", "--jobs", "2",
                   "--out", out], tmp_path)
    deadline = time.monotonic() + 90
    while len(list(out.glob("*/checkpoint.npz"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)          # a terminal's Ctrl-C: the sweep and its workers
    t = time.monotonic()
    try:
        rc = proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the sweep hung after Ctrl-C")
    assert rc == 130 and time.monotonic() - t < 5
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 2 and all("interrupted (SIGINT)" in r["error"] for r in rows)
    started = [d for d in out.iterdir() if d.is_dir()]
    assert len(started) == 2                                  # no pending run was started
    leftover = subprocess.run(["pgrep", "-f", f"multiprocessing.*{os.getpid()}"], capture_output=True)
    assert leftover.returncode != 0 or not leftover.stdout.strip()


# --- bounded parsing ---------------------------------------------------------------------------------

BOMB = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    (BOMB, "values once its aliases are expanded"),
    ("a: " + "[" * 900 + "]" * 900 + "\n", "nested more than 64 levels deep"),
    ("x: 1\n" * 300000, "larger than 1024 KiB"),
])
def test_configs_that_would_hang_or_exhaust_memory_are_one_line(text, message, mlpjit_main, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    t = time.perf_counter()
    err = one_line(mlpjit_main("config", "check", path))
    assert message in err and time.perf_counter() - t < 2


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_config_that_is_not_a_regular_file_is_one_line(kind, mlpjit_main, tmp_path):
    path = "/dev/zero" if kind == "device" else tmp_path / "c.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    for args in (("train", path), ("config", "check", path)):
        err = one_line(mlpjit_main(*args))
        assert "not a regular file" in err


def test_deep_nesting_in_a_set_value_and_a_plan_no_run_could_finish(mlpjit_main, tmp_path):
    err = one_line(mlpjit_main("train", "xor", "--set", "train.epochs=" + "[" * 900 + "]" * 900,
                               "--out", tmp_path / "r"))
    assert "nested more than 64 levels deep" in err and len(err) < 450
    err = one_line(mlpjit_main("train", "xor", "--set", "train.epochs=99999999999999999999999",
                               "--out", tmp_path / "r"))
    assert "train.epochs: must be <= 1000000" in err
    assert not (tmp_path / "r").exists()


def test_yaml_numbers_are_yaml_1_2(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    cfg = cfg_file(yaml.safe_dump(xor_cfg()).replace("epochs: 20", "epochs: 010"))
    assert mlpjit_main("train", cfg, "--out", tmp_path / "a", "-q").code == 0
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 10     # ten, not octal 8
    assert mlpjit_main("train", "xor", "--set", "train.epochs=010", "--out", tmp_path / "b", "-q").code == 0
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 10
    err = one_line(mlpjit_main("train", "xor", "--set", "train.epochs=1_000", "--out", tmp_path / "c"))
    assert "train.epochs" in err and "1_000" in err


def test_a_long_name_is_one_line_and_creates_nothing(mlpjit_main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    err = one_line(mlpjit_main("train", "xor", "--set", "name=" + "n" * 250))
    assert "name" in err and "at most 100 characters" in err
    assert list((tmp_path / "runs").iterdir()) == []


def test_csv_numbers_are_ascii_digits():
    from mlpjit.tables import is_number, number
    assert number(" 1.5e3 ") == 1500.0 and is_number("-2") and is_number("inf") is False
    for text in ("1_000", "١٢", "0x10", "1,5", ""):
        assert not is_number(text)


# --- predict's inputs and outputs ----------------------------------------------------------------------

@pytest.fixture
def xor_run(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    return _xor_run(mlpjit_main, cfg_file, xor_cfg, tmp_path)


def test_predict_inputs_that_used_to_trace_back(xor_run, mlpjit_main, tmp_path):
    np.save(tmp_path / "zero_d.npy", np.array(3.0))
    np.savez(tmp_path / "renamed.npz", a=np.ones((2, 2)))
    (tmp_path / "renamed.npz").rename(tmp_path / "renamed.npy")
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "under.csv").write_text("1_000,1\n")
    for name, message in (("zero_d.npy", "a single number (a 0-d array)"),
                          ("renamed.npy", "is an .npz archive, not a .npy array"),
                          ("fifo.csv", "not a regular file"),
                          ("under.csv", "'_' in a number")):
        err = one_line(mlpjit_main("predict", xor_run / "model.npz", tmp_path / name))
        assert message in err, err


@pytest.mark.parametrize("target, message", [
    ("/dev/null", "give a .csv or .npy file"),
    ("{run}/model.npz", "give a .csv or .npy file"),
    ("{run}/metrics.csv", None),
    ("{input}", "is an input of this command"),
    ("{tmp}", "is a directory"),
])
def test_predict_never_clobbers(target, message, xor_run, mlpjit_main, tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_text("0,1\n1,0\n")
    before = (xor_run / "model.npz").read_bytes()
    out = target.format(run=xor_run, input=inp, tmp=tmp_path).replace("{tmp}", str(tmp_path))
    out = out if not out.endswith(str(tmp_path)) else str(tmp_path) + "/"
    r = mlpjit_main("predict", xor_run / "model.npz", inp, "--out", out)
    if message is None:
        assert r.code == 0, r.err
    else:
        assert message in one_line(r)
    assert (xor_run / "model.npz").read_bytes() == before and inp.read_text() == "0,1\n1,0\n"


def test_report_and_plot_never_clobber(xor_run, mlpjit_main):
    pytest.importorskip("matplotlib")
    before = (xor_run / "model.npz").read_bytes()
    for cmd, out, message in (("report", "/dev/null", "give a .html or .htm file"),
                              ("report", xor_run / "model.npz", "give a .html or .htm file"),
                              ("plot", "/dev/null", "the figure is a PNG")):
        assert message in one_line(mlpjit_main(cmd, xor_run, "--out", out))
    assert (xor_run / "model.npz").read_bytes() == before and Path("/dev/null").is_char_device()


def test_predicted_class_names_are_quoted(tmp_path, mlpjit_main):
    import mlpjit
    model = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0)])
    names = ["yes, really", 'no\n"way"']
    model.metadata = {"loss": "cross_entropy", "task": "classification", "x_scale": 1.0, "n_classes": 2,
                      "class_names": names, "input_shape": [2]}
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((51, 2)))
    assert mlpjit_main("predict", tmp_path / "m.npz", tmp_path / "x.npy", "--out", tmp_path / "p.csv").code == 0
    rows = list(csv.reader((tmp_path / "p.csv").open(newline="")))
    assert len(rows) == 52 and {r[0] for r in rows[1:]} <= set(names)
    assert rows[0] == ["class", "p_yes, really", 'p_no\n"way"']


# --- one writer per run folder; resume checks what it resumes -------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    from mlpjit.io import FolderLock
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(["sleep", "30"])
    try:
        with FolderLock(run):
            (run / ".lock").write_text(str(holder.pid))    # as another process would have written it
            err = one_line(mlpjit_main("train", cfg_file(xor_cfg()), "--out", run))
            assert f"another mlpjit process (pid {holder.pid}) is writing this run folder" in err
    finally:
        holder.kill()
    assert not (run / "config.yaml").exists()
    done = _xor_run(mlpjit_main, cfg_file, xor_cfg, tmp_path, name="done", epochs=2)
    with FolderLock(done):
        err = one_line(mlpjit_main("train", "--resume", done, "--epochs", 4))
        assert "is writing this run folder" in err


def test_two_runs_into_one_folder_at_once_one_is_refused(tmp_path, helpers):
    cfg = helpers.spirals(points=20000, test_points=30, epochs=2, batch_size=1)
    path = helpers.write_cfg(tmp_path / "c.yaml", cfg)
    procs = [_start(["train", path, "--out", tmp_path / "same", "-q"], tmp_path) for _ in range(2)]
    codes = sorted(p.wait(120) for p in procs)
    errs = " ".join(p.stderr.read() for p in procs)
    assert codes == [0, 2], errs
    assert "is writing this run folder" in errs or "already exists and is not empty" in errs
    rows = (tmp_path / "same" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_resume_refuses_an_edited_config_listing_the_keys(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(xor_cfg()), "--out", run, "--stop-after", "2", "-q").code == 75
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["optimizer"]["lr"], cfg["seed"] = 5.0, 3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    err = one_line(mlpjit_main("train", "--resume", run))
    assert "was edited after the run started" in err
    assert "optimizer.lr: 0.5 → 5.0" in err and "seed: 0 → 3" in err
    cfg["optimizer"]["lr"], cfg["seed"], cfg["train"]["epochs"] = 0.5, 0, 30   # the plan may change
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert mlpjit_main("train", "--resume", run, "-q").code == 0


def test_the_resume_line_is_shell_quoted(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    run = tmp_path / "a run; rm -rf x"
    r = mlpjit_main("train", cfg_file(xor_cfg()), "--out", run, "--stop-after", "1", "-q")
    assert r.code == 75 and f"resume with: mlpjit train --resume '{run}'" in r.err


def test_error_lines_are_capped(mlpjit_main, tmp_path):
    err = one_line(mlpjit_main("train", "xor", "--set", "seed=" + "9" * 100000, "--out", tmp_path / "r"))
    assert len(err) < 500 and " … " in err


def test_a_search_no_machine_could_finish_is_refused_and_a_new_schedule_entry_takes_its_type(mlpjit_main,
                                                                                              cfg_file, helpers,
                                                                                              tmp_path):
    path = cfg_file(helpers.spirals())
    r = mlpjit_main("sweep", path, "--search", "tpe", "--trials", 10 ** 11, "--space",
                    "optimizer.lr=loguniform(1e-3,1)", "--metric", "train_loss", "--out", tmp_path / "s")
    assert r.code == 2 and "--trials" in r.err and "100000" in r.err and not (tmp_path / "s").exists()
    r = mlpjit_main("config", "show", path, "--set", "schedules.momentum.type=linear",
                    "--set", "schedules.momentum.start=0.3")
    assert r.code == 0 and yaml.safe_load(r.out)["schedules"] == \
        {"momentum": {"type": "linear", "start": 0.3, "over": 10}}, r.text
