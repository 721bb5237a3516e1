"""One run of a sweep: train it in this process, a worker process or on a Dask worker.

:func:`execute` is what every backend calls for each run (:mod:`mlpjit.sweep.backends`); it
never raises for a failed run, so one run's failure does not stop the others.
"""

from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path

from ..errors import MlpjitError


def quiet(*args, **kwargs):
    pass


def execute(task: dict) -> dict:
    """Train one run; never raises (except KeyboardInterrupt).

    ``task``: ``cfg`` (the resolved config), ``config_text`` (its ``config.yaml``), ``run_dir``
    and ``resume`` (continue from the folder's checkpoint); for a trial of an Optuna search
    also ``report`` (see :mod:`mlpjit.sweep.pruning`): the run reports its metric after every
    epoch and stops where the study prunes it.  Returns ``{"status": "ok", "summary": ...}``,
    ``{"status": "pruned", "summary": ...}`` (``summary["pruned"]``: the epoch, metric and
    value) or ``{"status": "failed", "error": one line, ...}``."""
    from ..io import atomic_write_text
    from ..trainer import Interrupted, Trainer

    run_dir = Path(task["run_dir"])
    cfg = task["cfg"]
    resumed = False
    reporter = None
    try:
        if task.get("report"):
            from .pruning import StudyReporter
            reporter = StudyReporter(task["report"])
        loggers = [reporter] if reporter is not None else []
        trainer = None
        if task["resume"]:
            try:
                trainer = Trainer(cfg, run_dir, log=quiet, progress=False, loggers=loggers)
                trainer.load_checkpoint()
                resumed = True
            except MlpjitError:
                trainer = None
                shutil.rmtree(run_dir, ignore_errors=True)
        if trainer is None:
            trainer = Trainer(cfg, run_dir, log=quiet, progress=False, loggers=loggers)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", task["config_text"])
        (run_dir / "error.txt").unlink(missing_ok=True)
        summary = trainer.fit(cfg["train"]["epochs"])
        waited = {} if reporter is None else {"report_seconds": reporter.wait_seconds}
        if reporter is not None and reporter.pruned:
            summary["pruned"] = reporter.pruned   # "pruned at epoch k", in the run folder too
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            return {"status": "pruned", "summary": summary, "resumed": resumed, **waited}
        return {"status": "ok", "summary": summary, "resumed": resumed, **waited}
    except Interrupted as e:
        return {"status": "failed", "error": f"{e}", "interrupted": True, "resumed": resumed,
                "code": e.code}
    except MlpjitError as e:
        return {"status": "failed", "error": " ".join(str(e).split()), "resumed": resumed,
                "kind": type(e).__name__}
    except Exception as e:  # a bug or an environment problem: keep the traceback in the run folder
        message = " ".join(f"{type(e).__name__}: {e}".split())
        try:
            if run_dir.is_dir():
                atomic_write_text(run_dir / "error.txt", traceback.format_exc())
                message += f" (traceback in {run_dir / 'error.txt'})"
        except OSError:
            pass
        return {"status": "failed", "error": message, "resumed": resumed}
