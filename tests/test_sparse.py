"""Sparse-input products (kernels/linear.py): a dense layer whose input is mostly zeros.

``S = X·A + b`` and ``dA = Xᵀ·dS`` visit only X's nonzeros, listed by row (``sparse_rows``)
and by column (``sparse_cols``).  Checked by hand on a 3×3 example, against the NumPy twins on
random shapes (rows and columns without any nonzero, lists whose length is not a multiple of
four, NaN), through a Dense layer with float64 central differences, and in the compiled loop
against the layer-by-layer path.
"""

import numpy as np
import pytest

import mlpjit
import naive
from mlpjit import _memory
from mlpjit.gradcheck import gradcheck
from mlpjit.layers import dense as KL
from mlpjit.layers.dense import sparse_scratch
from mlpjit.step import CompiledStep
from mlpjit.optim import SGD

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def scratch(n, k, dtype):
    """The layer's scratch (dense.sparse_scratch), filled with values no kernel may leave."""
    spec = sparse_scratch(n, k, dtype)
    arrays = [np.empty(*spec[name]) for name in ("idx", "val", "ints", "vals")]
    for a in arrays:
        a[...] = -7 if a.dtype == np.int32 else np.nan
    return KL.sparse_views(*arrays, n)


def sparse_products(X, A, b, dS):
    n, k = X.shape
    idx, val, cnt, ptr, rows, vals = scratch(n, k, X.dtype)
    S = np.full((n, A.shape[1]), np.nan, X.dtype)
    dA = np.full(A.shape, np.nan, X.dtype)
    db = np.full(A.shape[1], np.nan, X.dtype)
    KL.sparse_rows(X, idx, val, cnt)
    KL.sparse_dense_forward(idx, val, cnt, A, b, S)
    KL.sparse_cols(idx, val, cnt, ptr, rows, vals)
    KL.sparse_dense_backward_params(ptr, rows, vals, dS, dA, db)
    return S, dA, db, (idx, val, cnt, ptr, rows, vals)


def test_hand_worked_3x3():
    # X has 3 nonzeros: X[0, 1] = 2, X[2, 0] = 1, X[2, 2] = 3; row 1 and nothing else is empty
    X = np.array([[0., 2., 0.],
                  [0., 0., 0.],
                  [1., 0., 3.]])
    A = np.array([[1., 2.],
                  [3., 4.],
                  [5., 6.]])
    b = np.array([0.5, -0.5])
    dS = np.array([[1., 0.],
                   [7., 7.],   # row 1 of X is zero: contributes to db only
                   [0., 2.]])
    S, dA, db, (idx, val, cnt, ptr, rows, vals) = sparse_products(X, A, b, dS)
    assert list(cnt) == [1, 0, 2]
    assert list(idx[0, :1]) == [1] and list(idx[2, :2]) == [0, 2]
    assert list(val[2, :2]) == [1., 3.]
    assert list(ptr) == [0, 1, 2, 3]          # one nonzero in each column
    assert list(rows[:3]) == [2, 0, 2] and list(vals[:3]) == [1., 2., 3.]
    # S = X·A + b: row 0 = 2·A[1] + b, row 1 = b, row 2 = 1·A[0] + 3·A[2] + b
    np.testing.assert_array_equal(S, [[6.5, 7.5], [0.5, -0.5], [16.5, 19.5]])
    # dA[p] = Σ_i X[i, p]·dS[i]: dA[0] = 1·dS[2], dA[1] = 2·dS[0], dA[2] = 3·dS[2]
    np.testing.assert_array_equal(dA, [[0., 2.], [2., 0.], [0., 6.]])
    np.testing.assert_array_equal(db, [8., 9.])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,m,density", [(1, 1, 1, 1.0), (1, 9, 5, 0.3), (7, 13, 3, 0.2),
                                           (16, 100, 17, 0.15), (33, 64, 40, 0.05),
                                           (5, 12, 8, 0.0), (6, 11, 16, 1.0)])
def test_against_numpy(n, k, m, density, dtype):
    rng = np.random.default_rng(n * 100 + k + m)
    X = (rng.random((n, k)) * (rng.random((n, k)) < density)).astype(dtype)
    if n > 3:
        X[2] = 0                    # a row without nonzeros
        X[:, 1] = 0                 # a column without nonzeros
    A = rng.standard_normal((k, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dS = rng.standard_normal((n, m)).astype(dtype)
    S, dA, db, (idx, val, cnt, *_) = sparse_products(X, A, b, dS)
    assert list(cnt) == list(np.count_nonzero(X, axis=1))
    rtol = RTOL[dtype]
    scale = max(1.0, np.sqrt(max(n, k, m)) * 4)
    np.testing.assert_allclose(S, naive.dense_forward(X, A, b), rtol=rtol, atol=rtol * scale)
    rdA, rdb, _ = naive.dense_backward(X, A, dS)
    np.testing.assert_allclose(dA, rdA, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(db, rdb, rtol=rtol, atol=rtol * scale)


def test_nan_in_the_input_is_not_skipped():
    X = np.array([[0., np.nan, 0., 1.]])
    A = np.ones((4, 2))
    S, dA, _, _ = sparse_products(X, A, np.zeros(2), np.ones((1, 2)))
    assert np.isnan(S).all()
    assert np.isnan(dA[1]).all() and not np.isnan(dA[[0, 2, 3]]).any()


def test_the_rule_needs_a_large_product_and_few_nonzeros():
    X = np.zeros((32, 100))
    X[:, :15] = 1.0                                         # 15% nonzero
    assert KL.nonzero_fraction(X) == pytest.approx(0.15)
    assert KL.sparse_pays(X, 10)                            # 32·100·10 > SMALL
    assert not KL.sparse_pays(X[:1, :], 10)                 # 1·100·10 ≤ SMALL: loops
    X[:, :int(100 * KL.SPARSE)] = 1.0                       # exactly SPARSE: BLAS
    assert not KL.sparse_pays(X, 10)
    assert KL.nonzero_fraction(np.zeros((0, 3))) == 0.0


def test_the_rule_counts_across_its_blocks():
    """The count stops early a block (1024 entries) at a time: a batch whose nonzeros sit in its
    last, partial block is decided on all of them.  32 × 100 = 3,200 entries (blocks of 1024,
    1024, 1024 and 128); SPARSE·3200 = 704 nonzeros is the limit."""
    X = np.zeros((32, 100))
    X.reshape(-1)[-703:] = 1.0                              # 703 < 704, all in the last blocks
    assert KL.sparse_pays(X, 10)
    X.reshape(-1)[-704:] = 1.0                              # 704: the limit, BLAS
    assert not KL.sparse_pays(X, 10)
    X[:] = 1.0                                              # dense: decided in the first block
    assert not KL.sparse_pays(X, 10)


def test_the_count_reads_x_with_vector_loads():
    """sparse_pays counts X's nonzeros once per batch over the whole input: the count must
    vectorize.  With a signed index Numba wraps negative indices, and LLVM turned the loop into
    gathers, 7-10× slower (the first layer of small and mid: 11-33 µs a batch, found in #27);
    the unsigned index gives contiguous vector loads.  Compiled fresh (a cached kernel cannot be
    inspected)."""
    import re
    import numba
    from numba import types
    from mlpjit._jit import FASTMATH
    fn = numba.njit(fastmath=set(FASTMATH), error_model="numpy")(KL.count_nonzero.py_func)
    sig = (types.Array(types.float32, 1, "C"), types.int64, types.int64)
    fn.compile(sig)
    ir = fn.inspect_llvm(sig)
    assert re.search(r"load <\d+ x float>", ir), "the count is not vectorized"
    assert "masked.gather" not in ir, "the count reads X through gathers"
    X = np.array([[0.0, 1.0, np.nan], [0.0, 0.0, -2.0]], np.float32)
    assert KL.count_nonzero(X.reshape(-1), 0, 6) == 3                # NaN counts as nonzero
    assert KL.count_nonzero(X.reshape(-1), 2, 5) == 1                # X[2], X[3], X[4]: nan, 0, 0


def _sparse_input(n, k, seed, density=0.15):
    rng = np.random.default_rng(seed)
    return rng.random((n, k)) * (rng.random((n, k)) < density)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_layer_takes_the_sparse_path(dtype):
    X = _sparse_input(16, 100, 0).astype(dtype)
    layer = mlpjit.Dense(100, 24, activation="tanh", dtype=dtype, seed=0)
    dY = np.random.default_rng(1).standard_normal((16, 24)).astype(dtype)
    Y = layer.forward(X)
    assert layer.skipped_zeros
    dX = layer.backward(dY)
    S = naive.dense_forward(X, layer.A, layer.b)
    rtol = RTOL[dtype]
    np.testing.assert_allclose(Y, np.tanh(S), rtol=rtol, atol=rtol * 10)
    dS = dY * (1 - np.tanh(S) ** 2)
    rdA, rdb, rdX = naive.dense_backward(X, layer.A, dS)
    for got, ref in ((layer.dA, rdA), (layer.db, rdb), (dX, rdX)):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * 10)
    # a dense batch through the same layer goes back to BLAS
    layer.forward(np.ones((16, 100), dtype))
    assert not layer.skipped_zeros


def test_gradient_check_through_a_sparse_first_layer():
    X = _sparse_input(12, 60, 2)
    assert KL.sparse_pays(X, 16)
    Y = np.random.default_rng(3).standard_normal((12, 4))
    model = mlpjit.Sequential([mlpjit.Dense(60, 16, activation="tanh", dtype=np.float64, seed=4),
                               mlpjit.Dense(16, 4, dtype=np.float64, seed=5)])
    errors = gradcheck(model, "mse", X, Y)
    assert max(errors.values()) < 1e-6, errors
    assert model.layers[0].skipped_zeros


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_loop_matches_layer_path_on_sparse_input(dtype):
    n, k, bs = 90, 100, 16                                  # a last partial batch of 10
    X = _sparse_input(n, k, 6)
    y = np.random.default_rng(7).integers(0, 5, n)
    perm = np.random.default_rng(8).permutation(n)

    def build():
        model = mlpjit.Sequential([mlpjit.Dense(k, 32, activation="relu", dtype=dtype, seed=1),
                                   mlpjit.Dense(32, 5, dtype=dtype, seed=2)])
        return model, mlpjit.losses.get("cross_entropy"), None

    ref_model, ref_loss, _ = build()
    ref_opt = SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    for b in range(-(-n // bs)):
        idx = perm[b * bs:(b + 1) * bs]
        ref_loss.forward(ref_model.forward(X[idx].astype(dtype), training=True), y[idx])
        ref_model.backward(ref_loss.backward(), need_dX=False)
        assert ref_model.layers[0].skipped_zeros
        ref_opt.step(0.1)

    model, loss, _ = build()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    loop = CompiledStep(model, loss, opt, X, y, 1.0, "classification", bs, {})
    assert [layer.sparse_input for layer in model.layers] == [True, False]  # 32·5 < SPARSE_MIN
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "1.A": 0.0}}
    done, bad = loop.run(perm, 0, -(-n // bs), 0.1, acc)
    assert (done, bad) == (6, None)
    # the loop listed the nonzeros of its last batch (10 rows) in layer 0's scratch
    cnt = KL.sparse_views(*(loop.array(f"l0_{name}") for name in ("idx", "val", "ints", "vals")), 10)[2]
    assert list(cnt) == list(np.count_nonzero(X[perm[80:]], axis=1))
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    for (name, p_ref, _), (_, p, _) in zip(ref_model.parameters(), model.parameters()):
        np.testing.assert_allclose(p, p_ref, rtol=rtol, atol=rtol * np.abs(p_ref).max(), err_msg=name)


def test_parameters_and_state_are_aligned_to_64_bytes():
    layer = mlpjit.Dense(13, 7, seed=0)
    opt = SGD(layer.parameters(), lr=0.1, momentum=0.9)
    arrays = [layer.A, layer.b, layer.dA, layer.db, *opt.state["velocity"].values()]
    assert all(a.ctypes.data % _memory.ALIGN == 0 for a in arrays)
    assert all(a.flags.c_contiguous and a.flags.writeable for a in arrays)
    a = _memory.full((3, 5), 2.5, np.float32)
    assert a.dtype == np.float32 and a.shape == (3, 5) and (a == 2.5).all()
