"""The public contract of layers, losses, Sequential, save/load and initializers; bad input."""

import numpy as np
import pytest

import mlpjit
from mlpjit import initializers

import naive

# ------------------------------------------------------------------------ the contract, as written


def test_contract_dense():
    X = np.random.default_rng(0).standard_normal((5, 3))
    layer = mlpjit.Dense(3, 4, activation="tanh", init="xavier_uniform", dtype=np.float64, seed=0)
    assert layer.A.shape == (3, 4) and layer.b.shape == (4,)
    layer.A[0, 0] = 0.25                      # writable, in place
    layer.b[...] = 0.1
    assert layer.A[0, 0] == 0.25 and (layer.b == 0.1).all()
    Y = layer.forward(X, training=True)
    np.testing.assert_allclose(Y, np.tanh(X @ layer.A + layer.b), rtol=1e-12)
    dY = np.random.default_rng(1).standard_normal((5, 4))
    dX = layer.backward(dY)
    dS = (1 - Y ** 2) * dY
    np.testing.assert_allclose(layer.dA, X.T @ dS, rtol=1e-12)
    np.testing.assert_allclose(layer.db, dS.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dX, dS @ layer.A.T, rtol=1e-12)
    # assignment copies into the layer's arrays (shape checked)
    A_obj = layer.A
    layer.A = np.ones((3, 4))
    assert layer.A is A_obj and (layer.A == 1).all()
    with pytest.raises(ValueError, match="shape"):
        layer.A = np.ones((4, 3))


def test_contract_activation_object_and_loss():
    act = mlpjit.activations.get("leaky_relu", alpha=0.1)
    np.testing.assert_allclose(act(np.array([-2.0, 3.0])), [-0.2, 3.0])
    layer = mlpjit.Dense(2, 3, activation=act, dtype=np.float64, seed=0)
    assert layer.activation is act
    X = np.array([[1.0, -2.0], [0.5, 0.25]])
    S = X @ layer.A
    np.testing.assert_allclose(layer.forward(X), np.where(S > 0, S, 0.1 * S), rtol=1e-12)

    loss = mlpjit.losses.get("cross_entropy")
    logits = np.array([[2.0, 1.0, -1.0], [0.0, 0.5, 0.25]])
    labels = np.array([0, 2])
    value = loss.forward(logits, labels)
    assert isinstance(value, float)
    dlogits = loss.backward()
    E, dS = naive.cross_entropy(logits, labels)
    np.testing.assert_allclose(value, E, rtol=1e-12)
    np.testing.assert_allclose(dlogits, dS, rtol=1e-12)
    # one-hot rows give the same as labels
    assert loss.forward(logits, naive.one_hot(labels, 3)) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), dS, rtol=1e-12)


def test_contract_sequential():
    model = mlpjit.Sequential([mlpjit.Dense(2, 8, activation="tanh"),
                               mlpjit.Dense(8, 1, activation="sigmoid")])
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = model.forward(X, training=False)
    assert Y.shape == (4, 1) and Y.dtype == np.float32
    dX = model.backward(np.ones_like(Y))
    assert dX.shape == (4, 2)
    assert model.layers[0].A.shape == (2, 8) and model.layers[0].dA.shape == (2, 8)
    names = [name for name, _, _ in model.parameters()]
    assert names == ["0.A", "0.b", "1.A", "1.b"]
    params = model.parameters()
    assert params[0][1] is model.layers[0].A and params[0][2] is model.layers[0].dA
    assert params[1][1] is model.layers[0].b and params[1][2] is model.layers[0].db
    assert params[2][1] is model.layers[1].A and params[3][1] is model.layers[1].b
    assert model.n_params == 2 * 8 + 8 + 8 + 1


def test_parameter_order_with_parameterless_layers():
    model = mlpjit.Sequential([mlpjit.Dense(3, 4), mlpjit.Dropout(0.5), mlpjit.Activation("relu"),
                               mlpjit.Dense(4, 2), mlpjit.Softmax()])
    assert [n for n, _, _ in model.parameters()] == ["0.A", "0.b", "3.A", "3.b"]


# ------------------------------------------------------------------------ buffers, dtypes, predict


def test_buffers_reused_for_the_same_batch_size():
    model = mlpjit.Sequential([mlpjit.Dense(3, 5, activation="relu", seed=0), mlpjit.Dense(5, 2, seed=1)])
    rng = np.random.default_rng(0)
    Y1 = model.forward(rng.standard_normal((4, 3)), training=True)
    dX1 = model.backward(np.ones((4, 2)))
    dA1 = model.layers[0].dA
    Y2 = model.forward(rng.standard_normal((4, 3)), training=True)
    dX2 = model.backward(np.ones((4, 2)))
    assert Y2 is Y1 and dX2 is dX1 and model.layers[0].dA is dA1
    Y3 = model.forward(rng.standard_normal((7, 3)))
    assert Y3.shape == (7, 2) and Y3 is not Y1
    loss = mlpjit.losses.get("mse")
    loss.forward(Y3, np.zeros((7, 2)))
    g1 = loss.backward()
    loss.forward(Y3 + 1, np.zeros((7, 2)))
    assert loss.backward() is g1


def test_float32_is_the_default():
    layer = mlpjit.Dense(3, 2)
    assert layer.A.dtype == np.float32 and layer.b.dtype == np.float32
    Y = layer.forward(np.ones((2, 3)))            # float64 input is cast
    assert Y.dtype == np.float32
    assert layer.backward(np.ones((2, 2))).dtype == np.float32
    assert layer.dA.dtype == np.float32
    assert mlpjit.Sequential([layer]).dtype == np.float32
    assert mlpjit.Dense(3, 2, dtype=np.float64).forward(np.ones((1, 3), np.float32)).dtype == np.float64


def test_predict_returns_copies_equal_to_forward():
    model = mlpjit.Sequential([mlpjit.Dense(3, 6, activation="tanh", seed=0), mlpjit.Dropout(0.5, seed=1),
                               mlpjit.Dense(6, 2, seed=2)])
    X = np.random.default_rng(3).standard_normal((10, 3))
    P = model.predict(X)
    F = model.forward(X, training=False)
    np.testing.assert_array_equal(P, F)
    assert P is not F and not np.shares_memory(P, F)
    model.forward(X * 2)                          # overwrites the buffers, not P
    np.testing.assert_array_equal(P, model.predict(X))
    # batching inside predict gives the same numbers
    np.testing.assert_allclose(model.predict(X, batch_size=3), P, rtol=1e-6)


# ------------------------------------------------------------------------ dropout


def test_dropout_identity_in_prediction_mode():
    d = mlpjit.Dropout(0.5, seed=0)
    X = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(d.forward(X, training=False), X)
    dY = np.ones((4, 5))
    np.testing.assert_array_equal(d.backward(dY), dY)


def test_dropout_mask_seeded_scaled_and_rate():
    p = 0.3
    X = np.ones((200, 500))
    a, b, c = mlpjit.Dropout(p, seed=42), mlpjit.Dropout(p, seed=42), mlpjit.Dropout(p, seed=43)
    Ya = np.array(a.forward(X, training=True))
    np.testing.assert_array_equal(b.forward(X, training=True), Ya)       # same seed, same mask
    assert not np.array_equal(c.forward(X, training=True), Ya)
    survivors = Ya[Ya != 0]
    np.testing.assert_allclose(survivors, 1 / (1 - p), rtol=1e-12)       # scaled by 1/(1 − p)
    assert abs((Ya == 0).mean() - p) < 0.01                              # 100 000 draws
    assert abs(Ya.mean() - 1.0) < 0.02                                   # inverted: E[Y] = X
    dX = a.backward(np.full_like(X, 2.0))
    np.testing.assert_array_equal(dX, 2.0 * a.mask)                      # the same mask and scale
    Yb = a.forward(X, training=True)                                     # a new draw each pass
    assert not np.array_equal(Yb, Ya)


def test_dropout_p_zero_and_float32():
    X = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(mlpjit.Dropout(0.0).forward(X, training=True), X)
    Y = mlpjit.Dropout(0.5, seed=0).forward(X, training=True)
    assert Y.dtype == np.float32 and set(np.unique(Y)) <= {0.0, 2.0}


# ------------------------------------------------------------------------ save / load, config, repr


def _rich_model(dtype):
    return mlpjit.Sequential([
        mlpjit.Dense(4, 6, activation={"name": "leaky_relu", "alpha": 0.2}, dtype=dtype, seed=0),
        mlpjit.Dropout(0.25, seed=1),
        mlpjit.Dense(6, 5, activation=mlpjit.activations.get("elu", alpha=0.5), dtype=dtype, seed=2,
                     init={"name": "normal", "std": 0.3}),
        mlpjit.Activation("tanh_linear", a=0.3),
        mlpjit.Dense(5, 3, dtype=dtype, seed=3, init="he_normal"),
        mlpjit.Softmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, dtype):
    model = _rich_model(dtype)
    X = np.random.default_rng(0).standard_normal((9, 4))
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = mlpjit.Sequential.load(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_config() == model.get_config()
    assert loaded.layers[0].activation.param == 0.2
    assert loaded.layers[1].p == 0.25
    assert loaded.layers[2].activation == mlpjit.activations.get("elu", alpha=0.5)
    assert loaded.layers[3].activation.param == 0.3
    assert repr(loaded) == repr(model)
    assert not list(tmp_path.glob("*.tmp"))       # the atomic write left no temporary file


def test_get_config_from_config():
    model = _rich_model(np.float64)
    config = model.get_config()
    assert config["dtype"] == "float64"
    assert [c["type"] for c in config["layers"]] == ["dense", "dropout", "dense", "activation", "dense",
                                                     "softmax"]
    assert config["layers"][0]["activation"] == {"name": "leaky_relu", "alpha": 0.2}
    rebuilt = mlpjit.Sequential.from_config(config, seed=0)
    assert rebuilt.get_config() == config
    assert rebuilt.dtype == np.float64
    again = mlpjit.Sequential.from_config(config, seed=0)
    for (_, p, _), (_, q, _) in zip(rebuilt.parameters(), again.parameters()):
        np.testing.assert_array_equal(p, q)                # seeded: the same new weights
    layer = mlpjit.Dense(3, 2, activation="gelu")
    assert mlpjit.Dense.from_config(layer.get_config()).get_config() == layer.get_config()


def test_repr_is_readable():
    model = mlpjit.Sequential([mlpjit.Dense(2, 8, activation="tanh"), mlpjit.Dropout(0.5),
                               mlpjit.Dense(8, 1)])
    text = repr(model)
    assert "Dense(2 → 8, activation=Tanh())" in text
    assert "Dropout(p=0.5)" in text and "Dense(8 → 1)" in text
    assert "33 parameters" in text
    assert repr(mlpjit.activations.get("leaky_relu", alpha=0.1)) == "LeakyRelu(alpha=0.1)"
    assert repr(mlpjit.Activation("relu")) == "Activation(Relu())"
    assert repr(mlpjit.Softmax()) == "Softmax()"
    assert repr(mlpjit.losses.get("cross_entropy")) == "CrossEntropy()"


# ------------------------------------------------------------------------ bad input


def test_bad_layer_input():
    layer = mlpjit.Dense(3, 2)
    with pytest.raises(ValueError, match=r"expects 3 inputs but gets 5"):
        layer.forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"expects a batch \(N, ...\), got shape \(3,\)"):
        layer.forward(np.ones(3))
    with pytest.raises(TypeError, match="numeric"):
        layer.forward(np.array([["a", "b", "c"]]))
    layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="dY must have shape"):
        layer.backward(np.ones((4, 3)))
    with pytest.raises(RuntimeError, match="before forward"):
        mlpjit.Dense(3, 2).backward(np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"expects a batch \(N, ...\)"):
        mlpjit.Softmax().forward(np.ones(4))
    model = mlpjit.Sequential([mlpjit.Dense(3, 2)])
    with pytest.raises(ValueError, match=r"expects a batch \(N, ...\), got shape \(3,\)"):
        model.predict(np.ones(3))


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_unsupported_float_dtypes_are_converted(dtype):
    X = np.ones((2, 3), dtype)
    for layer in (mlpjit.Activation("tanh"), mlpjit.Softmax(), mlpjit.Dropout(0.5, seed=0)):
        assert layer.forward(X, training=True).dtype == np.float64
    for name, target in (("mse", np.zeros((2, 3))), ("cross_entropy", np.array([0, 2]))):
        loss = mlpjit.losses.get(name)
        assert np.isfinite(loss.forward(X, target))
        assert loss.backward().dtype == np.float64


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*did you mean 'relu'.*valid:.*sigmoid"):
        mlpjit.Dense(2, 2, activation="rleu")
    with pytest.raises(ValueError, match="valid: .*cross_entropy.*mse"):
        mlpjit.losses.get("hinge")
    with pytest.raises(ValueError, match="unknown initializer.*valid: .*he_normal.*xavier_uniform"):
        mlpjit.Dense(2, 2, init="kaiming")
    with pytest.raises(ValueError, match="valid: .*relu"):
        mlpjit.Activation("nope")
    with pytest.raises(TypeError):
        mlpjit.activations.get("relu", alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        mlpjit.activations.get("leaky_relu", alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        mlpjit.activations.get("elu", alpha=0.0)
    with pytest.raises(ValueError, match="takes no parameter"):
        mlpjit.Dense(2, 2, init={"name": "he_normal", "std": 1.0})


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_dropout_p_outside_range(p):
    with pytest.raises(ValueError, match=r"^Dropout: p must be (>= 0|< 1|a number) \(got "):
        mlpjit.Dropout(p)


@pytest.mark.parametrize("args", [(0, 3), (3, 0), (-1, 3), (2.5, 3), (3, True)])
def test_non_positive_or_non_integer_sizes(args):
    with pytest.raises(ValueError, match=r"^Dense: (in_features|units) must be (>= 1|an integer) \(got "):
        mlpjit.Dense(*args)


def test_bad_dtype_and_mismatched_stack():
    with pytest.raises(TypeError, match="float32 or float64"):
        mlpjit.Dense(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="expects 4 inputs"):
        mlpjit.Sequential([mlpjit.Dense(2, 3), mlpjit.Dense(4, 1)])
    with pytest.raises(TypeError, match="not an mlpjit Layer"):
        mlpjit.Sequential([mlpjit.Dense(2, 3), "relu"])
    with pytest.raises(ValueError, match="at least one layer"):
        mlpjit.Sequential([])


def test_bad_loss_input():
    ce = mlpjit.losses.get("cross_entropy")
    S = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\)"):
        ce.forward(S, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\)"):
        ce.forward(S, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="3 predictions"):
        ce.forward(S, np.array([0, 1]))
    with pytest.raises(ValueError, match="at least 2 outputs"):
        ce.forward(np.zeros((3, 1)), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="≥ 0"):
        ce.forward(S, -np.ones((3, 4)))
    bce = mlpjit.losses.get("binary_cross_entropy")
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\)"):
        bce.forward(np.zeros((3, 1)), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce.forward(np.zeros((3, 2)), np.full((3, 2), 1.5))
    with pytest.raises(ValueError, match=r"targets of shape"):
        bce.forward(np.zeros((3, 2)), np.array([0, 1, 1]))
    mse = mlpjit.losses.get("mse")
    with pytest.raises(ValueError, match=r"predictions of shape \(3, 2\) but targets of shape \(3, 3\)"):
        mse.forward(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"predictions of shape \(3, 2\) but targets of shape \(2, 2\)"):
        mse.forward(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        mse.forward(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        mse.forward(np.zeros((3, 1)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="no outputs"):
        mse.forward(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="empty batch"):
        mse.forward(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(TypeError, match="numeric"):
        mse.forward(np.zeros((2, 1)), np.array(["a", "b"]))
    with pytest.raises(RuntimeError, match="before forward"):
        mlpjit.losses.get("mse").backward()
    # a 1-D target for a single output is accepted
    assert mse.forward(np.zeros((3, 1)), np.array([1.0, 1.0, 1.0])) == 1.0


# ------------------------------------------------------------------------ model files


def test_model_file_errors(tmp_path):
    model = mlpjit.Sequential([mlpjit.Dense(2, 3, activation="relu"), mlpjit.Dense(3, 1)])
    good = tmp_path / "good.npz"
    model.save(good)

    with pytest.raises(mlpjit.ModelFileError, match="no such file"):
        mlpjit.Sequential.load(tmp_path / "missing.npz")

    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(mlpjit.ModelFileError, match="truncated"):
        mlpjit.Sequential.load(truncated)

    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(mlpjit.ModelFileError):
        mlpjit.Sequential.load(empty)

    no_marker = tmp_path / "plain.npz"
    np.savez(no_marker, A=np.zeros(3))
    with pytest.raises(mlpjit.ModelFileError, match="not an mlpjit model"):
        mlpjit.Sequential.load(no_marker)

    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    with pytest.raises(mlpjit.ModelFileError):
        mlpjit.Sequential.load(text)

    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(mlpjit.ModelFileError, match="not an mlpjit model"):
        mlpjit.Sequential.load(npy)

    # right marker, wrong weights
    arrays = model.to_arrays()
    arrays["0.A"] = np.zeros((5, 5))
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, **arrays)
    with pytest.raises(mlpjit.ModelFileError, match="'0.A' has shape"):
        mlpjit.Sequential.load(bad_shape)
    del arrays["0.A"]
    missing_param = tmp_path / "missing_param.npz"
    np.savez(missing_param, **arrays)
    with pytest.raises(mlpjit.ModelFileError, match="'0.A' is missing"):
        mlpjit.Sequential.load(missing_param)
    # ModelFileError is a ValueError too
    assert issubclass(mlpjit.ModelFileError, ValueError)
    assert isinstance(mlpjit.Sequential.load(good), mlpjit.Sequential)


# ------------------------------------------------------------------------ initializers


@pytest.mark.parametrize("name", initializers.names())
def test_initializer_shapes_dtypes_and_determinism(name):
    for dtype in (np.float32, np.float64):
        a = initializers.initialize(name, (7, 5), np.random.default_rng(3), dtype)
        b = initializers.initialize(name, (7, 5), np.random.default_rng(3), dtype)
        assert a.shape == (7, 5) and a.dtype == dtype and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
        if name not in ("zeros", "constant"):
            c = initializers.initialize(name, (7, 5), np.random.default_rng(4), dtype)
            assert not np.array_equal(a, c)
            assert len(np.unique(a)) > 1          # never all equal (the symmetry problem)


def test_dense_seed_is_deterministic():
    np.testing.assert_array_equal(mlpjit.Dense(4, 3, seed=5).A, mlpjit.Dense(4, 3, seed=5).A)
    assert not np.array_equal(mlpjit.Dense(4, 3, seed=5).A, mlpjit.Dense(4, 3, seed=6).A)
    assert (mlpjit.Dense(4, 3, seed=5).b == 0).all()


@pytest.mark.parametrize("name,shape,variance", [
    ("xavier_uniform", (400, 600), 2 / 1000), ("xavier_normal", (400, 600), 2 / 1000),
    ("he_uniform", (400, 600), 2 / 400), ("he_normal", (400, 600), 2 / 400),
    ("standard_uniform", (400, 600), 1 / (3 * 400)),
    ({"name": "normal", "std": 0.1}, (300, 300), 0.01), ({"name": "uniform", "scale": 0.3}, (300, 300), 0.03),
])
def test_initializer_variance(name, shape, variance):
    A = initializers.initialize(name, shape, np.random.default_rng(0), np.float64)
    assert abs(A.mean()) < 0.05 * np.sqrt(variance)
    assert abs(A.var() / variance - 1) < 0.1


def test_initializer_bounds_and_constants():
    r = np.sqrt(6 / (30 + 50))
    A = initializers.initialize("xavier_uniform", (30, 50), np.random.default_rng(0), np.float64)
    assert np.abs(A).max() <= r and np.abs(A).max() > 0.95 * r
    r = np.sqrt(6 / 30)
    A = initializers.initialize("he_uniform", (30, 50), np.random.default_rng(0), np.float64)
    assert np.abs(A).max() <= r and np.abs(A).max() > 0.95 * r
    A = initializers.initialize("standard_uniform", (25, 50), np.random.default_rng(0), np.float64)
    assert np.abs(A).max() <= 1 / 5 and np.abs(A).max() > 0.95 / 5     # U[-1/sqrt(25), 1/sqrt(25)]
    assert (initializers.initialize("zeros", (2, 3), None, np.float32) == 0).all()
    C = initializers.initialize({"name": "constant", "value": 0.5}, (2, 3), None, np.float32)
    assert (C == 0.5).all()
    assert initializers.initialize("glorot_uniform", (2, 3), np.random.default_rng(0), np.float64).shape == (2, 3)
    with pytest.raises(ValueError, match="std must be > 0"):
        initializers.parse({"name": "normal", "std": -1})
