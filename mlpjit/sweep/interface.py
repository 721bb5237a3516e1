"""The interface every sweep backend implements (see :mod:`mlpjit.sweep.backends` for what each
method does); the local backend and the Dask backend both build on it.  ``run`` trains a list
known in advance (a grid); ``run_trials`` asks for each next task as a slot frees (an Optuna
search, whose next trial depends on the finished ones)."""

from __future__ import annotations

from typing import Callable


class Backend:
    """The interface of a sweep backend (see the module docstring)."""

    name = "?"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self) -> dict:
        return {"name": self.name}

    def check_data(self, cfgs: list) -> None:
        pass

    def run(self, tasks: list, finish: Callable, progress) -> None:
        raise NotImplementedError

    def report_channel(self, decide: Callable):
        """How the runs' per-epoch reports reach ``decide(number, epoch, value)`` (a channel
        of :mod:`mlpjit.sweep.pruning`)."""
        raise NotImplementedError

    def run_trials(self, next_task: Callable, finish: Callable, progress, serve: Callable,
                   slots: int) -> None:
        """Train the tasks ``next_task()`` gives ((point, task), or None for no more now), at
        most ``slots`` at a time, asking for the next as one ends; ``finish(point, result)``
        as each ends and ``serve()`` often while waiting.  Raises KeyboardInterrupt when
        interrupted, after recording what the running runs return."""
        raise NotImplementedError
