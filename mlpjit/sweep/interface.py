"""The interface every sweep backend implements (see :mod:`mlpjit.sweep.backends` for what each
method does); the local backend and the Dask backend both build on it."""

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
