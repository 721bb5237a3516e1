"""The training core: layers, loss, SGD and clipping stitched into epochs (math.md §5).

:class:`TrainingCore` trains a built model on a loaded data set with the settings of a resolved
config (a plain dict, see :mod:`mlpjit.config`): the compiled step or the layer path,
validation, early stopping, schedules, clipping, signals and time limits.  ``mlpjit train``
(:class:`mlpjit.trainer.Trainer`, which builds the model from the config), ``model.fit``
(:mod:`mlpjit.fitting`) and the scikit-learn estimators (:mod:`mlpjit.sklearn`) all train
through it; it imports none of them, nor the model class.  Given a run folder, it keeps it up
to date:

* ``config.yaml``    the resolved config (every default filled in);
* ``metrics.jsonl``  one JSON object per finished epoch (with ``act_mean``/``act_std``, each
  hidden layer's activations on a fixed probe batch: see :func:`activation_stats`);
* ``probes.jsonl``   with ``train.probe_every: k``, the same statistics every k batches (and
  before the first), by ``step`` (batches trained);
* ``checkpoint.npz`` weights, optimizer state, every random state, the epoch (and, after an
  interrupt, the position inside the epoch) and the early-stopping state;
* ``model.npz``      the final model (``Sequential.load``);
* ``summary.json``   the final figures, times, seed and versions.

Every file is written atomically (temporary file, then rename).  The order at the end of an
epoch is metrics, then checkpoint: a process killed between the two leaves a metrics line the
checkpoint does not cover, and ``--resume`` drops it and redoes that epoch, so no epoch is lost
or counted twice.
"""

import contextlib
import json
import math
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import __version__
from . import losses as _losses
from .errors import ConfigError, ModelFileError, TrainingDiverged
from .io import append_text, atomic_write_npz, atomic_write_text, json_array, read_json_array, read_npz
from .kernels import misc as KM
from .optim import clip_grad_norm, clip_grad_value, make_optimizer, sum_squares
from .registry import optimizer_value

CHECKPOINT_FORMAT = "mlpjit-checkpoint/1"
CHUNK_SECONDS = 0.2          # a compiled call returns to Python about this often (signals, --max-time)
FIRST_CHUNK_EXAMPLES = 256   # the first call's examples, before a batch's time is known
DTYPES = {"float32": np.float32, "float64": np.float64}


# --- seeds and the optimizer ------------------------------------------------------------------

def _seeds(seed):
    """Independent generators for initialization, shuffling and dropout masks."""
    init, shuffle, dropout = np.random.SeedSequence(seed).spawn(3)
    return init, shuffle, dropout


def make_optimizer_from(cfg, model):
    """The config's optimizer over ``model``'s parameters."""
    opt = dict(cfg["optimizer"])
    name = opt.pop("type")
    return make_optimizer(name, model, **opt)


# --- the run folder ------------------------------------------------------------------------

def versions():
    import numba
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "mlpjit": __version__}


def cpu_model():
    """The processor's name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_metrics(run_dir, name="metrics.jsonl"):
    path = Path(run_dir) / name
    if not path.exists():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        from .errors import DataError
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e.__class__.__name__})") from None
    for line in text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a kill during an append
    return rows


def append_metrics(run_dir, row, name="metrics.jsonl"):
    """Add one epoch's line.  Appending keeps each epoch's write small; a line torn by a kill is
    dropped by ``read_metrics`` and ``fit`` rewrites the file (atomically) when a run resumes."""
    append_text(Path(run_dir) / name, json.dumps(row) + "\n")


def write_metrics(run_dir, rows, name="metrics.jsonl"):
    atomic_write_text(Path(run_dir) / name, "".join(json.dumps(r) + "\n" for r in rows),
                      durable=False)


def _rng_state_json(rng):
    return rng.bit_generator.state


PROBES = "probes.jsonl"


def in_notebook():
    """True inside a Jupyter kernel (progress bars are widgets there)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:   # pragma: no cover
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


# --- evaluation ----------------------------------------------------------------------------

def evaluate(model, loss, X, y, x_scale=1.0, batch_size=1000, classification=True):
    """Mean loss and accuracy (None for regression) of ``model`` on (X, y), in prediction mode
    (:func:`mlpjit.metrics.split_metrics`)."""
    from .metrics import split_metrics
    r = split_metrics(model, loss, X, y, x_scale, classification, batch_size)
    return r["loss"], r.get("accuracy")


def activation_stats(model, X):
    """``({layer: mean}, {layer: std})`` of each hidden layer's output Y on the batch X, in
    prediction mode, over all its examples and units (Glorot & Bengio 2010, Fig. 2-4): every
    layer but the last, skipping those whose output is their input (dropout at prediction, a
    flatten).  Layers are named by their index in the model."""
    mean, std = {}, {}
    h = X
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        out = layer.forward(h, training=False)
        if i < last and not np.may_share_memory(out, h):
            mean[str(i)] = float(out.mean(dtype=np.float64))
            std[str(i)] = float(out.std(dtype=np.float64))
        h = out
    return mean, std


# --- training ------------------------------------------------------------------------------

class _Signals:
    """SIGINT and SIGTERM set a flag; the loop stops after the current batch (or chunk of
    batches), writes a checkpoint and raises :class:`Interrupted`.  A second signal, more than
    ``SAME_STOP`` seconds after the first, stops at once, except while a checkpoint is being
    written: that write finishes first (it is atomic anyway, so the previous checkpoint stays
    loadable whatever happens)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self.first_at = 0.0
        self.writing = False
        self._old = {}
        self.event = getattr(_stop_requests, "event", None)

    @property
    def flag(self):
        if self.signum is None and self.event is not None and self.event.is_set():
            self.signum, self.first_at = signal.SIGINT, time.monotonic()
        return self.signum is not None

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not in the main thread
                pass
        return self

    SAME_STOP = 1.0   # seconds: a signal this soon after the first is the same stop (a terminal's
                      # Ctrl-C reaches a sweep and its workers, and the sweep passes it on too)

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signum is not None and not self.writing and now - self.first_at > self.SAME_STOP:
            raise KeyboardInterrupt   # a second signal stops at once
        if self.signum is None:
            self.signum, self.first_at = signum, now

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _target_scale_of(model):
    """(mean, scale) arrays of a model trained on a scaled target, or None."""
    meta = getattr(model, "metadata", None) or {}
    if meta.get("y_scale") is None:
        return None
    return np.asarray(meta["y_mean"], np.float64), np.asarray(meta["y_scale"], np.float64)


def scaled_target(y, target_scale):
    """y' = (y − m)/s: a regression target in the units its model was trained in."""
    m, s = target_scale
    return ((np.asarray(y, np.float64) - m) / s).astype(np.asarray(y).dtype, copy=False)


def _scaled_target(cfg, data, model, previous):
    """(data, (mean, scale) or None): a regression target standardized on the training split,
    y' = (y − m)/s per column (s = 1 for a constant column), when ``data.scale_target`` says so
    (by default: a regression whose model starts with ``standardize``).  The losses are then in
    the scaled units (an MSE of 1 is the mean's); predictions are scaled back (y = ŷ·s + m).  A
    model fitted again from code keeps the scale of its first fit."""
    import dataclasses
    choice = cfg["data"].get("scale_target")
    if data.task != "regression":
        if choice:
            raise ConfigError(f"data.scale_target: only for a regression target (data "
                              f"'{cfg['data']['name']}' is a classification task)")
        return data, None
    on = hasattr(model.layers[0], "adapt") if choice is None else bool(choice)
    if not on:
        return data, None
    if getattr(model, "_fit_state", None) and previous.get("y_scale") is not None:
        m, s = np.asarray(previous["y_mean"], np.float64), np.asarray(previous["y_scale"], np.float64)
    else:
        y = np.asarray(data.y_train, np.float64)
        m, s = y.mean(axis=0), y.std(axis=0)
        s = np.where(s > 0, s, 1.0)

    def scaled(y):
        return None if y is None else scaled_target(y, (m, s))

    data = dataclasses.replace(data, y_train=scaled(data.y_train), y_val=scaled(data.y_val),
                               y_test=scaled(data.y_test))
    return data, ([float(v) for v in m], [float(v) for v in s])


CHECKPOINT_SECONDS = 1.0   # at most this often between epochs: a crash loses at most about this much
_stop_requests = threading.local()


@contextlib.contextmanager
def stop_requested_by(event):
    """Training in this thread stops, as on Ctrl-C, once ``event`` (a ``threading.Event``) is
    set: the way a thread that cannot receive signals (a Dask worker's task) is stopped."""
    old = getattr(_stop_requests, "event", None)
    _stop_requests.event = event
    try:
        yield event
    finally:
        _stop_requests.event = old


class Stopped(Exception):
    """Training stopped before the end of its plan with a checkpoint written: by ``--stop-after``
    or ``--max-time`` (exit code :data:`EXIT_STOPPED`), or by a signal (:class:`Interrupted`)."""

    code = 75

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class Interrupted(Stopped):
    """Training stopped by SIGINT (exit code 130) or SIGTERM (143) after a checkpoint was written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (a sweep): handled like Ctrl-C, exit code 143."""


EXIT_STOPPED = Stopped.code   # 75, EX_TEMPFAIL: a scheduler may requeue the job and --resume it


def parse_duration(text):
    """Seconds of ``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` or ``1d``; ValueError otherwise."""
    import re
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        value = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", t)
        if not parts or "".join(f"{a}{b}" for a, b in parts) != t.replace(" ", ""):
            raise ValueError(f"{text!r} is not a duration (say 90s, 30m, 2h or 1h30m)")
        value = sum(float(a) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[b] for a, b in parts)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{text!r}: a duration must be positive")
    return value


def _resumable(cfg):
    """A config as a resume compares it: everything but the plan (train.epochs may change) and
    where the run is logged (train.log: a resume may add TensorBoard, say)."""
    out = json.loads(json.dumps(cfg))
    out.get("train", {}).pop("epochs", None)
    out.get("train", {}).pop("log", None)
    return out


def _changes(old, new, path=""):
    """[(key path, old value, new value)] where two JSON documents differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += _changes(old.get(k, "(none)"), new.get(k, "(none)"), f"{path}.{k}" if path else str(k))
        return out
    return [] if old == new else [(path or "(config)", old, new)]


def _short(value):
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _checked_state(state, path, n_batches, n_dropouts):
    """A checkpoint's ``__state__`` with every field of the right type and range, or a one-line
    ModelFileError naming the field."""
    def bad(key, what):
        return ModelFileError(f"{path}: checkpoint state '{key}' must be {what} "
                              f"(got {str(state.get(key) if isinstance(state, dict) else state)[:60]!r})")

    def count(v, lo=0, hi=None):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)

    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: checkpoint state must be a JSON object")
    if not count(state.get("epoch")):
        raise bad("epoch", "a count of finished epochs")
    if not count(state.get("batch"), 0, n_batches - 1):
        raise bad("batch", f"a batch of the epoch (0 to {n_batches - 1})")
    if "plan" in state and not count(state["plan"], 1):
        raise bad("plan", "a number of epochs")
    for key in ("threads", "blas_threads"):
        if state.get(key) is not None and not count(state[key], 1, 4096):
            raise bad(key, "a number of threads")
    acc = state.get("acc")
    numbers = ("loss", "correct", "seen", "grad_norm", "batches", "seconds")
    if not isinstance(acc, dict) or not all(isinstance(acc.get(k), (int, float)) and not isinstance(acc.get(k), bool)
                                            and math.isfinite(acc[k]) for k in numbers) \
            or not isinstance(acc.get("layer_norms"), dict) \
            or not all(isinstance(v, (int, float)) for v in acc["layer_norms"].values()):
        raise bad("acc", "the epoch's running sums")
    early = state.get("early")
    if early is not None and (not isinstance(early, dict) or not count(early.get("wait", 0))
                              or not count(early.get("best_epoch", 0))
                              or not isinstance(early.get("stopped", False), bool)):
        raise bad("early", "the early-stopping state")
    if not isinstance(state.get("shuffle_rng"), dict):
        raise bad("shuffle_rng", "a generator's state")
    rngs = state.get("dropout_rngs")
    if not isinstance(rngs, list) or len(rngs) != n_dropouts or not all(isinstance(r, dict) for r in rngs):
        raise bad("dropout_rngs", f"the states of the model's {n_dropouts} dropout generators")
    if not isinstance(state.get("plan_changes", []), list):
        raise bad("plan_changes", "a list")
    return state


class TrainingCore:
    """Epochs of a resolved config's settings on ``dataset`` (a :class:`mlpjit.data.Dataset`)
    for ``model`` (a built :class:`~mlpjit.Sequential`, checked against the data by the caller),
    in the compiled step (or layer by layer), with validation, early stopping, schedules,
    clipping, signals, time limits and, when ``run_dir`` is given, the run folder.

    Besides: ``optimizer`` (an optimizer over the model's parameters, whose state carries on;
    default: the config's), ``shuffle_rng`` (the generator of the epochs' orders; default: from
    the config's seed) and ``callbacks``:
    functions ``callback(trainer, row)`` called after each finished epoch's row (``metrics.jsonl``'s
    line), before the checkpoint; one may set ``trainer.stop_training = True`` to end the run
    after that epoch (as early stopping does).  ``run_dir=None`` writes no files: the rows are in
    ``trainer.rows``.  ``loggers``: :mod:`mlpjit.loggers` names or objects, besides the config's
    ``train.log``; each is told of the run's start, each epoch and its end.
    """

    def __init__(self, cfg, run_dir, dataset, log=print, progress=True, *, model,
                 optimizer=None, shuffle_rng=None, callbacks=(), loggers=()):
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = log
        self.progress = progress
        self.callbacks = list(callbacks)
        # loggers (mlpjit.loggers): the config's train.log names, then the caller's objects
        from .loggers import make_loggers
        self.loggers = make_loggers(list(cfg["train"].get("log") or ()) + list(loggers),
                                    self.run_dir, cfg)
        self.stop_training = False
        self.adapt_first = True        # a fresh run fits standardize to the training split
        self.rows = []                 # the finished epochs' rows, oldest first
        self.data = dataset
        self.classification = self.data.task == "classification"
        self.model, self.loss = model, _losses.get(cfg["loss"])
        self.params = self.model.parameters()
        previous = getattr(self.model, "metadata", None) or {}
        self.data, target_scale = _scaled_target(cfg, self.data, self.model, previous)
        self.model.metadata = {"loss": cfg["loss"], "task": self.data.task, "x_scale": self.data.x_scale,
                               "n_classes": self.data.n_classes, "class_names": self.data.class_names,
                               "data": cfg["data"]["name"], "seed": cfg["seed"],
                               "input_shape": list(self.data.input_shape)}
        if self.data.encoding is not None:  # a table: how its columns became features
            self.model.metadata["encoding"] = self.data.encoding
        if target_scale is not None:        # predictions are scaled back: y = ŷ·s + m
            self.model.metadata["y_mean"], self.model.metadata["y_scale"] = target_scale
        self.optimizer = optimizer if optimizer is not None else make_optimizer_from(cfg, self.model)
        from .explain import check_run
        check_run(self.data, self.model, self.optimizer, self.batch_size(), self.loss)
        if shuffle_rng is None:
            _, shuffle_ss, _ = _seeds(cfg["seed"])
            shuffle_rng = np.random.default_rng(shuffle_ss)
        self.shuffle_rng = shuffle_rng
        self.dropouts = [layer for layer in self.model.walk() if hasattr(layer, "rng")]
        self.weight_names = [name for name, p, _ in self.params if name.endswith(".A")]
        # the probe batch: the first train.probe_rows training examples, scaled, fixed for the run
        k = min(int(cfg["train"].get("probe_rows", 256)), self.data.n_train)
        self.probe_every = int(cfg["train"].get("probe_every", 0)) if k and run_dir is not None else 0
        self.probe_X = None
        if k:
            rows = self.data.X_train[:k].reshape(k, -1)
            self.probe_X = np.empty((k, rows.shape[1]), self.model.dtype)
            KM.gather_rows(rows, np.arange(k), self.data.x_scale, self.probe_X)
            self.probe_X = self.probe_X.reshape((k,) + self.data.X_train.shape[1:])
        # position and state
        self.epoch = 0                 # finished epochs
        self.batch = 0                 # next batch inside epoch ``self.epoch`` (0: at a boundary)
        self.perm = None               # the current epoch's order, while inside an epoch
        self.acc = self._new_accumulators()
        es = cfg["train"].get("early_stopping")
        if es:
            split = es["metric"].split("_")[0]
            if split == "test":   # choosing by the test split is choosing on the test set
                raise ConfigError(f"train.early_stopping.metric: '{es['metric']}' would choose when to "
                                  f"stop by the test split, which only reports; use "
                                  f"val_{es['metric'][5:]} (with data.validation) or train_loss")
            if split == "val" and getattr(self.data, f"X_{split}") is None:
                raise ConfigError(f"train.early_stopping.metric: '{es['metric']}' needs a {split} split, "
                                  f"but data '{cfg['data']['name']}' has none"
                                  + (" (set data.validation)" if split == "val" else ""))
            if es["metric"].endswith("accuracy") and not self.classification:
                raise ConfigError(f"train.early_stopping.metric: '{es['metric']}' needs a classification "
                                  f"task, but data '{cfg['data']['name']}' is a regression task "
                                  f"(use {split}_loss)")
        self.plan_changes = []  # resumes that changed train.epochs: {"at_epoch", "from", "to", ...}
        self.fast = None  # the compiled step, built at the first epoch (mlpjit/step)
        self.saved_epoch, self._saved_at = None, -math.inf   # the last checkpoint: its epoch, when
        self._spb = None  # seconds per batch of the compiled step, as measured
        self.fast_reason = None
        if cfg["train"].get("compiled", True):
            from .step import unsupported_reason
            self.fast_reason = unsupported_reason(self.model, self.loss, self.optimizer)
            if self.fast_reason is not None:
                log(f"note: {self.fast_reason}; training runs layer by layer")
        else:
            self.fast_reason = "train.compiled is false"
        self.early = {"best": None, "best_epoch": 0, "wait": 0, "stopped": False} if es else None
        from .threads import resolve_threads
        self.auto_threads = cfg["train"].get("threads", "auto") in (None, "auto")
        self.threads = resolve_threads(cfg["train"].get("threads", "auto"))  # shards: see step
        # BLAS's threads outside a sharded step (a serial step, the layer path, evaluation): the
        # run's share of the cores when it starts, fixed from then on (BLAS's sums depend on it)
        self.blas = None
        # this run among the runs on the machine: from now (two runs started at once see each
        # other when they start training) to the end of fit()
        from .threads import Presence
        self.presence = Presence().__enter__()

    # -- state --------------------------------------------------------------------------
    def _new_accumulators(self):
        return {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
                "layer_norms": {name: 0.0 for name in self.weight_names}, "seconds": 0.0}

    def save_checkpoint(self):
        if self.run_dir is None:
            return
        state = {"config": _resumable(self.cfg),
                 "epoch": self.epoch, "batch": self.batch, "acc": self.acc, "early": self.early,
                 "plan": self.cfg["train"]["epochs"], "plan_changes": self.plan_changes,
                 "threads": self.threads, "blas_threads": self.blas,
                 "shuffle_rng": _rng_state_json(self.shuffle_rng),
                 "dropout_rngs": [_rng_state_json(d.rng) for d in self.dropouts]}
        arrays = {"__format__": np.array(CHECKPOINT_FORMAT), "__state__": json_array(state)}
        arrays.update({f"model/{k}": v for k, v in self.model.to_arrays().items()})
        arrays.update({f"optimizer/{k}": v for k, v in self.optimizer.state_arrays().items()})
        if self.perm is not None:
            arrays["perm"] = self.perm
        atomic_write_npz(self.run_dir / "checkpoint.npz", arrays, durable=False)
        self.saved_epoch, self._saved_at = self.epoch, time.monotonic()

    def load_checkpoint(self):
        """Restore the state of ``checkpoint.npz``: every part is checked first (a checkpoint is
        data: the model's arrays as a model file's, the optimizer's state by shape, the random
        states, the counters, the epoch's order a permutation of the training rows), and a part
        that does not fit is one ModelFileError line naming it."""
        path = self.run_dir / "checkpoint.npz"
        arrays = read_npz(path, kind="mlpjit checkpoint")
        if str(arrays.get("__format__", "")) != CHECKPOINT_FORMAT:
            raise ModelFileError(f"{path}: not an mlpjit checkpoint")
        state = read_json_array(arrays, "__state__", path, kind="mlpjit checkpoint")
        state = _checked_state(state, path, self._n_batches(), len(self.dropouts))
        if isinstance(state.get("config"), dict):   # the config the run started with
            changed = _changes(state["config"], _resumable(self.cfg))
            if changed:
                shown = "; ".join(f"{k}: {_short(a)} → {_short(b)}" for k, a, b in changed[:5])
                more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
                raise ConfigError(f"{self.run_dir / 'config.yaml'} was edited after the run started ({shown}"
                                  f"{more}); a run resumes with the config it started with: start a new "
                                  f"run for new values (--epochs changes the plan)")
        model_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
        extra = sorted(set(k for k in model_arrays if not k.startswith("__"))
                       - {n for n, _, _ in self.model.parameters()} - {n for n, _ in self.model.state_items()})
        if extra:
            raise ModelFileError(f"{path}: array 'model/{extra[0]}' belongs to no parameter of the run's model")
        opt_arrays = {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer/")}
        for slot, per_param in self.optimizer.state.items():
            for name, a in per_param.items():
                got = opt_arrays.get(f"{slot}/{name}")
                if not isinstance(got, np.ndarray) or got.shape != a.shape or got.dtype.kind not in "fiu":
                    raise ModelFileError(f"{path}: optimizer state '{slot}/{name}' is "
                                         f"{'missing' if got is None else f'{got.dtype} {got.shape}'}; "
                                         f"the run needs {a.dtype} {a.shape}")
        t = opt_arrays.get("t")
        if not isinstance(t, np.ndarray) or t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise ModelFileError(f"{path}: optimizer state 't' must be a count of steps")
        perm = None
        if state["batch"] > 0:
            perm = arrays.get("perm")
            n = self.data.n_train
            if not isinstance(perm, np.ndarray) or perm.shape != (n,) or perm.dtype.kind not in "iu" \
                    or not np.array_equal(np.sort(perm), np.arange(n)):
                raise ModelFileError(f"{path}: 'perm' must be an order of the {n} training rows")
        try:
            self.model.load_state_arrays(model_arrays, source=str(path))
            self.optimizer.load_state_arrays(opt_arrays)
            self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
            for d, s in zip(self.dropouts, state["dropout_rngs"]):
                d.rng.bit_generator.state = s
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise ModelFileError(f"{path}: does not match the run's config ({' '.join(str(e).split())[:200]})") from None
        self.epoch, self.batch = state["epoch"], state["batch"]
        self.saved_epoch = self.epoch
        self.acc, self.early = state["acc"], state["early"]
        self.perm = perm
        self.plan_changes = list(state.get("plan_changes", []))
        self.threads = int(state.get("threads", self.threads))  # the same shards as before
        self.blas = state.get("blas_threads", self.threads)      # and the same BLAS threads
        old, new = state.get("plan", self.cfg["train"]["epochs"]), self.cfg["train"]["epochs"]
        if new != old and new > self.epoch:
            self._replan(old, new)

    def _replan(self, old, new):
        """The plan grows (or shrinks) on a resume: the schedules are re-planned from the next
        epoch; say so in one line and record it.  Whether a schedule's values change is its
        own registration's answer (measured when it does not say), for the learning rate's
        schedule and each of ``schedules``."""
        from .schedules import depends_on_plan, epoch_values
        cfg = self.cfg
        sched = cfg["schedule"]
        kind = sched.get("type", "constant")
        start = self.epoch + 1
        n_batches = math.ceil(self.data.n_train / self.batch_size())
        depends = depends_on_plan(sched, cfg["optimizer"]["lr"], self.epoch, old, new, n_batches)
        others = [name for name, s in (cfg.get("schedules") or {}).items()
                  if depends_on_plan(s, optimizer_value(cfg["optimizer"], name), self.epoch, old, new, n_batches)]
        lrs = ", ".join(f"{epoch_values(sched, cfg['optimizer']['lr'], e, new, n_batches)[0]:.4g}"
                        for e in range(self.epoch, min(new, self.epoch + 3)))
        also = (f"; so {'is' if len(others) == 1 else 'are'} the schedule{'s' if len(others) > 1 else ''} "
                f"of {', '.join(others)}") if others else ""
        if depends:
            self.log(f"the plan changes from {old} to {new} epochs: the {kind} schedule is re-planned "
                     f"over {new} epochs from epoch {start} on (learning rates {lrs}, ...){also}; the run "
                     f"will differ from one planned for {new} epochs from the start")
        elif others:
            self.log(f"the plan changes from {old} to {new} epochs: the learning rates continue as they "
                     f"were ({lrs}, ...), but the schedule{'s' if len(others) > 1 else ''} of "
                     f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} re-planned over {new} "
                     f"epochs from epoch {start} on; the run will differ from one planned for {new} "
                     f"epochs from the start")
        else:
            self.log(f"the plan changes from {old} to {new} epochs: the {kind} schedule does not "
                     f"depend on the plan, so the learning rates continue as they were ({lrs}, ...)")
        change = {"at_epoch": start, "from": old, "to": new, "schedule": kind, "lr_changed": depends}
        if others:
            change["changed"] = others
        self.plan_changes.append(change)

    # -- the loop -------------------------------------------------------------------------
    def batch_size(self):
        bs = self.cfg["train"]["batch_size"]
        n = self.data.n_train
        return n if bs == "full" else min(int(bs), n)

    def fit(self, epochs=None, stop_after=None, max_time=None):
        """Train to the end of the plan, ``epochs`` finished epochs (default: the config's
        ``train.epochs``, which schedules and early stopping see); returns the summary.

        ``stop_after`` ends this call after that many more finished epochs, ``max_time``
        (seconds) once that much time has passed (after the current batch): both write a
        checkpoint and raise :class:`Stopped`, and a later ``--resume`` continues the same plan
        exactly.  SIGINT and SIGTERM stop after the current batch likewise (:class:`Interrupted`).
        """
        cfg = self.cfg
        epochs = epochs or cfg["train"]["epochs"]
        files = self.run_dir is not None
        if files:
            self.rows = [r for r in read_metrics(self.run_dir) if r["epoch"] <= self.epoch]
            write_metrics(self.run_dir, self.rows)
        metrics = self.rows
        if self.epoch == 0 and self.batch == 0 and self.adapt_first and hasattr(self.model.layers[0], "adapt"):
            # a fresh run: fit standardize to the training split (a scaled copy: only then)
            X = self.data.X_train
            self.model.adapt(self.data.scaled(X.reshape(len(X), -1)))
        if self.probe_every and files:   # the probes up to this point (a resumed run redoes the rest)
            step = self.epoch * self._n_batches() + self.batch
            write_metrics(self.run_dir, [r for r in read_metrics(self.run_dir, PROBES) if r["step"] < step],
                          PROBES)
            if step % self.probe_every == 0:
                self._probe()
        self._deadline = None if max_time is None else time.monotonic() + max_time
        from .loggers import Loggers
        loggers = Loggers(self.loggers, self.log)
        summary = None
        try:
            summary = self._fit_epochs(epochs, stop_after, metrics, files, done=0, loggers=loggers)
            return summary
        finally:
            loggers.call("end", self, summary)
            loggers.close()

    def _fit_epochs(self, epochs, stop_after, metrics, files, done, loggers):
        from .threads import pools
        start_time = time.perf_counter()
        loggers.call("start", self)
        with _Signals() as signals, self.presence as presence, pools(self.threads, False):
            self._signals = signals
            if self.blas is None:   # a new run: its share of the cores now, when threads are auto
                self.blas = presence.share(self.threads) if self.auto_threads else self.threads
            while self.epoch < epochs and not self._stopping():
                if stop_after is not None and done >= stop_after:
                    raise Stopped(f"stopped after {done} epoch{'s' if done != 1 else ''} "
                                  f"(--stop-after {stop_after}) at epoch {self.epoch} of {epochs}"
                                  f"{self._written()}")
                row = self._run_epoch(epochs, signals)
                # a signal in the epoch's last chunk (a first run's compile, say) stops after this
                # epoch; one that comes later (the checkpoint, the log line) stops in the next
                # epoch, after its first batch or chunk, as a signal there would
                signalled_in_epoch = signals.flag
                for callback in self.callbacks:
                    callback(self, row)
                metrics.append(row)
                if files:
                    append_metrics(self.run_dir, row)
                loggers.call("epoch", self, row)
                # a checkpoint at most every CHECKPOINT_SECONDS, and at every stop and the end
                # (200 epochs of 2 ms would otherwise spend most of their time writing it)
                if (time.monotonic() - self._saved_at >= CHECKPOINT_SECONDS or self.epoch >= epochs
                        or self._stopping() or signalled_in_epoch or self._out_of_time()
                        or (stop_after is not None and done + 1 >= stop_after)):
                    self._checkpoint(signals)
                self.log(self._epoch_line(row, epochs))
                done += 1
                if signalled_in_epoch and self.epoch < epochs and not self._stopping():
                    name = "SIGTERM" if signals.signum == signal.SIGTERM else "SIGINT"
                    raise Interrupted(f"interrupted ({name}) after epoch {self.epoch} of {epochs}"
                                      f"{self._written()}",
                                      code=143 if signals.signum == signal.SIGTERM else 130)
                if self._out_of_time() and self.epoch < epochs and not self._stopping():
                    raise Stopped(f"stopped at the time limit (--max-time) after epoch {self.epoch} of "
                                  f"{epochs}{self._written()}")
        summary = self._summary(metrics, time.perf_counter() - start_time)
        if files:
            self.model.save(self.run_dir / "model.npz")
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def _stopping(self):
        """Early stopping, or a callback, ended the run after the last epoch."""
        return self.stop_training or bool(self.early and self.early["stopped"])

    def _written(self):
        return "; checkpoint written" if self.run_dir is not None else ""

    def _n_batches(self):
        return math.ceil(self.data.n_train / self.batch_size())

    def _probe(self):
        """A line of probes.jsonl: the activation statistics after ``step`` batches."""
        mean, std = activation_stats(self.model, self.probe_X)
        step = self.epoch * self._n_batches() + self.batch
        append_metrics(self.run_dir, {"step": step, "epoch": self.epoch, "batch": self.batch,
                                      "act_mean": mean, "act_std": std}, PROBES)

    def _probe_due(self):
        return self.probe_every and (self.epoch * self._n_batches() + self.batch) % self.probe_every == 0

    def _chunk_batches(self):
        """Batches in the next compiled call: as many as take about CHUNK_SECONDS (measured on
        the calls so far), so that Ctrl-C, SIGTERM and the time limit are seen within a fraction
        of a second however long an epoch is; the first call (which may compile) takes a few
        examples only.  The numbers do not depend on it: the chunks only split the same batches."""
        most = self.fast.chunk_batches
        if self._spb is None:
            return max(1, min(most, FIRST_CHUNK_EXAMPLES // self.batch_size()))
        return max(1, min(most, int(CHUNK_SECONDS / max(self._spb, 1e-9))))

    def _eval_threads(self):
        """BLAS's threads for the evaluation between epochs: the run's (fixed: the sums depend on
        them), but one when the training step is sharded.  After a call on several threads,
        OpenBLAS's pool threads spin for 0.1-0.3 s waiting for the next one, and the next epoch's
        shards shared the cores with them: measured on the 2-core machine (2026-12-07,
        ``python benchmarks/after_blas.py``, 256-256-256-4 at batch 128), the sharded step took
        1,717-2,238 µs a batch after such a call against 1,078-1,118 without, and the epochs
        137-192 ms against 86-88; the evaluation itself took as long on one thread (the CNN's
        15,000 images 2.35-2.88 s against 2.49-2.72, mnist_mlp's 0.06-0.08 s either way)."""
        if self.fast is not None and self.fast.plan.sharded:
            return 1
        return self.blas or self.threads

    def _threads_now(self):
        """Threads for the next chunk of a sharded step: this run's share of the cores, at most
        train.threads (the result does not depend on it)."""
        return self.presence.share(self.threads) if self.presence is not None else self.threads

    def _checkpoint(self, signals):
        signals.writing = True   # a signal now waits for the write
        try:
            self.save_checkpoint()
        finally:
            signals.writing = False

    def _out_of_time(self):
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _stop_mid_epoch(self, signals, n_batches, t0):
        """After a batch or chunk: a signal or the time limit stops here, with a checkpoint."""
        if self.batch >= n_batches or not (signals.flag or self._out_of_time()):
            return
        self.acc["seconds"] += time.perf_counter() - t0
        self._checkpoint(signals)
        where = f"in epoch {self.epoch + 1}, after batch {self.batch} of {n_batches}"
        if signals.flag:
            name = "SIGTERM" if signals.signum == signal.SIGTERM else "SIGINT"
            raise Interrupted(f"interrupted ({name}) {where}{self._written()}",
                              code=143 if signals.signum == signal.SIGTERM else 130)
        raise Stopped(f"stopped at the time limit (--max-time) {where}{self._written()}")

    def _run_epoch(self, epochs, interrupt):
        cfg, data = self.cfg, self.data
        X, y = data.X_train, data.y_train
        n, bs = data.n_train, self.batch_size()
        n_batches = math.ceil(n / bs)
        from .schedules import epoch_values, per_update
        # every update's learning rate and scheduled hyperparameters in this epoch (one value
        # repeated by epoch; by update each batch its own)
        lrs = epoch_values(cfg["schedule"], cfg["optimizer"]["lr"], self.epoch, epochs, n_batches)
        lr_per_update = per_update(cfg["schedule"])
        lr = float(lrs[0])
        scheduled = cfg.get("schedules") or {}
        values = {name: epoch_values(sched, optimizer_value(cfg["optimizer"], name), self.epoch, epochs, n_batches)
                  for name, sched in scheduled.items()}
        hyper = {name: float(v[0]) for name, v in values.items()}   # the epoch's first update's (metrics)
        by_update = {name: v for name, v in values.items() if per_update(scheduled[name])}
        for name in values:
            setattr(self.optimizer, name, float(values[name][self.batch]))   # the layer path reads it
        if self.batch == 0:
            self.acc = self._new_accumulators()
            self.perm = (self.shuffle_rng.permutation(n) if cfg["train"]["shuffle"]
                         else np.arange(n))
        perm = self.perm
        dtype = self.model.dtype
        rows = X.reshape(n, -1)  # images (N, C, H, W) are gathered as rows, then viewed as images
        xbuf = np.empty((bs, rows.shape[1]), dtype)
        ybuf = np.empty((bs,) + y.shape[1:], y.dtype)
        clip = cfg.get("clip") or {}
        acc = self.acc
        bar = self._bar(n_batches, epochs)
        t0 = time.perf_counter()
        if self.fast_reason is None and self.fast is None:
            from .step import CompiledStep
            self.fast = CompiledStep(self.model, self.loss, self.optimizer, rows, y, data.x_scale,
                                     data.task, bs, clip, input_shape=X.shape[1:], notice=self.log,
                                     threads=self.threads, blas_threads=self.blas,
                                     auto_threads=self.auto_threads)
        if self.fast is not None and hyper:
            self.fast.set_constants(hyper)        # arguments of the compiled step: no recompile
        try:
            while self.fast is not None and self.batch < n_batches:
                self.fast.threads = self._threads_now()
                stop = min(self.batch + self._chunk_batches(), n_batches)
                if self.probe_every:   # a chunk ends at the next probe
                    step = self.epoch * n_batches + self.batch
                    stop = min(stop, self.batch + self.probe_every - step % self.probe_every)
                compiling, t_call = self.fast.compiling, time.perf_counter()
                done, bad = self.fast.run(perm, self.batch, stop,
                                          lrs[self.batch:stop] if lr_per_update else lr, acc,
                                          {name: v[self.batch:stop] for name, v in by_update.items()})
                if not compiling and done:   # how long a batch takes: the next chunk's size
                    spb = (time.perf_counter() - t_call) / done
                    self._spb = spb if self._spb is None else 0.5 * (self._spb + spb)
                self.batch += done
                if bad is not None:
                    raise TrainingDiverged(self._diverged(bad[1], bad[2], bad[0], float(lrs[bad[0] - 1])))
                if self._probe_due():
                    self._probe()
                if bar is not None:
                    bar.update(done)
                self._stop_mid_epoch(interrupt, n_batches, t0)
            if self.fast is None and self.batch < n_batches:
                from .threads import apply
                apply(self.blas, False)   # the layer path: BLAS's threads, fixed for the run
            while self.batch < n_batches:
                b = self.batch
                for name, v in by_update.items():
                    setattr(self.optimizer, name, float(v[b]))
                idx = perm[b * bs:(b + 1) * bs]
                m = idx.size
                xb, yb = xbuf[:m], ybuf[:m]
                KM.gather_rows(rows, idx, data.x_scale, xb)
                np.take(y, idx, axis=0, out=yb)
                out = self.model.forward(xb.reshape((m,) + X.shape[1:]), training=True)
                value = self.loss.forward(out, yb)
                if self.classification:
                    acc["correct"] += KM.count_correct(out, yb, self.loss.pred_rule(out.shape[1]))
                self.model.backward(self.loss.backward(), need_dX=False)
                sums = [sum_squares(g.reshape(-1)) for _, _, g in self.params]
                norm = math.sqrt(sum(sums))  # = global_norm(self.params), before clipping
                if not (math.isfinite(value) and math.isfinite(norm)):
                    raise TrainingDiverged(self._diverged(value, norm, b + 1, float(lrs[b])))
                for (name, _, _), ss in zip(self.params, sums):
                    if name in acc["layer_norms"]:
                        acc["layer_norms"][name] += math.sqrt(ss)
                if "norm" in clip and clip["norm"] is not None:
                    clip_grad_norm(self.params, clip["norm"], norm=norm)
                elif "value" in clip and clip["value"] is not None:
                    clip_grad_value(self.params, clip["value"])
                self.optimizer.step(float(lrs[b]))
                acc["loss"] += value * m
                acc["seen"] += m
                acc["grad_norm"] += norm
                acc["batches"] += 1
                self.batch += 1
                if self._probe_due():
                    self._probe()
                if bar is not None:
                    bar.update(1)
                self._stop_mid_epoch(interrupt, n_batches, t0)
        finally:
            if bar is not None:
                bar.close()
        acc["seconds"] += time.perf_counter() - t0
        self.epoch += 1
        self.batch = 0
        self.perm = None
        row = {"epoch": self.epoch, "train_loss": acc["loss"] / acc["seen"]}
        if self.classification:
            row["train_accuracy"] = acc["correct"] / acc["seen"]
        row["lr"] = lr      # the epoch's first update's (by epoch: the epoch's)
        row.update(hyper)   # each scheduled hyperparameter's value, likewise
        row["grad_norm"] = acc["grad_norm"] / acc["batches"]
        row["grad_norms"] = {k: v / acc["batches"] for k, v in acc["layer_norms"].items()}
        row["epoch_seconds"] = acc["seconds"]
        change = next((c for c in self.plan_changes if c["at_epoch"] == self.epoch), None)
        if change is not None:   # the first epoch trained under a changed plan says so
            row["replanned"] = {"from": change["from"], "to": change["to"]}
        t1 = time.perf_counter()
        from .threads import apply
        apply(self._eval_threads(), False)   # evaluation: BLAS's threads, fixed (its sums depend on them)
        for split in ("val", "test"):
            Xs, ys = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
            if Xs is not None and len(Xs):
                loss, accuracy = evaluate(self.model, self.loss, Xs, ys, data.x_scale,
                                          cfg["train"]["eval_batch_size"], self.classification)
                row[f"{split}_loss"] = loss
                if accuracy is not None:
                    row[f"{split}_accuracy"] = accuracy
        if self.probe_X is not None:
            row["act_mean"], row["act_std"] = activation_stats(self.model, self.probe_X)
        row["eval_seconds"] = time.perf_counter() - t1
        self._early_stopping(row)
        return row

    def _early_stopping(self, row):
        es = self.cfg["train"].get("early_stopping")
        if not es:
            return
        metric = es["metric"]
        if metric not in row:
            raise ConfigError(f"train.early_stopping.metric: '{metric}' is not measured in this run "
                              f"(measured: {', '.join(k for k in row if k.endswith(('loss', 'accuracy')))})")
        value = row[metric]
        higher = metric.endswith("accuracy")
        best = self.early["best"]
        improved = best is None or (value > best + es["min_delta"] if higher else value < best - es["min_delta"])
        if improved:
            self.early.update(best=value, best_epoch=row["epoch"], wait=0)
        else:
            self.early["wait"] += 1
            if self.early["wait"] >= es["patience"]:
                self.early["stopped"] = True
                row["early_stop"] = True

    def _diverged(self, value, norm, batch, lr):
        what = "loss" if not math.isfinite(value) else "gradient norm"
        shown = value if not math.isfinite(value) else norm
        hint = "lower optimizer.lr" + ("" if self.cfg.get("clip") else " or add clip: {norm: 1.0}")
        saved = getattr(self, "saved_epoch", None)
        last = (f"; the last good checkpoint (epoch {saved}) is kept"
                if saved is not None and self.run_dir is not None and (self.run_dir / "checkpoint.npz").exists()
                else "")
        return (f"training diverged in epoch {self.epoch + 1}, batch {batch}: {what} is {shown} "
                f"(learning rate {lr:g}); {hint}{last}")

    def _bar(self, total, epochs):
        if not self.progress:
            return None
        if in_notebook():
            from tqdm.auto import tqdm   # a widget in Jupyter
        elif sys.stderr.isatty():
            from tqdm import tqdm
        else:
            return None
        return tqdm(total=total, initial=self.batch, desc=f"epoch {self.epoch + 1}/{epochs}",
                    unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)

    def _epoch_line(self, row, epochs):
        parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
        if "train_accuracy" in row:
            parts.append(f"acc {100 * row['train_accuracy']:.2f}%")
        splits = ("val", "test") if self.cfg["train"].get("print_test") == "every_epoch" else ("val",)
        for split in splits:   # the test split is reported at the end (train.print_test)
            if f"{split}_loss" in row:
                parts.append(f"{split}_loss {row[f'{split}_loss']:.4f}")
            if f"{split}_accuracy" in row:
                parts.append(f"{split}_acc {100 * row[f'{split}_accuracy']:.2f}%")
        parts.append(f"lr {row['lr']:.4g}")
        parts.append(f"{row['epoch_seconds']:.2f}s")
        if row.get("early_stop"):
            parts.append("(early stop)")
        return "  ".join(parts)

    def _summary(self, metrics, seconds):
        last = metrics[-1] if metrics else {}
        summary = {"name": self.cfg["name"], "epochs": self.epoch, "seed": self.cfg["seed"],
                   "n_params": self.model.n_params,
                   "final": {k: v for k, v in last.items() if k.endswith(("loss", "accuracy"))},
                   "train_seconds": sum(r["epoch_seconds"] for r in metrics),
                   "total_seconds": seconds, "versions": versions()}
        if self.early:
            summary["early_stopping"] = dict(self.early)
        summary["plan"] = self.cfg["train"]["epochs"]
        if self.plan_changes:
            summary["plan_changes"] = list(self.plan_changes)
        summary.update(self._test_metrics())
        return summary

    def _test_metrics(self):
        """The test split's confusion matrix and per-class table (classification), or its MAE,
        RMSE and R² (regression), for summary.json."""
        from .metrics import split_metrics
        X, y = self.data.X_test, self.data.y_test
        if X is None or len(X) == 0:
            return {}
        k = self.data.n_classes
        r = split_metrics(self.model, self.loss, X, y, self.data.x_scale, self.classification,
                          self.cfg["train"]["eval_batch_size"], detail=True, n_classes=k,
                          target_scale=_target_scale_of(self.model),
                          class_names=self.data.class_names)
        if not self.classification:
            return {"test_regression": r["regression"]}
        report = r["per_class"]
        return {"test_confusion_matrix": r["confusion_matrix"].tolist(),
                "test_classes": list(self.data.class_names or range(k)),
                "test_per_class": {"classes": report["classes"], "macro avg": report["macro avg"],
                                   "weighted avg": report["weighted avg"]}}
