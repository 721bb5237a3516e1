"""Data sources for mlpjit: load or generate a :class:`Dataset` from a ``data:`` spec.

:func:`load_dataset` takes the ``data:`` section of a config (a dict) and a seed and
returns a :class:`Dataset`.  ``spec["name"]`` picks one of the sources below; the other
keys of each source, with their defaults, are in :data:`DEFAULTS` (the one place they
are defined; :func:`default_spec` returns a copy).  Missing keys are filled in from
:data:`DEFAULTS`; unknown keys are an error.

Sources
-------
``mnist``
    The four original IDX gzip files (``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``) in ``path``.  ``path: null`` means ``./data/mnist``
    if it exists, else the copy shipped in the package (mlpjit/shipped/mnist); a relative path is
    relative to the current directory.  Images come back flattened, ``(N, 784)``
    ``uint8`` (raw pixels, to save memory) with ``x_scale = 1/255``; labels ``int64``.
    ``subset`` keeps the first n training examples (before the validation split),
    ``test_subset`` the first n test examples.  Every file is checked in full (gzip
    integrity, magic number, header dimensions against the byte length, labels 0-9,
    image count against label count).
``xor``
    The four points ``[[0,0],[0,1],[1,0],[1,1]]`` labelled by the truth table of
    ``function`` (xor, and, or, nand, nor, xnor); two classes.  The test set is the
    same four points.  ``validation`` must be 0.
``spirals``
    The classic k-arm spiral (CS231n): ``classes`` arms, ``points`` training points
    split as evenly as possible over the arms, ``test_points`` test points drawn
    afterwards from the same generator, Gaussian angle noise of std ``noise``.  For arm
    j with n_j points: ``r = linspace(0, 1, n_j)``, ``t = linspace(4j, 4(j+1), n_j) +
    noise * randn``, ``x = (r sin t, r cos t)``.  The training order is shuffled.
``sine``
    Regression of ``y = a2 * sin(a0 * x + a1) + a3 + noise * N(0, 1)`` with x uniform in
    ``[x_min, x_max]``; ``points`` training and ``test_points`` test points, both noisy,
    independent draws.  ``X`` and ``y`` are ``(N, 1)`` float64.
``csv``
    A ``train`` CSV file (and optionally a ``test`` one) with a header row.  Column
    ``target`` is the label; the others are features (:mod:`mlpjit.tables`): a column of
    numbers stays one feature, a column with text (or listed in ``categorical``) becomes
    one-hot features of the categories of the train file; an empty cell is an error naming
    the file, line and column unless ``missing: drop`` leaves out its row; a test category
    the train file lacks is an error unless ``unknown: zeros``.  The encoding is kept in
    ``Dataset.encoding`` (and in the model file, for ``mlpjit predict``).  ``task: auto``
    means classification if the target holds strings or only integer values, else
    regression.  Class labels map to ids 0..k-1 in sorted order of the distinct training
    values (numeric order for numeric labels) and are kept in ``class_names``.
``npz``
    A NumPy ``.npz`` at ``path`` with arrays ``X`` and ``y`` and optionally ``X_test``
    and ``y_test`` (both or neither), loaded without pickle.  ``X`` of more than two
    dimensions is flattened to ``(N, -1)``.  ``task: auto`` means classification for
    integer, bool or string ``y`` (integer labels must be >= 0; labels that are not
    exactly 0..k-1 are remapped and kept in ``class_names``) and regression for float
    ``y`` (a 1-D ``y`` becomes ``(N, 1)``).

For every source, ``validation`` examples are held out of the training set: with
``perm = np.random.default_rng(seed + 1).permutation(N)`` the validation set is the
examples at ``perm[:validation]``; both parts keep the original (sorted) order.

Every user mistake raises :class:`mlpjit.errors.DataError` with a one-line message that
names the offending file, key or value.
"""

from __future__ import annotations

import copy
import gzip
import math
import zlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlpjit.errors import DataError
from mlpjit.tables import (MISSING, UNKNOWN, TableEncoding, cell_float, is_number, number, read_csv,
                           read_table)

__all__ = ["SOURCES", "DEFAULTS", "Dataset", "default_spec", "load_dataset"]

#: The data sources :func:`load_dataset` knows, in documentation order.
SOURCES: tuple[str, ...] = ("mnist", "xor", "spirals", "sine", "csv", "npz")

#: Default value of every key of each source (besides ``name``).  The single source of
#: truth for the config module's defaults; use :func:`default_spec` to get a copy.
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"path": None, "validation": 0, "subset": None, "test_subset": None},
    "xor": {"function": "xor", "validation": 0},
    "spirals": {"classes": 3, "points": 3000, "test_points": 1000, "noise": 0.2, "validation": 0},
    "sine": {
        "points": 1000,
        "test_points": 200,
        "a": [1.0, 0.0, 1.0, 0.0],
        "noise": 0.1,
        "x_min": -3.0,
        "x_max": 3.0,
        "validation": 0,
    },
    "csv": {"train": None, "test": None, "target": None, "task": "auto", "validation": 0,
            "categorical": [], "missing": "error", "unknown": "error", "scale_target": None},
    "npz": {"path": None, "task": "auto", "validation": 0, "scale_target": None},
}

MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801

XOR_FUNCTIONS: dict[str, tuple[int, int, int, int]] = {
    # outputs for the inputs (0,0), (0,1), (1,0), (1,1)
    "xor": (0, 1, 1, 0),
    "and": (0, 0, 0, 1),
    "or": (0, 1, 1, 1),
    "nand": (1, 1, 1, 0),
    "nor": (1, 0, 0, 0),
    "xnor": (1, 0, 0, 1),
}

_TASKS = ("auto", "classification", "regression")


@dataclass
class Dataset:
    """A loaded data set, split into train / validation / test parts.

    ``X_*`` are ``(N, d)`` arrays: ``uint8`` raw pixels for MNIST, float64 otherwise;
    multiply by :attr:`x_scale` (or call :meth:`scaled`) to get model inputs.  ``y_*``
    are ``int64`` class ids ``(N,)`` for classification and float64 ``(N, k)`` for
    regression.  ``X_val``/``y_val`` and ``X_test``/``y_test`` are ``None`` when absent.
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    n_classes: int | None
    x_scale: float = 1.0
    class_names: list | None = None
    image_shape: tuple | None = None
    encoding: dict | None = None   # a table's column encoding (mlpjit.tables.TableEncoding)

    def as_images(self) -> "Dataset":
        """The same data with ``X_*`` as (N, C, H, W) image batches (views, no copies), for
        models whose first layer is a convolution or pooling; MNIST gives (N, 1, 28, 28).
        Raises :class:`DataError` for data that has no image shape."""
        if self.image_shape is None:
            raise DataError(f"data '{self.name}' has flat rows of {self.n_features} features, "
                            f"not images (image data: mnist, or an npz file whose X is (N, C, H, W))")
        shape = tuple(self.image_shape)

        def view(X):
            return None if X is None else X.reshape((X.shape[0],) + shape)

        return dataclasses.replace(self, X_train=view(self.X_train), X_val=view(self.X_val),
                                   X_test=view(self.X_test))

    @property
    def input_shape(self) -> tuple:
        """One example's shape: ``(d,)``, or ``(C, H, W)`` after :meth:`as_images`."""
        return tuple(int(d) for d in self.X_train.shape[1:])

    @property
    def n_features(self) -> int:
        """Number of input features d (C·H·W for images)."""
        return int(np.prod(self.X_train.shape[1:]))

    @property
    def n_outputs(self) -> int:
        """Number of model outputs: n_classes (classification) or y.shape[1] (regression)."""
        if self.task == "classification":
            assert self.n_classes is not None
            return int(self.n_classes)
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.X_train.shape[0])

    def scaled(self, X: np.ndarray) -> np.ndarray:
        """Return ``X * x_scale`` as a float64 array (the model's input)."""
        X = np.asarray(X, dtype=np.float64)
        return X if self.x_scale == 1.0 else X * self.x_scale


# --------------------------------------------------------------------------- spec


def default_spec(name: str) -> dict:
    """Return a fresh copy of the default keys (without ``name``) of data source *name*."""
    if name not in DEFAULTS:
        raise DataError(f"unknown data source {name!r} (valid: {', '.join(sorted(SOURCES))})")
    return copy.deepcopy(DEFAULTS[name])


def _complete_spec(spec: Any) -> dict:
    """Check the source name and keys of *spec*; return it with defaults filled in."""
    if not isinstance(spec, dict):
        raise DataError(f"data: expected a mapping, got {type(spec).__name__}")
    if "name" not in spec:
        raise DataError(f"data.name is missing (valid: {', '.join(sorted(SOURCES))})")
    name = spec["name"]
    if not isinstance(name, str) or name not in DEFAULTS:
        raise DataError(f"unknown data source {name!r} (valid: {', '.join(sorted(SOURCES))})")
    full = default_spec(name)
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in full:
            valid = ", ".join(["name", *full])
            raise DataError(f"unknown key 'data.{key}' for data source {name!r} (valid: {valid})")
        full[key] = value
    full["name"] = name
    return full


def _int(spec: dict, key: str, minimum: int = 0, optional: bool = False) -> int | None:
    value = spec[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"data.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(spec: dict, key: str, minimum: float | None = None) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise DataError(f"data.{key}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise DataError(f"data.{key}: expected a finite number{bound}, got {value!r}")
    return value


def _path(spec: dict, key: str) -> Path:
    value = spec[key]
    if value is None:
        raise DataError(f"data.{key}: a file path is required for data source {spec['name']!r}")
    if not isinstance(value, (str, Path)) or str(value) == "":
        raise DataError(f"data.{key}: expected a file path, got {value!r}")
    return Path(value)


def _task(spec: dict) -> str:
    task = spec["task"]
    if task not in _TASKS:
        raise DataError(f"data.task: unknown task {task!r} (valid: {', '.join(_TASKS)})")
    return task


# --------------------------------------------------------------------------- entry point


def load_dataset(spec: dict, seed: int) -> Dataset:
    """Load or generate the data set described by *spec* (the config's ``data:`` section).

    *seed* drives the synthetic generators (``default_rng(seed)``) and the validation
    split (``default_rng(seed + 1)``).  Keys missing from *spec* take their
    :data:`DEFAULTS`; an unknown source or key raises :class:`DataError`.
    """
    full = _complete_spec(spec)
    from .resources import check_data
    check_data(full)     # refuse what cannot fit before generating or reading it
    loader: Callable[[dict, int], Dataset] = _LOADERS[full["name"]]
    try:
        return loader(full, int(seed))
    except (MemoryError, OverflowError) as e:
        raise DataError(f"data '{full['name']}': too large to load ({' '.join(str(e).split())})") from None
    except ValueError as e:
        if "dimension" in str(e) or "too large" in str(e) or "negative dimensions" in str(e):
            raise DataError(f"data '{full['name']}': sizes too large ({e})") from None
        raise


def _split_validation(
    X: np.ndarray, y: np.ndarray, validation: int, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Hold out ``validation`` examples chosen by ``default_rng(seed + 1)``."""
    n = X.shape[0]
    if validation == 0:
        return X, y, None, None
    if validation >= n:
        raise DataError(
            f"data.validation: {validation} validation examples requested but {where} has only "
            f"{n} training examples (at least one must remain for training)"
        )
    perm = np.random.default_rng(seed + 1).permutation(n)
    is_val = np.zeros(n, dtype=bool)
    is_val[perm[:validation]] = True
    return X[~is_val], y[~is_val], X[is_val], y[is_val]


def _writable(a: np.ndarray | None) -> np.ndarray | None:
    """Return *a* as a C-contiguous, writable array (copying only when needed)."""
    return None if a is None else np.require(a, requirements=("C", "W"))


# --------------------------------------------------------------------------- mnist


def _mnist_dir(path: Any) -> Path:
    if path is None:
        here = Path("data/mnist")
        if here.is_dir():
            return here
        from .packaged import MNIST
        if MNIST.is_dir():
            return MNIST
        raise DataError(
            f"MNIST directory not found: tried ./data/mnist and {MNIST}, which ships with mlpjit "
            "(a broken install: reinstall mlpjit, or set data.path to the folder holding the four "
            "IDX .gz files)"
        )
    if not isinstance(path, (str, Path)) or str(path) == "":
        raise DataError(f"data.path: expected a directory path, got {path!r}")
    directory = Path(path)
    if not directory.exists():
        raise DataError(
            f"MNIST directory not found: {directory} (data.path must hold the four IDX .gz files)"
        )
    if not directory.is_dir():
        raise DataError(f"data.path: {directory} is not a directory")
    return directory


def _gunzip(path: Path) -> bytes:
    """Read and decompress one gzip file, turning every failure into a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: MNIST file not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise DataError(
            f"{path}: truncated gzip file (it ends before the end of the stream)"
        ) from e
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from e


def _read_idx_images(path: Path) -> np.ndarray:
    data = _gunzip(path)
    if len(data) < 16:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX image header")
    magic, n, rows, cols = np.frombuffer(data, dtype=">u4", count=4)
    if magic != _IMAGES_MAGIC:
        raise DataError(
            f"{path}: not an IDX image file (magic number 0x{int(magic):08x}, "
            f"expected 0x{_IMAGES_MAGIC:08x})"
        )
    n, rows, cols = int(n), int(rows), int(cols)
    if rows == 0 or cols == 0:
        raise DataError(f"{path}: header says images of {rows}x{cols} pixels")
    have, want = len(data) - 16, n * rows * cols
    if have < want:
        raise DataError(
            f"{path}: truncated: header says {n} images of {rows}x{cols} but the file holds "
            f"{have} bytes of pixels (expected {want})"
        )
    if have > want:
        raise DataError(
            f"{path}: header says {n} images of {rows}x{cols} ({want} bytes of pixels) but the "
            f"file holds {have} bytes of pixels"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)


def _read_idx_labels(path: Path) -> np.ndarray:
    data = _gunzip(path)
    if len(data) < 8:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX label header")
    magic, n = np.frombuffer(data, dtype=">u4", count=2)
    if magic != _LABELS_MAGIC:
        raise DataError(
            f"{path}: not an IDX label file (magic number 0x{int(magic):08x}, "
            f"expected 0x{_LABELS_MAGIC:08x})"
        )
    n = int(n)
    have = len(data) - 8
    if have != n:
        what = "truncated: header" if have < n else "header"
        raise DataError(f"{path}: {what} says {n} labels but the file holds {have} bytes of labels")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at index {i} is out of range 0-9 "
            f"({bad.size} bad labels in all)"
        )
    return labels.astype(np.int64)


def _load_mnist_pair(directory: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    img_path, lbl_path = directory / images, directory / labels
    for p in (img_path, lbl_path):
        if not p.is_file():
            raise DataError(f"{p}: MNIST file not found")
    X = _read_idx_images(img_path)
    y = _read_idx_labels(lbl_path)
    if X.shape[0] != y.shape[0]:
        raise DataError(
            f"{lbl_path}: holds {y.shape[0]} labels but {img_path} holds {X.shape[0]} images"
        )
    return X, y


def _load_mnist(spec: dict, seed: int) -> Dataset:
    validation = _int(spec, "validation")
    subset = _int(spec, "subset", 1, optional=True)
    test_subset = _int(spec, "test_subset", 1, optional=True)
    directory = _mnist_dir(spec["path"])
    for fname in MNIST_FILES.values():  # name every missing file before reading any
        if not (directory / fname).is_file():
            raise DataError(f"{directory / fname}: MNIST file not found")

    X, y = _load_mnist_pair(directory, MNIST_FILES["train_images"], MNIST_FILES["train_labels"])
    X_test, y_test = _load_mnist_pair(
        directory, MNIST_FILES["test_images"], MNIST_FILES["test_labels"]
    )
    if X_test.shape[1] != X.shape[1]:
        raise DataError(
            f"{directory / MNIST_FILES['test_images']}: images have {X_test.shape[1]} pixels "
            f"but the training images have {X.shape[1]}"
        )
    if subset is not None:
        if subset > X.shape[0]:
            raise DataError(f"data.subset: {subset} exceeds the {X.shape[0]} MNIST training images")
        X, y = X[:subset], y[:subset]
    if test_subset is not None:
        if test_subset > X_test.shape[0]:
            raise DataError(
                f"data.test_subset: {test_subset} exceeds the {X_test.shape[0]} MNIST test images"
            )
        X_test, y_test = X_test[:test_subset], y_test[:test_subset]
    X_tr, y_tr, X_val, y_val = _split_validation(X, y, validation, seed, "mnist")
    return Dataset(
        name="mnist",
        task="classification",
        X_train=_writable(X_tr),
        y_train=_writable(y_tr),
        X_val=_writable(X_val),
        y_val=_writable(y_val),
        X_test=_writable(X_test),
        y_test=_writable(y_test),
        n_classes=10,
        x_scale=1.0 / 255.0,
        image_shape=(1, 28, 28),
    )


# --------------------------------------------------------------------------- synthetic


def _load_xor(spec: dict, seed: int) -> Dataset:
    function = spec["function"]
    if function not in XOR_FUNCTIONS:
        raise DataError(
            f"data.function: unknown function {function!r} (valid: {', '.join(XOR_FUNCTIONS)})"
        )
    if spec["validation"] != 0:
        raise DataError(
            f"data.validation: must be 0 for the xor source (it has only 4 points), "
            f"got {spec['validation']!r}"
        )
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array(XOR_FUNCTIONS[function], dtype=np.int64)
    return Dataset(
        name="xor",
        task="classification",
        X_train=X,
        y_train=y,
        X_val=None,
        y_val=None,
        X_test=X.copy(),
        y_test=y.copy(),
        n_classes=2,
    )


def _spiral_points(rng: np.random.Generator, n: int, k: int, noise: float):
    counts = [n // k + (1 if j < n % k else 0) for j in range(k)]
    X = np.empty((n, 2))
    y = np.empty(n, dtype=np.int64)
    start = 0
    for j, n_j in enumerate(counts):
        r = np.linspace(0.0, 1.0, n_j)
        t = np.linspace(j * 4.0, (j + 1) * 4.0, n_j) + noise * rng.standard_normal(n_j)
        X[start : start + n_j, 0] = r * np.sin(t)
        X[start : start + n_j, 1] = r * np.cos(t)
        y[start : start + n_j] = j
        start += n_j
    return X, y


def _load_spirals(spec: dict, seed: int) -> Dataset:
    k = _int(spec, "classes", 2)
    points = _int(spec, "points", 1)
    test_points = _int(spec, "test_points", 0)
    noise = _float(spec, "noise", 0.0)
    validation = _int(spec, "validation")
    if points < k:
        raise DataError(f"data.points: {points} is fewer than one point per class ({k} classes)")
    rng = np.random.default_rng(seed)
    X, y = _spiral_points(rng, points, k, noise)
    order = rng.permutation(points)
    X, y = X[order], y[order]
    X_test = y_test = None
    if test_points:
        X_test, y_test = _spiral_points(rng, test_points, k, noise)
    X_tr, y_tr, X_val, y_val = _split_validation(X, y, validation, seed, "spirals")
    return Dataset("spirals", "classification", X_tr, y_tr, X_val, y_val, X_test, y_test, k)


def _load_sine(spec: dict, seed: int) -> Dataset:
    points = _int(spec, "points", 1)
    test_points = _int(spec, "test_points", 0)
    noise = _float(spec, "noise", 0.0)
    x_min, x_max = _float(spec, "x_min"), _float(spec, "x_max")
    validation = _int(spec, "validation")
    a = spec["a"]
    if (
        not isinstance(a, (list, tuple))
        or len(a) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a)
        or not all(math.isfinite(v) for v in a)
    ):
        raise DataError(f"data.a: expected a list of 4 finite numbers [a0, a1, a2, a3], got {a!r}")
    if not x_min < x_max:
        raise DataError(f"data.x_min: {x_min} must be less than data.x_max ({x_max})")
    a0, a1, a2, a3 = (float(v) for v in a)
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(x_min, x_max, size=(n, 1))
        return x, a2 * np.sin(a0 * x + a1) + a3 + noise * rng.standard_normal((n, 1))

    X, y = draw(points)
    X_test, y_test = draw(test_points) if test_points else (None, None)
    X_tr, y_tr, X_val, y_val = _split_validation(X, y, validation, seed, "sine")
    return Dataset("sine", "regression", X_tr, y_tr, X_val, y_val, X_test, y_test, None)


# --------------------------------------------------------------------------- labels


def _number_kind(values: np.ndarray) -> str:
    """'int' if every value is integral, else 'float' (values are finite floats)."""
    return "int" if np.all(values == np.round(values)) else "float"


def _encode_labels(
    train: list, test: list | None, where_train: str, where_test: Callable[[int, Any], str]
) -> tuple[np.ndarray, np.ndarray | None, list]:
    """Map labels to ids 0..k-1 in sorted order of the distinct training values.

    *where_train* names the training labels in the error for a single class;
    ``where_test(i, value)`` gives the message for an unseen test label at position i.
    """
    names = sorted(set(train))
    index = {v: i for i, v in enumerate(names)}
    if len(names) < 2:
        raise DataError(
            f"{where_train}: every training label is {names[0]!r}; "
            "classification needs at least 2 classes"
        )
    y = np.fromiter((index[v] for v in train), dtype=np.int64, count=len(train))
    y_test = None
    if test is not None:
        y_test = np.empty(len(test), dtype=np.int64)
        for i, v in enumerate(test):
            if v not in index:
                raise DataError(where_test(i, v))
            y_test[i] = index[v]
    return y, y_test, names


# --------------------------------------------------------------------------- csv


def _load_csv(spec: dict, seed: int) -> Dataset:
    train_path = _path(spec, "train")
    test_path = None if spec["test"] is None else _path(spec, "test")
    task = _task(spec)
    validation = _int(spec, "validation")
    target = spec["target"]
    missing, unknown = spec["missing"], spec["unknown"]
    if missing not in MISSING:
        raise DataError(f"data.missing: {missing!r} is not one of {', '.join(MISSING)}")
    if unknown not in UNKNOWN:
        raise DataError(f"data.unknown: {unknown!r} is not one of {', '.join(UNKNOWN)}")
    categorical = spec["categorical"] or []
    if isinstance(categorical, str):
        categorical = [categorical]

    train_label = str(train_path)
    columns, rows = read_csv(train_path, train_label)
    if target is None:
        raise DataError(
            f"data.target: name the label column of {train_label} (columns: {', '.join(columns)})"
        )
    if not isinstance(target, str) or target not in columns:
        raise DataError(
            f"{train_label}: no target column {target!r} (columns: {', '.join(columns)})"
        )
    if missing == "drop":
        keep = [(line, row) for line, row in rows if all(c.strip() != "" for c in row)]
        if not keep:
            raise DataError(f"{train_label}: every row has an empty cell (data.missing: drop leaves none)")
        rows = keep
    encoding = TableEncoding.fit(columns, rows, target, train_label, categorical, unknown, missing)
    X = encoding.transform(columns, rows, train_label)
    t = columns.index(target)
    raw_y = [(line, row[t].strip()) for line, row in rows]

    test_data = None
    if test_path is not None:
        test_label = str(test_path)
        X_test, traw, _ = read_table(test_path, encoding, test_label, target_required=True)
        test_data = (test_label, X_test, traw)

    numeric = all(is_number(v) for _, v in raw_y)
    if task == "auto":
        if not numeric:
            task = "classification"
        else:
            values = np.array([number(v) for _, v in raw_y])
            task = "classification" if _number_kind(values) == "int" else "regression"

    y_test = None
    if task == "regression":
        y = np.array([[cell_float(train_label, line, target, v)] for line, v in raw_y]).reshape(
            -1, 1
        )
        if test_data is not None:
            tl, _, traw = test_data
            y_test = np.array([[cell_float(tl, line, target, v)] for line, v in traw]).reshape(
                -1, 1
            )
        class_names = None
        n_classes = None
    else:
        if numeric:  # numeric labels: compare and sort as numbers, name as int where integral

            def canon(label: str, line: int, v: str) -> Any:
                value = cell_float(label, line, target, v)
                return int(value) if value == int(value) else value

            train_labels = [canon(train_label, line, v) for line, v in raw_y]
            test_labels = None
            if test_data is not None:
                tl, _, traw = test_data
                test_labels = [canon(tl, line, v) if is_number(v) else v for line, v in traw]
        else:
            for line, v in raw_y:
                if v == "":
                    raise DataError(f"{train_label} line {line}, column {target!r}: empty label")
            train_labels = [v for _, v in raw_y]
            test_labels = None if test_data is None else [v for _, v in test_data[2]]

        def unseen(i: int, v: Any) -> str:
            tl, _, traw = test_data
            return (
                f"{tl} line {traw[i][0]}, column {target!r}: label {traw[i][1]!r} "
                f"does not occur in the training file {train_label}"
            )

        y, y_test, class_names = _encode_labels(
            train_labels, test_labels, f"{train_label} column {target!r}", unseen
        )
        n_classes = len(class_names)

    X_tr, y_tr, X_val, y_val = _split_validation(X, y, validation, seed, train_label)
    return Dataset(
        name="csv",
        task=task,
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_val,
        y_val=y_val,
        X_test=None if test_data is None else test_data[1],
        y_test=y_test,
        n_classes=n_classes,
        class_names=class_names,
        encoding=encoding.to_json(),
    )


# --------------------------------------------------------------------------- npz


def _npz_array(npz: Any, key: str, label: str) -> np.ndarray:
    try:
        a = npz[key]
    except ValueError as e:  # object arrays need pickle
        raise DataError(f"{label}: array {key!r} cannot be loaded without pickle ({e})") from e
    except Exception as e:  # corrupt member: zlib / zipfile / EOF errors
        raise DataError(f"{label}: array {key!r} is corrupted ({type(e).__name__}: {e})") from e
    if a.dtype.kind not in "biuf" and not (key.startswith("y") and a.dtype.kind in "US"):
        raise DataError(f"{label}: array {key!r} has unsupported dtype {a.dtype} (need numbers)")
    return a


def _npz_X(a: np.ndarray, key: str, label: str) -> np.ndarray:
    if a.ndim < 2:
        raise DataError(
            f"{label}: array {key!r} has shape {a.shape}, expected (N, features) "
            "(reshape a single feature to (N, 1))"
        )
    if a.shape[0] == 0:
        raise DataError(f"{label}: array {key!r} has no examples (shape {a.shape})")
    X = np.asarray(a.reshape(a.shape[0], -1), dtype=np.float64)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise DataError(
            f"{label}: array {key!r} holds NaN or Inf (first at row {bad[0]}, column {bad[1]})"
        )
    return X


def _load_npz(spec: dict, seed: int) -> Dataset:
    path = _path(spec, "path")
    task = _task(spec)
    validation = _int(spec, "validation")
    label = str(path)
    if not path.is_file():
        raise DataError(
            f"{label}: npz file not found" if not path.exists() else f"{label}: not a file"
        )
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"{label}: cannot read: {e.strerror or e}") from e
    if magic == b"\x93NUMPY":
        raise DataError(
            f"{label}: a single .npy array, expected an .npz archive with arrays X and y"
        )
    if not magic.startswith(b"PK"):
        raise DataError(f"{label}: not an .npz archive (expected a zip of .npy arrays X and y)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip / not numpy / pickled / unreadable
        raise DataError(f"{label}: not a readable .npz file ({type(e).__name__}: {e})") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"{label}: a single .npy array, expected an .npz archive with arrays X and y"
        )
    with npz:
        names = set(npz.files)
        for key in ("X", "y"):
            if key not in names:
                raise DataError(
                    f"{label}: missing array {key!r} "
                    f"(arrays found: {', '.join(sorted(names)) or 'none'})"
                )
        if ("X_test" in names) != ("y_test" in names):
            have, lack = ("X_test", "y_test") if "X_test" in names else ("y_test", "X_test")
            raise DataError(f"{label}: has {have!r} but no {lack!r} (give both or neither)")
        X_arr = _npz_array(npz, "X", label)
        image_shape = tuple(int(d) for d in X_arr.shape[1:]) if X_arr.ndim == 4 else None
        X = _npz_X(X_arr, "X", label)
        y_raw = _npz_array(npz, "y", label)
        X_test = y_test_raw = None
        if "X_test" in names:
            X_test_arr = _npz_array(npz, "X_test", label)
            X_test_shape = tuple(int(d) for d in X_test_arr.shape)
            X_test = _npz_X(X_test_arr, "X_test", label)
            y_test_raw = _npz_array(npz, "y_test", label)

    pairs = [("X", "y", X, y_raw)]
    if X_test is not None:
        if image_shape is not None and X_test_shape[1:] != image_shape:
            raise DataError(
                f"{label}: 'X_test' has examples of shape {X_test_shape[1:]} but 'X' has "
                f"{image_shape}"
            )
        if X_test.shape[1] != X.shape[1]:
            raise DataError(
                f"{label}: 'X_test' has {X_test.shape[1]} features but 'X' has {X.shape[1]}"
            )
        pairs.append(("X_test", "y_test", X_test, y_test_raw))
    for xk, yk, xa, ya in pairs:
        if ya.ndim == 0 or ya.ndim > 2 or ya.shape[0] != xa.shape[0]:
            raise DataError(
                f"{label}: {yk!r} has shape {ya.shape} but {xk!r} has {xa.shape[0]} examples "
                f"(expected ({xa.shape[0]},) or ({xa.shape[0]}, k))"
            )

    kind = y_raw.dtype.kind
    if task == "auto":
        task = (
            "classification"
            if kind in "iuUS" or (kind == "b" and y_raw.ndim == 1)
            else "regression"
        )

    if task == "regression":
        if kind in "US":
            raise DataError(
                f"{label}: 'y' holds strings ({y_raw.dtype}) but data.task is regression"
            )

        def reg(ya: np.ndarray, yk: str) -> np.ndarray:
            y2 = np.asarray(ya, dtype=np.float64).reshape(ya.shape[0], -1)
            if not np.all(np.isfinite(y2)):
                row = int(np.argwhere(~np.isfinite(y2))[0][0])
                raise DataError(f"{label}: array {yk!r} holds NaN or Inf (first at row {row})")
            return y2

        y = reg(y_raw, "y")
        y_test = None if y_test_raw is None else reg(y_test_raw, "y_test")
        n_classes, class_names = None, None
    else:

        def labels(ya: np.ndarray, yk: str) -> np.ndarray:
            if ya.ndim == 2 and ya.shape[1] != 1:
                raise DataError(
                    f"{label}: {yk!r} has shape {ya.shape}; "
                    "classification needs one label per example"
                )
            ya = ya.reshape(-1)
            if ya.dtype.kind == "b":
                ya = ya.astype(np.int64)
            if ya.dtype.kind == "f":
                if not np.all(np.isfinite(ya)):
                    raise DataError(f"{label}: array {yk!r} holds NaN or Inf")
                if not np.all(ya == np.round(ya)):
                    raise DataError(
                        f"{label}: {yk!r} holds non-integer class labels (use task: regression?)"
                    )
                ya = ya.astype(np.int64)
            if ya.dtype.kind in "iu" and ya.size and ya.min() < 0:
                i = int(np.argmin(ya))
                raise DataError(
                    f"{label}: {yk!r} holds a negative class label {int(ya[i])} at row {i}"
                )
            return ya

        y1 = labels(y_raw, "y")
        yt1 = None if y_test_raw is None else labels(y_test_raw, "y_test")
        if yt1 is not None and (y1.dtype.kind in "US") != (yt1.dtype.kind in "US"):
            raise DataError(
                f"{label}: 'y' and 'y_test' hold different kinds of labels "
                f"({y1.dtype} vs {yt1.dtype})"
            )

        def unseen(i: int, v: Any) -> str:
            return f"{label}: 'y_test' label {v!r} at row {i} does not occur in 'y'"

        y, y_test, names = _encode_labels(
            y1.tolist(), None if yt1 is None else yt1.tolist(), f"{label}: 'y'", unseen
        )
        n_classes = len(names)
        contiguous = names == list(range(n_classes))
        class_names = None if contiguous else names

    X_tr, y_tr, X_val, y_val = _split_validation(X, y, validation, seed, label)
    return Dataset(
        name="npz",
        task=task,
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_val,
        y_val=y_val,
        X_test=X_test,
        y_test=y_test,
        n_classes=n_classes,
        class_names=class_names,
        image_shape=image_shape,
    )


_LOADERS: dict[str, Callable[[dict, int], Dataset]] = {
    "mnist": _load_mnist,
    "xor": _load_xor,
    "spirals": _load_spirals,
    "sine": _load_sine,
    "csv": _load_csv,
    "npz": _load_npz,
}
