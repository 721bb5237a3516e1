"""``mlpjit sweep --backend dask``: the runs of a sweep as tasks on a Dask cluster.

Each run is one task (:func:`train_run`) that trains from the resolved config in a scratch
folder on its worker and returns the folder's files (``config.yaml``, ``metrics.jsonl``,
``checkpoint.npz``, ``model.npz``, ``summary.json``) to the client, which writes them into the
run folder under the sweep folder (atomically, ``summary.json`` last): no shared filesystem is
needed.  The cluster is either started for the sweep (a ``LocalCluster`` of ``--workers``
processes with one thread each, closed afterwards) or an existing one (``--scheduler
ADDRESS``, workers started with ``dask worker ADDRESS`` on any machine that has mlpjit).

Data: a synthetic source needs nothing; MNIST with ``data.path: null`` comes from each
worker's own mlpjit checkout (``data/mnist`` beside the package), unless the client finds a
different ``./data/mnist``, whose absolute path it then sends; every file or folder named by
path is made absolute on the client and must exist at that path on the workers.  :meth:`DaskBackend.check_data` asks
every worker before anything starts and names the worker and the path that is missing.

Faults: a worker that dies (killed, out of memory, machine gone) takes no finished run with
it; Dask trains its runs again on another worker, up to ``--retries`` times (the scheduler's
``allowed-failures``, set for the time of the sweep), after which the run is recorded as
failed.  A run that fails for a reason of its own (a diverged loss, a bad value) comes back as
an ordinary failed result and is not retried.  Ctrl-C (or SIGTERM) sets the sweep's Dask
``Event``: no run starts after it, the running runs checkpoint and send their folders back
(within :data:`STOP_GRACE` seconds), and the same command resumes them and does the rest.

Python API: :class:`DaskBackend` (the :class:`~mlpjit.sweep.interface.Backend` that
:func:`mlpjit.sweep.run_sweep` uses for ``--backend dask``), :func:`train_run`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, MlpjitError
from .interface import Backend
from .run import execute
from ..packaged import MNIST as _PACKAGE_MNIST

__all__ = ["DaskBackend", "train_run", "check_worker", "data_paths", "worker_cfg", "require_dask",
           "INSTALL_HINT", "DEFAULT_RETRIES"]

INSTALL_HINT = 'pip install "mlpjit[dask]"'
DEFAULT_RETRIES = 3
CONNECT_TIMEOUT = 10        # seconds to reach a --scheduler
WORKER_WAIT = 60            # seconds to wait for a first worker of an empty cluster
POLL_SECONDS = 0.5          # how often the bar asks the scheduler what is running
STOP_POLL = 0.5             # seconds a worker waits on the sweep's stop event between checks
POLL_REPORTS = 0.05         # a search: seconds the client waits for a run's report between looks
STOP_GRACE = 10.0           # seconds the running runs of an interrupted sweep get to checkpoint
# _PACKAGE_MNIST: MNIST shipped in the package (what data.path: null finds when nothing else is there)
# files and folders named by path, per data source: (key, kind)
PATH_KEYS = {"mnist": (("path", "dir"),), "csv": (("train", "file"), ("test", "file")),
             "npz": (("path", "file"),)}


def require_dask():
    """The ``distributed`` package, or a ConfigError saying what to install."""
    try:
        import distributed
    except ImportError as e:
        raise ConfigError(f"--backend dask needs Dask's distributed scheduler, which is not "
                          f"installed here ({e}); install it with: {INSTALL_HINT}") from None
    return distributed


# --- on the workers ------------------------------------------------------------------------

def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return "(not on a worker)"


def train_run(task: dict) -> dict:
    """Train one run on a worker and return its result with the run folder's files.

    ``task``: ``cfg`` (the resolved config, data paths absolute), ``config_text`` (the
    ``config.yaml`` to write), ``name``, ``run_dir`` (the folder on the client, used in
    messages), ``resume``, ``files`` (the client's run folder, to resume from) and, for a
    trial of an Optuna search, ``report`` (see :mod:`mlpjit.sweep.pruning`).
    Returns :func:`mlpjit.sweep.run.execute`'s result plus ``files`` ({name: bytes}) and
    ``worker`` (its address).  Never raises for a failed run.
    """
    address = _worker_address()
    try:
        from distributed import get_worker
        root = get_worker().local_directory
    except (ImportError, ValueError):
        root = None
    from ..core import stop_requested_by

    stop, done = threading.Event(), threading.Event()
    if task.get("stop") and _stop_watcher(task["stop"], stop, done):
        return {"status": "pending", "not_started": True, "worker": address}
    scratch = Path(tempfile.mkdtemp(prefix="mlpjit-run-", dir=root))
    run_dir = scratch / task["name"]
    try:
        if task.get("files"):
            run_dir.mkdir()
            for name, data in task["files"].items():
                (run_dir / name).write_bytes(data)
        with stop_requested_by(stop):
            res = execute({"cfg": task["cfg"], "config_text": task["config_text"],
                            "run_dir": str(run_dir), "resume": task["resume"],
                            "report": task.get("report")})
        files = _read_folder(run_dir)
        if res.get("error"):
            res["error"] = res["error"].replace(str(run_dir), task["run_dir"])
            if res.get("kind") == "DataError":  # most likely a file missing on this worker
                res["error"] = f"on worker {address}: {res['error']}"
        res["files"] = files
        res["worker"] = address
        return res
    finally:
        done.set()
        shutil.rmtree(scratch, ignore_errors=True)


def _stop_watcher(name: str, stop: threading.Event, done: threading.Event) -> bool:
    """Watch the sweep's Dask ``Event`` called ``name`` (set by the client on Ctrl-C) from a
    thread, and set ``stop`` when it is set: the run checkpoints and returns, as a local run
    does on SIGINT.  True when the sweep is already stopping (the run should not start)."""
    try:
        from distributed import Event, get_client
        event = Event(name, client=get_client())
        if event.is_set():
            return True
    except Exception:   # no client here (a plain call outside a worker): nothing to watch
        return False

    def watch():
        while not done.is_set():
            try:
                if event.wait(timeout=STOP_POLL):
                    stop.set()
                    return
            except Exception:   # the scheduler went away: the run goes on, as it would anyway
                return

    threading.Thread(target=watch, name="mlpjit-stop-watch", daemon=True).start()
    return False


def _mnist_default_dir():
    """Where ``data.path: null`` finds MNIST here (None when it does not)."""
    from ..data import _mnist_dir
    try:
        return _mnist_dir(None)
    except MlpjitError:
        return None


def check_worker(paths: list) -> dict:
    """On a worker: its mlpjit version and which of ``paths`` [(key, path, kind)] it lacks."""
    from .. import __version__
    from ..data import MNIST_FILES

    missing = []
    for key, path, kind in paths:
        if path is None:  # MNIST from the worker's own ./data/mnist or package
            where = _mnist_default_dir()
            if where is None:
                missing.append((key, "./data/mnist or the installed mlpjit's data/mnist"))
            continue
        p = Path(path)
        if kind == "dir":
            if not p.is_dir() or not all((p / f).is_file() for f in MNIST_FILES.values()):
                missing.append((key, path))
        elif not p.is_file():
            missing.append((key, path))
    return {"mlpjit": __version__, "missing": missing}


# --- on the client -------------------------------------------------------------------------

def data_paths(cfg: dict) -> list[tuple[str, str | None, str]]:
    """The files and folders a run's data needs, as the workers will look for them:
    ``[(key, absolute path or None, "file" | "dir")]`` (None: MNIST's default folder)."""
    data = cfg["data"]
    out = []
    for key, kind in PATH_KEYS.get(data["name"], ()):
        value = data.get(key)
        if value is None:
            if data["name"] == "mnist":  # ./data/mnist if that is not the package's own copy
                here = Path("data/mnist")
                own = here.is_dir() and here.resolve() != _PACKAGE_MNIST.resolve()
                out.append((f"data.{key}", str(here.resolve()) if own else None, kind))
            continue
        out.append((f"data.{key}", str(Path(value).expanduser().resolve()), kind))
    return out


def worker_cfg(cfg: dict) -> dict:
    """``cfg`` with its data paths as the workers need them (absolute; see :func:`data_paths`)."""
    cfg = copy.deepcopy(cfg)
    for key, path, _ in data_paths(cfg):
        cfg["data"][key.split(".", 1)[1]] = path
    return cfg


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _store(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files into ``run_dir`` (atomically; ``summary.json`` last, so that a
    folder with a summary is complete) and remove files the run no longer has."""
    from ..io import atomic_write

    run_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        if Path(name).name != name or name.startswith("."):
            raise MlpjitError(f"a worker returned an unexpected file name {name!r}")
    for old in run_dir.iterdir():
        if old.is_file() and not old.name.startswith(".") and old.name not in files:
            old.unlink()
    for name in sorted(files, key=lambda n: n == "summary.json"):
        atomic_write(run_dir / name, lambda f, data=files[name]: f.write(data),
                     durable=name in ("model.npz", "summary.json"))


class DaskBackend(Backend):
    """A Dask cluster for one sweep: connects (``scheduler``) or starts a local cluster of
    ``workers`` processes on ``__enter__``, closes what it started on ``__exit__``.

    ``retries``: times a run is tried again when its worker dies (the scheduler's
    ``allowed-failures`` while the sweep runs; tasks that raise are also retried that often).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 retries: int | None = None, n_runs: int = 1, log: Callable[[str], Any] = print):
        require_dask()
        self.scheduler = scheduler
        self.workers = workers
        self.retries = DEFAULT_RETRIES if retries is None else retries
        self.n_runs = max(int(n_runs), 1)
        self.log = log
        self.client = None
        self.cluster = None
        self._old_allowed_failures = None

    name = "dask"

    def describe(self) -> dict:
        return {"name": "dask", "scheduler": self.scheduler, "workers": self.workers,
                "retries": self.retries}

    def __repr__(self) -> str:
        where = self.scheduler or f"LocalCluster(n_workers={self.workers})"
        return f"DaskBackend({where}, retries={self.retries})"

    # -- the cluster --------------------------------------------------------------------
    def __enter__(self) -> "DaskBackend":
        from distributed import Client, LocalCluster

        try:
            if self.scheduler is None:
                n = self.workers or min(_cpu_count(), self.n_runs)
                self.workers = n
                with _sigint_ignored():  # Ctrl-C is for this process, which closes the cluster
                    self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                host="127.0.0.1", dashboard_address=None,
                                                silence_logs=logging.CRITICAL,
                                                # no dashboard; its HTTP routes on a free port
                                                scheduler_kwargs={"allowed_failures": self.retries,
                                                                  "dashboard": False,
                                                                  "dashboard_address": "127.0.0.1:0"})
                self.client = Client(self.cluster, set_as_default=False)
                self.client.wait_for_workers(n, timeout=120)
                self.log(f"dask: started a local cluster of {n} worker process{'es' if n != 1 else ''} "
                         f"at {self.cluster.scheduler_address}")
            else:
                self._connect()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        from distributed import Client

        address = self.scheduler
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except Exception as e:  # OSError / TimeoutError / ValueError for a bad address
            raise ConfigError(f"--scheduler {address}: cannot connect to a Dask scheduler there "
                              f"({_one_line(e) or type(e).__name__}); start one with "
                              f"`dask scheduler` and give the address it prints") from None
        if not self.client.nthreads():
            self.log(f"dask: no workers at {address} yet; waiting up to {WORKER_WAIT} s for one "
                     f"(start them with: dask worker {address})")
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT)
            except Exception:
                raise ConfigError(f"--scheduler {address}: no worker connected within {WORKER_WAIT} s "
                                  f"(start them with: dask worker {address})") from None
        try:
            self._old_allowed_failures = self.client.run_on_scheduler(
                _allowed_failures_setter(self.retries))
        except Exception as e:  # a scheduler that runs no functions: keep its own setting
            self.log(f"dask: could not set the scheduler's allowed-failures to --retries "
                     f"{self.retries} ({_one_line(e)}); it keeps its own")
        nthreads = self.client.nthreads()
        threads = sum(nthreads.values())
        self.log(f"dask: connected to {address} ({len(nthreads)} worker{'s' if len(nthreads) != 1 else ''}, "
                 f"{threads} thread{'s' if threads != 1 else ''})")

    def __exit__(self, *exc) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None and self._old_allowed_failures is not None:
            try:
                client.run_on_scheduler(_allowed_failures_setter(self._old_allowed_failures))
            except Exception:
                pass
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:
                pass
        if cluster is not None:
            try:
                cluster.close(timeout=20)
            except Exception:
                pass

    # -- before the runs ------------------------------------------------------------------
    def check_data(self, cfgs: list[dict]) -> None:
        """Every worker can import mlpjit and sees every data file the runs need, or a
        ConfigError naming the worker and the path."""
        from .. import __version__

        paths = sorted({p for cfg in cfgs for p in data_paths(cfg)}, key=str)
        answers = self.client.run(check_worker, paths, on_error="return")
        versions = {}
        for address, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise ConfigError(f"worker {address} cannot run mlpjit ({type(answer).__name__}: "
                                  f"{_one_line(answer)}); install mlpjit on every worker "
                                  f"({INSTALL_HINT})")
            if answer["missing"]:
                key, path = answer["missing"][0]
                more = len(answer["missing"]) - 1
                raise ConfigError(f"{key}: {path} not found on worker {address}"
                                  + (f" (and {more} other path{'s' if more != 1 else ''})" if more else "")
                                  + "; every worker needs the data at the same absolute path")
            versions[address] = answer["mlpjit"]
        other = {a: v for a, v in versions.items() if v != __version__}
        if other:
            address, version = next(iter(other.items()))
            self.log(f"dask: note: worker {address} runs mlpjit {version}, this machine {__version__}")

    # -- the runs -------------------------------------------------------------------------
    def run(self, tasks: list, finish: Callable, progress) -> None:
        """Submit ``tasks`` ([(point, task)]) and, as each comes back, write its files and
        call ``finish(point, result)``.  Raises KeyboardInterrupt (after cancelling what is
        left) when interrupted."""
        from distributed import as_completed

        if not tasks:
            return

        token = uuid.uuid4().hex[:8]
        stop_name = f"mlpjit-stop-{token}"
        futures, names = {}, {}
        watch = _Watch(self.client, names, self.retries, progress)  # before the first task starts
        done = None
        try:
            for p, task in tasks:   # all at once: Dask schedules them, and retries a lost worker's
                self._submit(p, task, token, stop_name, names, futures, priority=-p.index)
            done = as_completed(list(futures), loop=self.client.loop, with_results=True,
                                raise_errors=False)
            self._collect(done, futures, finish, watch)
        except KeyboardInterrupt:
            self._stop_runs(stop_name, futures, lambda deadline: done is not None and self._collect(
                done, futures, finish, watch, deadline=deadline))
            raise
        finally:
            watch.close()

    def _submit(self, p, task, token, stop_name, names, futures, priority=0, report=None):
        """One run as a task (its folder's files along when it resumes); returns its future."""
        run_dir = Path(task["run_dir"])
        remote = {"cfg": worker_cfg(task["cfg"]), "config_text": task["config_text"],
                  "name": p.name, "run_dir": task["run_dir"], "resume": task["resume"],
                  "files": _read_folder(run_dir) if task["resume"] else None,
                  "stop": stop_name, "report": report}
        key = f"mlpjit-train-{token}-{p.index}"
        names[key] = p.name
        fut = self.client.submit(train_run, remote, key=key, pure=False, retries=self.retries,
                                 priority=priority)
        futures[fut] = (p, run_dir)
        return fut

    def _stop_runs(self, stop_name, futures, collect):
        """Ctrl-C or SIGTERM: set the sweep's Event (no run starts now; the running ones
        checkpoint and come back within a second or so), ``collect(deadline)`` what comes back
        within STOP_GRACE, then cancel the rest.  A second Ctrl-C stops the waiting."""
        from distributed import Event
        try:
            Event(stop_name, client=self.client).set()
            collect(time.monotonic() + STOP_GRACE)
        except KeyboardInterrupt:
            pass
        except Exception:
            pass
        try:
            self.client.cancel(list(futures))
        except Exception:
            pass

    def report_channel(self, decide):
        from .pruning import DaskQueues
        return DaskQueues(decide, self.client)

    def run_trials(self, next_task: Callable, finish: Callable, progress, serve: Callable,
                   slots: int) -> None:
        """Keep as many trials in training as the cluster has threads (at most ``slots``),
        asking ``next_task()`` for the next as one comes back; ``serve()`` between looks.
        Ctrl-C as in :meth:`run`."""
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        stop_name = f"mlpjit-stop-{token}"
        futures, names = {}, {}
        watch = _Watch(self.client, names, self.retries, progress)
        done = as_completed([], loop=self.client.loop, with_results=True, raise_errors=False)

        def fill():
            width = max(1, min(slots, sum(self.client.nthreads().values()) or 1))
            while len(futures) < width:
                item = next_task()
                if item is None:
                    return
                p, task = item
                done.add(self._submit(p, task, token, stop_name, names, futures,
                                      report=task.get("report")))

        try:
            fill()
            while futures:
                self._collect(done, futures, finish, watch, once=True, nap=0)
                serve(POLL_REPORTS)   # waits there for a run's report rather than sleeping
                fill()
        except KeyboardInterrupt:
            def collect(deadline):
                while futures and time.monotonic() < deadline:
                    self._collect(done, futures, finish, watch, once=True, nap=0)
                    serve(POLL_REPORTS)
            self._stop_runs(stop_name, futures, collect)
            raise
        finally:
            watch.close()

    def _collect(self, done, futures: dict, finish: Callable, watch, deadline=None,
                 once=False, nap=0.05) -> None:
        """Write and record each run as its task comes back, until all have (or ``deadline``;
        ``once``: one look)."""
        while not done.is_empty() and (deadline is None or time.monotonic() < deadline):
            watch.poll()
            batch = done.next_batch(block=False)
            for fut, result in batch:
                p, run_dir = futures.pop(fut)
                res = self._outcome(fut, result)
                fut.release()
                if res.get("not_started"):
                    continue
                files = res.pop("files", None)
                if files:
                    try:
                        _store(run_dir, files)
                    except (OSError, MlpjitError) as e:
                        res = {"status": "failed", "error": "cannot write the run folder: "
                               + _one_line(getattr(e, "strerror", None) or e)}
                finish(p, res)
            if not batch and nap:
                time.sleep(nap)
            if once:
                return

    def _outcome(self, fut, result) -> dict:
        """The result of a finished future, or a failed result saying why there is none."""
        from distributed import KilledWorker

        if fut.status == "finished":
            return result
        exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
        if isinstance(exc, KilledWorker):
            last = getattr(exc.last_worker, "address", exc.last_worker)
            tries = exc.allowed_failures + 1
            return {"status": "failed",
                    "error": f"{tries} worker{'s' if tries != 1 else ''} died while training this "
                             f"run (--retries {exc.allowed_failures}); the last was {last}"}
        if fut.status == "cancelled" or type(exc).__name__.endswith("CancelledError"):
            return {"status": "failed",
                    "error": "cancelled: the scheduler dropped the task or the connection to it "
                             "was lost; run the same command again to train it"}
        return {"status": "failed", "error": _one_line(f"on a worker: {type(exc).__name__}: {exc}")}


def _read_folder(run_dir: Path) -> dict[str, bytes]:
    """The files of a run folder (to resume it on a worker)."""
    if not run_dir.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def _allowed_failures_setter(n: int):
    """A function for ``run_on_scheduler`` that sets its ``allowed_failures`` to ``n`` and
    returns the old value (a closure, so the scheduler needs no mlpjit to run it)."""
    def set_allowed_failures(dask_scheduler=None):
        old = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = n
        return old
    return set_allowed_failures


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while the local cluster starts its worker processes, which inherit
    that: a Ctrl-C in the terminal (sent to the whole process group) then reaches only this
    process, which cancels the runs and closes the cluster, instead of every worker printing
    a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _cpu_count() -> int:
    from ..threads import cores   # affinity, capped by a cgroup's CPU quota
    return cores()


class _Watch:
    """What the sweep's tasks are doing: the scheduler's ``remove-worker`` events (which name
    the tasks the worker was processing: training, or queued there next) give a line when a
    worker leaves with unfinished runs, and a poll of the scheduler at most every POLL_SECONDS gives the bar's running count
    and a line when no worker is left."""

    def __init__(self, client, names: dict[str, str], retries: int, progress):
        self.client, self.names, self.retries, self.progress = client, names, retries, progress
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.last = 0.0
        self.empty_said = False
        client.subscribe_topic("all", self.events.put)  # called with (timestamp, message)

    def close(self) -> None:
        try:
            self.client.unsubscribe_topic("all")
        except Exception:
            pass

    def poll(self) -> None:
        while not self.events.empty():
            _, msg = self.events.get()
            if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                continue
            worker = msg.get("worker", "?")
            runs = sorted(self.names[k] for k in msg.get("processing-tasks", ()) if k in self.names)
            if runs:
                n = len(runs)
                self.progress.log(f"worker {worker} left the cluster with {n} unfinished "
                                  f"run{'s' if n != 1 else ''} ({' '.join(runs)}); Dask gives "
                                  f"{'it' if n == 1 else 'them'} to another worker (a run is "
                                  f"retried at most --retries {self.retries} times)")
            else:
                self.progress.log(f"worker {worker} left the cluster")
        now = time.monotonic()
        if now - self.last < POLL_SECONDS:
            return
        self.last = now
        try:
            processing = self.client.processing()
            nthreads = self.client.nthreads()
        except Exception:  # the scheduler is briefly unreachable: ask again at the next poll
            return
        mine = {w: [k for k in keys if k in self.names] for w, keys in processing.items()}
        self.progress.set_running(sum(min(len(ks), nthreads.get(w, 1)) for w, ks in mine.items()))
        if not processing and not self.empty_said:
            self.progress.log("no worker left in the cluster; the runs wait for one to join "
                              "(Ctrl-C stops; finished runs are kept)")
        self.empty_said = not processing
