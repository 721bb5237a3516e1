"""Matrix-product and dense-layer kernels (math.md §1).

Forward ``S = X·A + b``; backward ``dA = Xᵀ·dS``, ``db = Σ_rows dS``, ``dX = dS·Aᵀ``.

Products go through BLAS (Numba's ``np.dot`` calls SciPy's BLAS) when they are large, and
through plain loops when they are so small that a BLAS call's fixed cost would dominate
(``SMALL`` multiply-adds).  When most entries of X are zero (MNIST pixels: 81%), the products
with X (``X·A`` forward, ``Xᵀ·dS`` for dA) skip them: a zero input contributes nothing to
either sum, so the loops visit only the nonzeros (``SPARSE``: the largest nonzero fraction for
which that beats BLAS).  All paths compute the same sums, in different orders; the loop order
keeps the innermost loop contiguous.
"""

import numpy as np

from .._jit import jit

SMALL = 4096    # multiply-adds below which loops beat a BLAS call
SPARSE = 0.25   # nonzero fraction of X below which skipping zeros beats BLAS


# (X: (n, k)) -> float
@jit
def nonzero_fraction(X):
    n, k = X.shape
    count = 0
    for i in range(n):
        for p in range(k):
            if X[i, p] != 0:
                count += 1
    return count / max(n * k, 1)


# (X: (n, k) mostly zeros, A: (k, m), out: (n, m)) -> None
@jit
def sparse_gemm_nn(X, A, out):
    """out = X·A visiting only the nonzeros of X: out[i] = Σ_{p: X[i,p] ≠ 0} X[i,p]·A[p],
    four rows of A at a time (one load and store of out[i] per four multiply-adds)."""
    n, k = X.shape
    m = A.shape[1]
    nzi = np.empty(k, np.int64)
    nzv = np.empty(k, X.dtype)
    for i in range(n):
        c = 0
        for p in range(k):
            if X[i, p] != 0:
                nzi[c] = p
                nzv[c] = X[i, p]
                c += 1
        for j in range(m):
            out[i, j] = 0.0
        q = 0
        while q + 4 <= c:
            p0, p1, p2, p3 = nzi[q], nzi[q + 1], nzi[q + 2], nzi[q + 3]
            x0, x1, x2, x3 = nzv[q], nzv[q + 1], nzv[q + 2], nzv[q + 3]
            for j in range(m):
                out[i, j] += x0 * A[p0, j] + x1 * A[p1, j] + x2 * A[p2, j] + x3 * A[p3, j]
            q += 4
        while q < c:
            p0, x0 = nzi[q], nzv[q]
            for j in range(m):
                out[i, j] += x0 * A[p0, j]
            q += 1


# (X: (n, k) mostly zeros, G: (n, m), out: (k, m)) -> None
@jit
def sparse_gemm_tn(X, G, out):
    """out = Xᵀ·G visiting only the nonzeros of X: out[p] = Σ_{i: X[i,p] ≠ 0} X[i,p]·G[i],
    each row of out written once, four rows of G at a time."""
    n, k = X.shape
    m = G.shape[1]
    nzi = np.empty(n, np.int64)
    nzv = np.empty(n, X.dtype)
    for p in range(k):
        c = 0
        for i in range(n):
            if X[i, p] != 0:
                nzi[c] = i
                nzv[c] = X[i, p]
                c += 1
        for j in range(m):
            out[p, j] = 0.0
        q = 0
        while q + 4 <= c:
            i0, i1, i2, i3 = nzi[q], nzi[q + 1], nzi[q + 2], nzi[q + 3]
            x0, x1, x2, x3 = nzv[q], nzv[q + 1], nzv[q + 2], nzv[q + 3]
            for j in range(m):
                out[p, j] += x0 * G[i0, j] + x1 * G[i1, j] + x2 * G[i2, j] + x3 * G[i3, j]
            q += 4
        while q < c:
            i0, x0 = nzi[q], nzv[q]
            for j in range(m):
                out[p, j] += x0 * G[i0, j]
            q += 1


# (X: float[:, :] (n, k), A: float[:, :] (k, m), out: float[:, :] (n, m)) -> None
@jit
def gemm_nn(X, A, out):
    """out = X·A."""
    n, k = X.shape
    m = A.shape[1]
    if n * k * m > SMALL:
        if nonzero_fraction(X) < SPARSE:
            sparse_gemm_nn(X, A, out)
        else:
            np.dot(X, A, out)
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
        if nonzero_fraction(X) < SPARSE:
            sparse_gemm_tn(X, G, out)
        else:
            np.dot(X.T, G, out)
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
