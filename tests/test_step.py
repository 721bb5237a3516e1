"""The compiled training step (mlpjit/step) against the layer-by-layer path.

Both paths call the same kernels in the same order.  Inlined into the compiled loop, the
kernels may be optimized differently (fastmath allows reassociation and fused multiply-add), so
the paths agree to rounding: ≤ 1e-10 relative in float64 and ≤ 1e-5 in float32.  Each path on
its own is deterministic (tested in test_trainer.py).
"""

import numpy as np
import pytest

import mlpjit
from mlpjit.step import CompiledStep as CompiledLoop, unsupported_reason
from mlpjit.kernels import misc as KM
from mlpjit.optim import Adam, SGD, clip_grad_norm, clip_grad_value, global_norm


def _model(dtype, out, hidden_act="tanh", extra=()):
    return mlpjit.Sequential([mlpjit.Dense(6, 9, activation=hidden_act, dtype=dtype, seed=1),
                              mlpjit.Dropout(0.25, seed=7),
                              *extra,
                              mlpjit.Dense(9, 7, activation="relu", dtype=dtype, seed=2),
                              mlpjit.Dense(7, out, dtype=dtype, seed=3)])


def _layer_path(model, loss, opt, X, y, perm, bs, lr, clip):
    """The trainer's Python loop, written out."""
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0}
    rows = X.reshape(len(X), -1)  # images are gathered as rows, then viewed as images
    xb = np.empty((bs, rows.shape[1]), model.dtype)
    for b in range(-(-len(perm) // bs)):
        idx = perm[b * bs:(b + 1) * bs]
        x = xb[:idx.size]
        KM.gather_rows(rows, idx, 1.0, x)
        x = x.reshape((idx.size,) + X.shape[1:])
        value = loss.forward(model.forward(x, training=True), y[idx])
        model.backward(loss.backward(), need_dX=False)
        norm = global_norm(model.parameters())
        if clip.get("norm"):
            clip_grad_norm(model.parameters(), clip["norm"])
        elif clip.get("value"):
            clip_grad_value(model.parameters(), clip["value"])
        opt.step(lr)
        acc["loss"] += value * idx.size
        acc["grad_norm"] += norm
    return acc


CASES = [
    # loss, outputs, task, optimizer, clip
    ("cross_entropy", 3, "classification", "sgd", {}),
    ("cross_entropy", 3, "classification", "sgd", {"norm": 0.5}),
    ("cross_entropy", 3, "classification", "adam", {"value": 0.05}),
    ("binary_cross_entropy", 1, "classification", "sgd", {}),
    ("mse", 3, "classification", "sgd", {}),
    ("mse", 2, "regression", "sgd", {"norm": 1.0}),
    ("sum_squares", 2, "regression", "adam", {}),
    ("smape", 2, "regression", "adam", {}),
    ("soft_f1", 3, "classification", "sgd", {}),
    ("soft_f1", 1, "classification", "adam", {"norm": 0.5}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss_name,k,task,opt_name,clip", CASES)
def test_compiled_loop_matches_layer_path(dtype, loss_name, k, task, opt_name, clip):
    rng = np.random.default_rng(0)
    n, bs = 53, 8                      # a last partial batch of 5
    X = rng.standard_normal((n, 6))
    if task == "classification":
        y = rng.integers(0, max(k, 2), n)
    else:
        y = rng.standard_normal((n, k))
    perm = rng.permutation(n)
    models = [_model(dtype, k) for _ in range(2)]
    losses = [mlpjit.losses.get(loss_name) for _ in range(2)]
    if opt_name == "sgd":
        opts = [SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3) for m in models]
    else:
        opts = [Adam(m.parameters(), lr=0.01, weight_decay=1e-3) for m in models]
    assert unsupported_reason(models[1], losses[1], opts[1]) is None

    ref = _layer_path(models[0], losses[0], opts[0], X, y, perm, bs, 0.05, clip)
    loop = CompiledLoop(models[1], losses[1], opts[1], X, y, 1.0, task, bs, clip)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "2.A": 0.0, "3.A": 0.0}}
    done, bad = loop.run(perm, 0, 4, 0.05, acc)        # two calls, as the trainer's chunks
    done2, bad2 = loop.run(perm, 4, 7, 0.05, acc)
    assert (done + done2, bad, bad2) == (7, None, None)
    assert acc["seen"] == n and acc["batches"] == 7
    assert_matches_layer_path(acc, ref, models, 1e-10 if dtype == np.float64 else 1e-5)


def assert_matches_layer_path(acc, ref, models, rtol):
    """The compiled step's loss, gradient norm and parameters (models[1]) against the layer
    path's (ref, models[0])."""
    np.testing.assert_allclose(acc["loss"], ref["loss"], rtol=rtol)
    np.testing.assert_allclose(acc["grad_norm"], ref["grad_norm"], rtol=rtol)
    for (name, p_ref, _), (_, p_fast, _) in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(p_fast, p_ref, rtol=rtol, atol=rtol * np.abs(p_ref).max(), err_msg=name)


def test_a_data_set_larger_than_the_cache_is_prefetched_and_trains_the_same():
    """Above PREFETCH_BYTES the loop asks for the next batch's rows while it computes: a hint
    that must not change anything (3 of the 44 batches, the loop stopping before the 4th)."""
    from mlpjit.step.codegen import PREFETCH_BYTES
    rng = np.random.default_rng(4)
    n, k, bs = 1400, 800, 32
    X = rng.standard_normal((n, k)).astype(np.float32)
    assert X.nbytes > PREFETCH_BYTES
    y = rng.integers(0, 3, n)
    perm = rng.permutation(n)

    def build():
        model = mlpjit.Sequential([mlpjit.Dense(k, 16, activation="relu", dtype=np.float32, seed=1),
                                   mlpjit.Dense(16, 3, dtype=np.float32, seed=2)])
        return model, mlpjit.losses.get("cross_entropy"), None

    m1, l1, _ = build()
    o1 = SGD(m1.parameters(), lr=0.05, momentum=0.9)
    _layer_path(m1, l1, o1, X, y, perm[:3 * bs], bs, 0.05, {})
    m2, l2, _ = build()
    loop = CompiledLoop(m2, l2, SGD(m2.parameters(), lr=0.05, momentum=0.9), X, y, 1.0,
                        "classification", bs, None)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "1.A": 0.0}}
    assert loop.run(perm, 0, 3, 0.05, acc) == (3, None)
    for (name, a, _), (_, b, _) in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=name)


def test_activation_and_softmax_layers_in_the_compiled_loop():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 6))
    y = rng.standard_normal((20, 3))
    perm = np.arange(20)

    def model():
        return mlpjit.Sequential([mlpjit.Dense(6, 5, dtype=np.float64, seed=1),
                                  mlpjit.Activation("elu", alpha=0.5),
                                  mlpjit.Dense(5, 3, dtype=np.float64, seed=2),
                                  mlpjit.Softmax()])
    m1, m2 = model(), model()
    l1, l2 = mlpjit.losses.get("mse"), mlpjit.losses.get("mse")
    o1, o2 = SGD(m1.parameters(), lr=0.3), SGD(m2.parameters(), lr=0.3)
    _layer_path(m1, l1, o1, X, y, perm, 6, 0.3, {})
    loop = CompiledLoop(m2, l2, o2, X, y, 1.0, "regression", 6, None)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "2.A": 0.0}}
    assert loop.run(perm, 0, 4, 0.3, acc) == (4, None)
    for (name, a, _), (_, b, _) in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=name)


def test_nan_is_reported_with_its_batch():
    X = np.ones((16, 6)) * 1e30
    y = np.zeros((16, 2))
    m = mlpjit.Sequential([mlpjit.Dense(6, 2, dtype=np.float32, seed=0)])
    loss = mlpjit.losses.get("mse")
    loop = CompiledLoop(m, loss, SGD(m.parameters(), lr=1.0), X, y, 1.0, "regression", 4, None)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0, "layer_norms": {"0.A": 0.0}}
    done, bad = loop.run(np.arange(16), 0, 4, 1.0, acc)
    assert done == 0 and bad[0] == 1 and not np.isfinite(bad[1] * bad[2])


@mlpjit.jit
def square_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i] * s[i]


@mlpjit.jit
def square_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):
        ds[i] = 2.0 * s[i] * dy[i]


class Square(mlpjit.activations.Activation):
    """f(x) = x², f'(x) = 2x: an activation of the test's own (not registered)."""
    forward_kernel = square_forward
    backward_kernel = square_backward


@mlpjit.jit
def scale_forward(X, w, Y):
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i, j] = w[j] * X[i, j]


@mlpjit.jit
def scale_backward(X, w, dY, dw, dX):
    for j in range(X.shape[1]):
        dw[j] = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            dw[j] += dY[i, j] * X[i, j]
            dX[i, j] = dY[i, j] * w[j]


class Scale(mlpjit.Layer):
    """Y = X ∘ w (one weight per feature): a layer of the test's own, by its two kernels."""
    params = ("w",)
    forward_kernel = scale_forward
    backward_kernel = scale_backward

    def __init__(self, n, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.w = np.linspace(0.5, 1.5, n).astype(dtype)
        self.dw = np.zeros_like(self.w)


class PythonOnly(mlpjit.Layer):
    """A layer whose forward/backward are NumPy code: it can only run layer by layer."""

    def forward(self, X, training=False):
        return X

    def backward(self, dY, need_dX=True):
        return dY


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_user_activation_and_user_layer_run_compiled_and_match(dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 6))
    y = rng.integers(0, 3, 30)
    perm = rng.permutation(30)

    def model():
        return mlpjit.Sequential([mlpjit.Dense(6, 5, activation=Square(), dtype=dtype, seed=1),
                                  Scale(5, dtype), mlpjit.Dense(5, 3, dtype=dtype, seed=2)])
    m1, m2 = model(), model()
    l1, l2 = mlpjit.losses.get("cross_entropy"), mlpjit.losses.get("cross_entropy")
    o1, o2 = SGD(m1.parameters(), lr=0.05), SGD(m2.parameters(), lr=0.05)
    assert unsupported_reason(m2, l2, o2) is None
    _layer_path(m1, l1, o1, X, y, perm, 8, 0.05, {})
    loop = CompiledLoop(m2, l2, o2, X, y, 1.0, "classification", 8, None)
    assert "scale_forward(X1, l1_w, Y1)" in loop.source and "square_backward(" in loop.source
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "2.A": 0.0}}
    assert loop.run(perm, 0, 4, 0.05, acc) == (4, None)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    for (name, a, _), (_, b, _) in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max(), err_msg=name)


def test_a_layer_written_in_python_falls_back_to_the_layer_path():
    m = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0), PythonOnly()])
    opt = SGD(m.parameters(), lr=0.1)
    assert "PythonOnly" in unsupported_reason(m, mlpjit.losses.get("mse"), opt)
    assert unsupported_reason(mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0)]),
                              mlpjit.losses.get("soft_f1"), opt) is None


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_max_norm_in_the_compiled_loop_matches_the_layer_path(opt_name):
    """optimizer.max_norm: the step projects each unit's incoming weights after the update, as
    Optimizer.step does; c = 0.9 binds from the first batch (the columns start near 1)."""
    rng = np.random.default_rng(3)
    n, bs = 53, 8
    X = rng.standard_normal((n, 6))
    y = rng.integers(0, 3, n)
    perm = rng.permutation(n)
    models = [_model(np.float64, 3) for _ in range(2)]
    assert max(np.linalg.norm(A, axis=0).max() for _, A, _ in models[0].incoming_weights()) > 0.9
    losses = [mlpjit.losses.get("cross_entropy") for _ in range(2)]
    opts = [SGD(m, lr=0.1, momentum=0.9, max_norm=0.9) if opt_name == "sgd"
            else Adam(m, lr=0.01, max_norm=0.9) for m in models]
    ref = _layer_path(models[0], losses[0], opts[0], X, y, perm, bs, 0.1, {"norm": 2.0})
    loop = CompiledLoop(models[1], losses[1], opts[1], X, y, 1.0, "classification", bs, {"norm": 2.0})
    assert "max_norm_columns" in loop.source
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "2.A": 0.0, "3.A": 0.0}}
    assert loop.run(perm, 0, 7, 0.1, acc) == (7, None)
    assert_matches_layer_path(acc, ref, models, 1e-10)
    for _, A, _ in models[1].incoming_weights():
        assert np.linalg.norm(A, axis=0).max() <= 0.9 * (1 + 1e-12)
