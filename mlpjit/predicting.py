"""Prediction: one path for ``model.predict`` and ``mlpjit predict``.

A trained model's ``metadata`` says how it was trained (:class:`~mlpjit.core.TrainingCore`
records it; ``mlpjit.sklearn.save`` too), and prediction undoes nothing the user must redo:

* **inputs** (:func:`inputs`) in the training data's units: raw 0-255 pixels for MNIST (the
  recorded ``x_scale`` is applied), rows of C·H·W values for an image model (reshaped to its
  ``input_shape``), and, for a model trained on a table, the raw columns (a CSV path, a pandas
  ``DataFrame`` or a dict of columns) encoded as in training: numbers as numbers, text as the
  one-hot features learned from the training file.  A path to a ``.npy`` or ``.csv`` file is
  read for any model;
* **outputs** (:func:`output`) after the loss's output transform, as a Keras model ending in
  softmax gives them: probabilities for a classifier (softmax of the logits for
  ``cross_entropy``, σ of the one logit for ``binary_cross_entropy``), values in the target's
  units for a regressor (a scaled target, ``data.scale_target``, scaled back: ``y = ŷ·s + m``);
* **classes** (:func:`classes`) by their names in the training data.

The raw outputs (logits, or the scaled regression values) stay reachable: ``model.logits(X)``
(the same inputs) and ``model.forward(X)`` (the layers alone, on inputs as the layers take them).
A model that was never trained has no loss: its ``predict`` gives the raw outputs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["inputs", "raw", "output", "classes", "probabilities", "loss_of", "read_input",
           "input_file", "has_header", "table_rows"]

# a numeric CSV's data lines hold only these characters (and inf/nan)
_CSV_CHARS = re.compile(r"[^0-9eE+\-.,\s]")


# --- what the model was trained with -------------------------------------------------------------

def loss_of(model):
    """The loss object the model was trained with, or None (a model never trained)."""
    from . import losses as _losses
    name = (getattr(model, "_fit_state", None) or {}).get("loss") or \
        (getattr(model, "metadata", None) or {}).get("loss")
    return _losses.get(name) if name else None


def task_of(model) -> str | None:
    """``"classification"``, ``"regression"`` or None (never trained)."""
    task = (getattr(model, "metadata", None) or {}).get("task")
    if task is not None:
        return task
    loss = loss_of(model)
    if loss is None:
        return None
    return "classification" if getattr(loss, "on_logits", False) else "regression"


# --- inputs --------------------------------------------------------------------------------------

def inputs(model, X, label: str = "X", unknown: str | None = None, missing: str | None = None):
    """(features, target cells or None, kept row numbers or None): ``X`` as the model's first
    layer takes it (see the module docstring), in the model's dtype.

    ``unknown`` (``"error"`` or ``"zeros"``) and ``missing`` (``"error"`` or ``"drop"``) override
    what the training config said for a table's unseen categories and empty cells; with
    ``missing="drop"`` the kept row numbers (from 1) say which rows the outputs belong to."""
    meta = getattr(model, "metadata", None) or {}
    target, kept = None, None
    if meta.get("encoding") and not _numeric_array(X):
        X, target, kept = _table(model, X, label, unknown, missing)
    elif isinstance(X, (str, Path)):
        X = read_input(X)
    else:
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as e:
            raise DataError(f"{label}: not an array of numbers ({e})") from None
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{label}: holds {X.dtype} values, not numbers"
                            + (" (a table model takes a CSV path, a DataFrame or a dict of columns)"
                               if meta.get("encoding") else ""))
        if X.ndim == 0 or X.shape[0] == 0:
            raise DataError(f"{label}: no examples (shape {X.shape}); give one example per row")
        if X.ndim == 1:   # a guess either way (one example, or N examples of one feature)
            raise DataError(f"{label}: the model expects a batch (N, ...), got shape {X.shape}; "
                            f"one example: X.reshape(1, -1), one feature: X.reshape(-1, 1)")
    X = _shaped(model, X, label)
    scale = meta.get("x_scale", 1.0)
    X = X * scale if scale != 1.0 else X
    X = np.ascontiguousarray(X, dtype=model.dtype)
    if not np.isfinite(X).all():
        raise DataError(f"{label}: contains NaN or inf values")
    return X, target, kept


def _numeric_array(X) -> bool:
    return isinstance(X, np.ndarray) and X.dtype != object and \
        (np.issubdtype(X.dtype, np.number) or X.dtype == bool)


def _shaped(model, X, label):
    meta = getattr(model, "metadata", None) or {}
    if model.takes_images:
        # an (N, C, H, W) array is taken as it is; rows of C·H·W values become images of the
        # shape the model was trained on
        shape = tuple(meta.get("input_shape") or ())
        if X.ndim == 2 and shape and X.shape[1] == int(np.prod(shape)):
            X = X.reshape((X.shape[0],) + shape)
    else:
        X = X.reshape(X.shape[0], -1)
        if model.in_features is not None and X.shape[1] != model.in_features:
            raise DataError(f"{label}: rows have {X.shape[1]} values but the model takes "
                            f"{model.in_features}")
    try:
        model.output_shape(X.shape[1:])
    except ValueError as e:
        raise DataError(f"{label}: examples of shape {X.shape[1:]} do not fit the model: {e}") from None
    return X


def table_rows(X, label: str):
    """(columns, [(row number, cells as text)]) of raw table columns: a CSV path (with a
    header), a pandas DataFrame or a dict of equally long columns.  Missing values (None,
    NaN) become empty cells."""
    from .tables import read_csv
    if isinstance(X, (str, Path)):
        path = input_file(X)
        return read_csv(path, str(X))
    if hasattr(X, "columns") and hasattr(X, "itertuples"):      # a pandas DataFrame
        columns = [str(c) for c in X.columns]
        rows = [(i + 1, [_cell(v) for v in row]) for i, row in enumerate(X.itertuples(index=False))]
    elif isinstance(X, dict):
        columns = [str(c) for c in X]
        values = [list(np.asarray(v, dtype=object).reshape(-1)) for v in X.values()]
        lengths = {len(v) for v in values}
        if len(lengths) > 1:
            raise DataError(f"{label}: the columns have different lengths ({sorted(lengths)})")
        rows = [(i + 1, [_cell(col[i]) for col in values]) for i in range(lengths.pop() if lengths else 0)]
    else:
        raise DataError(f"{label}: a model trained on a table takes its raw columns: a CSV path, "
                        f"a pandas DataFrame or a dict of columns (or a numeric array of the "
                        f"encoded features), not {type(X).__name__}")
    if not rows:
        raise DataError(f"{label}: no rows to predict")
    return columns, rows


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (np.generic,)):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return ""
    return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


def _table(model, X, label, unknown, missing):
    from .tables import TableEncoding
    enc = TableEncoding.from_json(model.metadata["encoding"])
    if unknown is not None:
        enc.unknown = unknown
    if missing is not None:
        enc.missing = missing
    if isinstance(X, (str, Path)):
        label = str(X)
    columns, rows = table_rows(X, label)
    enc.check_columns(columns, label, target_required=False)
    has_target = enc.target is not None and enc.target in columns
    kept = enc.usable_rows(columns, rows, label, also=(enc.target,) if has_target else ())
    if len(kept) < len(rows) and missing != "drop":
        # a prediction for every row, or none: never a silently shorter output
        dropped = sorted({n for n, _ in rows} - {n for n, _ in kept})
        shown = ", ".join(str(x) for x in dropped[:10]) + (", ..." if len(dropped) > 10 else "")
        raise DataError(f"{label}: line{'s' if len(dropped) > 1 else ''} {shown} "
                        f"{'have' if len(dropped) > 1 else 'has'} an empty cell, which training "
                        f"dropped (data.missing: drop); fill {'them' if len(dropped) > 1 else 'it'}, "
                        f"or drop them here (mlpjit predict --missing drop; predict(..., missing='drop'))")
    feats = enc.transform(columns, kept, label,
                          hint="pass --unknown zeros to mlpjit predict, or unknown='zeros' to predict()",
                          missing_hint="pass --missing drop to mlpjit predict, or missing='drop' to "
                                       "predict(), to leave out rows with empty cells")
    target = None
    if has_target:
        t = columns.index(enc.target)
        target = [(line, row[t].strip()) for line, row in kept]
    return feats, target, [n for n, _ in kept] if missing == "drop" else None


def input_file(path) -> Path:
    """``path`` as an existing regular file, or one DataError line saying what it is instead."""
    from .io import regular_file
    return regular_file(path, DataError, "; give a .npy or .csv file")


def has_header(path) -> bool:
    """Whether a CSV's first line holds names (a raw table) rather than numbers (feature rows)."""
    from .tables import is_number
    path = input_file(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    cells = [c.strip() for c in first.split(",")]
    # names: a cell that is not a number and has a letter in it (1_000 is a bad number, not a name)
    return not all(is_number(c) for c in cells if c) and any(re.search(r"[^\W\d_]", c) for c in cells)


def read_input(path) -> np.ndarray:
    """The examples of a ``.npy`` file or a numeric ``.csv`` (one per row; a first line of
    names is a header), as an array of at least two dimensions."""
    path = input_file(path)
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            head = f.read(6)
        if head[:2] == b"PK":
            raise DataError(f"{path}: is an .npz archive, not a .npy array; give a .npy or .csv file")
        try:
            X = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: not a readable .npy file ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(X, np.ndarray):
            raise DataError(f"{path}: not a .npy array")
        if X.ndim == 0:
            raise DataError(f"{path}: holds a single number (a 0-d array); give one example per row")
    elif path.suffix == ".csv":
        skip = 1 if has_header(path) else 0    # a first line of names is a header
        with open(path, encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                m = _CSV_CHARS.search(re.sub(r"(?i)\b(inf|infinity|nan)\b", "", line)) if line_no > skip else None
                if m:
                    raise DataError(f"{path} line {line_no}: {m.group()!r} in a number (write numbers "
                                    f"with ASCII digits, and no separators such as 1_000)")
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # an empty file: said below, in one line
                X = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64, skiprows=skip)
        except ValueError as e:
            raise DataError(f"{path}: not a numeric CSV ({' '.join(str(e).split())[:200]})") from None
    else:
        raise DataError(f"{path}: input must be a .npy or .csv file")
    if X.dtype.kind not in "fiub":
        raise DataError(f"{path}: input must be numeric, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if X.shape[0] == 0:
        raise DataError(f"{path}: no examples to predict")
    if not np.isfinite(X).all():
        raise DataError(f"{path}: input contains NaN or Inf")
    return X


# --- outputs -------------------------------------------------------------------------------------

def raw(model, X, batch_size: int = 1024) -> np.ndarray:
    """The layers' outputs for prepared inputs ``X``, in prediction mode, in batches."""
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"predict needs a non-empty batch, got shape {X.shape}")
    out = [np.array(model.forward(X[s:s + batch_size], training=False))
           for s in range(0, X.shape[0], batch_size)]
    return np.concatenate(out) if len(out) > 1 else out[0]


def output(model, out: np.ndarray) -> np.ndarray:
    """Raw outputs as the user wants them: probabilities for a classifier, values in the
    target's units for a regressor; unchanged for a model never trained."""
    loss = loss_of(model)
    if loss is None:
        return out
    if task_of(model) == "classification":
        return np.asarray(loss.transform(out))
    meta = getattr(model, "metadata", None) or {}
    if meta.get("y_scale") is not None:
        return out * np.asarray(meta["y_scale"], out.dtype) + np.asarray(meta["y_mean"], out.dtype)
    return out


def probabilities(model, out: np.ndarray) -> np.ndarray:
    """Each class's probability, (N, k), from raw outputs: two columns for one logit."""
    loss = loss_of(model)
    if loss is None or task_of(model) != "classification":
        raise ValueError("predict_proba: the model is not a trained classifier")
    p = np.asarray(loss.transform(out), dtype=np.float64)
    return np.hstack([1 - p, p]) if p.shape[1] == 1 else p


def classes(model, out: np.ndarray, names: bool = True) -> np.ndarray:
    """The predicted classes of raw outputs: by their names in the training data when it had
    names (``metadata["class_names"]``), else as ids 0..k-1."""
    loss = loss_of(model)
    if loss is None or task_of(model) != "classification":
        raise ValueError("predict_classes: the model is not a trained classifier")
    ids = loss.predict_classes(out)
    class_names = (getattr(model, "metadata", None) or {}).get("class_names")
    if names and class_names:
        return np.asarray([class_names[i] for i in ids])
    return ids


def output_names(model, width: int) -> list[str]:
    """Column names of a regressor's outputs: the target's name (a table's target column, or
    ``metadata["target_names"]``), else y0, y1, ..."""
    meta = getattr(model, "metadata", None) or {}
    names = meta.get("target_names")
    if isinstance(names, list) and len(names) == width:
        return [str(n) for n in names]
    enc = meta.get("encoding") or {}
    if width == 1 and enc.get("target"):
        return [str(enc["target"])]
    return [f"y{j}" for j in range(width)]
