"""mlpjit.sklearn against scikit-learn's own MLP: every parameter of its signature, accepted with
the same default and meaning or refused in one line; its learning-rate schedules epoch by
epoch; and pipelines (scaler → estimator) saved as one model file that the CLI predicts with."""

import inspect
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler  # noqa: E402

import mlpjit  # noqa: E402
from mlpjit.sklearn import MLPClassifier, MLPRegressor, _BaseMLP, _per_feature, save  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PAIRS = {"classifier": (SkMLPClassifier, MLPClassifier), "regressor": (SkMLPRegressor, MLPRegressor)}

# (parameter, value, other parameters, verdict): "ok" both fit; "refused" both raise ValueError;
# "ours" scikit-learn fits, mlpjit refuses (a value it cannot train with)
CASES = [
    ("hidden_layer_sizes", (3, 2), {}, "ok"),
    ("hidden_layer_sizes", 5, {}, "ok"),
    ("hidden_layer_sizes", (0,), {}, "refused"),
    ("activation", "tanh", {}, "ok"),
    ("activation", "swish", {}, "refused"),
    ("solver", "sgd", {}, "ok"),
    ("solver", "lbfgs", {}, "ours"),
    ("solver", "newton", {}, "refused"),
    ("alpha", 0.0, {}, "ok"),
    ("alpha", -1.0, {}, "refused"),
    ("batch_size", 7, {}, "ok"),
    ("batch_size", 0, {}, "refused"),
    ("learning_rate", "invscaling", {"solver": "sgd"}, "ok"),
    ("learning_rate", "adaptive", {"solver": "sgd"}, "ok"),
    ("learning_rate", "adaptive", {}, "ok"),                     # adam: ignored
    ("learning_rate", "optimal", {}, "refused"),
    ("learning_rate_init", 0.01, {}, "ok"),
    ("learning_rate_init", 0.0, {}, "refused"),
    ("power_t", 0.25, {"solver": "sgd", "learning_rate": "invscaling"}, "ok"),
    ("power_t", -1.0, {}, "refused"),
    ("max_iter", 1, {}, "ok"),
    ("max_iter", 0, {}, "refused"),
    ("shuffle", False, {}, "ok"),
    ("shuffle", "yes", {}, "refused"),
    ("random_state", 7, {}, "ok"),
    ("random_state", "seven", {}, "refused"),
    ("tol", 0.0, {}, "ok"),
    ("tol", -1.0, {}, "refused"),
    ("verbose", True, {}, "ok"),
    ("warm_start", True, {}, "ok"),
    ("warm_start", "no", {}, "refused"),
    ("momentum", 0.5, {"solver": "sgd"}, "ok"),
    ("momentum", 1.0, {}, "ok"),                                 # adam: not used
    ("momentum", 1.0, {"solver": "sgd"}, "ours"),
    ("momentum", 1.5, {}, "refused"),
    ("nesterovs_momentum", False, {"solver": "sgd"}, "ok"),
    ("early_stopping", True, {}, "ok"),
    ("validation_fraction", 0.25, {"early_stopping": True}, "ok"),
    ("validation_fraction", 1.0, {}, "refused"),
    ("beta_1", 0.5, {}, "ok"),
    ("beta_1", 1.0, {}, "refused"),
    ("beta_2", 0.9, {}, "ok"),
    ("beta_2", -0.1, {}, "refused"),
    ("epsilon", 1e-6, {}, "ok"),
    ("epsilon", 0.0, {}, "refused"),
    ("n_iter_no_change", np.inf, {}, "ok"),
    ("n_iter_no_change", 0, {}, "refused"),
    ("max_fun", 1, {}, "ok"),                                    # lbfgs's only: no effect
    ("max_fun", 0, {}, "refused"),
    ("loss", "squared_error", {}, "ok"),                         # the regressor's
    ("loss", "poisson", {}, "ours"),
    ("loss", "huber", {}, "refused"),
]


@pytest.mark.parametrize("kind", PAIRS)
def test_every_parameter_of_scikit_learns_mlp_is_ours_with_the_same_default(kind):
    theirs, ours = PAIRS[kind]
    mine = inspect.signature(ours).parameters
    for name, p in inspect.signature(theirs).parameters.items():
        assert name in mine, f"{ours.__name__} has no parameter {name!r}"
        assert mine[name].default == p.default, (name, mine[name].default, p.default)
        assert name in {c[0] for c in CASES}, f"no case below tries {name!r}"
    assert set(ours().get_params()) == set(mine)


@pytest.fixture(scope="module")
def tiny():
    """40 rows, 3 features: three classes and a real target."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    return X, np.arange(40) % 3, X @ [1.0, -2.0, 0.5]


def _fit(cls, params, tiny):
    X, y_class, y_real = tiny
    est = cls(**{"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y_class if "Classifier" in cls.__name__ else y_real)


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("param,value,extra,verdict", CASES,
                         ids=[f"{p}={v!r}{'+' + str(e) if e else ''}" for p, v, e, _ in CASES])
def test_each_value_is_accepted_as_scikit_learn_accepts_it_or_refused_in_one_line(
        kind, param, value, extra, verdict, tiny, capsys):
    theirs, ours = PAIRS[kind]
    if param not in inspect.signature(theirs).parameters:
        pytest.skip(f"{theirs.__name__} has no {param!r} (in this scikit-learn)")
    params = {**extra, param: value}
    if verdict == "refused":
        with pytest.raises(ValueError):
            _fit(theirs, params, tiny)
    else:
        _fit(theirs, params, tiny)
    if verdict == "ok":
        est = _fit(ours, params, tiny)
        assert est.get_params()[param] is value and 1 <= est.n_iter_ <= 3
    else:
        with pytest.raises(ValueError) as e:
            _fit(ours, params, tiny)
        assert param in str(e.value) and "\n" not in str(e.value), str(e.value)


# --- learning rates, epoch by epoch ---------------------------------------------------------------

@pytest.fixture
def rates(monkeypatch):
    """The learning rate each epoch trained at (the core's row), in order."""
    seen = []
    real = _BaseMLP._after_epoch

    def spy(self, trainer, row, *args):
        seen.append(row["lr"])
        return real(self, trainer, row, *args)
    monkeypatch.setattr(_BaseMLP, "_after_epoch", spy)
    return seen


def test_invscaling_divides_by_the_samples_seen_to_the_power_t(tiny, rates):
    # n = 40 rows an epoch, η₀ = 0.1, power_t = 0.5: epoch e (from 0) trains at 0.1/√(40e + 1)
    X, y, _ = tiny
    params = dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, power_t=0.5,
                  max_iter=4, random_state=0, hidden_layer_sizes=(4,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(**params).fit(X, y)
        sk = SkMLPClassifier(**params).fit(X, y)
    assert rates == pytest.approx([0.1, 0.1 / 41 ** 0.5, 0.1 / 81 ** 0.5, 0.1 / 121 ** 0.5])
    assert sk._optimizer.learning_rate == pytest.approx(0.1 / 161 ** 0.5)   # the rate of a 5th epoch
    rates.clear()
    inc = MLPClassifier(**params)
    inc.partial_fit(X, y, classes=[0, 1, 2])
    inc.partial_fit(X, y)                           # goes on from the rate the first call left
    assert rates == pytest.approx([0.1, 0.1 / 41 ** 0.5]) and inc.t_ == 80
    rates.clear()
    MLPClassifier(**{**params, "solver": "adam"}).fit(X, y)     # adam ignores learning_rate
    assert rates == [0.1] * 4


def test_adaptive_divides_by_five_where_the_loss_stalls_and_stops_below_1e6(tiny, rates):
    # tol = 1e9: no epoch improves, so with n_iter_no_change = 1 the rule fires every 2nd
    # epoch from the 3rd: η = 0.01, 0.01/5, ..., 0.01/5⁶ = 6.4e-7 ≤ 1e-6, which stops at epoch 15
    X, y, _ = tiny
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.01, tol=1e9,
                  n_iter_no_change=1, max_iter=100, random_state=0, hidden_layer_sizes=(4,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)     # it stops before max_iter
        ours = MLPClassifier(**params).fit(X, y)
        sk = SkMLPClassifier(**params).fit(X, y)
    assert rates == pytest.approx([0.01] * 3 + [0.01 / 5 ** k for k in range(1, 7) for _ in range(2)])
    assert ours.n_iter_ == sk.n_iter_ == 15 and sk._optimizer.learning_rate == pytest.approx(rates[-1])


# --- pipelines saved as one model file --------------------------------------------------------

def test_each_scaler_is_x_minus_m_over_s():
    # MinMaxScaler((-1, 1)) on columns [0, 4] and [2, 2]: scale_ = [2/4, 2/1], min_ = [-1, -5],
    # so s = 1/scale_ = [2, 0.5], m = -min_/scale_ = [2, 2.5]: (0-2)/2 = -1, (4-2)/2 = 1, (2-2.5)/0.5 = -1
    m, s = _per_feature("minmaxscaler", MinMaxScaler((-1, 1)).fit([[0.0, 2.0], [4.0, 2.0]]))
    np.testing.assert_allclose(m, [2.0, 2.5])
    np.testing.assert_allclose(s, [2.0, 0.5])
    # StandardScaler on [1, 3] and a constant column: μ = [2, 5], σ = [1, 1] (scale_ 1 where var 0)
    m, s = _per_feature("standardscaler", StandardScaler().fit([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(m, [2.0, 5.0])
    np.testing.assert_allclose(s, [1.0, 1.0])
    X = np.random.default_rng(0).normal(size=(20, 3)) * [1, 5, 0] + [0, 3, 7]     # last column constant
    for scaler in (StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False),
                   MinMaxScaler(), MinMaxScaler((-3, 2)), MaxAbsScaler(), RobustScaler(),
                   RobustScaler(with_centering=False, unit_variance=True)):
        m, s = _per_feature("step", scaler.fit(X))
        np.testing.assert_allclose((X - m) / s, scaler.transform(X), rtol=1e-12, atol=1e-12,
                                   err_msg=repr(scaler))


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


PIPELINES = {
    "standard-multiclass": lambda: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300)),
    "minmax-binary-names": lambda: make_pipeline(
        MinMaxScaler((-1, 1)), MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300)),
    "standard-regressor-float64": lambda: make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), random_state=0, max_iter=200,
                                       learning_rate_init=0.01)),
    "minmax-regressor-float32": lambda: make_pipeline(
        MinMaxScaler(), MLPRegressor(hidden_layer_sizes=(16,), random_state=0, max_iter=200,
                                     learning_rate_init=0.01, dtype="float32")),
}


@pytest.mark.parametrize("case", PIPELINES)
def test_a_saved_pipeline_predicts_in_the_cli_as_the_pipeline_does(case, iris, tmp_path, mlpjit_main):
    X, y = iris
    if case == "minmax-binary-names":
        y = np.where(y == 2, "virginica", "other")
    elif "regressor" in case:
        X, y = X[:, :3], X[:, 3]                   # petal width from the other three
    pipe = PIPELINES[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    save(pipe, tmp_path / "model.npz")
    model = mlpjit.Sequential.load(tmp_path / "model.npz")
    assert isinstance(model.layers[0], mlpjit.Standardize) and len(model.layers) == 3
    np.savetxt(tmp_path / "raw.csv", X, delimiter=",")               # raw inputs, no header
    if "regressor" in case:
        r = mlpjit_main("predict", tmp_path / "model.npz", tmp_path / "raw.csv", "--out", tmp_path / "p.npy")
        assert r.code == 0, r.err
        rtol = 1e-4 if "float32" in case else 1e-5
        np.testing.assert_allclose(np.load(tmp_path / "p.npy").ravel(), pipe.predict(X), rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(model.predict(X).ravel(), pipe.predict(X), rtol=rtol, atol=1e-6)
    else:
        r = mlpjit_main("predict", tmp_path / "model.npz", tmp_path / "raw.csv", "--out", tmp_path / "p.csv")
        assert r.code == 0, r.err
        lines = [line.split(",") for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
        assert [line[0] for line in lines] == [str(c) for c in pipe.predict(X)]
        # and Python, from the same file: the same classes (by name) and probabilities
        assert model.predict_classes(X).tolist() == pipe.predict(X).tolist()
        np.testing.assert_allclose(model.predict_proba(X), pipe.predict_proba(X), rtol=1e-5, atol=1e-6)
        proba = np.array([[float(p) for p in line[1:]] for line in lines])     # printed to 6 digits
        np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=1e-5, atol=1e-6)
        assert pipe.score(X, y) > 0.9


@pytest.mark.parametrize("steps,name", [
    (lambda: [PCA(2)], "pca"),
    (lambda: [StandardScaler(), MinMaxScaler()], "minmaxscaler"),    # one scaler at most
    (lambda: [MinMaxScaler(clip=True)], "minmaxscaler"),
])
def test_a_pipeline_step_a_standardize_layer_cannot_be_is_refused_by_name(steps, name, iris, tmp_path):
    X, y = iris
    pipe = make_pipeline(*steps(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    with pytest.raises(ValueError, match=f"step '{name}'") as e:
        save(pipe, tmp_path / "model.npz")
    assert "\n" not in str(e.value) and not (tmp_path / "model.npz").exists()
    sk = make_pipeline(StandardScaler(), SkMLPClassifier(hidden_layer_sizes=(4,), max_iter=2)).fit(X, y)
    with pytest.raises(ValueError, match="step 'mlpclassifier' \\(MLPClassifier\\) is not an estimator of mlpjit"):
        save(sk, tmp_path / "model.npz")
