"""Tests of mlpjit.data: real MNIST files, synthetic sources, csv/npz, and every bad input."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from mlpjit import data
from mlpjit.data import DEFAULTS, SOURCES, Dataset, default_spec, load_dataset
from mlpjit.errors import DataError

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def mnist_spec(path, **kw) -> dict:
    return {"name": "mnist", "path": str(path), **kw}


# --------------------------------------------------------------------------- spec


def test_sources_and_defaults():
    assert SOURCES == ("mnist", "xor", "spirals", "sine", "csv", "npz")
    assert set(DEFAULTS) == set(SOURCES)
    spec = default_spec("sine")
    assert spec == {
        "points": 1000,
        "test_points": 200,
        "a": [1.0, 0.0, 1.0, 0.0],
        "noise": 0.1,
        "x_min": -3.0,
        "x_max": 3.0,
        "validation": 0,
    }
    spec["a"][0] = 5.0  # a copy: DEFAULTS is untouched
    assert DEFAULTS["sine"]["a"][0] == 1.0
    assert default_spec("mnist") == {
        "path": None,
        "validation": 0,
        "subset": None,
        "test_subset": None,
    }


def test_unknown_source():
    with pytest.raises(
        DataError,
        match=r"unknown data source 'mnsit' \(valid: csv, mnist, npz, sine, spirals, xor\)",
    ):
        load_dataset({"name": "mnsit"}, 0)


def test_unknown_key():
    with pytest.raises(DataError, match=r"data\.pointz.*valid: name, classes, points"):
        load_dataset({"name": "spirals", "pointz": 10}, 0)


def test_validation_too_large():
    with pytest.raises(DataError, match=r"data\.validation: 300 .* only 300 training"):
        load_dataset({"name": "spirals", "points": 300, "validation": 300}, 0)
    with pytest.raises(DataError, match=r"data\.validation: must be 0 for the xor source"):
        load_dataset({"name": "xor", "validation": 1}, 0)


def test_bad_values_name_the_key():
    with pytest.raises(DataError, match=r"data\.noise"):
        load_dataset({"name": "spirals", "noise": -1.0}, 0)
    with pytest.raises(DataError, match=r"data\.function: unknown function 'xr'"):
        load_dataset({"name": "xor", "function": "xr"}, 0)
    with pytest.raises(DataError, match=r"data\.a"):
        load_dataset({"name": "sine", "a": [1.0, 2.0]}, 0)


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_full() -> Dataset:
    return load_dataset({"name": "mnist", "path": str(MNIST)}, 0)


def test_mnist_real(mnist_full):
    d = mnist_full
    assert d.task == "classification" and d.n_classes == 10 and d.n_outputs == 10
    assert d.X_train.shape == (60000, 784) and d.X_train.dtype == np.uint8
    assert d.X_test.shape == (10000, 784) and d.X_test.dtype == np.uint8
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.X_val is None and d.y_val is None
    assert np.bincount(d.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(d.y_test).tolist() == TEST_COUNTS
    assert d.X_train.mean() == pytest.approx(33.318, abs=1e-3)
    assert d.x_scale == pytest.approx(1 / 255)
    assert d.scaled(d.X_train[:1000]).dtype == np.float64
    assert d.scaled(d.X_train).mean() == pytest.approx(0.13066, abs=1e-5)
    assert d.n_features == 784 and d.n_train == 60000
    assert d.X_train.flags.writeable and d.X_train.flags.c_contiguous


def test_mnist_default_path(mnist_full, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./data/mnist here: falls back to the checkout
    d = load_dataset({"name": "mnist", "subset": 10, "test_subset": 5}, 0)
    assert np.array_equal(d.X_train, mnist_full.X_train[:10])
    assert np.array_equal(d.y_test, mnist_full.y_test[:5])


def test_mnist_subset_and_validation(mnist_full):
    d = load_dataset(mnist_spec(MNIST, subset=2000, test_subset=300, validation=500), 7)
    assert d.X_train.shape == (1500, 784) and d.y_train.shape == (1500,)
    assert d.X_val.shape == (500, 784) and d.y_val.shape == (500,)
    assert d.X_test.shape == (300, 784)
    assert np.array_equal(d.X_test, mnist_full.X_test[:300])
    # index bookkeeping: validation = perm[:500] of the first 2000, both in sorted order
    val_idx = np.sort(np.random.default_rng(7 + 1).permutation(2000)[:500])
    train_idx = np.setdiff1d(np.arange(2000), val_idx)
    assert np.array_equal(d.X_val, mnist_full.X_train[val_idx])
    assert np.array_equal(d.y_val, mnist_full.y_train[val_idx])
    assert np.array_equal(d.X_train, mnist_full.X_train[train_idx])
    assert np.array_equal(d.y_train, mnist_full.y_train[train_idx])
    # and by content: no row is both in train and validation
    train_rows = {r.tobytes() for r in d.X_train}
    assert not any(r.tobytes() in train_rows for r in d.X_val)
    # a different seed gives a different split
    d2 = load_dataset(mnist_spec(MNIST, subset=2000, validation=500), 8)
    assert not np.array_equal(d2.X_val, d.X_val)


def test_mnist_subset_too_large():
    with pytest.raises(DataError, match=r"data\.validation: 10 .* only 10"):
        load_dataset(mnist_spec(MNIST, subset=10, validation=10), 0)


# --------------------------------------------------------------------------- MNIST corruption


def _images(n: int, magic: int = 0x803, count: int | None = None) -> bytes:
    pixels = (np.arange(n * 784) % 256).astype(np.uint8).tobytes()
    return struct.pack(">IIII", magic, n if count is None else count, 28, 28) + pixels


def _labels(values, magic: int = 0x801) -> bytes:
    return struct.pack(">II", magic, len(values)) + bytes(values)


def fake_mnist(tmp_path: Path, **override: bytes) -> Path:
    """Write a small valid MNIST folder (5 train, 3 test images); override files by key."""
    d = tmp_path / "mnist"
    d.mkdir(exist_ok=True)
    files = {
        "train_images": _images(5),
        "train_labels": _labels([0, 1, 2, 3, 9]),
        "test_images": _images(3),
        "test_labels": _labels([4, 5, 6]),
    }
    files.update(override)
    for key, payload in files.items():
        (d / data.MNIST_FILES[key]).write_bytes(gzip.compress(payload))
    return d


def test_fake_mnist_loads(tmp_path):
    d = load_dataset(mnist_spec(fake_mnist(tmp_path)), 0)
    assert d.X_train.shape == (5, 784) and d.y_train.tolist() == [0, 1, 2, 3, 9]
    assert d.y_test.tolist() == [4, 5, 6]


def test_mnist_missing_dir(tmp_path):
    with pytest.raises(DataError, match=r"MNIST directory not found: .*nowhere"):
        load_dataset(mnist_spec(tmp_path / "nowhere"), 0)


@pytest.mark.parametrize("key", sorted(data.MNIST_FILES))
def test_mnist_missing_file(tmp_path, key):
    d = fake_mnist(tmp_path)
    (d / data.MNIST_FILES[key]).unlink()
    with pytest.raises(DataError, match=data.MNIST_FILES[key] + ": MNIST file not found"):
        load_dataset(mnist_spec(d), 0)


def test_mnist_truncated_gzip(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for name in data.MNIST_FILES.values():
        if name.startswith("train-images"):
            raw = (MNIST / name).read_bytes()
            (d / name).write_bytes(raw[: len(raw) // 2])
        else:
            shutil.copy(MNIST / name, d / name)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: truncated gzip"):
        load_dataset(mnist_spec(d), 0)


def test_mnist_not_gzip(tmp_path):
    d = fake_mnist(tmp_path)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(_labels([1, 2, 3]))  # uncompressed
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: not a valid gzip"):
        load_dataset(mnist_spec(d), 0)


def test_mnist_wrong_magic(tmp_path):
    d = fake_mnist(tmp_path, train_images=_images(5, magic=0x801))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte\.gz: not an IDX image file .*0x00000801"
    ):
        load_dataset(mnist_spec(d), 0)
    d = fake_mnist(tmp_path, train_images=_images(5), test_labels=_labels([1, 2, 3], magic=0x803))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: not an IDX label file"):
        load_dataset(mnist_spec(d), 0)


def test_mnist_count_exceeds_data(tmp_path):
    d = fake_mnist(tmp_path, train_images=_images(5, count=60000))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte\.gz: truncated: header says 60000 images of 28x28 "
        r"but the file holds 3920 bytes of pixels",
    ):
        load_dataset(mnist_spec(d), 0)


def test_mnist_truncated_header(tmp_path):
    d = fake_mnist(tmp_path, test_images=b"\x00\x00\x08\x03")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated"):
        load_dataset(mnist_spec(d), 0)


def test_mnist_label_count_mismatch(tmp_path):
    d = fake_mnist(tmp_path, train_labels=_labels([0, 1, 2, 3]))
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte\.gz: holds 4 labels but .*train-images-idx3-ubyte\.gz holds 5 images",
    ):
        load_dataset(mnist_spec(d), 0)


def test_mnist_label_out_of_range(tmp_path):
    d = fake_mnist(tmp_path, test_labels=_labels([1, 10, 2]))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte\.gz: label 10 at index 1 is out of range 0-9"
    ):
        load_dataset(mnist_spec(d), 0)


def test_errors_are_one_line(tmp_path):
    d = fake_mnist(tmp_path, train_images=_images(5, count=7))
    with pytest.raises(DataError) as info:
        load_dataset(mnist_spec(d), 0)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize(
    "function, table",
    [
        ("xor", [0, 1, 1, 0]),
        ("and", [0, 0, 0, 1]),
        ("or", [0, 1, 1, 1]),
        ("nand", [1, 1, 1, 0]),
        ("nor", [1, 0, 0, 0]),
        ("xnor", [1, 0, 0, 1]),
    ],
)
def test_xor_truth_tables(function, table):
    d = load_dataset({"name": "xor", "function": function}, 0)
    assert d.X_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and d.X_train.dtype == np.float64
    assert d.y_train.tolist() == table and d.y_train.dtype == np.int64
    assert np.array_equal(d.X_test, d.X_train) and np.array_equal(d.y_test, d.y_train)
    assert d.n_classes == 2 and d.X_val is None


def test_spirals():
    spec = {
        "name": "spirals",
        "classes": 4,
        "points": 1001,
        "test_points": 50,
        "noise": 0.1,
        "validation": 101,
    }
    d = load_dataset(spec, 3)
    assert d.X_train.shape == (900, 2) and d.X_train.dtype == np.float64
    assert d.y_train.shape == (900,) and d.y_train.dtype == np.int64
    assert d.X_val.shape == (101, 2) and d.X_test.shape == (50, 2) and d.y_test.shape == (50,)
    assert d.n_classes == 4 and d.n_outputs == 4
    counts = np.bincount(np.concatenate([d.y_train, d.y_val]))
    assert counts.tolist() == [251, 250, 250, 250]
    assert np.bincount(d.y_test).tolist() == [13, 13, 12, 12]
    assert np.all(np.hypot(*d.X_train.T) <= 1 + 1e-12)
    assert not np.all(np.diff(d.y_train) >= 0)  # shuffled
    same = load_dataset(spec, 3)
    assert np.array_equal(same.X_train, d.X_train) and np.array_equal(same.X_test, d.X_test)
    other = load_dataset(spec, 4)
    assert not np.array_equal(other.X_train, d.X_train)
    assert load_dataset({"name": "spirals", "test_points": 0}, 0).X_test is None


def test_sine():
    spec = {
        "name": "sine",
        "points": 500,
        "test_points": 40,
        "a": [2.0, 0.5, 3.0, 1.0],
        "noise": 0.0,
        "x_min": -1.0,
        "x_max": 2.0,
        "validation": 50,
    }
    d = load_dataset(spec, 1)
    assert d.task == "regression" and d.n_classes is None and d.n_outputs == 1
    assert d.X_train.shape == (450, 1) and d.y_train.shape == (450, 1)
    assert d.X_val.shape == (50, 1) and d.X_test.shape == (40, 1) and d.y_test.shape == (40, 1)
    assert d.y_train.dtype == np.float64
    assert d.X_train.min() >= -1.0 and d.X_train.max() <= 2.0
    np.testing.assert_allclose(d.y_train, 3.0 * np.sin(2.0 * d.X_train + 0.5) + 1.0)
    np.testing.assert_allclose(d.y_test, 3.0 * np.sin(2.0 * d.X_test + 0.5) + 1.0)
    noisy = load_dataset({"name": "sine"}, 1)
    resid = noisy.y_train - np.sin(noisy.X_train)
    assert resid.std() == pytest.approx(0.1, rel=0.15)
    assert np.array_equal(load_dataset({"name": "sine"}, 1).y_train, noisy.y_train)
    assert not np.array_equal(load_dataset({"name": "sine"}, 2).y_train, noisy.y_train)
    assert not np.array_equal(d.X_test, d.X_train[:40])


# --------------------------------------------------------------------------- csv


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


IRIS = "sepal,petal,species\n1.0,2.0,setosa\n1.5,2.5,virginica\n3,4,setosa\n5,6,versicolor\n2,2,virginica\n"


def test_csv_string_labels_with_test(tmp_path):
    train = write(tmp_path / "iris.csv", IRIS)
    test = write(tmp_path / "iris_test.csv", "species,petal,sepal\nversicolor,1,2\nsetosa,3,4\n")
    d = load_dataset(
        {"name": "csv", "train": str(train), "test": str(test), "target": "species"}, 0
    )
    assert d.task == "classification" and d.n_classes == 3
    assert d.class_names == ["setosa", "versicolor", "virginica"]
    assert d.X_train.tolist() == [[1, 2], [1.5, 2.5], [3, 4], [5, 6], [2, 2]]
    assert d.y_train.tolist() == [0, 2, 0, 1, 2] and d.y_train.dtype == np.int64
    assert d.X_test.tolist() == [[2, 1], [4, 3]]  # columns matched by name
    assert d.y_test.tolist() == [1, 0]


def test_csv_auto_task_and_validation(tmp_path):
    ints = write(
        tmp_path / "ints.csv", "a,label\n" + "".join(f"{i},{(i * 7) % 10 + 1}\n" for i in range(20))
    )
    d = load_dataset({"name": "csv", "train": str(ints), "target": "label", "validation": 5}, 0)
    assert d.task == "classification" and d.class_names == list(range(1, 11))
    assert d.X_train.shape == (15, 1) and d.X_val.shape == (5, 1)
    assert sorted(d.X_train[:, 0].tolist() + d.X_val[:, 0].tolist()) == list(range(20))
    floats = write(tmp_path / "floats.csv", "a,b,y\n1,2,0.5\n3,4,1.25\n5,6,2\n")
    r = load_dataset({"name": "csv", "train": str(floats), "target": "y"}, 0)
    assert (
        r.task == "regression"
        and r.y_train.shape == (3, 1)
        and r.y_train[:, 0].tolist() == [0.5, 1.25, 2.0]
    )
    assert r.n_outputs == 1 and r.X_test is None
    forced = load_dataset(
        {"name": "csv", "train": str(ints), "target": "label", "task": "regression"}, 0
    )
    assert forced.task == "regression" and forced.y_train.dtype == np.float64


def test_csv_nan_cell(tmp_path):
    p = write(tmp_path / "iris.csv", IRIS.replace("5,6,", "5,NaN,"))
    with pytest.raises(DataError, match=r"iris\.csv line 5, column 'petal': 'NaN' is NaN"):
        load_dataset({"name": "csv", "train": str(p), "target": "species"}, 0)


def test_csv_non_numeric_and_empty_cell(tmp_path):
    p = write(tmp_path / "iris.csv", IRIS.replace("3,4,", "3,abc,"))
    with pytest.raises(DataError, match=r"iris\.csv line 4, column 'petal': 'abc' is not a number"):
        load_dataset({"name": "csv", "train": str(p), "target": "species"}, 0)
    p = write(tmp_path / "iris.csv", IRIS.replace("3,4,", ",4,"))
    with pytest.raises(DataError, match=r"iris\.csv line 4, column 'sepal': empty cell"):
        load_dataset({"name": "csv", "train": str(p), "target": "species"}, 0)


def test_csv_missing_target(tmp_path):
    p = write(tmp_path / "iris.csv", IRIS)
    with pytest.raises(
        DataError, match=r"iris\.csv: no target column 'label' \(columns: sepal, petal, species\)"
    ):
        load_dataset({"name": "csv", "train": str(p), "target": "label"}, 0)


def test_csv_unseen_test_label(tmp_path):
    train = write(tmp_path / "iris.csv", IRIS)
    test = write(tmp_path / "iris_test.csv", "sepal,petal,species\n1,2,setosa\n1,2,daisy\n")
    with pytest.raises(
        DataError, match=r"iris_test\.csv line 3, column 'species': label 'daisy' does not occur"
    ):
        load_dataset(
            {"name": "csv", "train": str(train), "test": str(test), "target": "species"}, 0
        )


def test_csv_other_bad_files(tmp_path):
    spec = {"name": "csv", "target": "species"}
    with pytest.raises(DataError, match=r"nope\.csv: CSV file not found"):
        load_dataset({**spec, "train": str(tmp_path / "nope.csv")}, 0)
    p = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        load_dataset({**spec, "train": str(p)}, 0)
    p = write(tmp_path / "ragged.csv", IRIS + "1,2\n")
    with pytest.raises(DataError, match=r"ragged\.csv line 7: 2 fields"):
        load_dataset({**spec, "train": str(p)}, 0)
    p = write(tmp_path / "noheader.csv", "1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"noheader\.csv: a header row"):
        load_dataset({**spec, "train": str(p)}, 0)
    p = tmp_path / "latin.csv"
    p.write_bytes(b"a,species\n1,caf\xe9\n")
    with pytest.raises(DataError, match=r"latin\.csv: not a UTF-8"):
        load_dataset({**spec, "train": str(p)}, 0)
    with pytest.raises(DataError, match=r"data\.train"):
        load_dataset(spec, 0)


# --------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2, 3))
    y = np.array([3, 7, 9] * 10)
    X_test = rng.normal(size=(6, 6))
    y_test = np.array([7, 9, 3, 3, 7, 9])
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y, X_test=X_test, y_test=y_test)
    d = load_dataset({"name": "npz", "path": str(p), "validation": 10}, 0)
    assert d.task == "classification" and d.n_classes == 3 and d.class_names == [3, 7, 9]
    assert d.X_train.shape == (20, 6) and d.X_val.shape == (10, 6) and d.X_train.dtype == np.float64
    assert np.array_equal(d.X_test, X_test) and d.y_test.tolist() == [1, 2, 0, 0, 1, 2]
    merged = np.concatenate([d.X_train, d.X_val])
    assert sorted(map(bytes, merged)) == sorted(map(bytes, X.reshape(30, 6)))
    # contiguous labels: no class_names; float y: regression (N, 1)
    np.savez(p, X=X, y=y % 3)
    assert load_dataset({"name": "npz", "path": str(p)}, 0).class_names is None
    np.savez(p, X=X, y=rng.normal(size=30))
    r = load_dataset({"name": "npz", "path": str(p)}, 0)
    assert r.task == "regression" and r.y_train.shape == (30, 1) and r.X_test is None


def test_npz_bad_files(tmp_path):
    p = tmp_path / "d.npz"
    spec = {"name": "npz", "path": str(p)}
    X = np.zeros((4, 2))
    np.savez(p, X=X)
    with pytest.raises(DataError, match=r"d\.npz: missing array 'y' \(arrays found: X\)"):
        load_dataset(spec, 0)
    np.savez(p, X=np.array([[0.0, np.nan]] * 4), y=np.arange(4))
    with pytest.raises(DataError, match=r"d\.npz: array 'X' holds NaN or Inf"):
        load_dataset(spec, 0)
    np.savez(p, X=X, y=np.array([0.5, np.inf, 1.0, 2.0]))
    with pytest.raises(DataError, match=r"d\.npz: array 'y' holds NaN or Inf"):
        load_dataset(spec, 0)
    np.savez(p, X=X, y=np.arange(3))
    with pytest.raises(DataError, match=r"d\.npz: 'y' has shape \(3,\) but 'X' has 4"):
        load_dataset(spec, 0)
    np.savez(p, X=X, y=np.arange(4), X_test=X)
    with pytest.raises(DataError, match=r"has 'X_test' but no 'y_test'"):
        load_dataset(spec, 0)
    np.savez(p, X=np.zeros(4), y=np.arange(4))
    with pytest.raises(DataError, match=r"array 'X' has shape \(4,\)"):
        load_dataset(spec, 0)
    np.savez(p, X=X, y=np.array([0, -1, 1, 0]))
    with pytest.raises(DataError, match=r"negative class label -1"):
        load_dataset(spec, 0)
    np.savez(p, X=np.array([[1], "a", None, 2], dtype=object), y=np.arange(4))
    with pytest.raises(DataError, match=r"d\.npz: array 'X' cannot be loaded without pickle"):
        load_dataset(spec, 0)
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"d\.npz: not an \.npz archive"):
        load_dataset(spec, 0)
    p.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match=r"d\.npz: not a readable \.npz"):
        load_dataset(spec, 0)
    with pytest.raises(DataError, match=r"missing\.npz: npz file not found"):
        load_dataset({"name": "npz", "path": str(tmp_path / "missing.npz")}, 0)
