"""Loggers: what the training core tells at a run's start, each epoch's end and the run's end.

A logger is a class registered by name (``register_logger``, as a layer is), made for one run
with ``Logger(run_dir, cfg)``; the core calls

* ``start(core)``: before the first epoch of a ``fit`` call (``core.epoch`` says where a resumed
  run starts);
* ``epoch(core, row)``: after each finished epoch, with its ``metrics.jsonl`` row (losses,
  accuracies, ``lr``, per-layer gradient norms, activation statistics, ``epoch_seconds``);
* ``end(core, summary)``: after the last epoch (``summary`` as in ``summary.json``), or with
  ``summary=None`` when the run stopped early (a signal, ``--max-time``, an error);
* ``close()``: always, last.

Choose them in the config (``train.log: [tensorboard]``), on the command line (``mlpjit train
--log tensorboard``) or from code (``model.fit(..., loggers=["mlflow"])``, or logger objects).

A logger that raises does not lose the run: its error is one line, the logger is turned off
and training goes on.  The shipped ones live in optional extras and are imported only when
used: ``tensorboard`` (:mod:`mlpjit.integrations.tensorboard`, ``pip install
"mlpjit[tensorboard]"``) and ``mlflow`` (:mod:`mlpjit.integrations.mlflow`, ``pip install
"mlpjit[mlflow]"``).
"""

from __future__ import annotations

import importlib

from .registry import loggers as _registry
from .registry import register_logger

__all__ = ["Logger", "make_loggers", "Loggers", "register_logger"]


class Logger:
    """The base of a logger: every hook does nothing (override the ones you need)."""

    def __init__(self, run_dir=None, cfg=None):
        self.run_dir, self.cfg = run_dir, cfg

    def start(self, core):
        pass

    def epoch(self, core, row):
        pass

    def end(self, core, summary):
        pass

    def close(self):
        pass


def _lazy(module, cls):
    """A registered entry that imports ``module`` (an optional extra) only when a run uses it."""
    def make(run_dir=None, cfg=None):
        return getattr(importlib.import_module(module), cls)(run_dir, cfg)
    make.__name__ = make.__qualname__ = cls
    make.__module__ = module
    return make


register_logger("tensorboard", _lazy("mlpjit.integrations.tensorboard", "TensorBoardLogger"))
register_logger("mlflow", _lazy("mlpjit.integrations.mlflow", "MLflowLogger"))


def make_loggers(specs, run_dir=None, cfg=None) -> list:
    """Logger objects from names (registered loggers) or objects (used as they are)."""
    out = []
    for spec in specs or ():
        if isinstance(spec, str):
            out.append(_registry.get(spec)(run_dir, cfg))
        else:
            out.append(spec)
    return out


class Loggers:
    """The loggers of one run, each call guarded: a logger that raises is reported in one line
    (through ``log``) and turned off; training goes on."""

    def __init__(self, loggers, log=print):
        self.active = list(loggers)
        self.log = log

    def call(self, hook, *args):
        for logger in list(self.active):
            fn = getattr(logger, hook, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as e:   # never the run's end: one line, and the logger is off
                self.active.remove(logger)
                name = getattr(logger, "name", None) or type(logger).__name__
                self.log(f"logger {name} failed in {hook}() and is turned off; training goes on "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:200]})")
                try:
                    logger.close()
                except Exception:
                    pass

    def close(self):
        for logger in self.active:
            try:
                logger.close()
            except Exception as e:
                self.log(f"logger {type(logger).__name__} failed in close(): {type(e).__name__}: {e}")
        self.active = []
