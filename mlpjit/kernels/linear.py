"""Matrix products: ``X·A``, ``Xᵀ·G`` and ``G·Aᵀ`` (math.md §1), the building blocks of the dense
and convolution layers' kernels.

Products go through BLAS (Numba's ``np.dot`` calls SciPy's BLAS) when they are large, and
through plain loops when they are so small that a BLAS call's fixed cost would dominate
(``SMALL`` multiply-adds).  Both paths compute the same sums; the loop order keeps the
innermost loop contiguous.
"""

import numpy as np

from .._jit import jit

SMALL = 4096   # multiply-adds below which loops beat a BLAS call
NARROW = 8     # outputs per row below which a small product runs as dot products (one SIMD width)


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
