"""Softmax over each row (math.md §3): used by the softmax layer and the losses on logits.

Each row of ``S`` is one example's logits.  Softmax is computed as ``softmax(s − max(s))``.
"""

import math

from .._jit import jit


# (S: float[:, :] (n, k), Y: float[:, :] (n, k)) -> None
@jit
def softmax_forward(S, Y):
    """Y = softmax(S) per row."""
    n, k = S.shape
    for i in range(n):
        m = S[i, 0]
        for j in range(1, k):
            if S[i, j] > m:
                m = S[i, j]
        total = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            Y[i, j] = e
            total += e
        inv = 1.0 / total
        for j in range(k):
            Y[i, j] *= inv


# (Y: (n, k), dY: (n, k), dX: (n, k)) -> None
@jit
def softmax_backward(Y, dY, dX):
    """dX = Y ∘ (dY − ⟨dY, Y⟩) per row (the Jacobian-vector product, no k×k matrix)."""
    n, k = Y.shape
    for i in range(n):
        dot = 0.0
        for j in range(k):
            dot += dY[i, j] * Y[i, j]
        for j in range(k):
            dX[i, j] = Y[i, j] * (dY[i, j] - dot)
