"""Tables as people bring them: the standardize layer, CSV files with text columns and empty
cells, and mlpjit predict on the raw CSV."""

import csv

import numpy as np
import pytest

import mlpjit
from mlpjit.data import load_dataset
from mlpjit.errors import DataError
from mlpjit.gradcheck import gradcheck
from mlpjit.optim import SGD
from mlpjit.tables import TableEncoding, read_csv


# --- the standardize layer -----------------------------------------------------------------

def test_standardize_hand_worked():
    """Columns (1, 3) and (5, 5): μ = (2, 5), σ = (1, 0 → 1); (2, 6) ↦ (0, 1); dX = dY/σ."""
    s = mlpjit.Standardize(dtype=np.float64)
    s.adapt(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(s.mean, [2.0, 5.0])
    np.testing.assert_array_equal(s.std, [1.0, 1.0])
    np.testing.assert_array_equal(s.forward(np.array([[2.0, 6.0]])), [[0.0, 1.0]])
    s.adapt(np.array([[0.0, 1.0], [4.0, 1.0]]))                       # σ = (2, 1)
    s.forward(np.array([[1.0, 1.0]]), training=True)
    np.testing.assert_array_equal(s.backward(np.array([[1.0, 3.0]])), [[0.5, 3.0]])


def test_standardize_gradient_check_and_compiled_step():
    from test_step import _layer_path
    from mlpjit.step import CompiledStep
    rng = np.random.default_rng(0)
    X = rng.normal(50.0, 30.0, (40, 4)) * np.array([1, 100, 0.01, 1])
    y = rng.integers(0, 3, 40)

    def build(dtype):
        m = mlpjit.Sequential([mlpjit.Standardize(dtype=dtype), mlpjit.Dense(4, 5, activation="tanh", dtype=dtype, seed=1),
                               mlpjit.Dense(5, 3, dtype=dtype, seed=2)])
        m.adapt(X)
        return m
    errors = gradcheck(build(np.float64), "cross_entropy", X[:6], y[:6])
    assert max(errors.values()) < 1e-6, errors
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        m1, m2 = build(dtype), build(dtype)
        o1, o2 = SGD(m1.parameters(), lr=0.1), SGD(m2.parameters(), lr=0.1)
        _layer_path(m1, mlpjit.losses.get("cross_entropy"), o1, X, y, np.arange(40), 8, 0.1, {})
        step = CompiledStep(m2, mlpjit.losses.get("cross_entropy"), o2, X, y, 1.0, "classification", 8, None)
        acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
               "layer_norms": {k: 0.0 for k in step.weight_names}}
        assert step.run(np.arange(40), 0, 5, 0.1, acc) == (5, None)
        assert "standardize_forward(X0, l0_mean, l0_std, Y0)" in step.source
        for (name, a, _), (_, b, _) in zip(m1.parameters(), m2.parameters()):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max(), err_msg=name)


def test_standardize_before_adapting_and_not_first(cfg_file, mlpjit_main):
    with pytest.raises(RuntimeError, match="call adapt"):
        mlpjit.Standardize().forward(np.ones((2, 3)))
    cfg = {"name": "s", "data": {"name": "spirals", "points": 30, "test_points": 10},
           "model": {"layers": [{"type": "dense", "units": 4}, {"type": "standardize"}, {"type": "dense", "units": 3}]},
           "loss": "cross_entropy"}
    r = mlpjit_main("config", "check", cfg_file(cfg))
    assert r.code == 2 and "model.layers.1: standardize must be the first layer" in r.err, r.err


# --- CSV files as they come ----------------------------------------------------------------------

TABLE = """size,color,weight,kind
1.0,red,100,apple
2.0,green,2000,melon
1.5,red,150,apple
2.5,blue,2500,melon
1.2,green,120,apple
3.0,blue,3100,melon
1.1,red,90,apple
2.8,green,2800,melon
"""


def write(path, text):
    path.write_text(text)
    return path


def test_text_columns_become_one_hot_features_learned_from_the_training_file(tmp_path):
    train = write(tmp_path / "t.csv", TABLE)
    test = write(tmp_path / "test.csv", "size,color,weight,kind\n1.3,blue,130,apple\n")
    d = load_dataset({"name": "csv", "train": str(train), "test": str(test), "target": "kind"}, 0)
    enc = TableEncoding.from_json(d.encoding)
    assert enc.feature_names == ["size", "color=blue", "color=green", "color=red", "weight"]
    np.testing.assert_array_equal(d.X_train[0], [1.0, 0, 0, 1, 100])
    np.testing.assert_array_equal(d.X_test, [[1.3, 1, 0, 0, 130]])
    assert d.class_names == ["apple", "melon"] and list(d.y_train[:2]) == [0, 1]


def test_unseen_categories_empty_cells_and_mixed_columns(tmp_path):
    train = write(tmp_path / "t.csv", TABLE)
    test = write(tmp_path / "test.csv", "size,color,weight,kind\n1.3,purple,130,apple\n")
    spec = {"name": "csv", "train": str(train), "test": str(test), "target": "kind"}
    with pytest.raises(DataError, match=r"test\.csv line 2, column 'color': category 'purple' does not "
                                        r"occur in the training data \(categories: blue, green, red; or set data\.unknown: zeros\)"):
        load_dataset(spec, 0)
    d = load_dataset({**spec, "unknown": "zeros"}, 0)
    np.testing.assert_array_equal(d.X_test, [[1.3, 0, 0, 0, 130]])
    holes = write(tmp_path / "h.csv", TABLE.replace("1.5,red,150", "1.5,,150"))
    with pytest.raises(DataError, match=r"h\.csv line 4, column 'color': empty cell \(or set data\.missing: drop"):
        load_dataset({"name": "csv", "train": str(holes), "target": "kind"}, 0)
    d = load_dataset({"name": "csv", "train": str(holes), "target": "kind", "missing": "drop"}, 0)
    assert d.n_train == 7
    mixed = write(tmp_path / "m.csv", TABLE.replace("2.0,green", "two,green"))
    with pytest.raises(DataError, match=r"m\.csv line 3, column 'size': 'two' is not a number \(the column holds "
                                        r"7 numbers and 1 text cells; list it under data\.categorical"):
        load_dataset({"name": "csv", "train": str(mixed), "target": "kind"}, 0)
    d = load_dataset({"name": "csv", "train": str(mixed), "target": "kind", "categorical": ["size"]}, 0)
    assert d.n_features == 8 + 3 + 1


def _cancer_csvs(tmp_path):
    """scikit-learn's breast-cancer table (30 raw features from 0.001 to 4,000) with a text
    column, written as train and test CSVs, as a user would: examples/tabular.py's tables."""
    pytest.importorskip("sklearn")
    from mlpjit.experiments.extra import _load_example
    (train, test, raw), (Xtr, ytr, Xte, yte) = _load_example("tabular").write_tables(tmp_path)
    numeric = slice(0, Xtr.shape[1] - 1)   # the 30 features, without the text column
    return (train, test, raw, Xtr[:, numeric].astype(float), ytr, Xte[:, numeric].astype(float), yte)


def test_a_raw_csv_trains_with_standardize_to_the_pipelines_accuracy(tmp_path, cfg_file, mlpjit_main):
    train, test, raw, Xtr, ytr, Xte, yte = _cancer_csvs(tmp_path)
    cfg = {"name": "cancer", "seed": 0,
           "data": {"name": "csv", "train": str(train), "test": str(test), "target": "diagnosis"},
           "model": {"layers": [{"type": "standardize"}, {"type": "dense", "units": 16, "activation": "relu"},
                                {"type": "dense", "units": 2}]},
           "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
           "train": {"epochs": 30, "batch_size": 32}}
    r = mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "run", "--quiet")
    assert r.code == 0, r.err
    import json
    ours = json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["test_accuracy"]
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), random_state=0,
                                                             max_iter=300)).fit(Xtr, ytr)
    theirs = pipe.score(Xte, yte)
    assert ours >= theirs - 0.02, (ours, theirs)
    # without standardize the raw features train to the share of the majority class (62.9%)
    cfg["model"]["layers"] = cfg["model"]["layers"][1:]
    assert mlpjit_main("train", cfg_file(cfg, "raw.yaml"), "--out", tmp_path / "raw", "--quiet").code == 0
    raw_acc = json.loads((tmp_path / "raw" / "summary.json").read_text())["final"]["test_accuracy"]
    assert raw_acc < 0.7 < ours
    model = mlpjit.Sequential.load(tmp_path / "run" / "model.npz")
    assert isinstance(model.layers[0], mlpjit.Standardize) and model.layers[0].std.max() > 100
    # predict on the raw test CSV, with and without the target column, reproduces the accuracy
    r = mlpjit_main("predict", tmp_path / "run" / "model.npz", test, "--out", tmp_path / "p.csv")
    assert r.code == 0 and f"accuracy on the {len(yte)} rows" in r.err and f"{100 * ours:.2f}%" in r.err, r.err
    r2 = mlpjit_main("predict", tmp_path / "run" / "model.npz", raw)
    assert r2.code == 0, r2.err
    rows = r2.out.splitlines()
    assert rows[0] == "class,p_benign,p_malignant"
    assert np.mean([p.split(",")[0] == t for p, t in zip(rows[1:], yte)]) == pytest.approx(ours)
    # a column missing at predict time, or a category the training file lacks: one line
    text = raw.read_text().replace(",color", ",colour", 1)
    bad = write(tmp_path / "bad.csv", text)
    r3 = mlpjit_main("predict", tmp_path / "run" / "model.npz", bad)
    assert r3.code == 2 and "missing column(s) color; unexpected column(s) colour" in r3.err, r3.err


def test_a_text_column_in_an_npz_is_one_line(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"array 'X' has unsupported dtype <U1 \(need numbers"):
        load_dataset({"name": "npz", "path": str(tmp_path / "d.npz")}, 0)


def test_read_csv_names_its_problems(tmp_path):
    with pytest.raises(DataError, match=r"x\.csv line 3: 2 fields but the header has 4 columns"):
        read_csv(write(tmp_path / "x.csv", "a,b,c,d\n1,2,3,4\n1,2\n"), str(tmp_path / "x.csv"))


def test_predict_on_a_csv_with_an_empty_cell_refuses_rather_than_drop_the_row(mlpjit_main, cfg_file, tmp_path):
    """Training may drop rows with an empty cell (data.missing: drop); predicting must give a
    row for every input row, so an empty cell there is one line naming it."""
    train = write(tmp_path / "t.csv", TABLE)
    cfg = {"name": "holes", "data": {"name": "csv", "train": str(train), "target": "kind", "missing": "drop"},
           "model": {"layers": [{"type": "dense", "units": 2}]}, "loss": "cross_entropy",
           "optimizer": {"type": "sgd", "lr": 0.1}, "train": {"epochs": 1, "batch_size": 4}}
    assert mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "run", "-q").code == 0
    rows = write(tmp_path / "in.csv", "size,color,weight\n1.3,red,130\n1.5,,150\n2.0,green,200\n")
    res = mlpjit_main("predict", tmp_path / "run" / "model.npz", rows, "--out", tmp_path / "p.csv")
    assert res.code == 2 and "Traceback" not in res.text
    assert res.err.strip() == (f"error: {rows}: line 3 has an empty cell, which training dropped "
                               f"(data.missing: drop); fill it, or drop them here (mlpjit predict --missing drop; "
                               f"predict(..., missing='drop'))")
    assert not (tmp_path / "p.csv").exists()
