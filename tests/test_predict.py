"""One prediction path: ``model.predict`` in Python gives what ``mlpjit predict`` prints, from
the same raw inputs (pixels 0-255, a table's raw columns), after the loss's output transform
(probabilities, or values in the target's units); regression targets scaled in training are
scaled back."""

import csv
import io
import json

import numpy as np
import pytest

import mlpjit
from mlpjit.config import load_config, resolved_dict
from mlpjit.data import load_dataset
from mlpjit.errors import DataError
from mlpjit.packaged import CONFIGS
from mlpjit.trainer import Trainer

SHIPPED = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
SMALL = {"mnist": ["data.subset=200", "data.test_subset=20", "data.validation=20"],
         "spirals": ["data.points=60", "data.test_points=20", "data.validation=0"],
         "sine": ["data.points=60", "data.test_points=20", "data.validation=0"]}


def _read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@pytest.mark.parametrize("name", SHIPPED)
def test_python_and_the_cli_predict_alike_for_every_shipped_config(name, tmp_path, mlpjit_main):
    """A shipped config's model (as the trainer builds it: its metadata, its x_scale) saved
    untrained: the CLI's classes and probabilities (or values) equal model.predict's, from the
    same raw test inputs."""
    path = CONFIGS / f"{name}.yaml"
    source = resolved_dict(load_config(path))["data"]["name"]
    cfg = resolved_dict(load_config(path, SMALL.get(source, [])))
    trainer = Trainer(cfg, tmp_path / "run", log=lambda *a, **k: None, progress=False)
    trainer.model.save(tmp_path / "model.npz")
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    X = ds.X_test[:7]                                  # raw: uint8 pixels for MNIST
    np.save(tmp_path / "x.npy", X)
    model = mlpjit.Sequential.load(tmp_path / "model.npz")
    r = mlpjit_main("predict", tmp_path / "model.npz", tmp_path / "x.npy")
    assert r.code == 0, r.text
    header, rows = _read_csv(r.out)
    P = model.predict(X)
    # the layers alone, on inputs as the layers take them: what predict must equal after the transform
    Z = np.asarray(model.forward(ds.scaled(X).reshape((len(X),) + tuple(model.metadata["input_shape"])),
                                 training=False), dtype=np.float64)
    if ds.task == "classification":
        probs = np.array([[float(v) for v in row[1:]] for row in rows])
        if cfg["loss"] == "binary_cross_entropy":
            expected = 1 / (1 + np.exp(-Z))
            np.testing.assert_allclose(P, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(probs[:, 1:], P, atol=2e-6)
        else:
            expected = np.exp(Z - Z.max(1, keepdims=True))
            expected /= expected.sum(1, keepdims=True)
            np.testing.assert_allclose(P, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(probs, P, atol=2e-6)
        assert [row[0] for row in rows] == [str(c) for c in model.predict_classes(X)]
        np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0, rtol=1e-6)
    else:
        values = np.array([[float(v) for v in row] for row in rows])
        np.testing.assert_allclose(P, Z, rtol=1e-5)
        np.testing.assert_allclose(values, P, rtol=1e-5, atol=1e-6)


def test_mnist_raw_pixels_give_probabilities_not_logits(tmp_path):
    """The issue's case: model.predict on raw 0-255 pixels of an MNIST model applies the
    recorded x_scale = 1/255 and gives probabilities."""
    cfg = resolved_dict(load_config(CONFIGS / "mnist_softmax.yaml", SMALL["mnist"]))
    model = Trainer(cfg, tmp_path / "run", log=lambda *a, **k: None, progress=False).model
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    P = model.predict(ds.X_test[:5])
    assert model.metadata["x_scale"] == pytest.approx(1 / 255)
    assert P.min() >= 0 and np.allclose(P.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.logits(ds.X_test[:5]),
                               model.forward(ds.scaled(ds.X_test[:5]).astype(np.float32), training=False), rtol=1e-6)


def test_a_never_trained_model_predicts_its_raw_outputs_and_1d_input_is_refused():
    model = mlpjit.Sequential([mlpjit.Dense(2, 3, seed=0, dtype=np.float64)])
    X = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(model.predict(X), model.forward(X))
    with pytest.raises(DataError, match=r"expects a batch \(N, ...\), got shape \(2,\); one example: "
                                        r"X.reshape\(1, -1\)"):
        model.predict(np.ones(2))
    with pytest.raises(ValueError, match="not a trained classifier"):
        model.predict_classes(X)


# --- tables: raw columns from Python as from the CLI --------------------------------------------

from test_tables import TABLE   # the fruit table: numbers, a text column, string labels


class FrameLike:
    """The part of a pandas DataFrame that predict reads (pandas is not a dependency)."""

    def __init__(self, columns):
        self.columns = list(columns)
        self._cols = columns

    def itertuples(self, index=False):
        return zip(*self._cols.values())


@pytest.fixture(scope="module")
def fruit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fruit")
    (tmp / "t.csv").write_text(TABLE)
    cfg = {"name": "fruit", "data": {"name": "csv", "train": str(tmp / "t.csv"), "target": "kind"},
           "model": {"layers": [{"type": "standardize"}, {"type": "dense", "units": 2}]},
           "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.05},
           "train": {"epochs": 30, "batch_size": 4}}
    from conftest import write_cfg
    from mlpjit.cli import main
    try:
        main(["train", str(write_cfg(tmp / "c.yaml", cfg)), "--out", str(tmp / "run"), "-q"])
    except SystemExit as e:
        assert not e.code
    return tmp


def test_a_table_model_takes_its_raw_columns_as_a_csv_a_dict_or_a_dataframe(fruit, tmp_path, mlpjit_main):
    rows = tmp_path / "in.csv"
    rows.write_text("size,color,weight\n1.3,red,130\n2.6,blue,2600\n2.2,green,2100\n")
    r = mlpjit_main("predict", fruit / "run" / "model.npz", rows)
    assert r.code == 0, r.text
    header, cli_rows = _read_csv(r.out)
    assert header == ["class", "p_apple", "p_melon"]
    model = mlpjit.Sequential.load(fruit / "run" / "model.npz")
    columns = {"size": [1.3, 2.6, 2.2], "color": ["red", "blue", "green"], "weight": [130, 2600, 2100]}
    for X in (rows, str(rows), columns, FrameLike(columns)):
        assert model.predict_classes(X).tolist() == [row[0] for row in cli_rows] == ["apple", "melon", "melon"]
        np.testing.assert_allclose(model.predict(X), [[float(v) for v in row[1:]] for row in cli_rows], atol=2e-6)
    assert model.predict_classes(columns, names=False).tolist() == [0, 1, 1]


def test_unseen_categories_and_empty_cells_at_prediction(fruit, tmp_path, mlpjit_main):
    model_path = fruit / "run" / "model.npz"
    model = mlpjit.Sequential.load(model_path)
    odd = {"size": [1.3, 2.6], "color": ["purple", "blue"], "weight": [130, 2600]}
    with pytest.raises(DataError, match=r"category 'purple' does not occur in the training data .*"
                                        r"pass --unknown zeros to mlpjit predict, or unknown='zeros' to predict\(\)"):
        model.predict(odd)
    assert model.predict(odd, unknown="zeros").shape == (2, 2)
    rows = tmp_path / "in.csv"
    rows.write_text("size,color,weight\n1.3,purple,130\n2.6,,2600\n2.2,green,2100\n")
    r = mlpjit_main("predict", model_path, rows, "--unknown", "zeros", "--missing", "drop")
    assert r.code == 0, r.text
    header, out = _read_csv(r.out)
    assert header[0] == "line" and [row[0] for row in out] == ["2", "4"]      # line 3 had an empty cell
    assert "2 rows predicted (rows with an empty cell left out" in r.err
    r = mlpjit_main("predict", model_path, rows, "--unknown", "zeros")
    assert r.code == 2 and "line 3, column 'color': empty cell" in r.err and "--missing drop" in r.err
    # the options are for tables only
    xs = tmp_path / "x.npy"
    np.save(xs, np.zeros((2, 2)))
    mlpjit.Sequential([mlpjit.Dense(2, 3, seed=0)]).save(tmp_path / "plain.npz")
    r = mlpjit_main("predict", tmp_path / "plain.npz", xs, "--unknown", "zeros")
    assert r.code == 2 and "--unknown: only for a model trained on a table" in r.err


def test_predict_out_says_what_it_wrote(fruit, tmp_path, mlpjit_main):
    rows = tmp_path / "in.csv"
    rows.write_text("size,color,weight\n1.3,red,130\n")
    r = mlpjit_main("predict", fruit / "run" / "model.npz", rows, "--out", tmp_path / "p.csv")
    assert r.code == 0 and r.out == f"wrote 1 predictions to {tmp_path / 'p.csv'}\n", r.text


# --- regression targets in their own units ----------------------------------------------------------

def test_a_regression_target_is_scaled_in_training_and_back_in_prediction(tmp_path, mlpjit_main, cfg_file):
    """price ≈ 2000 + 150·area: with standardize first, the target is standardized on the
    training rows (m, s stored in the model), the losses are in scaled units, and predictions
    come back in dollars, in a column named after the target."""
    rng = np.random.default_rng(0)
    area = rng.uniform(0, 10, 240)
    price = 2000 + 150 * area + rng.normal(0, 5, 240)
    text = "area,price\n" + "".join(f"{a:.5f},{p:.3f}\n" for a, p in zip(area, price))
    (tmp_path / "t.csv").write_text(text)
    cfg = {"name": "price", "data": {"name": "csv", "train": str(tmp_path / "t.csv"), "target": "price",
                                     "validation": 40},
           "model": {"layers": [{"type": "standardize"}, {"type": "dense", "units": 1}]},
           "loss": "mse", "optimizer": {"type": "adam", "lr": 0.05}, "train": {"epochs": 60, "batch_size": 16}}
    assert mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "run", "-q").code == 0
    model = mlpjit.Sequential.load(tmp_path / "run" / "model.npz")
    ds = load_dataset(dict(resolved_dict(load_config(tmp_path / "run" / "config.yaml"))["data"]), 0)
    m, s = ds.y_train.mean(), ds.y_train.std()
    assert model.metadata["y_mean"] == [pytest.approx(m)] and model.metadata["y_scale"] == [pytest.approx(s)]
    X = np.array([[0.0], [5.0], [10.0]])
    np.testing.assert_allclose(model.predict(X), model.logits(X) * s + m, rtol=1e-6)
    np.testing.assert_allclose(model.predict(X)[:, 0], [2000, 2750, 3500], rtol=0.01)
    # the CLI: the same numbers, in a column named price
    (tmp_path / "in.csv").write_text("area\n0\n5\n10\n")
    r = mlpjit_main("predict", tmp_path / "run" / "model.npz", tmp_path / "in.csv")
    header, rows = _read_csv(r.out)
    assert header == ["price"]
    np.testing.assert_allclose([float(row[0]) for row in rows], model.predict(X)[:, 0], rtol=1e-5)
    # the validation loss is in scaled units (an MSE of 1 is the mean's), and evaluate agrees
    last = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["val_loss"] < 0.05
    r = mlpjit_main("evaluate", tmp_path / "run", "--json")
    got = json.loads(r.out)["splits"]["val"]
    assert got["loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert got["regression"]["r2"] > 0.99 and got["regression"]["mae"] < 20   # in dollars
    # off: the target as it is
    cfg["data"]["scale_target"] = False
    assert mlpjit_main("train", cfg_file(cfg, "off.yaml"), "--out", tmp_path / "off", "-q").code == 0
    assert "y_scale" not in mlpjit.Sequential.load(tmp_path / "off" / "model.npz").metadata
    # a classification target cannot be scaled
    bad = {**cfg, "data": {"name": "spirals", "points": 30, "test_points": 10, "scale_target": True},
           "loss": "cross_entropy"}
    r = mlpjit_main("config", "check", cfg_file(bad, "bad.yaml"))
    assert r.code == 2 and "scale_target" in r.err


def test_fit_from_code_scales_a_regression_target_after_standardize():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 10, (200, 1))
    y = 5000 + 300 * X[:, 0]
    model = mlpjit.Sequential([mlpjit.Standardize(dtype=np.float64), mlpjit.Dense(1, 1, dtype=np.float64, seed=0)])
    model.fit(X, y, loss="mse", optimizer={"type": "adam", "lr": 0.05}, epochs=80, batch_size=20, progress=False)
    assert model.metadata["y_mean"] == [pytest.approx(y.mean())]
    np.testing.assert_allclose(model.predict(np.array([[2.0]]))[0, 0], 5600, rtol=0.01)
    model.fit(X, y, epochs=1, progress=False)            # a second fit keeps the first fit's scale
    assert model.metadata["y_mean"] == [pytest.approx(y.mean())]


# --- evaluate on a data file --------------------------------------------------------------------------

def test_evaluate_takes_a_data_file(fruit, tmp_path, mlpjit_main):
    """--data FILE.csv: a table model's raw CSV with its target column, encoded with the model's
    stored encoding (not one learned from this file: a file with fewer colours must not shift
    the one-hot columns); --data FILE.npz: X, y as they are."""
    model_path = fruit / "run" / "model.npz"
    rows = tmp_path / "eval.csv"
    rows.write_text("size,color,weight,kind\n1.3,red,130,apple\n2.6,red,2600,melon\n1.1,red,95,apple\n")
    r = mlpjit_main("evaluate", model_path, "--data", rows, "--json")
    assert r.code == 0, r.text
    got = json.loads(r.out)["splits"]["test"]
    model = mlpjit.Sequential.load(model_path)
    predicted = model.predict_classes(rows)
    assert got["examples"] == 3
    assert got["accuracy"] == pytest.approx(np.mean(predicted == np.array(["apple", "melon", "apple"])))
    bad = tmp_path / "bad.csv"
    bad.write_text("size,color,weight,kind\n1.3,red,130,cherry\n")
    r = mlpjit_main("evaluate", model_path, "--data", bad)
    assert r.code == 2 and "label 'cherry' is not one of the model's classes (apple, melon)" in r.err
    # an npz of X, y for a model trained on arrays
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2)); y = (X[:, 0] > 0).astype(int)
    plain = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0)])
    plain.fit(X, y, loss="cross_entropy", optimizer={"type": "adam", "lr": 0.05}, epochs=20, progress=False)
    plain.save(tmp_path / "plain.npz")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    r = mlpjit_main("evaluate", tmp_path / "plain.npz", "--data", tmp_path / "d.npz", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["splits"]["train"]["accuracy"] == pytest.approx(plain.evaluate(X, y)["accuracy"])
    r = mlpjit_main("evaluate", tmp_path / "plain.npz", "--data", rows)
    assert r.code == 2 and "this model was not trained on a table" in r.err
