"""Training from code: ``model.fit(X, y, ...)``, ``model.evaluate``, and the ``History`` it returns.

``fit`` is the CLI's training run with arrays instead of a data section::

    history = model.fit(X, y, loss="cross_entropy",
                        optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9},
                        schedule={"type": "cosine"}, clip={"norm": 5.0},
                        epochs=10, batch_size=64, validation_split=0.1,
                        early_stopping={"patience": 3, "metric": "val_loss"}, seed=0)
    history.history["val_accuracy"]     # one float per finished epoch
    model.evaluate(X_test, y_test)      # {"loss": ..., "accuracy": ...}

The dicts take exactly what the YAML's keys take (``optimizer``, ``schedule``, ``clip``,
``early_stopping`` as ``train.early_stopping``), validated by the same schema with the same
one-line :class:`~mlpjit.errors.ConfigError`; arrays that do not fit the model raise one
:class:`~mlpjit.errors.DataError` line naming the argument.  The epochs run in
:class:`mlpjit.core.TrainingCore`, the loop of ``mlpjit train``: the compiled step when every layer
has one (a first run says it compiles, as the CLI does), layer by layer otherwise (a note says
why).  The same model, data, seed and settings give the same weights as the config run, byte
for byte.

A second ``fit`` continues from the model's weights (Keras' semantics), with the optimizer's
state when the optimizer is the same and the epochs' order continuing its generator (unless a
new ``seed`` is given).  Ctrl-C (SIGINT, a notebook's interrupt) stops after the current batch
or chunk: the weights are kept and the history of the finished epochs is returned, its
``stopped`` saying where it stopped.
"""

import math

import numpy as np

from .errors import ConfigError, DataError

_TRAIN_KEYS = ("epochs", "batch_size", "shuffle", "eval_batch_size", "early_stopping", "compiled",
               "threads")
# Keras' names for the columns of metrics.jsonl
_KERAS = {"train_loss": "loss", "train_accuracy": "accuracy"}


class History:
    """What ``fit`` returns: ``history`` maps each measured figure to one float per finished
    epoch (Keras' names: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, and ``lr``,
    ``grad_norm``, ``epoch_seconds``); ``rows`` are the epochs' rows as ``metrics.jsonl``
    holds them; ``epoch`` the epochs' numbers; ``compiled`` whether the compiled step ran (else
    ``why_not``); ``stopped`` is None, or the line saying why training stopped early (Ctrl-C,
    early stopping)."""

    def __init__(self, rows, compiled, why_not=None, stopped=None, params=None):
        self.rows = [dict(r) for r in rows]
        self.epoch = [r["epoch"] for r in self.rows]
        self.history = {}
        for r in self.rows:
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    self.history.setdefault(_KERAS.get(k, k), []).append(float(v))
        self.compiled, self.why_not, self.stopped = compiled, why_not, stopped
        self.params = params or {}

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if k.endswith(("loss", "accuracy"))}
        return f"History({len(self.epoch)} epochs, last {last}{', ' + self.stopped if self.stopped else ''})"

    def _repr_html_(self):
        from .notebook import history_html
        return history_html(self)


# --- the arrays --------------------------------------------------------------------------

def _features(name, X):
    """X as a C-contiguous array (float32, float64 or uint8 as given, anything else as float64)
    of at least two dimensions, finite."""
    try:
        X = np.asarray(X)
    except (TypeError, ValueError) as e:
        raise DataError(f"fit: {name} is not an array of numbers ({e})") from None
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"fit: {name} holds {X.dtype} values, not numbers")
    if X.ndim < 2:
        raise DataError(f"fit: {name} has shape {X.shape}; give one row per example, shape (N, features)"
                        f" (a single feature: {name}.reshape(-1, 1))")
    if X.shape[0] == 0:
        raise DataError(f"fit: {name} has no rows")
    keep = X.dtype in (np.uint8, np.float32, np.float64)    # the step reads these as they are
    X = np.ascontiguousarray(X, dtype=X.dtype if keep else np.float64)
    if X.dtype != np.uint8 and not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X.reshape(len(X), -1)))[0][0])
        raise DataError(f"fit: {name} has NaN or inf values (the first in row {row}); remove or impute them")
    return X


def _targets(name, y, n, loss, width):
    """(task, y as the loss takes it, n_classes) for labels or targets ``y`` of ``n`` rows."""
    try:
        y = np.asarray(y)
    except (TypeError, ValueError) as e:
        raise DataError(f"fit: {name} is not an array ({e})") from None
    if y.ndim == 0 or y.shape[0] != n:
        got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows"
        raise DataError(f"fit: {name} has {got} but X has {n} rows")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"fit: {name} holds {y.dtype} values, not numbers (encode labels as 0, 1, ...)")
    is_ids = y.ndim == 1 and (np.issubdtype(y.dtype, np.integer) or y.dtype == bool)
    if loss.classification or (loss.accepts_class_ids and is_ids and width > 1):
        if y.ndim != 1:
            raise DataError(f"fit: {name} has shape {y.shape}; '{loss.name}' takes one class id per row, "
                            f"shape (N,) (one-hot rows: {name}.argmax(axis=1))")
        k = 2 if width == 1 and loss.one_output_for_two_classes else width
        if not np.issubdtype(y.dtype, np.integer) and y.dtype != bool:
            if not np.isfinite(y).all() or (y != np.round(y)).any():
                bad = y[~np.isfinite(y) | (y != np.round(y))][0]
                raise DataError(f"fit: {name} holds {float(bad)!r}, not a class id (0 to {k - 1})")
        ids = y.astype(np.int64)
        out = ids[(ids < 0) | (ids >= k)]
        if out.size:
            raise DataError(f"fit: {name} holds label {out[0]}, but the model's last layer gives "
                            f"{width} output{'s' if width != 1 else ''}: class ids 0 to {k - 1}")
        return "classification", ids, k
    y = np.ascontiguousarray(y, dtype=np.float64).reshape(n, -1)
    if not np.isfinite(y).all():
        raise DataError(f"fit: {name} has NaN or inf values")
    return "regression", y, None


def _dataset(model, loss_name, X, y, validation_split, validation_data):
    """The mlpjit Dataset of the arrays (and the validation part), checked against the model."""
    from . import losses as _losses
    from .data import Dataset
    from .losses import check_loss_fits
    X = _features("X", X)
    shape = X.shape[1:]
    try:
        out = model.output_shape(shape)
    except ValueError as e:
        first = getattr(model, "in_features", None)
        if first is not None and len(shape) == 1:
            raise DataError(f"fit: X has {shape[0]} features per row, but the model's first layer takes "
                            f"{first}") from None
        raise DataError(f"fit: X has examples of shape {shape}, which the model cannot take ({e})") from None
    if len(out) != 1:
        raise DataError(f"fit: the model ends with images of shape {tuple(out)}; add Flatten() and a "
                        f"Dense layer with one unit per class or target")
    width = int(out[0])
    loss = _losses.get(loss_name)
    task, y, k = _targets("y", y, len(X), loss, width)
    X_val = y_val = None
    if validation_data is not None:
        if validation_split:
            raise ConfigError("fit: give validation_split or validation_data, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ConfigError("fit: validation_data must be a pair (X_val, y_val)")
        X_val = _features("validation_data's X", validation_data[0])
        if X_val.shape[1:] != shape:
            raise DataError(f"fit: validation_data's X has examples of shape {X_val.shape[1:]}, but X's "
                            f"are {shape}")
        _, y_val, _ = _targets("validation_data's y", validation_data[1], len(X_val), loss, width)
    elif validation_split:
        if not isinstance(validation_split, (int, float)) or isinstance(validation_split, bool) \
                or not 0 < validation_split < 1:
            raise ConfigError(f"fit: validation_split must be a fraction between 0 and 1 (got {validation_split!r})")
        cut = int(len(X) * (1 - validation_split))   # Keras: the last rows, before any shuffling
        if cut == len(X) or cut == 0:
            raise ConfigError(f"fit: validation_split={validation_split} of {len(X)} rows leaves "
                              f"{'no validation' if cut == len(X) else 'no training'} rows")
        X, X_val, y, y_val = X[:cut], X[cut:], y[:cut], y[cut:]
    if task == "regression" and y_val is not None and y_val.shape[1] != y.shape[1]:
        raise DataError(f"fit: validation_data's y has {y_val.shape[1]} columns, y has {y.shape[1]}")
    n_outputs = k if task == "classification" else y.shape[1]
    check_loss_fits(loss_name, model.layers[-1], width, task, n_outputs,
                    last=f"fit: model layer {len(model.layers) - 1}", data="y")
    image_shape = tuple(shape) if len(shape) == 3 else None
    return Dataset("arrays", task, X, y, X_val, y_val, None, None, k, 1.0, None, image_shape)


# --- the settings ------------------------------------------------------------------------

def settings(model, loss, optimizer=None, schedule=None, clip=None, seed=0, schedules=None, **train):
    """A resolved config for the arrays' run: the given settings validated by the config schema
    (errors start with ``fit:`` and name the key), ``data`` ``{name: arrays}`` and ``model`` the
    model's layers."""
    from .config import config_from_dict, resolved_dict
    tree = {"name": "fit", "seed": seed, "dtype": np.dtype(model.dtype).name,
            "data": {"name": "xor"},                                      # replaced below
            "model": {"layers": [{"type": "dense", "units": 1}]},         # replaced below
            "loss": loss, "train": {k: v for k, v in train.items() if v is not None}}
    for key, value in (("optimizer", optimizer), ("schedule", schedule), ("clip", clip),
                       ("schedules", schedules)):
        if value is not None:
            tree[key] = value
    cfg = resolved_dict(config_from_dict(tree, source="fit"))
    cfg["data"] = {"name": "arrays"}
    cfg["model"] = {"layers": model.get_config()["layers"]}
    return cfg


def fit(model, X, y, *, loss=None, optimizer=None, schedule=None, clip=None, epochs=10, batch_size=32,
        shuffle=True, validation_split=0.0, validation_data=None, early_stopping=None, seed=None,
        threads="auto", compiled=True, eval_batch_size=1000, progress=True, run_dir=None,
        callbacks=(), log=None, scale_target=None, loggers=(), schedules=None):
    """Train ``model`` on (X, y); returns a :class:`History`.  See the module docstring.

    ``loss`` (a registered name: cross_entropy, mse, ...) is required on the first fit and kept
    for the next ones, as are ``optimizer`` (a dict or a name: ``{"type": "adam", "lr": 1e-3}``,
    ``"sgd"``), ``schedule`` and ``clip``.  ``early_stopping``: ``{"patience", "metric",
    "min_delta"}`` as ``train.early_stopping`` (``metric``: val_loss, val_accuracy, train_loss,
    train_accuracy; ``val_*`` needs a validation part).  ``threads``, ``compiled`` and
    ``eval_batch_size`` are the ``train`` keys of the same names.  ``progress=False`` silences the
    progress bar and the epochs' lines (a first compile's notice still shows).  ``run_dir``:
    also keep a run folder (config.yaml, metrics.jsonl, checkpoint.npz, model.npz,
    summary.json), as ``mlpjit train`` does.  ``callbacks``: functions ``f(trainer, row)`` after
    each epoch (see :class:`~mlpjit.core.TrainingCore`).  ``log``: where lines go (default: print).
    ``loggers``: :mod:`mlpjit.loggers` names (``"tensorboard"``, ``"mlflow"``) or objects, told of
    the start, each epoch and the end (a named logger writes into ``run_dir``, or ./runs).
    ``schedules``: the optimizer's other hyperparameters by epoch, ``{"momentum": {"type":
    "linear", "start": 0.5, "over": 10}}`` (as the config's ``schedules``).
    ``scale_target``: standardize a regression target on the training rows (``None``: when the
    model starts with ``standardize``); ``predict`` scales back, the losses are in scaled units.
    """
    from .core import Stopped, TrainingCore, _seeds, make_optimizer_from
    state = getattr(model, "_fit_state", None) or {}
    loss = loss if loss is not None else state.get("loss")
    if loss is None:
        from .registry import losses
        raise ConfigError(f"fit: loss is required on the first fit (one of: {', '.join(losses.names())})")
    given = {"optimizer": optimizer, "schedule": schedule, "clip": clip, "schedules": schedules}
    kept = {k: state.get(k) if v is None else v for k, v in given.items()}
    first_seed = seed if seed is not None else state.get("seed", 0)
    cfg = settings(model, loss, kept["optimizer"], kept["schedule"], kept["clip"], first_seed, kept["schedules"],
                   epochs=epochs, batch_size=batch_size, shuffle=shuffle, early_stopping=early_stopping,
                   compiled=compiled, threads=threads, eval_batch_size=eval_batch_size, probe_rows=0)
    cfg["data"]["scale_target"] = scale_target
    data = _dataset(model, cfg["loss"], X, y, validation_split, validation_data)
    es = cfg["train"]["early_stopping"]
    if es and es["metric"].startswith("val") and data.X_val is None:
        raise ConfigError(f"fit: early_stopping.metric: '{es['metric']}' needs a validation part "
                          f"(give validation_split or validation_data)")
    if es and es["metric"].startswith("test"):
        raise ConfigError(f"fit: early_stopping.metric: '{es['metric']}': fit has no test part "
                          f"(use val_loss with validation_split or validation_data)")
    # Keras' semantics: the same optimizer carries its state on; a new seed restarts the order
    opt = state.get("optimizer_object") if state.get("optimizer_spec") == cfg["optimizer"] else None
    if opt is None:
        opt = make_optimizer_from(cfg, model)
    rng = state.get("shuffle_rng") if seed is None else None
    if rng is None:
        rng = np.random.default_rng(_seeds(first_seed)[1])
    log = log or print
    lines = log if progress else _notes_only(log)
    trainer = TrainingCore(cfg, None if run_dir is None else _run_folder(run_dir, cfg), data, lines, progress,
                           model=model, optimizer=opt, shuffle_rng=rng, callbacks=callbacks,
                           loggers=loggers)
    trainer.adapt_first = not state   # standardize fits the inputs on the first fit only
    stopped = None
    try:
        trainer.fit()
    except Stopped as e:
        stopped = str(e)
        log(f"{stopped}; the weights so far are kept")
    if trainer.early and trainer.early["stopped"]:
        stopped = f"early stopping after epoch {trainer.epoch} (best {es['metric']} at epoch " \
                  f"{trainer.early['best_epoch']})"
    model._fit_state = {"loss": cfg["loss"], "optimizer": cfg["optimizer"], "schedule": cfg["schedule"],
                        "schedules": cfg.get("schedules") or None,
                        "clip": cfg["clip"], "seed": first_seed, "optimizer_spec": cfg["optimizer"],
                        "optimizer_object": opt, "shuffle_rng": rng}
    return History(trainer.rows, trainer.fast is not None, trainer.fast_reason, stopped,
                   params={"epochs": cfg["train"]["epochs"], "batch_size": trainer.batch_size(),
                           "steps": math.ceil(data.n_train / trainer.batch_size())})


def _notes_only(log):
    """``log`` without the epochs' lines (``progress=False``)."""
    def lines(text, *a, **k):
        if not str(text).startswith("epoch "):
            log(text, *a, **k)
    return lines


def _run_folder(run_dir, cfg):
    from pathlib import Path

    from .config import config_from_dict, dump_yaml
    from .io import atomic_write_text
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = dump_yaml(config_from_dict({**cfg, "data": {"name": "xor"}}, source="fit"))
    atomic_write_text(run_dir / "config.yaml", "# data: arrays given to fit()\n" + text)
    return run_dir


# --- evaluation and prediction -------------------------------------------------------------

def _loss_of(model, loss):
    from . import losses as _losses
    name = loss or (getattr(model, "_fit_state", None) or {}).get("loss") or \
        (getattr(model, "metadata", None) or {}).get("loss")
    if name is None:
        raise ConfigError("evaluate: the model has no loss yet (fit it, or give loss=...)")
    return name, _losses.get(name)


def evaluate(model, X, y, loss=None, batch_size=1000):
    """``{"loss": ..., "accuracy": ...}`` (accuracy for classification) of the model on (X, y), in
    prediction mode, with the loss it was fitted with (or ``loss``)."""
    from .metrics import split_metrics
    name, L = _loss_of(model, loss)
    from .predicting import inputs
    X, _, _ = inputs(model, X)      # in the training data's units, as predict takes it
    out = model.output_shape(X.shape[1:])
    task, y, _ = _targets("y", y, len(X), L, int(out[0]))
    r = split_metrics(model, L, X, y, 1.0, task == "classification", batch_size)
    return {k: float(r[k]) for k in ("loss", "accuracy") if k in r}
