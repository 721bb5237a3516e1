"""Seeing inside: mlpjit explain (equations with the user's shapes), mlpjit trace (one backprop
step by its lecture names, the hand-worked example's numbers), per-class metrics in evaluate."""

import json
import re

import numpy as np
import pytest

import mlpjit
from mlpjit import metrics as M


# --- metrics, against hand-counted examples -------------------------------------------------

def test_per_class_metrics_hand_counted():
    """Truth 0 0 0 1 1 2, predicted 0 0 1 1 2 2:
    C = [[2, 1, 0], [0, 1, 1], [0, 0, 1]];
    class 0: P = 2/2 = 1, R = 2/3, F1 = 2·1·(2/3)/(5/3) = 0.8, support 3;
    class 1: P = 1/2, R = 1/2, F1 = 0.5, support 2;  class 2: P = 1/2, R = 1, F1 = 2/3, support 1;
    accuracy 4/6; macro P = (1 + .5 + .5)/3, weighted P = (3·1 + 2·.5 + 1·.5)/6 = 0.75."""
    C = M.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    assert C.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    r = M.classification_report(C, ["a", "b", "c"])
    got = [(x["class"], x["precision"], x["recall"], x["f1"], x["support"]) for x in r["classes"]]
    assert got == [("a", 1.0, 2 / 3, pytest.approx(0.8), 3), ("b", 0.5, 0.5, 0.5, 2),
                   ("c", 0.5, 1.0, pytest.approx(2 / 3), 1)]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["macro avg"]["precision"] == pytest.approx(2 / 3)
    assert r["weighted avg"]["precision"] == pytest.approx(0.75)
    # a class never predicted: its precision is 0 (nothing to divide), as zero_division=0
    r0 = M.classification_report(M.confusion_matrix([0, 1], [0, 0], 2))
    assert r0["classes"][1]["precision"] == 0.0 and r0["classes"][1]["f1"] == 0.0


def test_metrics_agree_with_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    ours = M.classification_report(M.confusion_matrix(t, p, 4))
    theirs = sk.classification_report(t, p, output_dict=True, zero_division=0)
    for j in range(4):
        for key, skkey in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours["classes"][j][key] == pytest.approx(theirs[str(j)][skkey])
    for avg in ("macro avg", "weighted avg"):
        assert ours[avg]["f1"] == pytest.approx(theirs[avg]["f1-score"])
    y, yh = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    g = M.regression_metrics(y, yh)
    assert g["mae"] == pytest.approx(sk.mean_absolute_error(y, yh))
    assert g["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, yh)))
    assert g["r2"] == pytest.approx(sk.r2_score(y, yh, multioutput="variance_weighted"))


# --- explain -------------------------------------------------------------------------------------

def test_explain_shows_the_equations_with_the_users_shapes(mlpjit_main, cfg_file, helpers):
    cfg = helpers.spirals(units=16, batch_size=64)
    r = mlpjit_main("explain", cfg_file(cfg))
    assert r.code == 0, r.err
    out = r.out
    assert "M = X·A          (60×2)·(2×16) → (60×16)" in out   # batch 64 capped at the 60 examples
    assert "dA = Xᵀ·dS       (16×60)·(60×3) → (16×3)" in out
    assert "dX: not computed (nothing before the first layer needs it)" in out
    assert "parameters: 99" in out and "Loss: cross_entropy" in out and "Update: sgd" in out
    r = mlpjit_main("explain", cfg_file(cfg), "--batch", "4", "--markdown")
    assert r.code == 0 and "## (0) Dense(2 → 16, activation=Tanh())" in r.out and "(4×2)·(2×16)" in r.out


def test_explain_a_cnn_counts_its_multiply_adds(mlpjit_main, mini_mnist, cfg_file):
    cfg = {"name": "cnn", "data": {"name": "mnist", "path": str(mini_mnist())},
           "model": {"layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                                {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
                                {"type": "dense", "units": 10}]},
           "loss": "cross_entropy", "train": {"batch_size": 8}}
    r = mlpjit_main("explain", cfg_file(cfg))
    assert r.code == 0, r.err
    # conv: O·C·KH·KW·OH·OW = 4·1·9·26·26 = 24,336 per example, 194,688 for 8
    assert "Sᵀ = A₂·cols       (4×9)·(9×5408) → (4×5408)" in r.out
    assert "multiply-adds: forward 194.69 k, backward 194.69 k per batch" in r.out
    assert "Y[n,c,i,j] = max of the window   (8×4×26×26) → (8×4×13×13)" in r.out


def test_explain_step_prints_the_generated_source(mlpjit_main, cfg_file, helpers):
    r = mlpjit_main("explain", cfg_file(helpers.spirals()), "--step")
    assert r.code == 0 and "def train_chunk(" in r.out and "# (0) Dense(tanh)" in r.out


def test_explain_shows_max_norm_and_the_step_applies_it(mlpjit_main, cfg_file, helpers):
    cfg = helpers.spirals()
    cfg["optimizer"]["max_norm"] = 3.0
    r = mlpjit_main("explain", cfg_file(cfg))
    assert r.code == 0, r.err
    assert "max-norm after each update: each unit's incoming weights w <- w·min(1, 3/‖w‖), in 0.A, 1.A" in r.out
    r = mlpjit_main("explain", cfg_file(cfg), "--step")
    assert r.code == 0 and "max_norm_columns(l0_A, max_norm_c, mn0)  # 0.A" in r.out


# --- trace ----------------------------------------------------------------------------------------

# the numbers of tests/test_hand_worked.py's docstring: a 2-2-1 sigmoid network on x = (1, 0)
HAND = {
    ("forward", "0", "M"): [1.0, -1.0], ("forward", "0", "Y"): [0.7310585786300049, 0.2689414213699951],
    ("forward", "1", "M"): [1.1931757358900148], ("forward", "1", "S"): [1.6931757358900148],
    ("forward", "1", "Y"): [0.8446413436372657],
    ("backward", "1", "dS"): [-0.020386527088364807],
    ("backward", "1", "dA"): [-0.014903745516422068, -0.005482781571942739],
    ("backward", "1", "db"): [-0.020386527088364807],
    ("backward", "1", "dX"): [-0.04077305417672961, 0.020386527088364807],
    ("backward", "0", "dS"): [-0.008016469005846485, 0.004008234502923242],
    ("backward", "0", "dA"): [-0.008016469005846485, 0.004008234502923242, 0.0, 0.0],
    ("backward", "0", "db"): [-0.008016469005846485, 0.004008234502923242],
}


def _parse_trace(text):
    """{(phase, layer, name): [numbers]} from mlpjit trace's output."""
    out, phase, layer, name = {}, None, None, None
    for line in text.splitlines():
        if line in ("forward", "backward"):
            phase = line
            continue
        m = re.match(r"  \((\S+)\) ", line)
        if m:
            layer = m.group(1)
            continue
        m = re.match(r"    (\w+) = (.*)", line)
        if m and phase:
            name = m.group(1)
            out[(phase, layer, name)] = [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", m.group(2))]
        elif phase and name and line.startswith("      "):
            out[(phase, layer, name)] += [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", line)]
        if m and m.group(1) == "E":
            out["E"] = float(m.group(2))
    return out


def test_trace_prints_the_hand_worked_numbers(tmp_path, cfg_file, mlpjit_main):
    from test_hand_worked import build
    cfg = {"name": "hand", "data": {"name": "xor"},
           "model": {"layers": [{"type": "dense", "units": 2, "activation": "sigmoid"},
                                {"type": "dense", "units": 1, "activation": "sigmoid"}]},
           "loss": "sum_squares", "dtype": "float64", "train": {"epochs": 1, "batch_size": "full"}}
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "--quiet").code == 0
    model = build()
    model.save(run / "model.npz")
    r = mlpjit_main("trace", run, "--example", "2", "--precision", "16")   # xor point 2 is (1, 0)
    assert r.code == 0, r.err
    got = _parse_trace(r.out)
    assert got[("forward", "0", "X")] == [1.0, 0.0]
    assert got["E"] == pytest.approx(0.012068156053417076, abs=1e-15)
    for key, want in HAND.items():
        np.testing.assert_allclose(got[key], want, rtol=0, atol=1e-15, err_msg=str(key))
    assert r.out.count(" OK") == 5 and "CHECK" not in r.out


def test_trace_summarises_large_arrays_and_refuses_a_bad_example(mlpjit_main, mini_mnist, cfg_file):
    cfg = {"name": "m", "data": {"name": "mnist", "path": str(mini_mnist())},
           "model": {"layers": [{"type": "dense", "units": 32, "activation": "relu"},
                                {"type": "dropout", "p": 0.5}, {"type": "dense", "units": 10}]},
           "loss": "cross_entropy"}
    path = cfg_file(cfg)
    r = mlpjit_main("trace", path, "--example", "3", "--precision", "4")
    assert r.code == 0, r.err
    assert re.search(r"X = \(1×784\)  min 0  max 0.9\d+  norm \S+  corner", r.out)
    assert "(1) Dropout(p=0.5)" in r.out and "mask = " in r.out
    assert "CHECK" not in r.out
    r = mlpjit_main("trace", path, "--example", "100000")
    assert r.code == 2 and "--example 100000: the training split has" in r.err and r.err.count("\n") == 1


# --- evaluate ------------------------------------------------------------------------------------

def test_evaluate_prints_the_per_class_table_and_json(mlpjit_main, cfg_file, helpers, tmp_path):
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(helpers.spirals(epochs=3)), "--out", run, "--quiet").code == 0
    r = mlpjit_main("evaluate", run)
    assert r.code == 0, r.err
    assert "precision    recall  f1-score   support" in r.out and "weighted avg" in r.out
    assert "confusion matrix (rows: true class, columns: predicted)" in r.out
    r = mlpjit_main("evaluate", run, "--json")
    doc = json.loads(r.out)
    test = doc["splits"]["test"]
    C = np.array(test["per_class"]["confusion_matrix"])
    assert C.sum() == test["examples"] == 30
    assert np.trace(C) / C.sum() == pytest.approx(test["accuracy"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_confusion_matrix"] == C.tolist() and summary["test_classes"] == [0, 1, 2]


def test_evaluate_a_regression(mlpjit_main, cfg_file, sine_cfg, tmp_path):
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(sine_cfg()), "--out", run, "--quiet").code == 0
    r = mlpjit_main("evaluate", run, "--json")
    g = json.loads(r.out)["splits"]["test"]["regression"]
    assert set(g) == {"mae", "rmse", "r2", "n"} and g["rmse"] >= g["mae"] > 0
    assert json.loads((run / "summary.json").read_text())["test_regression"]["n"] == g["n"]
    r = mlpjit_main("evaluate", run)
    assert "on the test split: MAE" in r.out and "R²" in r.out
