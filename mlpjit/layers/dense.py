"""Fully connected layer ``Y = f(X·A + b)`` (math.md §1): the layer and its kernels.

Forward:  M = X·A,  S = M + b,  Y = f(S).
Backward: dS = f'(S) ∘ dY,  dM = dS,  db = Σ_rows dS,  dA = Xᵀ·dM,  dX = dM·Aᵀ.
Shapes:   X (N, n) → Y (N, m);  A (n, m), b (m,);  kept for backward: S (N, m) (Y = S for the
          identity), and dS (N, m) for the activation's derivative.

Sparse input.  When most entries of X are zero (MNIST pixels: 81%), the two products with X
(``S = X·A + b`` and ``dA = Xᵀ·dS``) skip them: a zero X[i, p] adds nothing to either sum.
``sparse_rows`` lists row i's nonzeros once per batch (``idx[i, :cnt[i]]``, ``val``),
``sparse_cols`` sorts the same list by column for dA, and the two products visit only those
entries.  The sums are the same as the dense ones, taken in another order; the one difference
is that a zero input times an infinite weight is skipped instead of giving NaN.
``sparse_pays`` decides per batch: a product large enough for BLAS whose X has fewer than
``SPARSE`` nonzeros.  A layer large enough to gain (``SPARSE_MIN`` multiply-adds per example)
keeps the scratch for it and calls the ``*_sparse`` kernels, which choose.
"""

import numpy as np
from numba import uint64 as U

from .. import _memory
from .. import activations as _activations
from .._jit import jit
from ..initializers import initialize, parse as _parse_init
from ..kernels.linear import SMALL, gemm_nn, gemm_nt, gemm_tn
from ..registry import register_layer
from ..schema import ActivationSpec, Float, InitSpec, Size, validated
from .base import Call, Layer, check_dtype, dims, fmt_shape

SPARSE = 0.22  # nonzero fraction of X below which skipping zeros beats BLAS (benchmarks/sparse.py:
               # faster at 0.19, MNIST; mostly slower at 0.25)
SPARSE_MIN = SMALL // 8  # multiply-adds per example (n·m) from which a layer keeps sparse scratch


# --- the dense products -------------------------------------------------------------------

# (X: (n, k), A: (k, m), b: (m,), S: (n, m)) -> None
@jit
def dense_forward(X, A, b, S):
    """S = X·A + b  (M = X·A, S = M + b)."""
    gemm_nn(X, A, S)
    n, m = S.shape
    for i in range(n):
        for j in range(m):
            S[i, j] += b[j]


# (X: (n, k), dS: (n, m), dA: (k, m), db: (m,)) -> None
@jit
def dense_backward_params(X, dS, dA, db):
    """dA = Xᵀ·dM and db = Σ_rows dS, with dM = dS."""
    gemm_tn(X, dS, dA)
    bias_backward(dS, db)


# (dS: (n, m), db: (m,)) -> None
@jit
def bias_backward(dS, db):
    """db = Σ_rows dS."""
    n, m = dS.shape
    for j in range(m):
        db[j] = 0.0
    for i in range(n):
        for j in range(m):
            db[j] += dS[i, j]


# (dS: (n, m), A: (k, m), dX: (n, k)) -> None
@jit
def dense_backward_input(dS, A, dX):
    """dX = dM·Aᵀ, with dM = dS."""
    gemm_nt(dS, A, dX)


# --- sparse input ----------------------------------------------------------------------------

# (Xf: flat, start, stop) -> int
@jit
def count_nonzero(Xf, start, stop):
    """How many of Xf[start:stop] are not zero (NaN counts as nonzero).  The index is unsigned
    (``U``): with a signed one Numba wraps negative indices, and that branch made LLVM count
    through gathers, 7-10× slower (the small and mid networks' regression against 430f2e8:
    docs/performance.md; tests/test_sparse.py checks the vector loads)."""
    c = 0
    for i in range(start, stop):
        c += np.int64(Xf[U(i)] != 0)
    return c


# (X: (n, k)) -> float
@jit
def nonzero_fraction(X):
    """The fraction of entries of X that are not zero (NaN counts as nonzero)."""
    Xf = X.reshape(-1)
    return count_nonzero(Xf, 0, Xf.shape[0]) / max(Xf.shape[0], 1)


# (X: (n, k), m: int) -> bool
@jit
def sparse_pays(X, m):
    """Whether X·A (A with m columns) and Xᵀ·dS should skip X's zeros: a product large enough
    for BLAS whose X has fewer than SPARSE nonzeros.  The count stops as soon as it reaches
    that share (checked every 1024 entries), so a dense X is decided after about a fifth of it."""
    n, k = X.shape
    if n * k * m <= SMALL:
        return False
    Xf = X.reshape(-1)
    size = Xf.shape[0]
    limit = SPARSE * size
    count = 0
    for start in range(0, size, 1024):
        count += count_nonzero(Xf, start, min(start + 1024, size))
        if count >= limit:
            return False
    return True


# (idx: int32[:, :] (bs, k), val: (bs, k), ints: int32[:] (bs + k + 1 + bs·k,), vals: (bs·k,), m)
@jit
def sparse_views(idx, val, ints, vals, m):
    """A dense layer's sparse scratch for a batch of m ≤ bs rows: (idx, val, cnt) for
    sparse_rows and (ptr, rows, vals) for sparse_cols; ``ints`` holds cnt, ptr and rows."""
    bs, k = idx.shape
    return (idx[:m], val[:m], ints[:m], ints[bs:bs + k + 1], ints[bs + k + 1:bs + k + 1 + m * k],
            vals[:m * k])


# (X: (n, k), idx: int32[:, :] (n, k), val: (n, k), cnt: int32[:] (n,)) -> None
@jit
def sparse_rows(X, idx, val, cnt):
    """Row i's nonzeros, in column order: X[i, idx[i, q]] = val[i, q] for q < cnt[i]."""
    n, k = X.shape
    Xf = X.reshape(-1)
    for i in range(n):
        c = 0
        o = i * k
        for p in range(k):  # branch-free: write every entry, advance past the nonzeros
            x = Xf[U(o + p)]
            idx[i, c] = p
            val[i, c] = x
            c += np.int32(x != 0)
        cnt[i] = c


# (idx, val, cnt: as sparse_rows; ptr: int32[:] (k+1,), rows: int32[:] (≥ nnz,), vals: (≥ nnz,)) -> None
@jit
def sparse_cols(idx, val, cnt, ptr, rows, vals):
    """The same nonzeros by column: column p's are rows[ptr[p]:ptr[p+1]] (in row order), values
    vals[...] (a counting sort of sparse_rows' list)."""
    k = ptr.shape[0] - 1
    for p in range(k + 1):
        ptr[p] = 0
    for i in range(cnt.shape[0]):
        for q in range(cnt[i]):
            ptr[idx[i, q] + 1] += 1
    for p in range(k):
        ptr[p + 1] += ptr[p]
    for i in range(cnt.shape[0]):  # ptr[p] walks through column p's slots ...
        for q in range(cnt[i]):
            p = idx[i, q]
            d = ptr[p]
            rows[d] = i
            vals[d] = val[i, q]
            ptr[p] = d + 1
    for p in range(k, 0, -1):  # ... and ends at the next column's start
        ptr[p] = ptr[p - 1]
    ptr[0] = 0


# (idx, val, cnt: as sparse_rows, A: (k, m), b: (m,), S: (n, m)) -> None
@jit
def sparse_dense_forward(idx, val, cnt, A, b, S):
    """S = X·A + b from X's nonzeros: S[i] = b + Σ_q val[i, q]·A[idx[i, q]] (four rows of A at
    a time: one load and store of S[i] per four multiply-adds)."""
    n, m = S.shape
    Af = A.reshape(-1)
    Sf = S.reshape(-1)
    for i in range(n):
        so = i * m
        for j in range(m):
            Sf[U(so + j)] = b[j]
        c = cnt[i]
        q = 0
        while q + 4 <= c:
            a0, a1, a2, a3 = idx[i, q] * m, idx[i, q + 1] * m, idx[i, q + 2] * m, idx[i, q + 3] * m
            x0, x1, x2, x3 = val[i, q], val[i, q + 1], val[i, q + 2], val[i, q + 3]
            for j in range(m):
                Sf[U(so + j)] += (x0 * Af[U(a0 + j)] + x1 * Af[U(a1 + j)]
                                  + x2 * Af[U(a2 + j)] + x3 * Af[U(a3 + j)])
            q += 4
        while q < c:
            a0, x0 = idx[i, q] * m, val[i, q]
            for j in range(m):
                Sf[U(so + j)] += x0 * Af[U(a0 + j)]
            q += 1


# (ptr, rows, vals: as sparse_cols, dS: (n, m), dA: (k, m), db: (m,)) -> None
@jit
def sparse_dense_backward_params(ptr, rows, vals, dS, dA, db):
    """dA = Xᵀ·dS from X's nonzeros by column: dA[p] = Σ val·dS[row] over column p's entries
    (zero for a column without any), and db = Σ_rows dS."""
    n, m = dS.shape
    k = dA.shape[0]
    Gf = dS.reshape(-1)
    Df = dA.reshape(-1)
    for p in range(k):
        do = p * m
        for j in range(m):
            Df[U(do + j)] = 0.0
        q, end = ptr[p], ptr[p + 1]
        while q + 4 <= end:
            g0, g1, g2, g3 = rows[q] * m, rows[q + 1] * m, rows[q + 2] * m, rows[q + 3] * m
            x0, x1, x2, x3 = vals[q], vals[q + 1], vals[q + 2], vals[q + 3]
            for j in range(m):
                Df[U(do + j)] += (x0 * Gf[U(g0 + j)] + x1 * Gf[U(g1 + j)]
                                  + x2 * Gf[U(g2 + j)] + x3 * Gf[U(g3 + j)])
            q += 4
        while q < end:
            g0, x0 = rows[q] * m, vals[q]
            for j in range(m):
                Df[U(do + j)] += x0 * Gf[U(g0 + j)]
            q += 1
    bias_backward(dS, db)


# --- the kernels the layer calls: the dense products, or the sparse ones when they pay ---------

def sparse_scratch(bs, k, dtype):
    """Scratch for skipping the zeros of up to bs input rows of width k: idx (bs, k) int32,
    val (bs, k), ints (cnt, ptr, rows: bs + k + 1 + bs·k int32), vals (bs·k), used (1,)
    (whether the batch's forward pass skipped zeros, read by backward)."""
    return {"idx": ((bs, k), np.int32), "val": ((bs, k), dtype),
            "ints": ((bs + k + 1 + bs * k,), np.int32), "vals": ((bs * k,), dtype),
            "used": ((1,), np.int64)}


# (X: (n, k), A, b, S as dense_forward; used: int64 (1,); idx, val, ints, vals: sparse_scratch)
@jit
def dense_forward_sparse(X, A, b, S, used, idx, val, ints, vals):
    """S = X·A + b, from X's nonzeros when ``sparse_pays`` (then used[0] = 1), else through BLAS."""
    if sparse_pays(X, A.shape[1]):
        i_, v_, cnt, _, _, _ = sparse_views(idx, val, ints, vals, X.shape[0])
        sparse_rows(X, i_, v_, cnt)
        sparse_dense_forward(i_, v_, cnt, A, b, S)
        used[0] = 1
    else:
        dense_forward(X, A, b, S)
        used[0] = 0


@jit
def dense_backward_params_sparse(X, dS, dA, db, used, idx, val, ints, vals):
    """dA = Xᵀ·dS and db = Σ_rows dS, from X's nonzeros if the forward pass listed them."""
    if used[0] != 0:
        i_, v_, cnt, ptr, rows, vs = sparse_views(idx, val, ints, vals, X.shape[0])
        sparse_cols(i_, v_, cnt, ptr, rows, vs)
        sparse_dense_backward_params(ptr, rows, vs, dS, dA, db)
    else:
        dense_backward_params(X, dS, dA, db)


_SPARSE_ARGS = ("used", "idx", "val", "ints", "vals")


@register_layer("dense")
class Dense(Layer):
    """Fully connected layer ``Y = f(X·A + b)``.

    Forward:  M = X·A,  S = M + b,  Y = f(S).
    Backward: dS = f'(S) ∘ dY,  dM = dS,  db = Σ_rows dS,  dA = Xᵀ·dM,  dX = dM·Aᵀ.

    Args:
        in_features (n): inputs per example (from a config: taken from the input).
        units (m): outputs per example; A is (n, m), b is (m,).
        activation: name (``"relu"``), dict (``{"name": "elu", "alpha": 0.5}``) or
            :class:`~mlpjit.activations.Activation`; default identity.
        init: initializer of A (name or dict, see :mod:`mlpjit.initializers`); b starts at
            ``bias_init`` (0).
        dtype: float32 (default, for training) or float64 (for gradient checks).
        seed: seed of the generator that draws A (or pass ``rng``, a numpy Generator).

    Shapes: X (batch, n) → Y (batch, m).  After ``backward``: ``dA`` (n, m), ``db`` (m,).
    Kept for backward: S (batch, m) and, unless the activation is the identity, dS.

    An input with few nonzeros (fewer than 22%, e.g. MNIST pixels at 19%) takes the
    sparse-input products (see the module docstring).  A, b, dA and db start on 64-byte
    boundaries.

    >>> import numpy as np, mlpjit
    >>> layer = mlpjit.Dense(3, 4, activation="tanh", dtype=np.float64, seed=0)
    >>> layer.forward(np.ones((2, 3))).shape
    (2, 4)
    """
    row_separable = True

    params = ("A", "b")
    incoming = {"A": "columns"}   # unit j's incoming weights: A[:, j] (optimizer.max_norm)
    inferred = {"in_features": 0}

    @validated
    def __init__(self, in_features: Size, units: Size, activation: ActivationSpec = "identity",
                 init: InitSpec = "xavier_uniform", bias_init: Float = 0.0,
                 dtype=np.float32, seed=None, rng=None):
        self.in_features = int(in_features)
        self.units = int(units)
        self.dtype = check_dtype(dtype)
        self.activation = _activations.get(activation)
        self.init = init if isinstance(init, str) else dict(init)
        _parse_init(self.init)
        self.bias_init = float(bias_init)
        rng = np.random.default_rng(seed) if rng is None else rng
        self._A = _memory.empty((self.in_features, self.units), self.dtype)
        initialize(self.init, self._A.shape, rng, self.dtype, out=self._A)
        self._b = _memory.full(self.units, self.bias_init, self.dtype)
        self.dA = _memory.zeros_like(self._A)
        self.db = _memory.zeros_like(self._b)
        self.sparse_input = self.in_features * self.units >= SPARSE_MIN

    @classmethod
    def param_count(cls, config, in_shape):
        units = config.get("units")
        if not isinstance(units, int) or len(in_shape) != 1 or not isinstance(in_shape[0], int):
            return None
        return in_shape[0] * units + units

    @property
    def out_features(self):
        return self.units

    # A and b stay C-contiguous arrays of the layer's dtype: assignment copies into them.
    @property
    def A(self):
        return self._A

    @A.setter
    def A(self, value):
        _assign("A", self._A, value)

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        _assign("b", self._b, value)

    @property
    def skipped_zeros(self):
        """Whether the last forward pass took the sparse-input products."""
        env = self.__dict__.get("_env") or {}
        return bool(self.sparse_input and "used" in env and env["used"][0])

    @property
    def identity(self):
        return isinstance(self.activation, _activations.Identity)

    # --- what the kernels see ------------------------------------------------------------------
    def output_shape(self, in_shape):
        if in_shape is not None:
            if len(in_shape) != 1:
                raise ValueError(f"{self!r} needs flat rows, but gets {fmt_shape(in_shape)}; "
                                 f"put a flatten layer before it")
            if in_shape[0] is not None and in_shape[0] != self.in_features:
                raise ValueError(f"{self!r} expects {self.in_features} inputs but gets {in_shape[0]}")
        return (self.units,)

    def buffers(self, in_shape):
        return {"S": (self.units,)} if self.identity else {"S": (self.units,), "dS": (self.units,)}

    def scratch(self, in_shape, batch):
        return sparse_scratch(batch, self.in_features, self.dtype) if self.sparse_input else {}

    def constants(self):
        return self.activation.constants(prefix="act_")

    def aliases(self, training):
        return {"Y": "S", "dS": "dY"} if self.identity else {}

    def forward_calls(self, training):
        if self.sparse_input:
            calls = [Call(dense_forward_sparse, "X", "A", "b", "S", *_SPARSE_ARGS)]
        else:
            calls = [Call(dense_forward, "X", "A", "b", "S")]
        if not self.identity:
            calls.append(self.activation.forward_call("S", "Y", prefix="act_"))
        return calls

    def backward_calls(self, training=True):
        calls = [] if self.identity else [self.activation.backward_call("S", "Y", "dY", "dS", prefix="act_")]
        if self.sparse_input:
            calls.append(Call(dense_backward_params_sparse, "X", "dS", "dA", "db", *_SPARSE_ARGS))
        else:
            calls.append(Call(dense_backward_params, "X", "dS", "dA", "db"))
        calls.append(Call(dense_backward_input, "dS", "A", "dX", input_grad=True))
        return calls

    def onnx_nodes(self, g, x):
        """ONNX: S = Gemm(X, A, b) = X·A + b, then Y = f(S) (the activation's nodes)."""
        s = g.op("Gemm", x, g.param("A", self.A), g.param("b", self.b), out="S")
        return g.activation(self.activation, s)

    def lecture_arrays(self, phase):
        arrays = super().lecture_arrays(phase)
        if phase == "forward" and arrays:   # M = X·A is summed into S in place; shown apart here
            X = arrays[0][1]
            arrays.insert(1, ("M", np.asarray(X, np.float64) @ np.asarray(self.A, np.float64)))
        return arrays

    def explain(self, in_shape, batch, first=False):
        n, k, m = batch, self.in_features, self.units
        f = self.activation.name
        fwd = [f"M = X·A          {dims((n, k))}·{dims((k, m))} → {dims((n, m))}",
               f"S = M + b        {dims((n, m))} + {dims((m,))}",
               "Y = S            (identity)" if self.identity else f"Y = {f}(S)   {dims((n, m))}"]
        bwd = ["dS = dY          (identity)" if self.identity else f"dS = {f}'(S) ∘ dY   {dims((n, m))}",
               f"db = Σ_rows dS   {dims((n, m))} → {dims((m,))}",
               f"dA = Xᵀ·dS       {dims((k, n))}·{dims((n, m))} → {dims((k, m))}",
               f"dX = dS·Aᵀ       {dims((n, m))}·{dims((m, k))} → {dims((n, k))}" if not first
               else "dX: not computed (nothing before the first layer needs it)"]
        return {"forward": fwd, "backward": bwd, "macs": (n * k * m, n * k * m * (1 if first else 2))}

    def __repr__(self):
        act = "" if self.identity else f", activation={self.activation!r}"
        return f"Dense({self.in_features} → {self.units}{act})"


def _assign(name, target, value):
    value = np.asarray(value)
    if value.shape != target.shape:
        raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
    target[...] = value
