"""Where the runs of a sweep train: the interface every backend implements, and the local one.

A backend is a context manager (``__enter__`` starts what it needs, such as a cluster, and
``__exit__`` closes it) with

* ``describe()``: what ``sweep.yaml`` records about it;
* ``check_data(cfgs)``: refuse, before any run starts, data the runs cannot reach;
* ``run(tasks, finish, progress)``: train ``tasks`` ([(point, task)]), calling
  ``finish(point, result)`` as each ends (results as :func:`mlpjit.sweep.run.execute` returns
  them); raises KeyboardInterrupt when interrupted;
* ``run_trials(next_task, finish, progress, serve, slots)``: the same for tasks asked for one
  at a time as slots free (an Optuna search), serving the runs' per-epoch reports meanwhile;
  ``report_channel(decide)``: how those reports reach the study (:mod:`mlpjit.sweep.pruning`).

:class:`LocalBackend` trains ``--jobs`` runs at a time in worker processes (or, with one job,
in this process); :class:`mlpjit.sweep.dask_backend.DaskBackend` trains each run as a task on a
Dask cluster.  :func:`make_backend` checks the options and builds one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable

from ..errors import ConfigError
from ..trainer import Terminated
from .interface import Backend  # noqa: F401  (the interface, for the backends here)
from .run import execute


def _stop(result):
    """The exception a run's interruption ends the sweep with: SIGTERM (143) or Ctrl-C."""
    return Terminated() if result.get("code") == 143 else KeyboardInterrupt()

BACKENDS = ("local", "dask")


# thread pools of the numerical libraries, one thread each in a worker process (as Dask's
# nanny sets them for its workers)
_ONE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_blas_thread_in_children():
    """Processes started inside get one BLAS thread each (unless the variable is already set).

    N worker processes that each run an all-core BLAS pool oversubscribe the cores: 16 runs
    of a 784-256-128-10 MNIST network with --jobs 2 on 2 cores took 61-103 s instead of 11 s.
    With one thread the workers also compute exactly what Dask's workers compute.
    """
    old = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    for k in _ONE_THREAD_ENV:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalBackend(Backend):
    """``jobs`` worker processes on this machine (one job: this process)."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def run(self, tasks, finish, progress):
        if tasks:
            _run_local(tasks, self.jobs, finish, progress)

    def report_channel(self, decide):
        from .pruning import InProcess, ManagerQueues
        if self.jobs <= 1:
            return InProcess(decide)
        return ManagerQueues(decide, multiprocessing.get_context("spawn"))

    def run_trials(self, next_task, finish, progress, serve, slots):
        _run_local_trials(next_task, min(self.jobs, slots), finish, progress, serve)


def _run_local_trials(next_task: Callable, jobs: int, finish: Callable, progress,
                      serve: Callable) -> None:
    """Runs from ``next_task()`` ((point, task), or None when there are no more) in this process
    (jobs 1) or in ``jobs`` worker processes ("spawn": fresh interpreters, no fork of a process
    that holds Numba or threads), a next task asked for as a run ends; ``serve(seconds)`` waits
    between looks (a search answers its runs' reports there).  On Ctrl-C or SIGTERM no run
    starts, the running ones are signalled, checkpoint and are recorded within STOP_GRACE, and
    a worker still alive after it is ended."""
    if jobs <= 1:
        while True:
            item = next_task()
            if item is None:
                return
            p, task = item
            progress.set_running(1)
            res = execute(task)
            finish(p, res)
            if res.get("interrupted"):
                raise _stop(res)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(stop,))
    running: dict = {}
    interrupted = False
    procs = []
    try:
        while True:
            while len(running) < jobs:
                item = next_task()
                if item is None:
                    break
                p, task = item
                with _one_blas_thread_in_children():  # a worker starts at a submit
                    running[ex.submit(_execute_unless_stopped, task)] = p
            if not running:
                return
            progress.set_running(len(running))
            done, _ = wait(list(running), timeout=0, return_when=FIRST_COMPLETED)
            if not done:
                serve(SERVE_SECONDS)   # waits there for a run's report: answered at once
            for fut in done:
                res = _finish_one(fut, running.pop(fut), finish)
                if res is not None and res.get("interrupted"):
                    raise _stop(res)
    except KeyboardInterrupt as e:
        interrupted = True
        stop.set()
        sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        procs = list((getattr(ex, "_processes", None) or {}).values())
        for proc in procs:
            try:
                os.kill(proc.pid, sig)
            except (OSError, AttributeError, TypeError):
                pass
        # the running runs checkpoint and come back; each is recorded (a run that waits for an
        # answer about pruning sees its stop flag and goes on to stop)
        deadline = time.monotonic() + STOP_GRACE
        try:
            while running and time.monotonic() < deadline:
                done, _ = wait(list(running), timeout=0, return_when=FIRST_COMPLETED)
                serve(SERVE_SECONDS)
                for fut in done:
                    _finish_one(fut, running.pop(fut), finish)
        except KeyboardInterrupt:   # a second Ctrl-C: stop waiting
            pass
        raise
    finally:
        ex.shutdown(wait=not interrupted, cancel_futures=True)
        for proc in procs:
            try:
                proc.join(STOP_GRACE)
                if proc.is_alive():
                    proc.kill()
            except (OSError, AttributeError, ValueError):
                pass
        _seen.clear()


SERVE_SECONDS = 0.02   # a search: seconds the client waits for a run's report between looks


def _run_local(tasks: list, jobs: int, finish: Callable, progress) -> None:
    """Train ``tasks`` ([(point, task)]) in this process (jobs 1) or a pool of ``jobs`` worker
    processes, calling ``finish(point, result)`` as each ends: :func:`_run_local_trials` with
    the list as the source of tasks.  Raises KeyboardInterrupt when interrupted (Ctrl-C, or a
    run stopped by SIGINT)."""
    pending = iter(tasks)
    _run_local_trials(lambda: next(pending, None), min(jobs, len(tasks)), finish, progress,
                      serve=time.sleep)


STOP_GRACE = 10.0   # seconds the running runs of an interrupted sweep get to checkpoint and stop
_seen: set = set()  # futures already recorded (a future is finished once)
_STOP = None        # in a worker process: the sweep's stop event


def _worker_init(stop):
    """A worker process: the sweep's stop event, and Ctrl-C ignored between runs (a run in
    progress installs its own handler: it checkpoints and stops; the sweep decides the rest)."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute_unless_stopped(task):
    if _STOP is not None and _STOP.is_set():
        return {"status": "pending", "not_started": True}
    return execute(task)


def _finish_one(fut, p, finish):
    """Record a finished future's run (once); a run that never started is left pending."""
    if fut in _seen or fut.cancelled():
        return None
    _seen.add(fut)
    try:
        res = fut.result()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # a worker died (BrokenProcessPool) or could not start
        res = {"status": "failed",
               "error": " ".join(f"worker process failed: {type(e).__name__}: {e}".split())}
    if res.get("not_started"):
        return None
    finish(p, res)
    return res


def check_backend(backend, jobs, scheduler, workers, retries) -> None:
    """Options that belong to the other backend are a mistake, not silently ignored."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend}: unknown backend (valid: {', '.join(BACKENDS)})")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs: expected a number >= 1 (got {jobs!r})")
    if backend == "local":
        for option, value in (("--scheduler", scheduler), ("--workers", workers),
                              ("--retries", retries)):
            if value is not None:
                raise ConfigError(f"{option} {value}: only used with --backend dask "
                                  f"(the local backend runs --jobs worker processes)")
        return
    if jobs != 1:
        raise ConfigError(f"--jobs {jobs}: only used with --backend local (with --backend dask, "
                          f"--workers sets the size of the local cluster)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected a number >= 1 (got {workers!r})")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ConfigError(f"--retries: expected a number >= 0 (got {retries!r})")
    if scheduler is not None and workers is not None:
        raise ConfigError(f"--workers {workers}: only for the local cluster the sweep starts itself; "
                          f"the workers of --scheduler {scheduler} are started with "
                          f"`dask worker {scheduler}`")



def make_backend(backend: str, jobs: int = 1, scheduler: str | None = None,
                 workers: int | None = None, retries: int | None = None, n_runs: int = 1,
                 log: Callable[[str], Any] = print) -> Backend:
    """The backend named ``backend`` with its options, checked (options of the other backend
    are a mistake, not silently ignored); for Dask, a ConfigError saying what to install when
    it is missing."""
    check_backend(backend, jobs, scheduler, workers, retries)
    if backend == "local":
        return LocalBackend(jobs)
    from .dask_backend import DaskBackend
    return DaskBackend(scheduler=scheduler, workers=workers, retries=retries, n_runs=n_runs, log=log)
