"""Pruning a trial of an Optuna search while it trains: the run's logger and the ways its
reports reach the study.

The study lives in the sweep's own process (the client: :mod:`mlpjit.sweep.search`), which
alone reads and writes ``study.db``.  A trial's run gets a :class:`StudyReporter` logger: after
each epoch it sends ``(trial, epoch, metric value)`` to the client and waits for the answer;
the client calls ``trial.report(value, epoch)`` and ``trial.should_prune()`` and answers; on
"prune" the logger sets ``core.stop_training``, so the run ends at that epoch boundary like an
early stop (checkpoint, ``model.npz`` and ``summary.json`` written) and
:func:`mlpjit.sweep.run.execute` marks it pruned.

How a report travels depends on where the run trains (the task's ``report["via"]``):

* ``inproc``: the run trains in the client's own process (``--jobs 1``): a direct call;
* ``queues``: a local worker process: queues of a ``multiprocessing`` manager;
* ``dask``: a Dask worker: Dask queues held by the scheduler (no shared filesystem needed).

The client side of each is a *channel* with ``spec(number)`` (what a task carries),
``serve(wait=0)`` (answer what is waiting, waiting up to ``wait`` seconds for a first report;
the backends call it while they wait for runs) and ``close()``.  A run that gets no answer within :data:`REPLY_WAIT` seconds trains on unpruned.
"""

from __future__ import annotations

import math
import queue
import time
import uuid
from typing import Callable

from ..loggers import Logger

__all__ = ["StudyReporter", "InProcess", "ManagerQueues", "DaskQueues", "REPLY_WAIT"]

REPLY_WAIT = 60.0   # seconds a run waits for the study's answer before it trains on unpruned
POLL = 0.2          # seconds between looks at the run's stop flag while it waits

_DECIDERS: dict[str, Callable] = {}   # in-process channels: token -> decide(number, epoch, value)


class StudyReporter(Logger):
    """The logger of a trial's run: reports ``report["metric"]`` after every epoch and stops
    the run when the study says prune.  ``pruned`` is then ``{"epoch", "metric", "value"}``."""

    name = "study"

    def __init__(self, report: dict):
        super().__init__()
        self.report = report
        self.metric = report["metric"]
        self.number = report["trial"]
        self.pruned = None
        self.dead = False    # no answer came: train on, ask no more
        self.wait_seconds = 0.0   # spent waiting for the study's answers
        self._ask = _asker(report)

    def start(self, core):
        # a resumed run: the epochs trained before the interruption, reported again (a step
        # the study already has is ignored there)
        for row in list(core.rows):
            value = row.get(self.metric)
            if value is not None and math.isfinite(value):
                self._decide(core, row["epoch"], value, answer=False)

    def epoch(self, core, row):
        value = row.get(self.metric)
        if value is None or not math.isfinite(value) or self.pruned:
            return
        if self._decide(core, row["epoch"], value):
            core.stop_training = True
            self.pruned = {"epoch": row["epoch"], "metric": self.metric, "value": value}

    def _decide(self, core, epoch, value, answer=True) -> bool:
        if self.dead:
            return False
        signals = getattr(core, "_signals", None)
        t0 = time.perf_counter()
        result = self._ask(self.number, int(epoch), float(value),
                           lambda: bool(signals is not None and signals.flag))
        self.wait_seconds += time.perf_counter() - t0
        if result is None:
            self.dead = True
            return False
        return bool(result) and answer


def _asker(report: dict) -> Callable:
    """``ask(number, epoch, value, stopping) -> True (prune) / False / None (no answer)``."""
    via = report["via"]
    if via == "inproc":
        decide = _DECIDERS.get(report["token"])

        def ask(number, epoch, value, stopping):
            return None if decide is None else decide(number, epoch, value)
        return ask
    if via == "queues":
        requests, reply = report["requests"], report["reply"]

        def ask(number, epoch, value, stopping):
            requests.put((number, epoch, value))
            return _wait(lambda t: reply.get(timeout=t), queue.Empty, stopping)
        return ask
    if via == "dask":
        from distributed import Queue, get_client
        client = get_client()
        requests = Queue(report["requests"], client=client)
        reply = Queue(report["reply"], client=client)

        def ask(number, epoch, value, stopping):
            requests.put((number, epoch, value))
            return _wait(lambda t: reply.get(timeout=t), (TimeoutError, queue.Empty), stopping)
        return ask
    raise ValueError(f"unknown report channel {via!r}")


def _wait(get, empty, stopping):
    """The answer, or None after REPLY_WAIT seconds or once the run is asked to stop."""
    deadline = time.monotonic() + REPLY_WAIT
    while time.monotonic() < deadline:
        try:
            return get(POLL)
        except empty:
            if stopping():
                return None
        except Exception:   # the client or the scheduler went away: train on
            return None
    return None


# --- the client's side ------------------------------------------------------------------------

class InProcess:
    """Runs that train in the client's process: the logger calls ``decide`` itself."""

    def __init__(self, decide: Callable):
        self.token = uuid.uuid4().hex
        _DECIDERS[self.token] = decide

    def spec(self, number: int) -> dict:
        return {"via": "inproc", "token": self.token}

    def serve(self, wait: float = 0.0) -> None:
        pass

    def close(self) -> None:
        _DECIDERS.pop(self.token, None)


class ManagerQueues:
    """Runs in local worker processes: one request queue, one answer queue per trial, held by
    a ``multiprocessing`` manager process."""

    def __init__(self, decide: Callable, ctx):
        self.decide = decide
        self.manager = ctx.Manager()
        self.requests = self.manager.Queue()
        self.replies: dict[int, object] = {}

    def spec(self, number: int) -> dict:
        if number not in self.replies:
            self.replies[number] = self.manager.Queue()
        return {"via": "queues", "requests": self.requests, "reply": self.replies[number]}

    def serve(self, wait: float = 0.0) -> None:
        first = True
        while True:
            try:
                if first and wait:
                    number, epoch, value = self.requests.get(timeout=wait)
                else:
                    number, epoch, value = self.requests.get_nowait()
            except queue.Empty:
                return
            except (OSError, EOFError):   # the manager is gone (interrupted)
                return
            first = False
            reply = self.replies.get(number)
            if reply is not None:
                reply.put(bool(self.decide(number, epoch, value)))

    def close(self) -> None:
        try:
            self.manager.shutdown()
        except Exception:
            pass


class DaskQueues:
    """Runs on Dask workers: a request queue and an answer queue per trial on the scheduler."""

    def __init__(self, decide: Callable, client):
        from distributed import Queue
        self.decide, self.client = decide, client
        self.name = f"mlpjit-report-{uuid.uuid4().hex[:8]}"
        self.requests = Queue(self.name, client=client)
        self.replies: dict[int, object] = {}

    def spec(self, number: int) -> dict:
        from distributed import Queue
        if number not in self.replies:
            self.replies[number] = Queue(f"{self.name}-{number}", client=self.client)
        return {"via": "dask", "requests": self.name, "reply": f"{self.name}-{number}"}

    def serve(self, wait: float = 0.0) -> None:
        """Answer the waiting reports; with ``wait``, wait that long for a first one (the
        client's loop waits here rather than sleeping, so that an answer goes out at once)."""
        try:
            waiting = []
            if wait:
                try:
                    waiting.append(self.requests.get(timeout=wait))
                except (TimeoutError, queue.Empty):
                    pass
            waiting += self.requests.get(batch=True)
        except Exception:   # the scheduler is briefly unreachable: answer at the next call
            return
        for number, epoch, value in waiting:
            reply = self.replies.get(number)
            if reply is not None:
                reply.put(bool(self.decide(number, epoch, value)))

    def close(self) -> None:
        for q in [self.requests, *self.replies.values()]:
            try:
                q.close()
            except Exception:
                pass
