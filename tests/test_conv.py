"""Convolution, pooling, flatten and residual layers (math.md §1, §6).

Each kernel against a NumPy twin built from explicit window sums (tests/naive.py), the fast
im2col path against the direct "complex dot product" loops, a hand-worked example, float64
central-difference checks over strides, paddings, kernel sizes, non-square inputs, channels and
batch 1, and the errors a user meets before training.
"""

import itertools

import numpy as np
import pytest

import mlpjit
import naive
from mlpjit import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Residual, Sequential
from mlpjit.step import CompiledStep as CompiledLoop, unsupported_reason
from mlpjit.gradcheck import gradcheck
from mlpjit.layers import conv2d as KC
from mlpjit.optim import SGD, Adam

TOL = 1e-6


def assert_gradients_ok(errors):
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"gradient errors above {TOL}: {bad} (all: {errors})"


def images(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


# --- a hand-worked example ---------------------------------------------------------------------

def test_conv_by_hand():
    # X = [[1, 2, 0], [0, 1, 3], [2, 1, 1]], A = [[1, 0], [-1, 2]], b = 0.5, stride 1, valid:
    # S[0,0] = 1·1 + 2·0 + 0·(−1) + 1·2 + .5 = 3.5     S[0,1] = 2 + 0 − 1 + 6 + .5 = 7.5
    # S[1,0] = 0 + 0 − 2 + 2 + .5 = 0.5                S[1,1] = 1 + 0 − 1 + 2 + .5 = 2.5
    layer = Conv2D(1, 1, 2, dtype=np.float64)
    layer.A = [[[[1, 0], [-1, 2]]]]
    layer.b = [0.5]
    X = np.array([[[[1, 2, 0], [0, 1, 3], [2, 1, 1]]]], float)
    np.testing.assert_allclose(layer.forward(X)[0, 0], [[3.5, 7.5], [0.5, 2.5]])
    # dS = 1 everywhere: db = 4; dA[p, q] = sum of the window positions X[p:p+2, q:q+2]
    # dX[y, x] = Σ of the A entries that touch (y, x): corners get one, the centre all four
    dX = layer.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(layer.db, [4.0])
    np.testing.assert_allclose(layer.dA[0, 0], [[1 + 2 + 0 + 1, 2 + 0 + 1 + 3],
                                                 [0 + 1 + 2 + 1, 1 + 3 + 1 + 1]])
    np.testing.assert_allclose(dX[0, 0], [[1, 1, 0], [0, 2, 2], [-1, 1, 2]])


def test_pooling_by_hand():
    X = np.array([[[[1, 5, 2, 2], [3, 4, 2, 0], [7, 7, 1, 9], [0, 6, 8, 8]]]], float)
    mp = MaxPool2D(2)
    np.testing.assert_allclose(mp.forward(X)[0, 0], [[5, 2], [7, 9]])
    dX = mp.backward(np.array([[[[10, 20], [30, 40]]]], float))
    # ties (2, 2 and 7, 7) go to the first maximum in row-major order
    np.testing.assert_allclose(dX[0, 0], [[0, 10, 20, 0], [0, 0, 0, 0], [30, 0, 0, 40], [0, 0, 0, 0]])
    ap = AvgPool2D(2)
    np.testing.assert_allclose(ap.forward(X)[0, 0], [[13 / 4, 6 / 4], [20 / 4, 26 / 4]])
    np.testing.assert_allclose(ap.backward(np.array([[[[4, 8], [12, 16]]]], float))[0, 0],
                               [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_residual_adds_both_derivatives():
    # y = x + F(x) with F = 2x (a dense layer A = 2I, b = 0): dy/dx = 1 + 2 = 3
    inner = Dense(2, 2, dtype=np.float64)
    inner.A = 2 * np.eye(2)
    block = Residual([inner])
    np.testing.assert_allclose(block.forward(np.array([[1.0, -2.0]])), [[3.0, -6.0]])
    np.testing.assert_allclose(block.backward(np.array([[1.0, 10.0]])), [[3.0, 30.0]])


# --- kernels against the NumPy twins and the direct loops ------------------------------------

GEOMETRIES = [  # (C, H, W, O, k, stride, padding)
    (1, 7, 7, 2, 3, 1, "valid"),
    (3, 6, 9, 4, 3, 2, "same"),
    (2, 5, 4, 3, 2, 1, "same"),     # even kernel: the extra padding row goes bottom/right
    (2, 6, 5, 2, 5, 2, "full"),
    (4, 4, 3, 3, 1, 1, "valid"),
    (2, 5, 6, 3, 3, 2, 1),
    (1, 3, 8, 1, 3, 3, 2),
]


def _conv(C, O, k, stride, padding, dtype=np.float64, seed=0, activation="identity"):
    return Conv2D(C, O, k, stride=stride, padding=padding, dtype=dtype, seed=seed,
                  activation=activation, bias_init=0.1)


@pytest.mark.parametrize("C,H,W,O,k,s,padding", GEOMETRIES)
def test_conv_kernels_match_numpy_and_the_direct_loop(C, H, W, O, k, s, padding):
    layer = _conv(C, O, k, s, padding)
    X = images(1, 2, C, H, W)
    S = layer.forward(X).copy()
    pads = layer.pads
    np.testing.assert_allclose(S, naive.conv2d(X, layer.A, layer.b, (s, s), pads), atol=1e-12)
    OH, OW, pt, pl = layer.geometry(H, W)
    direct = np.empty_like(S)
    KC.conv2d_forward_direct(X, layer.A, layer.b, s, s, pt, pl, direct)
    np.testing.assert_allclose(S, direct, atol=1e-12)

    dS = images(2, *S.shape)
    dX = layer.backward(dS).copy()
    ndX, ndA, ndb = naive.conv2d_backward(X, layer.A, dS, (s, s), pads)
    np.testing.assert_allclose(dX, ndX, atol=1e-12)
    np.testing.assert_allclose(layer.dA, ndA, atol=1e-12)
    np.testing.assert_allclose(layer.db, ndb, atol=1e-12)
    dX2, dA2, db2 = np.empty_like(X), np.empty_like(layer.A), np.empty_like(layer.b)
    KC.conv2d_backward_direct(X, layer.A, dS, s, s, pt, pl, dX2, dA2, db2)
    np.testing.assert_allclose(dX, dX2, atol=1e-12)
    np.testing.assert_allclose(layer.dA, dA2, atol=1e-12)
    np.testing.assert_allclose(layer.db, db2, atol=1e-12)


def test_conv_float32_against_float64():
    layer = _conv(3, 5, 3, 1, "same", dtype=np.float32)
    X = images(3, 4, 3, 10, 12)
    ref = naive.conv2d(X, layer.A.astype(np.float64), layer.b.astype(np.float64), (1, 1), layer.pads)
    np.testing.assert_allclose(layer.forward(X), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("size,stride,shape", [((2, 2), (2, 2), (2, 3, 8, 6)),
                                               ((3, 3), (1, 1), (1, 2, 5, 7)),    # overlapping
                                               ((3, 2), (2, 1), (2, 1, 7, 5)),
                                               ((2, 2), (3, 3), (1, 2, 8, 8))])   # gaps
def test_pooling_matches_numpy(kind, size, stride, shape):
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(size, stride)
    X = images(4, *shape)
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, naive.pool2d(X, size, stride, kind), atol=1e-12)
    dY = images(5, *Y.shape)
    np.testing.assert_allclose(layer.backward(dY), naive.pool2d_backward(X, dY, size, stride, kind),
                               atol=1e-12)


def test_maxpool_propagates_nan():
    X = np.zeros((1, 1, 2, 2))
    X[0, 0, 1, 0] = np.nan
    X[0, 0, 1, 1] = np.nan
    layer = MaxPool2D(2)
    assert np.isnan(layer.forward(X)[0, 0, 0, 0])
    dX = layer.backward(np.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(dX[0, 0], [[0, 0], [5, 0]])   # to the first NaN


def test_the_2x2_max_pooling_kernels_match_numpy():
    """2×2 windows with stride 2 have kernels of their own (maxpool2x2_*): odd sizes (the last
    row and column in no window), ties among small integers, NaNs (np.max propagates them,
    np.argmax picks the first), against the NumPy reference."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 3, (2, 3, 7, 9)).astype(np.float64)       # many ties
    X[0, 1, 2, 3] = X[1, 2, 5, 4] = X[1, 2, 5, 5] = np.nan
    layer = MaxPool2D(2)
    Y = layer.forward(X)
    np.testing.assert_array_equal(Y, naive.pool2d(X, (2, 2), (2, 2), "max"))
    dY = rng.standard_normal(Y.shape)
    np.testing.assert_array_equal(layer.backward(dY), naive.pool2d_backward(X, dY, (2, 2), (2, 2), "max"))


def test_output_size_formula():
    # o = ⌊(i + p − k)/s⌋ + 1 with p the total padding (math.md §6)
    for i, k, s, padding, p in [(28, 3, 1, "valid", 0), (28, 3, 2, "same", 2), (7, 4, 1, "same", 3),
                                (5, 3, 1, "full", 4), (9, 5, 3, 2, 4)]:
        layer = Conv2D(1, 1, k, stride=s, padding=padding)
        assert layer.output_shape((1, i, i + 1)) == (1, (i + p - k) // s + 1, (i + 1 + p - k) // s + 1)
    assert Conv2D(1, 1, 28, padding="same").output_shape((1, 28, 28)) == (1, 28, 28)
    assert Conv2D(1, 1, 3, stride=2, padding="same").output_shape((1, 7, 8)) == (1, 4, 4)  # ⌈i/s⌉


def test_same_padding_with_an_even_kernel_by_hand():
    # k = 2, "same": one row/column of zeros in all, at the bottom/right, so the output keeps 2×2
    layer = Conv2D(1, 1, 2, padding="same", dtype=np.float64)
    layer.A = [[[[1, 2], [3, 4]]]]
    X = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # S[0,0] = 1·1 + 2·2 + 3·3 + 4·4 = 30; S[0,1] = 1·2 + 3·4 = 14; S[1,0] = 1·3 + 2·4 = 11; S[1,1] = 4
    np.testing.assert_allclose(layer.forward(X)[0, 0], [[30, 14], [11, 4]])


# --- gradient checks ----------------------------------------------------------------------------

CONV_GRAD_CASES = [(k, s, padding) for k, s, padding in itertools.product(
    (1, 3, 5), (1, 2), ("valid", "same", "full", 1)) if not (k == 5 and padding == "valid")]


@pytest.mark.parametrize("k,s,padding", CONV_GRAD_CASES)
def test_conv_gradients(k, s, padding):
    # non-square 6×7 input, 2 → 3 channels, tanh keeps the objective smooth
    model = Sequential([_conv(2, 3, k, s, padding, activation="tanh"), Flatten()])
    n_out = model.output_shape((2, 6, 7))[0]
    model.layers.append(Dense(n_out, 4, dtype=np.float64, seed=5))
    X = images(6, 2, 2, 6, 7)
    assert_gradients_ok(gradcheck(model, "cross_entropy", X, np.array([0, 3])))


def test_conv_gradients_batch_one_and_rectangular_kernel():
    model = Sequential([Conv2D(3, 2, (2, 3), stride=(1, 2), padding="same", activation="sigmoid",
                               dtype=np.float64, seed=1), Flatten()])
    model.layers.append(Dense(model.output_shape((3, 5, 6))[0], 1, dtype=np.float64, seed=2))
    assert_gradients_ok(gradcheck(model, "mse", images(7, 1, 3, 5, 6), np.array([[0.3]])))


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize("size,stride", [(2, None), (3, 1), (2, 1), ((2, 3), (2, 2))])
def test_pooling_gradients(cls, size, stride):
    model = Sequential([cls(size, stride), Flatten()])
    model.layers.append(Dense(model.output_shape((2, 6, 7))[0], 3, dtype=np.float64, seed=1))
    # distinct values, far apart relative to ε, so no ±ε step changes a window's winner
    X = np.random.default_rng(8).permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) * 0.01
    assert_gradients_ok(gradcheck(model, "cross_entropy", X, np.array([1, 2])))


def test_residual_block_inside_a_deep_network():
    d = np.float64
    model = Sequential([
        Conv2D(1, 4, 3, padding="same", activation="tanh", dtype=d, seed=1),
        Residual([Conv2D(4, 4, 3, padding="same", activation="tanh", dtype=d, seed=2),
                  Conv2D(4, 4, 1, dtype=d, seed=3)]),
        MaxPool2D(2),
        Residual([Conv2D(4, 4, 3, padding=1, activation="softplus", dtype=d, seed=4),
                  Residual([Conv2D(4, 4, 1, activation="tanh", dtype=d, seed=5)])]),
        Flatten(),
        Dense(4 * 3 * 4, 6, activation="tanh", dtype=d, seed=6),
        Residual([Dense(6, 6, activation="tanh", dtype=d, seed=7), Dense(6, 6, dtype=d, seed=8)]),
        Dense(6, 3, dtype=d, seed=9),
    ])
    X = images(9, 3, 1, 7, 8)
    errors = gradcheck(model, "cross_entropy", X, np.array([0, 1, 2]))
    assert "3.1.0.A" in errors and "6.1.b" in errors
    assert_gradients_ok(errors)


def test_dropout_on_feature_maps_gradients():
    model = Sequential([Conv2D(2, 3, 3, activation="tanh", dtype=np.float64, seed=1),
                        Dropout(0.3, seed=2), Flatten(), Dense(3 * 3 * 4, 2, dtype=np.float64, seed=3)])
    assert_gradients_ok(gradcheck(model, "cross_entropy", images(10, 2, 2, 5, 6), np.array([0, 1]),
                                  training=True))


# --- structure, errors, files ------------------------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: Sequential([Conv2D(1, 2, 5), Flatten()]).output_shape((1, 3, 3)),
     "kernel 5×5 is larger than the input 3×3"),
    (lambda: Sequential([Conv2D(1, 2, 5, padding=1), Flatten()]).output_shape((1, 2, 8)),
     "larger than the padded input 4×10"),
    (lambda: Conv2D(1, 2, 3, stride=0), r"stride must be >= 1 \(got"),
    (lambda: Conv2D(1, 2, 3, stride=-1), r"stride must be >= 1 \(got"),
    (lambda: MaxPool2D(2, stride=0), r"stride must be >= 1 \(got"),
    (lambda: Conv2D(1, 2, 3, padding="half"), "unknown padding 'half'"),
    (lambda: Conv2D(1, 2, 3, padding=-1), "integer ≥ 0"),
    (lambda: Sequential([Conv2D(1, 8, 3), Conv2D(16, 4, 3)]),
     "expects 16 input channels, but its input has 8"),
    (lambda: Sequential([Conv2D(1, 8, 3), Dense(8, 10)]), "put a flatten layer before it"),
    (lambda: Sequential([Conv2D(1, 8, 3), MaxPool2D(2), Flatten(), Dense(200, 10)]).output_shape((1, 28, 28)),
     "expects 200 inputs but gets 1352"),
    (lambda: Residual([Conv2D(2, 3, 3, padding="same")]).output_shape((2, 5, 5)),
     r"maps shape \(2, 5, 5\) to shape \(3, 5, 5\); y = x \+ F\(x\) needs F to keep the shape"),
    (lambda: Residual([Conv2D(2, 2, 3)]).output_shape((2, 5, 5)), "needs F to keep the shape"),
    (lambda: Sequential([Dense(4, 4), Conv2D(1, 2, 3)]), "needs images"),
])
def test_bad_structure_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_save_load_round_trip(tmp_path):
    model = Sequential([Conv2D(1, 3, 3, padding="same", activation="relu", seed=1), MaxPool2D(2),
                        Residual([Conv2D(3, 3, 3, padding=1, activation="elu", seed=2)]),
                        AvgPool2D(2, stride=1), Flatten(), Dense(3 * 2 * 2, 4, seed=3)])
    X = images(11, 5, 1, 6, 6).astype(np.float32)
    model.save(tmp_path / "m.npz")
    again = Sequential.load(tmp_path / "m.npz")
    assert again.get_config() == model.get_config()
    assert [n for n, _, _ in again.parameters()] == ["0.A", "0.b", "2.0.A", "2.0.b", "5.A", "5.b"]
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_float32_layers_convert_integer_images():
    layer = Conv2D(1, 2, 3, seed=0)
    Y = layer.forward(np.ones((2, 1, 4, 4), np.uint8))
    assert Y.dtype == np.float32 and Y.shape == (2, 2, 2, 2)


# --- the compiled loop -------------------------------------------------------------------------

def _cnn(dtype):
    return Sequential([
        Conv2D(2, 4, 3, padding="same", activation="relu", dtype=dtype, seed=1),
        MaxPool2D(2),
        Residual([Conv2D(4, 4, 3, padding="same", activation="tanh", dtype=dtype, seed=2),
                  Dropout(0.2, seed=3),
                  Conv2D(4, 4, 1, dtype=dtype, seed=4)]),
        AvgPool2D(2, stride=1),
        Conv2D(4, 3, 2, stride=2, padding=1, activation="elu", dtype=dtype, seed=5),
        Flatten(),
        Dense(3 * 2 * 2, 8, activation="tanh", dtype=dtype, seed=6),
        Residual([Dense(8, 8, activation="relu", dtype=dtype, seed=7)]),
        Dense(8, 3, dtype=dtype, seed=8),
    ])


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("opt_name,clip", [("sgd", {}), ("adam", {"norm": 0.5})])
def test_compiled_loop_matches_layer_path_for_conv_models(dtype, rtol, opt_name, clip):
    from test_step import _layer_path

    rng = np.random.default_rng(0)
    n, bs, shape = 21, 4, (2, 6, 7)             # a last partial batch of 1
    X = rng.standard_normal((n,) + shape)
    y = rng.integers(0, 3, n)
    perm = rng.permutation(n)
    models = [_cnn(dtype) for _ in range(2)]
    loss = [mlpjit.losses.get("cross_entropy") for _ in range(2)]
    if opt_name == "sgd":
        opts = [SGD(m.parameters(), lr=0.05, momentum=0.9) for m in models]
    else:
        opts = [Adam(m.parameters(), lr=0.01) for m in models]
    assert unsupported_reason(models[1], loss[1], opts[1]) is None
    ref = _layer_path(models[0], loss[0], opts[0], X, y, perm, bs, 0.05, clip)
    loop = CompiledLoop(models[1], loss[1], opts[1], X.reshape(n, -1), y, 1.0, "classification",
                        bs, clip, input_shape=shape)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {nm: 0.0 for nm, _, _ in models[1].parameters() if nm.endswith(".A")}}
    assert loop.run(perm, 0, 3, 0.05, acc) == (3, None)
    assert loop.run(perm, 3, 6, 0.05, acc) == (3, None)
    np.testing.assert_allclose(acc["loss"], ref["loss"], rtol=rtol)
    np.testing.assert_allclose(acc["grad_norm"], ref["grad_norm"], rtol=rtol)
    for (name, p_ref, _), (_, p_fast, _) in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(p_fast, p_ref, rtol=rtol, atol=rtol * np.abs(p_ref).max(), err_msg=name)


def test_compiled_loop_with_dropout_and_flatten_first():
    from test_step import _layer_path

    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 2, 3, 3))
    y = rng.integers(0, 2, 10)

    def model():
        return Sequential([Dropout(0.3, seed=1), Flatten(), Dense(18, 2, dtype=np.float64, seed=2)])
    m1, m2 = model(), model()
    l1, l2 = mlpjit.losses.get("cross_entropy"), mlpjit.losses.get("cross_entropy")
    o1, o2 = SGD(m1.parameters(), lr=0.3), SGD(m2.parameters(), lr=0.3)
    _layer_path(m1, l1, o1, X, y, np.arange(10), 4, 0.3, {})
    loop = CompiledLoop(m2, l2, o2, X.reshape(10, -1), y, 1.0, "classification", 4, None,
                        input_shape=(2, 3, 3))
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0, "layer_norms": {"2.A": 0.0}}
    assert loop.run(np.arange(10), 0, 3, 0.3, acc) == (3, None)
    for (name, a, _), (_, b, _) in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=name)


# --- configs and the command line ------------------------------------------------------------

def _cnn_cfg(mnist_dir, layers=None, **train):
    return {
        "name": "cnn_test", "seed": 0,
        "data": {"name": "mnist", "path": str(mnist_dir), "validation": 100},
        "model": {"layers": layers or [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "activation": "relu",
             "init": "he_normal"},
            {"type": "maxpool2d", "size": 2},
            {"type": "residual", "layers": [
                {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "same",
                 "activation": "relu"}]},
            {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2},
            {"type": "avgpool2d", "size": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "dropout", "p": 0.1},
            {"type": "dense", "units": 10}]},
        "loss": "cross_entropy",
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        # one thread: a sharded step of this network compiles for ~40 s (test_threads tests them)
        "train": {"epochs": 2, "batch_size": 32, "threads": 1, **train},
    }


CONV = {"type": "conv2d", "out_channels": 4, "kernel_size": 3}
BAD_CONV_CONFIGS = {
    "kernel_too_large": ([{"type": "conv2d", "out_channels": 4, "kernel_size": 29}, {"type": "flatten"},
                          {"type": "dense", "units": 10}],
                         ["model.layers.0", "kernel 29×29 is larger than the input 28×28"]),
    "kernel_too_large_deeper": ([CONV, {"type": "maxpool2d", "size": 4}, {**CONV, "kernel_size": 7},
                                 {"type": "flatten"}, {"type": "dense", "units": 10}],
                                ["model.layers.2", "kernel 7×7 is larger than the input 6×6"]),
    "zero_stride": ([{**CONV, "stride": 0}, {"type": "flatten"}, {"type": "dense", "units": 10}],
                    ["model.layers.0.stride", "0"]),
    "negative_pool_stride": ([CONV, {"type": "maxpool2d", "size": 2, "stride": -2}, {"type": "flatten"},
                              {"type": "dense", "units": 10}], ["model.layers.1.stride", "-2"]),
    "channel_mismatch": ([CONV, {**CONV, "in_channels": 8}, {"type": "flatten"}, {"type": "dense", "units": 10}],
                         ["model.layers.1.in_channels", "8", "4 channels"]),
    "dense_without_flatten": ([CONV, {"type": "dense", "units": 10}],
                              ["model.layers.1", "needs flat rows", "put a flatten layer before it"]),
    "ends_with_images": ([CONV], ["model.layers.0", "ends with images", "flatten"]),
    "residual_changes_shape": ([CONV, {"type": "residual", "layers": [{**CONV, "out_channels": 5,
                                                                        "padding": "same"}]},
                                {"type": "flatten"}, {"type": "dense", "units": 10}],
                               ["model.layers.1", "y = x + F(x)"]),
    "bad_padding": ([{**CONV, "padding": "half"}, {"type": "flatten"}, {"type": "dense", "units": 10}],
                    ["model.layers.0.padding", "half"]),
    "unknown_key": ([{**CONV, "filters": 4}, {"type": "flatten"}, {"type": "dense", "units": 10}],
                    ["model.layers.0", "filters"]),
}


@pytest.mark.parametrize("case", list(BAD_CONV_CONFIGS))
def test_bad_conv_configs_fail_before_training(case, mlpjit_main, cfg_file, mini_mnist, tmp_path):
    layers, needles = BAD_CONV_CONFIGS[case]
    path = cfg_file(_cnn_cfg(mini_mnist(n_train=200, n_test=50), layers))
    out = tmp_path / "run"
    from test_cli import assert_user_error
    assert_user_error(mlpjit_main("train", path, "--out", out), *needles, out_dir=out)
    assert_user_error(mlpjit_main("config", "check", path), *needles)


def test_conv_on_flat_data_is_a_clear_error(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg()
    cfg["model"]["layers"] = [CONV, {"type": "flatten"}, {"type": "dense", "units": 3}]
    from test_cli import assert_user_error
    assert_user_error(mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "run"),
                      "model.layers.0", "needs images", "'spirals'", "flat rows of 2 features",
                      out_dir=tmp_path / "run")


def test_train_evaluate_predict_a_cnn(mlpjit_main, cfg_file, mini_mnist, tmp_path):
    mnist = mini_mnist(n_train=600, n_test=200)
    path = cfg_file(_cnn_cfg(mnist))
    run = tmp_path / "run"
    res = mlpjit_main("train", path, "--out", run)
    assert res.code == 0, res.text
    from conftest import read_metrics
    rows = read_metrics(run)
    assert len(rows) == 2 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_accuracy"] > 0.5          # the bands that encode the labels are learnt
    model = Sequential.load(run / "model.npz")
    assert model.takes_images and model.metadata["input_shape"] == [1, 28, 28]
    assert [n for n, _, _ in model.parameters()][:4] == ["0.A", "0.b", "2.0.A", "2.0.b"]

    res = mlpjit_main("evaluate", run)
    assert res.code == 0, res.text
    assert f"test_accuracy {100 * rows[-1]['test_accuracy']:.2f}%" in res.out

    # predict takes rows of 784 raw pixels (as training did) or (N, 1, 28, 28) images
    from mlpjit.data import load_dataset
    ds = load_dataset({"name": "mnist", "path": str(mnist)}, 0)
    np.save(tmp_path / "rows.npy", ds.X_test[:5])
    np.save(tmp_path / "images.npy", ds.X_test[:5].reshape(5, 1, 28, 28))
    outs = []
    for name in ("rows.npy", "images.npy"):
        res = mlpjit_main("predict", run / "model.npz", tmp_path / name)
        assert res.code == 0, res.text
        outs.append(res.out)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 6
    np.save(tmp_path / "bad.npy", ds.X_test[:5, :700])
    from test_cli import assert_user_error
    assert_user_error(mlpjit_main("predict", run / "model.npz", tmp_path / "bad.npy"), "bad.npy",
                      "do not fit the model")


def test_compiled_and_layer_paths_train_a_cnn_alike(cfg_file, mini_mnist, tmp_path):
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    from conftest import read_metrics
    path = cfg_file(_cnn_cfg(mini_mnist(n_train=300, n_test=50), epochs=1))
    rows = []
    for compiled in (True, False):
        cfg = resolved_dict(load_config(path, [f"train.compiled={str(compiled).lower()}"]))
        (tmp_path / str(compiled)).mkdir()
        trainer = Trainer(cfg, tmp_path / str(compiled), log=lambda *a: None, progress=False)
        assert (trainer.fast_reason is None) == compiled
        assert trainer.data.X_train.shape[1:] == (1, 28, 28)
        trainer.fit()
        rows.append(read_metrics(tmp_path / str(compiled))[-1])
    for key in ("train_loss", "val_loss", "test_loss"):
        np.testing.assert_allclose(rows[0][key], rows[1][key], rtol=1e-4)


def test_sweep_over_a_cnn(mlpjit_main, cfg_file, mini_mnist, tmp_path):
    path = cfg_file(_cnn_cfg(mini_mnist(n_train=200, n_test=50), epochs=1))
    out = tmp_path / "sweep"
    res = mlpjit_main("sweep", path, "--grid", "model.layers.3.out_channels=4,6", "--out", out)
    assert res.code == 0, res.text
    import csv
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    res = mlpjit_main("sweep", path, "--grid", "model.layers.0.kernel_size=3,40", "--out", tmp_path / "bad")
    assert res.code == 2 and "kernel 40×40 is larger than the input 28×28" in res.err


def test_npz_images_train_a_conv_model(mlpjit_main, cfg_file, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2, 6, 5))
    y = (X[:, 0, :3].mean(axis=(1, 2)) > X[:, 1, 3:].mean(axis=(1, 2))).astype(int)
    np.savez(tmp_path / "images.npz", X=X, y=y)
    cfg = {"name": "npz_cnn", "data": {"name": "npz", "path": str(tmp_path / "images.npz")},
           "model": {"layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": [2, 3],
                                 "activation": "tanh"},
                                {"type": "flatten"}, {"type": "dense", "units": 2}]},
           "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1},
           "train": {"epochs": 2, "batch_size": 16}}
    res = mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "run")
    assert res.code == 0, res.text
    model = Sequential.load(tmp_path / "run" / "model.npz")
    assert model.metadata["input_shape"] == [2, 6, 5]
    assert model.layers[2].in_features == 3 * 5 * 3


def test_dropout_draws_on_wide_feature_maps_stay_within_a_budget():
    from mlpjit.step import DRAW_BUDGET
    model = Sequential([Conv2D(1, 32, 3, seed=0), Dropout(0.2, seed=1), Flatten(),
                        Dense(32 * 26 * 26, 10, seed=2)])
    X = np.zeros((128, 784), np.float32)
    loop = CompiledLoop(model, mlpjit.losses.get("cross_entropy"), SGD(model.parameters(), lr=0.1),
                        X, np.zeros(128, np.int64), 1.0, "classification", 64, None,
                        input_shape=(1, 28, 28))
    (_, _, U), = loop.draws
    assert U.nbytes <= DRAW_BUDGET and loop.chunk_batches >= 1
    assert U.size == loop.chunk_batches * 64 * 32 * 26 * 26


def test_predict_takes_images_as_they_are(mlpjit_main, tmp_path):
    model = Sequential([Conv2D(1, 2, 3, seed=0), Flatten(), Dense(2 * 4 * 4, 3, seed=1)])
    model.save(tmp_path / "m.npz")                      # saved from code: no input_shape recorded
    X = np.random.default_rng(0).random((4, 1, 6, 6))
    np.save(tmp_path / "x.npy", X)
    res = mlpjit_main("predict", tmp_path / "m.npz", tmp_path / "x.npy")
    assert res.code == 0, res.text
    assert len(res.out.splitlines()) == 5
    np.save(tmp_path / "small.npy", X[:, :, :5, :5])
    from test_cli import assert_user_error
    assert_user_error(mlpjit_main("predict", tmp_path / "m.npz", tmp_path / "small.npy"),
                      "small.npy", "(1, 5, 5)", "do not fit the model")


def test_npz_test_images_must_match_the_training_images(tmp_path):
    from mlpjit.data import load_dataset
    from mlpjit.errors import DataError
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.random((40, 1, 8, 8)), y=rng.integers(0, 2, 40),
             X_test=rng.random((10, 2, 4, 8)), y_test=rng.integers(0, 2, 10))
    with pytest.raises(DataError, match=r"'X_test' has examples of shape \(2, 4, 8\) but 'X' has \(1, 8, 8\)"):
        load_dataset({"name": "npz", "path": str(tmp_path / "d.npz")}, 0)


def test_predict_on_an_empty_file_is_a_clear_error(mlpjit_main, tmp_path):
    Sequential([Dense(4, 2, seed=0)]).save(tmp_path / "m.npz")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    from test_cli import assert_user_error
    assert_user_error(mlpjit_main("predict", tmp_path / "m.npz", tmp_path / "empty.npy"),
                      "empty.npy", "no examples")
