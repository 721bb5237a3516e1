"""``mlpjit sweep --backend dask`` on real Dask clusters, on loopback only: a LocalCluster the
sweep starts itself, and a scheduler and workers started as separate processes the way the
README tells a user to (``dask scheduler``, ``dask worker ADDRESS``).  No mocks: workers are
killed with SIGKILL and sweeps interrupted with SIGINT."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed  # in the test extra: these tests run, never skip
import pytest
import yaml

from mlpjit.errors import ConfigError
from mlpjit.sweep.dask_backend import DaskBackend as DaskSession

from test_sweep import invoke, read_csv, run_folders, without_timing

GRID = ["--grid", "optimizer.lr=0.05,0.2", "--grid", "model.layers.0.activation=tanh,relu",
        "--seeds", "2"]
# a run long enough (about 2 s) to be killed or interrupted while it trains
SLOW = {
    "name": "spirals_slow", "seed": 0,
    "data": {"name": "spirals", "classes": 3, "points": 30000, "test_points": 300, "noise": 0.2},
    "model": {"layers": [{"type": "dense", "units": 64, "activation": "tanh"},
                         {"type": "dense", "units": 3}]},
    "loss": "cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 100, "batch_size": 8},
}
SLOW_GRID = ["--grid", "optimizer.lr=0.02,0.05", "--seeds", "2"]
SLOW_NAMES = sorted(f"optimizer.lr={lr},seed={s}" for lr in ("0.02", "0.05") for s in (0, 1))


class LoopbackCluster:
    """A Dask scheduler and workers, each its own process, listening on 127.0.0.1 only."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env = folder, env
        self.workers: dict[str, subprocess.Popen] = {}
        self.client = None
        self._count, self._logs = 0, []
        sched_file = folder / "scheduler.json"
        self.scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                                   "--scheduler-file", str(sched_file)])
        try:
            deadline = time.monotonic() + 60
            while True:
                assert self.scheduler.poll() is None, (folder / "scheduler.log").read_text()
                assert time.monotonic() < deadline, "the scheduler did not start within 60 s"
                try:
                    self.address = json.loads(sched_file.read_text())["address"]
                    break
                except (OSError, ValueError, KeyError):  # not written, or not complete yet
                    time.sleep(0.1)
            self.client = distributed.Client(self.address, timeout=30, set_as_default=False)
        except BaseException:
            self.close()
            raise

    def _start(self, log_name, args):
        log = open(self.folder / f"{log_name}.log", "w")
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                stderr=subprocess.STDOUT, env=self.env, cwd=self.folder)

    def worker_names(self) -> dict[str, str]:
        """{address: name} of the workers the scheduler knows."""
        return {address: str(name) for address, name in
                self.client.run(lambda dask_worker: dask_worker.name, on_error="ignore").items()}

    def ensure_workers(self, n: int) -> None:
        """Start workers (``dask worker ADDRESS --nthreads 1 --no-nanny``) until ``n`` run."""
        alive = {name for name, p in self.workers.items() if p.poll() is None}
        for _ in range(n - len(alive)):
            name = f"w{self._count}"
            self._count += 1
            self.workers[name] = self._start(name, ["worker", self.address, "--nthreads", "1",
                                                    "--no-nanny", "--no-dashboard", "--host",
                                                    "127.0.0.1", "--name", name])
        self.client.wait_for_workers(n, timeout=60)
        deadline = time.monotonic() + 30  # a killed worker may still be listed for a moment
        while len(self.worker_names()) != n and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill_a_worker_in_training(self, proc) -> tuple[str, str]:
        """Wait until a worker is inside ``Trainer.fit`` for a run of the sweep ``proc``, kill
        it (SIGKILL) and return its address and the key of the run it was training."""
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            for worker, stacks in self.client.call_stack().items():
                training = [key for key, stack in stacks.items()
                            if str(key).startswith("mlpjit-train-") and "in fit\\n" in repr(stack)]
                if training:
                    self.kill(self.worker_names()[worker])
                    return worker, training[0]
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(timeout=30)

    def close(self) -> None:
        """Stop the workers, then the scheduler (a worker whose scheduler closes while it
        stops itself can hang: the workers go first)."""
        if self.client is not None:
            self.client.close()
        for group in (list(self.workers.values()), [self.scheduler]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            for p in group:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for log in self._logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, helpers):
    c = LoopbackCluster(tmp_path_factory.mktemp("cluster"), helpers.proc_env())
    try:
        c.ensure_workers(2)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def spirals_file(tmp_path_factory, helpers):
    return helpers.write_cfg(tmp_path_factory.mktemp("cfg") / "spirals.yaml",
                             helpers.spirals(points=60, test_points=30, epochs=2))


@pytest.fixture(scope="module")
def slow_file(tmp_path_factory, helpers):
    return helpers.write_cfg(tmp_path_factory.mktemp("cfg") / "slow.yaml", SLOW)


@pytest.fixture(scope="module")
def dask_sweep(tmp_path_factory, spirals_file, cluster):
    """The 2x2 grid with 2 seeds on the loopback cluster, run once; tests copy it."""
    out = tmp_path_factory.mktemp("sweeps") / "dask"
    p = subprocess.run([sys.executable, "-m", "mlpjit", "sweep", str(spirals_file), *GRID,
                        "--backend", "dask", "--scheduler", cluster.address, "--out", str(out)],
                       capture_output=True, text=True, timeout=180, env=cluster.env)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p.stdout, set(cluster.worker_names())


def _default_sigint():
    # a Ctrl-C in a terminal reaches a process with SIGINT's default disposition; an ignored
    # SIGINT (inherited from whatever ran before in this test process) would make the child
    # deaf to the test's signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sweep_proc(cfg, *args, env):
    return subprocess.Popen([sys.executable, "-m", "mlpjit", "sweep", str(cfg), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_default_sigint)


def test_local_cluster_gives_the_same_csv_as_the_local_backend(spirals_file, tmp_path, capsys):
    code, text, err = invoke(capsys, spirals_file, *GRID, "--jobs", "2", "--out", tmp_path / "local")
    assert code == 0, err
    code, text, err = invoke(capsys, spirals_file, *GRID, "--backend", "dask", "--workers", "2",
                             "--out", tmp_path / "dask")
    assert code == 0, err + text
    assert "dask: started a local cluster of 2 worker processes at tcp://127.0.0.1:" in text
    assert text.count(" ok      ") == 8 and "8 ok, 0 failed" in text
    local, dask = read_csv(tmp_path / "local" / "sweep.csv"), read_csv(tmp_path / "dask" / "sweep.csv")
    assert len(dask) == 8 and without_timing(dask) == without_timing(local)
    names = run_folders(tmp_path / "local")
    assert run_folders(tmp_path / "dask") == names
    for name in names:  # the files that came back from the workers are the files trained here
        assert {p.name for p in (tmp_path / "dask" / name).iterdir()} == \
            {"config.yaml", "metrics.jsonl", "checkpoint.npz", "model.npz", "summary.json"}
        for f in ("config.yaml", "metrics.jsonl", "model.npz"):
            a, b = (tmp_path / "local" / name / f), (tmp_path / "dask" / name / f)
            if f == "metrics.jsonl":
                strip = lambda p: [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}
                                   for line in p.read_text().splitlines()]
                assert strip(a) == strip(b)
            else:
                assert a.read_bytes() == b.read_bytes(), f"{name}/{f}"
    meta = yaml.safe_load((tmp_path / "dask" / "sweep.yaml").read_text())
    assert meta["backend"] == {"name": "dask", "scheduler": None, "workers": 2, "retries": 3}


def test_sweep_on_a_separately_started_cluster(dask_sweep, cluster):
    out, text, workers = dask_sweep
    assert f"dask: connected to {cluster.address} (2 workers, 2 threads)" in text
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == 8 and all(r["status"] == "ok" and r["error"] == "" for r in rows)
    assert len(run_folders(out)) == 8
    used = {line.rsplit(" on ", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("[")}
    assert used and used <= workers
    for r in rows:
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert float(r["test_accuracy"]) == summary["final"]["test_accuracy"]


def test_rerun_of_a_finished_sweep_does_no_work(dask_sweep, spirals_file, cluster, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(dask_sweep[0], out)
    before = (out / "sweep.csv").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("sweep.yaml", "sweep.csv")}
    code, text, err = invoke(capsys, spirals_file, *GRID, "--backend", "dask",
                             "--scheduler", cluster.address, "--out", out)
    assert code == 0, err
    assert "skipping 8 finished runs" in text and "[1/" not in text
    assert "dask:" not in text  # nothing to do: the cluster is not even contacted
    assert (out / "sweep.csv").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_half_finished_sweep_does_only_what_is_missing(dask_sweep, spirals_file, cluster, tmp_path,
                                                       capsys):
    out = tmp_path / "again"
    shutil.copytree(dask_sweep[0], out)
    names = run_folders(out)
    before = read_csv(out / "sweep.csv")
    resumed, gone = out / names[2], out / names[6]
    model = (resumed / "model.npz").read_bytes()
    (resumed / "summary.json").unlink()     # stopped before its summary: resumed on a worker
    shutil.rmtree(gone)                     # never started
    others = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    code, text, err = invoke(capsys, spirals_file, *GRID, "--backend", "dask",
                             "--scheduler", cluster.address, "--out", out)
    assert code == 0, err
    assert "skipping 6 finished runs" in text
    assert "[1/2]" in text and "[2/2]" in text and "[3/" not in text
    assert f"{resumed}  train_accuracy" in text and "resumed on tcp://" in text
    assert (resumed / "summary.json").is_file() and (gone / "summary.json").is_file()
    assert (resumed / "model.npz").read_bytes() == model
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert without_timing(read_csv(out / "sweep.csv")) == without_timing(before)


def _sweep_killing_a_worker(cluster, config, *args):
    """Run a --scheduler sweep in a subprocess and SIGKILL a worker while it trains; returns
    (exit code, output, the killed worker's address, the key of the task it was running)."""
    proc = sweep_proc(config, *args, "--backend", "dask", "--scheduler", cluster.address,
                      env=cluster.env)
    try:
        victim, key = cluster.kill_a_worker_in_training(proc)
        text, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, text, victim, key


def test_worker_killed_while_training_is_retried_and_every_run_is_present_once(slow_file, cluster,
                                                                               tmp_path):
    cluster.ensure_workers(2)
    out = tmp_path / "killed"
    code, text, victim, key = _sweep_killing_a_worker(cluster, slow_file, *SLOW_GRID,
                                                      "--retries", "2", "--out", out)
    assert code == 0, text
    left = [line for line in text.splitlines() if line.startswith(f"worker {victim} left the cluster with ")]
    assert len(left) == 1, text
    retried = left[0].split(" (", 1)[1].split(")", 1)[0].split(" ")
    assert set(retried) <= set(SLOW_NAMES)
    assert SLOW_NAMES[int(key.rsplit("-", 1)[1])] in retried  # the run it was training (keys end in its index)
    # every run exactly once: one line, one csv row, one complete folder
    for run in SLOW_NAMES:
        assert sum(f"{out / run}  train_accuracy" in line for line in text.splitlines()) == 1, text
    rows = read_csv(out / "sweep.csv")
    assert sorted(r["run_dir"] for r in rows) == SLOW_NAMES
    assert all(r["status"] == "ok" and r["epochs"] == "100" for r in rows)
    assert run_folders(out) == SLOW_NAMES
    for run in retried:  # trained again in full, on the worker that stayed
        epochs = [json.loads(line)["epoch"] for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 101))
        line = next(line for line in text.splitlines() if f"{out / run}  train_accuracy" in line)
        assert victim not in line
    assert "4 ok, 0 failed" in text
    cluster.ensure_workers(2)


def test_with_retries_0_a_run_whose_worker_dies_is_recorded_as_failed(slow_file, cluster, tmp_path):
    cluster.ensure_workers(2)
    out = tmp_path / "no-retries"
    code, text, victim, key = _sweep_killing_a_worker(cluster, slow_file, "--grid", "optimizer.lr=0.02,0.05",
                                                      "--retries", "0", "--out", out)
    assert code == 1, text
    rows = {r["run_dir"]: r for r in read_csv(out / "sweep.csv")}
    killed = ["optimizer.lr=0.02,seed=0", "optimizer.lr=0.05,seed=0"][int(key.rsplit("-", 1)[1])]
    assert rows[killed]["status"] == "failed"
    assert rows[killed]["error"] == f"1 worker died while training this run (--retries 0); the last was {victim}"
    assert "1 failed" in text and f"failed  {out / killed}: 1 worker died" in text
    # the scheduler's allowed-failures is back to its own value after the sweep
    assert cluster.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 3
    cluster.ensure_workers(2)


def test_ctrl_c_checkpoints_running_runs_and_the_same_command_does_the_rest(slow_file, cluster,
                                                                            tmp_path, capsys):
    cluster.ensure_workers(2)
    out = tmp_path / "interrupted"
    # runs long enough (a few seconds each, on a fast machine) that the test reads "[1/4] ok" and
    # sends SIGINT before the other three finish, even when the machine is loaded
    args = [*SLOW_GRID, "--set", "train.epochs=200", "--backend", "dask",
            "--scheduler", cluster.address, "--out", out]
    proc = sweep_proc(slow_file, *args, env=cluster.env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[1/4] ok"):
                proc.send_signal(signal.SIGINT)
                break
        text = "".join(lines) + proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, f"(SIGINT here: {signal.getsignal(signal.SIGINT)})\n{text}"
    assert "sweep interrupted;" in text and "run the same command again to continue" in text
    finished = sorted(p.parent.name for p in out.glob("*/summary.json"))
    rows = read_csv(out / "sweep.csv")
    assert 1 <= len(finished) < 4
    assert sorted(r["run_dir"] for r in rows if r["status"] == "ok") == finished
    # the runs that were training when Ctrl-C came checkpointed on their workers, and their
    # folders came back: they are recorded as interrupted, and the rerun resumes them
    stopped = [r["run_dir"] for r in rows if r["status"] != "ok"]
    assert all("interrupted (SIGINT)" in r["error"] for r in rows if r["status"] != "ok")
    assert all((out / name / "checkpoint.npz").is_file() for name in stopped)
    code, text, err = invoke(capsys, slow_file, *args)
    assert code == 0, err
    assert f"skipping {len(finished)} finished run" in text
    assert text.count(", resumed") == len(stopped)
    assert f"[{4 - len(finished)}/{4 - len(finished)}]" in text and f"[{5 - len(finished)}/" not in text
    rows = read_csv(out / "sweep.csv")
    assert sorted(r["run_dir"] for r in rows) == SLOW_NAMES and all(r["status"] == "ok" for r in rows)


def test_diverging_run_is_recorded_as_failed_and_not_retried(sine_cfg, cfg_file, cluster, tmp_path,
                                                             capsys):
    cfg = cfg_file(sine_cfg(), "sine.yaml")
    code, text, err = invoke(capsys, cfg, "--grid", "optimizer.lr=1e6,0.01", "--backend", "dask",
                             "--scheduler", cluster.address, "--out", tmp_path / "dask")
    assert code == 1, err
    code_local, _, _ = invoke(capsys, cfg, "--grid", "optimizer.lr=1e6,0.01", "--out", tmp_path / "local")
    assert code_local == 1
    rows = read_csv(tmp_path / "dask" / "sweep.csv")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "diverged" in rows[0]["error"] and "worker" not in rows[0]["error"]
    assert without_timing(rows) == without_timing(read_csv(tmp_path / "local" / "sweep.csv"))
    assert "1 ok, 1 failed" in text and text.count("failed  ") == 1


def test_data_missing_on_a_worker_names_the_worker_and_the_path(cluster, tmp_path, spirals_cfg):
    cluster.ensure_workers(2)
    cfg = spirals_cfg()
    cfg["data"] = {"name": "npz", "path": str(tmp_path / "only-on-my-laptop.npz")}
    with DaskSession(scheduler=cluster.address, log=lambda line: None) as session:
        with pytest.raises(ConfigError) as e:
            session.check_data([cfg])
        session.check_data([spirals_cfg()])  # synthetic data: nothing to find
    message = str(e.value)
    assert message.startswith(f"data.path: {tmp_path / 'only-on-my-laptop.npz'} not found on worker tcp://127.0.0.1:")
    assert message.split(" not found on worker ")[1].split(";")[0] in cluster.worker_names()
    assert "same absolute path" in message


def test_data_named_by_a_relative_path_reaches_the_workers(cluster, tmp_path, capsys, monkeypatch,
                                                           spirals_cfg, helpers):
    """A relative data path is the client's: it is sent to the workers as an absolute path
    (the workers were started in another folder)."""
    import numpy as np
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(tmp_path / "points.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    cfg = spirals_cfg(epochs=2)
    cfg["data"] = {"name": "npz", "path": "points.npz"}
    cfg["model"]["layers"][-1]["units"] = 2
    path = helpers.write_cfg(tmp_path / "npz.yaml", cfg)
    code, text, err = invoke(capsys, path, "--seeds", "2", "--backend", "dask",
                             "--scheduler", cluster.address, "--out", "sw")
    assert code == 0, err + text
    assert "2 ok, 0 failed" in text
    saved = yaml.safe_load((tmp_path / "sw" / "seed=0" / "config.yaml").read_text())
    assert saved["data"]["path"] == "points.npz"  # the run's config as written, not as sent


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler tcp://127.0.0.1:8786: only used with --backend dask"),
    (["--workers", "2"], "--workers 2: only used with --backend dask"),
    (["--retries", "1"], "--retries 1: only used with --backend dask"),
    (["--backend", "dask", "--jobs", "2"], "--jobs 2: only used with --backend local"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"],
     "--workers 2: only for the local cluster the sweep starts itself"),
    (["--backend", "spark"], "Invalid value for '--backend'"),
])
def test_backend_option_mistakes(args, message, spirals_file, tmp_path, capsys):
    code, text, err = invoke(capsys, spirals_file, "--seeds", "2", *args, "--out", tmp_path / "sw")
    assert code == 2
    assert err.startswith("error: " + message) and err.count("\n") == 1, err
    assert not (tmp_path / "sw").exists()


def test_unreachable_scheduler_is_one_line_and_creates_nothing(spirals_file, tmp_path, capsys,
                                                               monkeypatch):
    import socket
    import mlpjit.sweep.dask_backend as sweep_dask
    monkeypatch.setattr(sweep_dask, "CONNECT_TIMEOUT", 2)  # a user waits 10 s; a test need not
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, text, err = invoke(capsys, spirals_file, "--backend", "dask", "--scheduler",
                             f"tcp://127.0.0.1:{port}", "--out", tmp_path / "sw")
    assert code == 2
    assert err.startswith(f"error: --scheduler tcp://127.0.0.1:{port}: cannot connect to a Dask "
                          f"scheduler there") and err.count("\n") == 1, err
    assert "dask scheduler" in err
    assert not (tmp_path / "sw").exists()


def test_without_dask_the_dask_backend_says_what_to_install(spirals_file, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    code, text, err = invoke(capsys, spirals_file, "--backend", "dask", "--out", tmp_path / "sw")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --backend dask needs Dask's distributed scheduler")
    assert 'pip install "mlpjit[dask]"' in err
    assert not (tmp_path / "sw").exists()
    code, text, err = invoke(capsys, spirals_file, "--out", tmp_path / "local")  # the rest works
    assert code == 0, err
