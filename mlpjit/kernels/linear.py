"""Matrix-product and dense-layer kernels (math.md §1).

Forward ``S = X·A + b``; backward ``dA = Xᵀ·dS``, ``db = Σ_rows dS``, ``dX = dS·Aᵀ``.

Products go through BLAS (Numba's ``np.dot`` calls SciPy's BLAS) when they are large, and
through plain loops when they are so small that a BLAS call's fixed cost would dominate
(``SMALL`` multiply-adds).  Both paths compute the same sums; the loop order keeps the
innermost loop contiguous.

Sparse input.  When most entries of X are zero (MNIST pixels: 81%), the two products with X
(``S = X·A + b`` and ``dA = Xᵀ·dS``) skip them: a zero X[i, p] adds nothing to either sum.
``sparse_rows`` lists row i's nonzeros once per batch (``idx[i, :cnt[i]]``, ``val``),
``sparse_cols`` sorts the same list by column for dA, and the two products visit only those
entries.  The sums are the same as the dense ones, taken in another order; the one difference
is that a zero input times an infinite weight is skipped instead of giving NaN.
``sparse_pays`` is the rule both the layer and the compiled loop use: a product large enough
for BLAS whose X has fewer than ``SPARSE`` nonzeros.
"""

import numpy as np
from numba import uint64 as U

from .._jit import jit

SMALL = 4096   # multiply-adds below which loops beat a BLAS call
NARROW = 8     # outputs per row below which a small product runs as dot products (one SIMD width)
SPARSE = 0.22  # nonzero fraction of X below which skipping zeros beats BLAS (benchmarks/sparse.py:
               # faster at 0.19, MNIST; mostly slower at 0.25)


# (X: float[:, :] (n, k), A: float[:, :] (k, m), out: float[:, :] (n, m)) -> None
@jit
def gemm_nn(X, A, out):
    """out = X·A."""
    n, k = X.shape
    m = A.shape[1]
    if n * k * m > SMALL:
        np.dot(X, A, out)
        return
    if m < NARROW:  # few outputs: one dot product each beats a short contiguous inner loop
        for i in range(n):
            for j in range(m):
                acc = 0.0
                for p in range(k):
                    acc += X[i, p] * A[p, j]
                out[i, j] = acc
        return
    for i in range(n):
        for j in range(m):
            out[i, j] = 0.0
        for p in range(k):
            x = X[i, p]
            for j in range(m):
                out[i, j] += x * A[p, j]


# (X: float[:, :] (n, k), G: float[:, :] (n, m), out: float[:, :] (k, m)) -> None
@jit
def gemm_tn(X, G, out):
    """out = Xᵀ·G."""
    n, k = X.shape
    m = G.shape[1]
    if n * k * m > SMALL:
        np.dot(X.T, G, out)
        return
    if m < NARROW:
        for p in range(k):
            for j in range(m):
                acc = 0.0
                for i in range(n):
                    acc += X[i, p] * G[i, j]
                out[p, j] = acc
        return
    for p in range(k):
        for j in range(m):
            out[p, j] = 0.0
    for i in range(n):
        for p in range(k):
            x = X[i, p]
            for j in range(m):
                out[p, j] += x * G[i, j]


# (G: float[:, :] (n, m), A: float[:, :] (k, m), out: float[:, :] (n, k)) -> None
@jit
def gemm_nt(G, A, out):
    """out = G·Aᵀ."""
    n, m = G.shape
    k = A.shape[0]
    if n * k * m > SMALL:
        np.dot(G, A.T, out)
        return
    for i in range(n):
        for p in range(k):
            acc = 0.0
            for j in range(m):
                acc += G[i, j] * A[p, j]
            out[i, p] = acc


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

# (X: (n, k)) -> float
@jit
def nonzero_fraction(X):
    """The fraction of entries of X that are not zero (NaN counts as nonzero)."""
    Xf = X.reshape(-1)
    count = 0
    for i in range(Xf.shape[0]):
        count += np.int64(Xf[i] != 0)
    return count / max(Xf.shape[0], 1)


# (X: (n, k), m: int) -> bool
@jit
def sparse_pays(X, m):
    """Whether X·A (A with m columns) and Xᵀ·dS should skip X's zeros."""
    n, k = X.shape
    return n * k * m > SMALL and nonzero_fraction(X) < SPARSE


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
