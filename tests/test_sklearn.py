"""mlpjit.sklearn: scikit-learn's estimator checks, Pipeline / GridSearchCV / cross_val_score,
its MLP's parameters and fitted attributes, model files the CLI reads, and bad parameters."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from mlpjit.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor()], ids=["classifier", "regressor"])
def test_scikit_learns_estimator_checks_pass(estimator):
    # every check runs; none is declared an expected failure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"]).splitlines()[0]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    assert len(results) > 40


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0)


def test_a_pipeline_reaches_scikit_learns_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    ours = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0)).fit(Xtr, ytr)
    theirs = make_pipeline(StandardScaler(), SkMLPClassifier(hidden_layer_sizes=(64,), random_state=0)).fit(Xtr, ytr)
    assert ours.score(Xte, yte) >= theirs.score(Xte, yte) - 0.01
    clf = ours[-1]
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)]
    assert [b.shape for b in clf.intercepts_] == [(64,), (10,)]
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert clf.out_activation_ == "softmax" and clf.n_layers_ == 3 and clf.n_outputs_ == 10
    assert clf.n_iter_ == len(clf.loss_curve_) and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    proba = clf.predict_proba(StandardScaler().fit(Xtr).transform(Xte))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_grid_search_and_cross_validation(digits):
    Xtr, _, ytr, _ = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)],
                               "mlpclassifier__solver": ["sgd", "adam"]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(Xtr, ytr)
        X, y = make_regression(200, 5, noise=0.1, random_state=0)
        scores = cross_val_score(make_pipeline(StandardScaler(), MLPRegressor(
            learning_rate_init=0.01, max_iter=100, random_state=0)), X, y / y.std(), cv=3)
    assert grid.best_score_ > 0.85 and set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes",
                                                                  "mlpclassifier__solver"}
    assert scores.mean() > 0.5


def test_stopping_early_stopping_warm_start_and_partial_fit(digits):
    Xtr, Xte, ytr, yte = digits
    sc = StandardScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    es = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3, random_state=0).fit(Xtr, ytr)
    assert es.best_loss_ is None and len(es.validation_scores_) == es.n_iter_
    assert es.best_validation_score_ == max(es.validation_scores_) and es.n_iter_ < 200
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        short = MLPClassifier(max_iter=3, random_state=0).fit(Xtr, ytr)
    assert short.n_iter_ == 3
    warm = MLPClassifier(max_iter=3, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(Xtr, ytr)
        first = warm.coefs_[0].copy()
        warm.fit(Xtr, ytr)                                   # goes on from the same weights
    assert warm.n_iter_ == 6 and not np.array_equal(first, warm.coefs_[0])
    inc = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        inc.partial_fit(Xtr[:50], ytr[:50])
    scores = []
    for start in range(0, len(Xtr), 100):
        inc.partial_fit(Xtr[start:start + 100], ytr[start:start + 100], classes=np.arange(10))
        scores.append(inc.score(Xte, yte))
    assert inc.n_iter_ == -(-len(Xtr) // 100) and scores[-1] > scores[0] + 0.2
    # same random_state, same numbers; binary and multilabel targets
    a = MLPClassifier(max_iter=20, random_state=3).fit(Xtr, ytr % 2)
    b = MLPClassifier(max_iter=20, random_state=3).fit(Xtr, ytr % 2)
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))
    assert a.out_activation_ == "logistic" and a.predict_proba(Xte).shape == (len(Xte), 2)
    Y = np.stack([ytr % 2, ytr > 4], axis=1).astype(int)
    ml = MLPClassifier(max_iter=50, random_state=0).fit(Xtr, Y)
    assert ml.predict(Xte).shape == (len(Xte), 2)


@pytest.mark.parametrize("params,message", [
    ({"hidden_layer_sizes": (0,)}, r"hidden_layer_sizes must be > 0"),
    ({"alpha": -1.0}, r"The 'alpha' parameter of MLPClassifier must be a float in the range \[0.0, inf\)\. Got -1.0 instead\."),
    ({"solver": "lbfgs"}, r"The 'solver' parameter of MLPClassifier: 'lbfgs' is not offered.*solver='adam' or 'sgd'"),
    ({"solver": "newton"}, r"The 'solver' parameter of MLPClassifier must be a str among \{'adam', 'sgd'\}"),
    ({"activation": "swish"}, r"The 'activation' parameter"),
    ({"batch_size": 0}, r"The 'batch_size' parameter of MLPClassifier must be an int in the range \[1, inf\)"),
    ({"momentum": 1.5}, r"The 'momentum' parameter"),
    ({"momentum": 1.0, "solver": "sgd"}, r"The 'momentum' parameter of MLPClassifier must be < 1 with solver='sgd'"),
    ({"learning_rate": "optimal"}, r"The 'learning_rate' parameter of MLPClassifier must be a str among "
                                   r"\{'constant', 'invscaling', 'adaptive'\}"),
    ({"learning_rate_init": 0}, r"The 'learning_rate_init' parameter"),
    ({"dropout": 1.0}, r"The 'dropout' parameter"),
    ({"dtype": "int8"}, r"The 'dtype' parameter"),
])
def test_bad_parameters_are_value_errors_naming_the_parameter(params, message, digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(Xtr[:20], ytr[:20])


def test_a_saved_estimator_is_a_model_the_cli_reads(tmp_path, digits, mlpjit_main):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr / 16.0, ytr)
    clf.save(tmp_path / "model.npz")
    np.savetxt(tmp_path / "x.csv", Xte / 16.0, delimiter=",")
    r = mlpjit_main("predict", tmp_path / "model.npz", tmp_path / "x.csv", "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    predicted = [int(line.split(",")[0]) for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert predicted == list(clf.predict(Xte / 16.0))
    np.savez(tmp_path / "d.npz", X=Xtr / 16.0, y=ytr, X_test=Xte / 16.0, y_test=yte)
    r = mlpjit_main("evaluate", tmp_path / "model.npz", "--data", f"npz,path={tmp_path / 'd.npz'}")
    assert r.code == 0 and f"test_accuracy {100 * clf.score(Xte / 16.0, yte):.2f}%" in r.out, r.out + r.err


def test_the_core_does_not_need_scikit_learn():
    import subprocess
    import sys
    code = ("import sys; sys.modules['sklearn'] = None; import mlpjit, mlpjit.cli, mlpjit.trainer; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['sklearn'] = None; import mlpjit.sklearn"],
                         capture_output=True, text=True, timeout=120)
    assert 'pip install "mlpjit[sklearn]"' in out.stderr


def test_a_new_width_or_data_of_the_same_structure_loads_the_step_it_compiled(monkeypatch, digits):
    """The estimator trains through mlpjit's training core; its step is named by the structure
    (Dense(relu) → Dense), so GridSearchCV over hidden_layer_sizes compiles one step, once."""
    import mlpjit.step
    monkeypatch.setattr(mlpjit.step, "_LOADED", {})   # as in a new process
    X, _, y, _ = digits
    built = []
    real = mlpjit.step.CompiledStep.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        built.append(self.fn)
    monkeypatch.setattr(mlpjit.step.CompiledStep, "__init__", spy)

    def compiled():
        return len(built[-1].signatures), sum(built[-1].stats.cache_misses.values())
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0).fit(X[:300], y[:300])
    after_first = compiled()
    MLPClassifier(hidden_layer_sizes=(40,), max_iter=2, random_state=1, batch_size=32).fit(X[300:700], y[300:700])
    assert len(mlpjit.step._LOADED) == 1 and built[1] is built[0]
    assert compiled() == after_first                       # nothing compiled the second time
