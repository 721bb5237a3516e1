"""Softmax, log-sum-exp and the losses on logits (math.md §3, §4).

Each row of ``S`` is one example's logits.  Softmax is computed as ``softmax(s − max(s))``;
``ln p`` comes from log-sum-exp, never from ``ln(softmax)``, so no ``ln 0`` can occur.
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


# (S: (n, k), labels: int[:] (n,), P: (n, k)) -> float
@jit
def cross_entropy_labels_forward(S, labels, P):
    """E = −(1/N) Σᵢ ln p_{i,yᵢ} = (1/N) Σᵢ (LSE(sᵢ) − s_{i,yᵢ}); also fills P = softmax(S)."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        m = S[i, 0]
        for j in range(1, k):
            if S[i, j] > m:
                m = S[i, j]
        z = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            P[i, j] = e
            z += e
        inv = 1.0 / z
        for j in range(k):
            P[i, j] *= inv
        total += m + math.log(z) - S[i, labels[i]]
    return total / n


# (P: (n, k), labels: (n,), dS: (n, k)) -> None
@jit
def cross_entropy_labels_backward(P, labels, dS):
    """dS = (P − onehot(y)) / N."""
    n, k = P.shape
    inv = 1.0 / n
    for i in range(n):
        for j in range(k):
            dS[i, j] = P[i, j] * inv
        dS[i, labels[i]] -= inv


# (S: (n, k), T: (n, k), P: (n, k)) -> float
@jit
def cross_entropy_probs_forward(S, T, P):
    """E = −(1/N) Σᵢⱼ tᵢⱼ (sᵢⱼ − LSE(sᵢ)) for target distributions T; also fills P."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        m = S[i, 0]
        for j in range(1, k):
            if S[i, j] > m:
                m = S[i, j]
        z = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            P[i, j] = e
            z += e
        lse = m + math.log(z)
        inv = 1.0 / z
        for j in range(k):
            P[i, j] *= inv
            total -= T[i, j] * (S[i, j] - lse)
    return total / n


# (P: (n, k), T: (n, k), dS: (n, k)) -> None
@jit
def cross_entropy_probs_backward(P, T, dS):
    """dS = (P·Σⱼtᵢⱼ − T) / N, which is (P − T)/N when each row of T sums to 1."""
    n, k = P.shape
    inv = 1.0 / n
    for i in range(n):
        rowsum = 0.0
        for j in range(k):
            rowsum += T[i, j]
        for j in range(k):
            dS[i, j] = (P[i, j] * rowsum - T[i, j]) * inv


# (S: (n, k), T: (n, k)) -> float
@jit
def binary_cross_entropy_forward(S, T):
    """E = −mean[t ln σ(s) + (1 − t) ln(1 − σ(s))] = mean[max(s, 0) − s·t + ln(1 + e^−|s|)]."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            total += max(s, 0.0) - s * T[i, j] + math.log1p(math.exp(-abs(s)))
    return total / (n * k)


# (S: (n, k), T: (n, k), dS: (n, k)) -> None
@jit
def binary_cross_entropy_backward(S, T, dS):
    """dS = (σ(S) − T) / (N·k)."""
    n, k = S.shape
    inv = 1.0 / (n * k)
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            if s >= 0:
                g = 1.0 / (1.0 + math.exp(-s))
            else:
                e = math.exp(s)
                g = e / (1.0 + e)
            dS[i, j] = (g - T[i, j]) * inv
