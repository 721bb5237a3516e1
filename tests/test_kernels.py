"""Every Numba kernel against its NumPy twin in tests/naive.py.

Shapes include batch size 1 and products on both sides of ``kernels.linear.SMALL`` (so the loop
path and the BLAS path of gemm_nn/gemm_tn/gemm_nt both run); dtypes float32 (rtol 1e-5) and
float64 (rtol 1e-12).  Also: large |x| (±1000) stays finite with the right limits, and NaN
propagates through the activations.
"""

import sys

import numba
import numpy as np
import pytest
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

import naive
from mlpjit._jit import jit
from mlpjit import activations
from mlpjit import losses as KS
from mlpjit import optim as KO
from mlpjit.kernels import linear as KL
from mlpjit.kernels import misc as KM
from mlpjit.layers import dense as KD
from mlpjit.layers.dropout import dropout_forward
from mlpjit.kernels.intrinsics import borrowed, prefetch

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ACT_NAMES = activations.names()
PARAMS = {"leaky_relu": [0.01, 0.3], "elu": [1.0, 0.5], "tanh_linear": [0.1, 0.7]}


def assert_close(got, ref, dtype, scale=None):
    """|got − ref| ≤ rtol·|ref| + rtol·scale, scale = max(1, max |ref|) by default (sums that cancel
    are compared at the size of their terms)."""
    rtol = RTOL[dtype]
    ref = np.asarray(ref, np.float64)
    if scale is None:
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=rtol, atol=rtol * scale)


def _act(name, alpha):
    """The activation ``name`` with its one parameter (if it has one) set to ``alpha``."""
    cls = activations.get(name)
    params = type(cls).param_names()
    return activations.get(name, **({params[0]: alpha} if params else {}))


def act_cases():
    for name in ACT_NAMES:
        for alpha in PARAMS.get(name, [0.0]):
            yield name, alpha


# ------------------------------------------------------------------------ activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", list(act_cases()))
@pytest.mark.parametrize("size", [1, 7, 300])
def test_activation_forward_backward(name, alpha, dtype, size):
    rng = np.random.default_rng(size)
    s = (rng.standard_normal(size) * 3).astype(dtype)
    s[s == 0] = 0.5
    dy = rng.standard_normal(size).astype(dtype)
    act = _act(name, alpha)
    y = np.empty_like(s)
    ds = np.empty_like(s)
    act.forward(s, y)
    act.backward(s, y, dy, ds)
    assert y.dtype == dtype and ds.dtype == dtype
    assert_close(y, naive.activation(name, s, alpha), dtype)
    assert_close(ds, naive.activation_backward(name, s, dy, alpha), dtype)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_backward_ignores_stale_output(name):
    """backward reads S and the forward Y; ds is fully overwritten (no accumulation)."""
    s = np.linspace(-2.1, 2.3, 9)
    y = np.empty_like(s)
    _act(name, 0.2).forward(s, y)
    ds = np.full_like(s, 123.0)
    _act(name, 0.2).backward(s, y, np.ones_like(s), ds)
    np.testing.assert_allclose(ds, naive.activation_derivative(name, s, 0.2), rtol=1e-12, atol=1e-12)


def test_kink_values_are_the_documented_ones():
    s = np.zeros(1)
    out = {}
    for name in ("relu", "leaky_relu", "elu"):
        y, ds = np.empty(1), np.empty(1)
        _act(name, 0.25).forward(s, y)
        _act(name, 0.25).backward(s, y, np.ones(1), ds)
        assert y[0] == 0.0
        out[name] = ds[0]
    assert out == {"relu": 0.0, "leaky_relu": 0.25, "elu": 1.0}


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_large_inputs_are_stable(dtype):
    s = np.array([-1000.0, -100.0, 100.0, 1000.0], dtype)
    expect = {  # f, f' at the four points
        "sigmoid": ([0, 0, 1, 1], [0, 0, 0, 0]),
        "softplus": ([0, 0, 100, 1000], [0, 0, 1, 1]),
        "swish": ([0, 0, 100, 1000], [0, 0, 1, 1]),
        "tanh": ([-1, -1, 1, 1], [0, 0, 0, 0]),
        "gelu": ([0, 0, 100, 1000], [0, 0, 1, 1]),
        "elu": ([-1, -1, 100, 1000], [0, 0, 1, 1]),
    }
    for name, (f, df) in expect.items():
        y, ds = np.empty_like(s), np.empty_like(s)
        _act(name, 1.0).forward(s, y)
        _act(name, 1.0).backward(s, y, np.ones_like(s), ds)
        assert np.isfinite(y).all() and np.isfinite(ds).all(), name
        np.testing.assert_allclose(y, f, rtol=1e-6, atol=1e-30, err_msg=name)
        np.testing.assert_allclose(ds, df, rtol=1e-6, atol=1e-30, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACT_NAMES)
def test_nan_propagates_through_activations(name, dtype):
    s = np.array([1.0, np.nan, -1.0], dtype)
    y = np.empty_like(s)
    _act(name, 0.5).forward(s, y)
    assert np.isnan(y[1]) and np.isfinite(y[[0, 2]]).all()


# ------------------------------------------------------------------------ dense / gemm

# (n, k, m) with n·k·m on both sides of SMALL = 4096
GEMM_SHAPES = [(1, 1, 1), (1, 3, 4), (7, 5, 3), (16, 16, 16), (16, 16, 17), (64, 32, 10), (1, 100, 50),
               (200, 30, 1)]


def test_gemm_shapes_cover_both_paths():
    sizes = [n * k * m for n, k, m in GEMM_SHAPES]
    assert any(s <= KL.SMALL for s in sizes) and any(s > KL.SMALL for s in sizes)
    assert any(s > KL.SMALL and n == 1 for s, (n, _, _) in zip(sizes, GEMM_SHAPES))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,m", GEMM_SHAPES)
def test_gemm_and_dense(n, k, m, dtype):
    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    X = rng.standard_normal((n, k)).astype(dtype)
    A = rng.standard_normal((k, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    G = rng.standard_normal((n, m)).astype(dtype)
    scale = max(1.0, np.sqrt(max(n, k, m)) * 4)   # sums of products of N(0, 1) numbers

    out = np.full((n, m), np.nan, dtype)
    KL.gemm_nn(X, A, out)
    assert_close(out, naive.matmul(X, A), dtype, scale)
    out = np.full((k, m), np.nan, dtype)
    KL.gemm_tn(X, G, out)
    assert_close(out, naive.matmul(X.T, G), dtype, scale)
    out = np.full((n, k), np.nan, dtype)
    KL.gemm_nt(G, A, out)
    assert_close(out, naive.matmul(G, A.T), dtype, scale)

    S = np.full((n, m), np.nan, dtype)
    KD.dense_forward(X, A, b, S)
    assert_close(S, naive.dense_forward(X, A, b), dtype, scale)
    dA = np.full((k, m), np.nan, dtype)
    db = np.full(m, np.nan, dtype)
    dX = np.full((n, k), np.nan, dtype)
    KD.dense_backward_params(X, G, dA, db)
    KD.dense_backward_input(G, A, dX)
    rdA, rdb, rdX = naive.dense_backward(X, A, G)
    assert_close(dA, rdA, dtype, scale)
    assert_close(db, rdb, dtype, scale)
    assert_close(dX, rdX, dtype, scale)


# ------------------------------------------------------------------------ softmax and losses on logits

LOSS_SHAPES = [(1, 2), (1, 5), (6, 3), (33, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", LOSS_SHAPES + [(4, 1)])
def test_softmax(n, k, dtype):
    rng = np.random.default_rng(n + k)
    S = (rng.standard_normal((n, k)) * 3).astype(dtype)
    dY = rng.standard_normal((n, k)).astype(dtype)
    Y = np.empty_like(S)
    dX = np.empty_like(S)
    KS.softmax_forward(S, Y)
    KS.softmax_backward(Y, dY, dX)
    assert_close(Y, naive.softmax(S), dtype)
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, rtol=RTOL[dtype] * 10)
    assert_close(dX, naive.softmax_backward(Y, dY), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", LOSS_SHAPES)
def test_cross_entropy_labels_and_probs(n, k, dtype):
    rng = np.random.default_rng(10 * n + k)
    S = (rng.standard_normal((n, k)) * 2).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    P = np.empty_like(S)
    dS = np.empty_like(S)
    E = KS.cross_entropy_labels_forward(S, labels, P)
    KS.cross_entropy_labels_backward(P, labels, dS)
    rE, rdS = naive.cross_entropy(S, labels)
    assert_close(E, rE, dtype)
    assert_close(P, naive.softmax(S), dtype)
    assert_close(dS, rdS, dtype)

    for T in (rng.dirichlet(np.ones(k), n), rng.uniform(0, 1, (n, k))):   # probabilities, unnormalized
        T = T.astype(dtype)
        E = KS.cross_entropy_probs_forward(S, T, P)
        KS.cross_entropy_probs_backward(P, T, dS)
        rE, rdS = naive.cross_entropy(S, T)
        assert_close(E, rE, dtype)
        assert_close(dS, rdS, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", LOSS_SHAPES + [(5, 1), (1, 1)])
def test_binary_cross_entropy(n, k, dtype):
    rng = np.random.default_rng(20 * n + k)
    S = (rng.standard_normal((n, k)) * 3).astype(dtype)
    T = rng.uniform(0, 1, (n, k)).astype(dtype)
    T[0, 0] = 1.0
    dS = np.empty_like(S)
    E = KS.binary_cross_entropy_forward(S, T)
    KS.binary_cross_entropy_backward(S, T, dS)
    rE, rdS = naive.binary_cross_entropy(S, T)
    assert_close(E, rE, dtype)
    assert_close(dS, rdS, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logit_losses_large_inputs(dtype):
    S = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    labels = np.array([1, 2])
    P, dS = np.empty_like(S), np.empty_like(S)
    E = KS.cross_entropy_labels_forward(S, labels, P)
    KS.cross_entropy_labels_backward(P, labels, dS)
    # row 0: LSE = 1000, ln p₁ = −2000;  row 1: LSE = 1000 + ln(1 + e⁻¹), ln p₂ = −ln(1 + e)
    expected = (2000.0 + np.log1p(np.e)) / 2
    assert np.isfinite(E) and np.isfinite(P).all() and np.isfinite(dS).all()
    np.testing.assert_allclose(E, expected, rtol=RTOL[dtype])
    assert_close(dS, naive.cross_entropy(S, labels)[1], dtype)

    S = np.array([[1000.0], [1000.0], [-1000.0], [-1000.0]], dtype)
    T = np.array([[1.0], [0.0], [1.0], [0.0]], dtype)
    E = KS.binary_cross_entropy_forward(S, T)
    dS = np.empty_like(S)
    KS.binary_cross_entropy_backward(S, T, dS)
    # losses 0, 1000, 1000, 0; gradients (σ − t)/4 = 0, 1/4, −1/4, 0
    np.testing.assert_allclose(E, 500.0, rtol=RTOL[dtype])
    np.testing.assert_allclose(dS[:, 0], [0.0, 0.25, -0.25, 0.0], atol=1e-30)


# ------------------------------------------------------------------------ regression losses and soft F1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", LOSS_SHAPES + [(3, 1), (1, 1)])
def test_regression_losses(n, k, dtype):
    rng = np.random.default_rng(30 * n + k)
    Yh = rng.standard_normal((n, k)).astype(dtype)
    T = rng.standard_normal((n, k)).astype(dtype)
    if n * k > 1:
        Yh.flat[0] = T.flat[0] = 0.0          # smape's 0/0 term counts as 0
    d = np.empty_like(Yh)
    for fwd, bwd, twin in ((KS.mse_forward, KS.mse_backward, naive.mse),
                           (KS.sum_squares_forward, KS.sum_squares_backward, naive.sum_squares),
                           (KS.smape_forward, KS.smape_backward, naive.smape)):
        E = fwd(Yh, T)
        bwd(Yh, T, d)
        rE, rd = twin(Yh, T)
        assert_close(E, rE, dtype)
        assert_close(d, rd, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", LOSS_SHAPES)
def test_soft_f1_multiclass(n, k, dtype):
    rng = np.random.default_rng(40 * n + k)
    S = (rng.standard_normal((n, k)) * 2).astype(dtype)
    T = naive.one_hot(rng.integers(0, k, n), k).astype(dtype)
    P = np.empty_like(S)
    KS.softmax_forward(S, P)
    work = np.empty((3, k), dtype)
    E = KS.soft_f1_forward(P, T, work)
    dP = np.empty_like(S)
    KS.soft_f1_backward(P, T, work, dP)
    rE, rdS = naive.soft_f1(S, T)
    assert_close(E, rE, dtype)
    # dP is defined up to a constant per row (rows of P sum to 1): compare through softmax
    dS = np.empty_like(S)
    KS.softmax_backward(P, dP, dS)
    assert_close(dS, rdS, dtype)
    # the soft confusion matrix's diagonal and margins are what work holds
    C = naive.soft_confusion(P, T)
    assert_close(work[0], np.diag(C), dtype)
    assert_close(work[1], C.sum(axis=0) + C.sum(axis=1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 9])
def test_soft_f1_binary(n, dtype):
    rng = np.random.default_rng(n)
    S = (rng.standard_normal((n, 1)) * 2).astype(dtype)
    T = rng.integers(0, 2, (n, 1)).astype(dtype)
    T[0, 0] = 1.0
    P = np.empty_like(S)
    KS.sigmoid_rows(S, P)
    assert_close(P, naive.activation("sigmoid", S), dtype)
    work = np.empty((3, 1), dtype)
    E = KS.soft_f1_binary_forward(P, T, work)
    dS = np.empty_like(S)
    KS.soft_f1_binary_backward(P, T, work, dS)
    rE, rdS = naive.soft_f1(S, T)
    assert_close(E, rE, dtype)
    assert_close(dS, rdS, dtype)


# ------------------------------------------------------------------------ dropout, gather, clipping, optimizers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,p", [(1, 0.5), (10, 0.0), (1000, 0.3), (1000, 0.9)])
def test_dropout_and_mul_into(size, p, dtype):
    rng = np.random.default_rng(size)
    X = rng.standard_normal(size).astype(dtype)
    U = rng.random(size, dtype=dtype)
    Y, mask = np.empty_like(X), np.empty_like(X)
    dropout_forward(X, U, p, Y, mask)
    rY, rmask = naive.dropout(X, U, p)
    assert_close(mask, rmask, dtype)
    assert_close(Y, rY, dtype)
    dY = rng.standard_normal(size).astype(dtype)
    dX = np.empty_like(X)
    KM.mul_into(dY, mask, dX)
    assert_close(dX, dY.astype(np.float64) * rmask, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("src_dtype", [np.uint8, np.float32, np.float64])
def test_gather_rows(src_dtype, dtype):
    rng = np.random.default_rng(0)
    X = (rng.random((20, 6)) * 255).astype(src_dtype)
    for idx in (np.array([3]), np.array([19, 0, 5, 5, 2]), rng.permutation(20)):
        out = np.empty((idx.size, 6), dtype)
        KM.gather_rows(X, idx.astype(np.int64), 1.0 / 255.0, out)
        assert_close(out, naive.gather_rows(X, idx, 1.0 / 255.0), dtype)


@pytest.mark.parametrize("src_dtype", [np.uint8, np.float32, np.float64])
def test_prefetch_rows_asks_for_each_cache_line_and_changes_nothing(src_dtype):
    """The compiled loop asks for the next batch's rows early.  The hint must reach the machine
    code (a prefetch instruction, not a load) and must not change anything, whatever the row
    width (rows shorter and longer than a 64-byte cache line, the last row, no rows)."""
    @numba.njit  # not cached, so its LLVM IR can be read back
    def hint(X, offset):
        prefetch(X, offset)

    X = np.zeros((3, 100), src_dtype)
    hint(X, 64)
    ir = next(iter(hint.inspect_llvm().values()))
    assert "@llvm.prefetch" in ir and "load " + {np.uint8: "i8", np.float32: "float",
                                                 np.float64: "double"}[src_dtype] not in ir
    rng = np.random.default_rng(0)
    for d in (1, 6, 100):
        X = (rng.random((20, d)) * 255).astype(src_dtype)
        before = X.copy()
        for idx in (np.array([19]), np.array([0, 19, 7, 7]), np.array([], np.int64)):
            KM.prefetch_rows(X, idx.astype(np.int64))
        assert np.array_equal(X, before)


@intrinsic
def _has_owner(typingctx, arr):
    """Whether an array carries an owner for Numba to count references to (a meminfo)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return cgutils.is_not_null(builder, ary.meminfo)
    return types.boolean(arr), codegen


@jit
def _through_borrowed(arrays, first, x, owners):
    owners[0] = _has_owner(arrays[0])
    arrays, first = borrowed(arrays), borrowed(first)
    owners[1] = _has_owner(arrays[0]) or _has_owner(first)
    total = 0.0
    for i in range(len(arrays)):
        tail = arrays[i][1:]              # a view of a borrowed array, passed to a kernel
        owners[2] = owners[2] or _has_owner(tail)
        KM.copy_into(np.full(tail.shape[0], x + i), tail)
        total += arrays[i].sum()
    first[0] = total
    return total


def test_borrowed_arrays_are_the_same_arrays_without_an_owner():
    """The compiled loop works on its arrays without counting references to them: a borrowed
    array and its views have no owner, reads and writes through them reach the caller's arrays,
    and Python's own reference counts are left as they were (nothing leaked or freed twice)."""
    arrays = tuple(np.zeros(n) for n in (1, 3, 5))
    first = np.zeros(2)
    counts = [sys.getrefcount(a) for a in (*arrays, first)]
    for _ in range(3):
        owners = np.zeros(3, np.bool_)
        total = _through_borrowed(arrays, first, 2.0, owners)
        assert list(owners) == [True, False, False]
    assert total == 0 + 2 * 3.0 + 4 * 4.0
    assert [list(a) for a in arrays] == [[0.0], [0.0, 3.0, 3.0], [0.0, 4.0, 4.0, 4.0, 4.0]]
    assert list(first) == [22.0, 0.0]
    assert [sys.getrefcount(a) for a in (*arrays, first)] == counts


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipping_kernels(dtype):
    g = np.array([-3.0, -0.5, 0.0, 0.5, 2.0, 1.0], dtype)
    c = g.copy()
    KO.clip_value_inplace(c, 1.0)
    assert_close(c, naive.clip_value(g, 1.0), dtype)
    assert_close(KO.sum_squares(g), np.sum(g.astype(np.float64) ** 2), dtype)
    clipped, norm = naive.clip_norm(g, 2.0)
    h = g.copy()
    KO.scale_inplace(h, 2.0 / np.sqrt(KO.sum_squares(g)))
    assert_close(h, clipped, dtype)
    np.testing.assert_allclose(np.sqrt(np.sum(clipped ** 2)), 2.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay,dampening",
                         [(0.0, False, 0.0, 0.0), (0.0, False, 0.01, 0.0), (0.9, False, 0.0, 0.0),
                          (0.9, True, 0.0, 0.0), (0.5, True, 0.1, 0.0), (0.9, False, 0.0, 0.9),
                          (0.7, False, 0.05, 0.3)])
@pytest.mark.parametrize("size", [1, 50])
def test_sgd_update(size, momentum, nesterov, weight_decay, dampening, dtype):
    rng = np.random.default_rng(size)
    theta = rng.standard_normal(size).astype(dtype)
    v = np.zeros(size, dtype)
    r_theta, r_v = theta.astype(np.float64), np.zeros(size)
    for t in range(1, 4):
        g = rng.standard_normal(size).astype(dtype)
        KO.sgd_update(theta, g, v, 0.1, momentum, dampening, weight_decay, nesterov, t)
        r_theta, r_v = naive.sgd_step(r_theta, g, r_v, 0.1, momentum, weight_decay, nesterov, dampening, t)
        assert_close(theta, r_theta, dtype)
        if momentum:
            assert_close(v, r_v, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("size", [1, 50])
def test_adam_update(size, weight_decay, dtype):
    rng = np.random.default_rng(size)
    theta = rng.standard_normal(size).astype(dtype)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    r = (theta.astype(np.float64), np.zeros(size), np.zeros(size))
    for t in range(1, 5):
        g = rng.standard_normal(size).astype(dtype)
        KO.adam_update(theta, g, m, v, 0.01, 0.9, 0.999, 1e-8, weight_decay, t)
        r = naive.adam_step(r[0], g, r[1], r[2], t, 0.01, 0.9, 0.999, 1e-8, weight_decay)
        assert_close(theta, r[0], dtype)
        assert_close(m, r[1], dtype)
        assert_close(v, r[2], dtype)
