"""MLflow tracking of a run: ``train.log: [mlflow]``, ``mlpjit train --log mlflow``,
``model.fit(..., loggers=["mlflow"])``.

Needs ``mlflow-skinny`` or ``mlflow`` (``pip install "mlpjit[mlflow]"``).  Where runs go: the
``MLFLOW_TRACKING_URI`` environment variable when it is set (a server, ``sqlite:///mlflow.db``,
a folder), else the local folder ``./mlruns`` (MLflow's file store; MLflow 3 refuses a file
store unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this logger then sets for its process
when it is not set already).  The experiment is the config's ``name`` (made when missing);
the MLflow run is named after the run folder.

What is logged:

* params, at the start: the resolved config flattened with dots (``optimizer.lr``,
  ``model.layers.0.units``, ``train.batch_size``); values as text (``null``, ``true``,
  lists as JSON), cut to 500 characters (MLflow's limit before 2.x's 6000, which every
  server takes); a key's characters outside MLflow's set (letters, digits, ``_ - . / ``
  and spaces) become ``_``;
* metrics, after each epoch at step = the epoch: every number of the ``metrics.jsonl`` row
  (``train_loss``, ``val_accuracy``, ``lr``, ``grad_norm``, ``epoch_seconds``, ...), nested
  dicts flattened with ``/`` (``grad_norms/0.A``, ``act_mean/0``), as in TensorBoard;
* artifacts, at the end: the run folder's ``config.yaml``, ``metrics.jsonl``, ``model.npz``,
  ``summary.json`` and ``probes.jsonl``, those that exist (a run without a folder: its config
  as ``config.yaml`` and the model as ``model.npz``);
* tags: ``mlpjit.run_dir`` (the run folder), ``mlpjit.version``.

The MLflow run ends in ``close()``: FINISHED after the last epoch, KILLED when the run was
stopped (``--stop-after``, ``--max-time``, a signal: resumable) and FAILED after an error.  A
resumed run (``mlpjit train --resume``) continues the same MLflow run when it can find it
(``<run folder>/mlflow.json`` holds its id and tracking URI): the params stay those it started
with, the metrics go on from the next epoch.  A resume that adds MLflow to a run makes a new
MLflow run and logs the earlier epochs' metrics from ``metrics.jsonl`` first.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..loggers import Logger
from . import flat_metrics

INSTALL = 'pip install "mlpjit[mlflow]"'
MAX_VALUE = 500          # characters of a param's value
MAX_KEY = 250            # characters of a key
BATCH = 100              # params per log_batch call (MLflow's limit)
METRICS_BATCH = 1000     # metrics per log_batch call (MLflow's limit)
ARTIFACTS = ("config.yaml", "metrics.jsonl", "model.npz", "summary.json", "probes.jsonl")
LINK = "mlflow.json"     # in the run folder: the MLflow run a resume continues


def _client_class():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(f"logger mlflow: the mlflow package is not installed ({INSTALL})") from None
    return MlflowClient


def mlflow_key(key):
    """``key`` as MLflow takes a param or metric name: characters outside letters, digits,
    ``_ - . /`` and spaces replaced by ``_``, no empty, ``.`` or ``..`` path part, at most 250
    characters."""
    key = re.sub(r"[^\w.\- /]", "_", str(key))
    parts = ["_" if p in ("", ".", "..") else p for p in key.split("/")]
    return "/".join(parts)[:MAX_KEY] or "_"


def _text(value):
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def flat_params(cfg, prefix=""):
    """``{key: text}`` of a resolved config: nested dicts and lists of dicts (``model.layers``)
    flattened with dots, other values as text (see the module docstring)."""
    out = {}
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.update(flat_params(value, name + "."))
        else:
            out[mlflow_key(name)] = _text(value)
    return out


def tracking_uri():
    """``MLFLOW_TRACKING_URI``, or the file URI of ``./mlruns``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return Path("mlruns").resolve().as_uri()


def _is_file_store(uri):
    return "://" not in uri or uri.startswith("file:")


class MLflowLogger(Logger):
    """An MLflow run of a training run (see the module docstring).

    ``MLflowLogger(run_dir, cfg)`` is what ``train.log: [mlflow]`` makes; from code,
    ``MLflowLogger(tracking_uri="sqlite:///mlflow.db", experiment="mine")`` may be passed to
    ``fit(loggers=[...])`` (``run_dir`` and ``cfg`` then come from the run at its start)."""

    name = "mlflow"

    def __init__(self, run_dir=None, cfg=None, *, tracking_uri=None, experiment=None, run_name=None):
        super().__init__(run_dir, cfg)
        self._Client = _client_class()   # a missing package fails here, before the run
        self.given_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.client = self.run_id = None
        self.status = "FAILED"           # until end() says otherwise

    # -- the hooks -----------------------------------------------------------------------
    def start(self, core):
        from .. import __version__
        cfg = self.cfg if self.cfg is not None else core.cfg
        run_dir = self.run_dir if self.run_dir is not None else core.run_dir
        self.run_dir = None if run_dir is None else Path(run_dir)
        uri = self.given_uri or tracking_uri()
        if _is_file_store(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 refuses it otherwise
        self.client = self._Client(tracking_uri=uri)
        self.status = "FAILED"
        resumed = core.epoch > 0 or core.batch > 0
        self.run_id = self._previous_run(uri) if resumed else None
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "mlpjit.resumed_at_epoch", str(core.epoch))
            return
        experiment_id = self._experiment_id(self.experiment or cfg.get("name") or "mlpjit")
        tags = {"mlpjit.version": __version__}
        if self.run_dir is not None:
            tags["mlpjit.run_dir"] = str(self.run_dir.resolve())
        name = self.run_name or (self.run_dir.name if self.run_dir is not None else None)
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param
        params = [Param(k, v) for k, v in flat_params(cfg).items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH])
        for row in core.rows:   # a resume that adds MLflow: the epochs before it
            self.epoch(core, row)
        if self.run_dir is not None:
            from ..io import atomic_write_text
            atomic_write_text(self.run_dir / LINK, json.dumps(
                {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id}) + "\n",
                durable=False)

    def epoch(self, core, row):
        from mlflow.entities import Metric
        now, step = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in flat_metrics(row).items()]
        for i in range(0, len(metrics), METRICS_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + METRICS_BATCH])

    def end(self, core, summary):
        if summary is not None:
            self.status = "FINISHED"
        else:   # stopped (resumable) or an error: the exception on its way out says which
            from ..core import Stopped
            error = sys.exc_info()[1]
            self.status = "KILLED" if isinstance(error, (Stopped, KeyboardInterrupt)) else "FAILED"
        if self.run_id is None:
            return
        if self.run_dir is not None:
            for name in ARTIFACTS:
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
        elif summary is not None:
            self._artifacts_without_folder(core)

    def close(self):
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status=self.status)
            self.run_id = None

    # -- helpers -------------------------------------------------------------------------
    def _experiment_id(self, name):
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:   # made meanwhile by another run (a sweep's parallel runs)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _previous_run(self, uri):
        """The MLflow run of this run folder's earlier part, or None (another store, deleted)."""
        if self.run_dir is None or not (self.run_dir / LINK).is_file():
            return None
        try:
            link = json.loads((self.run_dir / LINK).read_text(encoding="utf-8"))
            if link.get("tracking_uri") != uri:
                return None
            run = self.client.get_run(link["run_id"])
        except Exception:
            return None
        return run.info.run_id if run.info.lifecycle_stage == "active" else None

    def _artifacts_without_folder(self, core):
        import tempfile

        import yaml
        cfg = self.cfg if self.cfg is not None else core.cfg
        self.client.log_text(self.run_id, yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.npz"
            core.model.save(path)
            self.client.log_artifact(self.run_id, str(path))
