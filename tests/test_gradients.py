"""Hand-derived backward passes against float64 central differences (math.md §7).

``mlpjit.gradcheck`` returns, per parameter and for the input, max|analytic − numeric| divided
by the gradient's largest magnitude; every check here must be ≤ 1e-6.  Inputs of the
piecewise activations (relu, leaky_relu, elu) are checked to lie at least 1e-3 away from the kink
at 0, so that the ±ε steps never cross it.
"""

import numpy as np
import pytest

import mlpjit
import naive
from mlpjit.gradcheck import gradcheck, relative_error

TOL = 1e-6
KINK_MARGIN = 1e-3
ACT_NAMES = mlpjit.activations.names()
# (name, params): every activation with its default parameter, plus non-default parameters
ACT_CASES = [(name, {}) for name in ACT_NAMES] + [
    ("leaky_relu", {"alpha": 0.3}), ("elu", {"alpha": 0.4}), ("tanh_linear", {"a": 0.5})]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in p.items()) for name, p in ACT_CASES]


def worst(errors):
    return max(errors.values())


def assert_gradients_ok(errors):
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"gradient errors above {TOL}: {bad} (all: {errors})"


def assert_away_from_kink(S):
    assert np.abs(S).min() > KINK_MARGIN, "a pre-activation is too close to the kink at 0"


def batch(seed, n, k, scale=1.0):
    return np.random.default_rng(seed).standard_normal((n, k)) * scale


# ------------------------------------------------------------------------ activations


@pytest.mark.parametrize("name,params", ACT_CASES, ids=CASE_IDS)
def test_dense_with_each_activation(name, params):
    act = mlpjit.activations.get(name, **params)
    model = mlpjit.Sequential([
        mlpjit.Dense(4, 5, activation=act, dtype=np.float64, seed=1, bias_init=0.1),
        mlpjit.Dense(5, 3, dtype=np.float64, seed=2)])
    X, Y = batch(3, 6, 4), batch(4, 6, 3)
    model.forward(X)
    assert_away_from_kink(model.layers[0].S)
    errors = gradcheck(model, "mse", X, Y)
    assert set(errors) == {"0.A", "0.b", "1.A", "1.b", "input"}
    assert_gradients_ok(errors)


@pytest.mark.parametrize("name,params", ACT_CASES, ids=CASE_IDS)
def test_standalone_activation_layer(name, params):
    layer = mlpjit.Activation(name, **params)
    X, Y = batch(5, 4, 6, scale=2.0), batch(6, 4, 6)
    assert_away_from_kink(X)
    assert_gradients_ok(gradcheck(layer, "sum_squares", X, Y))
    # and after a Dense layer (a float64 model, checked as is)
    model = mlpjit.Sequential([mlpjit.Dense(3, 6, dtype=np.float64, seed=7, bias_init=0.05),
                               mlpjit.Activation(name, **params)])
    X = batch(8, 4, 3)
    assert_away_from_kink(model.layers[0].forward(X))
    assert_gradients_ok(gradcheck(model, "mse", X, Y))


@pytest.mark.parametrize("name,params", ACT_CASES, ids=CASE_IDS)
def test_derivative_matches_central_difference_on_a_grid(name, params):
    act = mlpjit.activations.get(name, **params)
    x = np.linspace(-6.0, 6.0, 241) + 0.0123           # 0 is not on the grid
    x = x[np.abs(x) > KINK_MARGIN]
    h = 1e-6
    numeric = (act(x + h) - act(x - h)) / (2 * h)
    analytic = act.derivative(x)
    assert analytic.dtype == np.float64
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # and the twin in naive.py agrees with both
    alpha = next(iter(params.values()), None)
    np.testing.assert_allclose(analytic, naive.activation_derivative(name, x, alpha), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------ losses


def loss_cases():
    rng = np.random.default_rng(11)
    n = 5
    yield "mse", 3, rng.standard_normal((n, 3)), {}
    yield "sum_squares", 3, rng.standard_normal((n, 3)), {}
    yield "cross_entropy", 4, rng.integers(0, 4, n), {"id": "labels"}
    yield "cross_entropy", 4, rng.dirichlet(np.ones(4), n), {"id": "probabilities"}
    yield "cross_entropy", 4, rng.uniform(0, 1, (n, 4)), {"id": "unnormalized"}
    yield "binary_cross_entropy", 1, rng.integers(0, 2, n), {"id": "k=1"}
    yield "binary_cross_entropy", 3, rng.uniform(0, 1, (n, 3)), {"id": "k=3"}
    yield "smape", 2, rng.uniform(2.0, 4.0, (n, 2)) * rng.choice([-1, 1], (n, 2)), {"bias": 0.5}
    yield "soft_f1", 1, np.array([1, 0, 1, 1, 0]), {"id": "k=1"}
    yield "soft_f1", 3, np.array([0, 2, 1, 2, 0]), {"id": "k=3"}


LOSS_CASES = list(loss_cases())
LOSS_IDS = [name + ("-" + extra["id"] if "id" in extra else "") for name, _, _, extra in LOSS_CASES]


@pytest.mark.parametrize("name,k,target,extra", LOSS_CASES, ids=LOSS_IDS)
def test_each_loss_through_a_dense_layer(name, k, target, extra):
    layer = mlpjit.Dense(3, k, dtype=np.float64, seed=4, bias_init=extra.get("bias", 0.0))
    X = batch(12, len(target), 3)
    if name == "smape":       # away from the kinks of |ŷ| and |ŷ − y|
        Yhat = layer.forward(X)
        assert np.abs(Yhat).min() > KINK_MARGIN
        assert np.abs(Yhat - target).min() > KINK_MARGIN
    assert_gradients_ok(gradcheck(layer, name, X, target))


@pytest.mark.parametrize("name,k,target,extra", LOSS_CASES, ids=LOSS_IDS)
def test_each_loss_backward_directly(name, k, target, extra):
    """loss.backward() against the central difference of loss.forward on Ŷ itself."""
    loss = mlpjit.losses.get(name)
    Yhat = batch(13, len(target), k) + extra.get("bias", 0.0)
    if name == "smape":
        assert np.abs(Yhat).min() > KINK_MARGIN and np.abs(Yhat - target).min() > KINK_MARGIN
    loss.forward(Yhat, target)
    analytic = np.array(loss.backward())
    numeric = np.empty_like(Yhat)
    h = 1e-6
    for i in np.ndindex(Yhat.shape):
        P, M = Yhat.copy(), Yhat.copy()
        P[i] += h
        M[i] -= h
        numeric[i] = (loss.forward(P, target) - loss.forward(M, target)) / (2 * h)
    assert relative_error(analytic, numeric) <= TOL


# ------------------------------------------------------------------------ softmax, dropout, a network


def test_softmax_layer():
    model = mlpjit.Sequential([mlpjit.Dense(4, 3, dtype=np.float64, seed=5), mlpjit.Softmax()])
    X, Y = batch(14, 6, 4, scale=2.0), np.random.default_rng(15).dirichlet(np.ones(3), 6)
    assert_gradients_ok(gradcheck(model, "mse", X, Y))
    assert_gradients_ok(gradcheck(mlpjit.Softmax(), "sum_squares", X[:, :3], Y))


def test_dropout_in_training_mode():
    model = mlpjit.Sequential([
        mlpjit.Dense(4, 8, activation="tanh", dtype=np.float64, seed=6),
        mlpjit.Dropout(0.4, seed=0),
        mlpjit.Dense(8, 2, dtype=np.float64, seed=7)])
    X, Y = batch(16, 5, 4), batch(17, 5, 2)
    errors = gradcheck(model, "mse", X, Y, training=True)
    assert_gradients_ok(errors)
    mask = model.layers[1].mask
    assert (mask == 0).any() and (mask != 0).any()        # the mask really dropped something
    assert not model.layers[1]._frozen                    # gradcheck unfreezes afterwards


def test_three_layer_network_end_to_end():
    model = mlpjit.Sequential([
        mlpjit.Dense(5, 8, activation="tanh", dtype=np.float64, seed=1),
        mlpjit.Dense(8, 6, activation="sigmoid", dtype=np.float64, seed=2),
        mlpjit.Dense(6, 3, dtype=np.float64, seed=3)])
    X, labels = batch(18, 7, 5), np.array([0, 1, 2, 2, 1, 0, 1])
    errors = gradcheck(model, "cross_entropy", X, labels)
    assert set(errors) == {"0.A", "0.b", "1.A", "1.b", "2.A", "2.b", "input"}
    assert_gradients_ok(errors)
    # a float32 model is checked through a float64 copy, with the same result
    model32 = model.astype(np.float32)
    assert_gradients_ok(gradcheck(model32, "cross_entropy", X, labels))


# ------------------------------------------------------------------------ softmax ∘ CE == fused CE


@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_jacobian_chain_equals_fused_cross_entropy(targets):
    rng = np.random.default_rng(19)
    n, k = 6, 4
    S = rng.standard_normal((n, k)) * 2
    T = naive.one_hot(rng.integers(0, k, n), k) if targets == "labels" else rng.dirichlet(np.ones(k), n)
    layer = mlpjit.Softmax()
    P = layer.forward(S)
    dP = -T / P / n                        # ∂E/∂p for E = −(1/N) Σ t ln p
    chained = np.array(layer.backward(dP))
    ce = mlpjit.losses.get("cross_entropy")
    target = T.argmax(axis=1) if targets == "labels" else T
    ce.forward(S, target)
    fused = ce.backward()
    np.testing.assert_allclose(chained, fused, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fused, (P - T) / n, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------ negative control


class WrongTanh(mlpjit.activations.Tanh):
    """tanh with a derivative 10% too large: gradcheck must notice."""

    def backward(self, S, Y, dY, dS):
        super().backward(S, Y, dY, dS)
        dS *= 1.1


class CubeNumpy(mlpjit.activations.Activation):
    """A custom activation written in NumPy, f(x) = x³, f' = 3x² (the positive control)."""

    name = "cube"

    def forward(self, S, Y):
        np.power(S, 3, out=Y)

    def backward(self, S, Y, dY, dS):
        np.multiply(3.0 * S * S, dY, out=dS)


def _custom_model(act):
    return mlpjit.Sequential([mlpjit.Dense(3, 4, activation=act, dtype=np.float64, seed=8),
                              mlpjit.Dense(4, 2, dtype=np.float64, seed=9)])


def test_gradcheck_detects_a_wrong_derivative():
    X, Y = batch(20, 5, 3), batch(21, 5, 2)
    errors = gradcheck(_custom_model(WrongTanh()), "mse", X, Y)
    assert errors["0.A"] > 1e-3 and errors["0.b"] > 1e-3 and errors["input"] > 1e-3
    assert errors["1.A"] <= TOL            # the layer after the wrong one is still right
    assert_gradients_ok(gradcheck(_custom_model(CubeNumpy()), "mse", X, Y))
