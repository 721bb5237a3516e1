"""Losses on outputs compared directly with targets, and the soft F1 loss (math.md §4).

``Yh`` is the model output Ŷ (n, k), ``T`` the target Y (n, k); each forward returns E and
each backward writes dŶ into ``dYh``.
"""

import math

from .._jit import jit


# (Yh: (n, k), T: (n, k)) -> float
@jit
def mse_forward(Yh, T):
    """E = (1/(N·k)) Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = Yh[i, j] - T[i, j]
            total += d * d
    return total / (n * k)


@jit
def mse_backward(Yh, T, dYh):
    """dŶ = 2(Ŷ − Y)/(N·k)."""
    n, k = Yh.shape
    c = 2.0 / (n * k)
    for i in range(n):
        for j in range(k):
            dYh[i, j] = c * (Yh[i, j] - T[i, j])


@jit
def sum_squares_forward(Yh, T):
    """E = (1/N) Σᵢ ½‖ŷᵢ − yᵢ‖²."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = Yh[i, j] - T[i, j]
            total += d * d
    return 0.5 * total / n


@jit
def sum_squares_backward(Yh, T, dYh):
    """dŶ = (Ŷ − Y)/N."""
    n, k = Yh.shape
    c = 1.0 / n
    for i in range(n):
        for j in range(k):
            dYh[i, j] = c * (Yh[i, j] - T[i, j])


@jit
def smape_forward(Yh, T):
    """E = mean of |ŷ − y| / (|ŷ| + |y|); a term with ŷ = y = 0 counts as 0."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = abs(Yh[i, j]) + abs(T[i, j])
            if d > 0:
                total += abs(Yh[i, j] - T[i, j]) / d
    return total / (n * k)


@jit
def smape_backward(Yh, T, dYh):
    """dŷ = [sign(ŷ − y)/(|ŷ| + |y|) − sign(ŷ)·|ŷ − y|/(|ŷ| + |y|)²] / count (0 where ŷ = y = 0)."""
    n, k = Yh.shape
    c = 1.0 / (n * k)
    for i in range(n):
        for j in range(k):
            yh = Yh[i, j]
            diff = yh - T[i, j]
            d = abs(yh) + abs(T[i, j])
            if d > 0:
                sd = 1.0 if diff > 0 else (-1.0 if diff < 0 else 0.0)
                sy = 1.0 if yh > 0 else (-1.0 if yh < 0 else 0.0)
                dYh[i, j] = c * (sd / d - sy * abs(diff) / (d * d))
            else:
                dYh[i, j] = 0.0


# (P: (n, k) probabilities, T: (n, k) one-hot or soft targets, work: (3, k)) -> float
@jit
def soft_f1_forward(P, T, work):
    """E = 1 − (1/k) Σⱼ F1ⱼ on the soft confusion matrix C = Tᵀ·P.

    TPⱼ = Σᵢ tᵢⱼ pᵢⱼ,  predictedⱼ = Σᵢ pᵢⱼ,  actualⱼ = Σᵢ tᵢⱼ,
    F1ⱼ = 2 TPⱼ / (predictedⱼ + actualⱼ).  ``work`` rows receive TP, predicted + actual, F1.
    """
    n, k = P.shape
    for j in range(k):
        work[0, j] = 0.0
        work[1, j] = 0.0
    for i in range(n):
        for j in range(k):
            work[0, j] += T[i, j] * P[i, j]
            work[1, j] += P[i, j] + T[i, j]
    f1 = 0.0
    for j in range(k):
        work[2, j] = 2.0 * work[0, j] / work[1, j] if work[1, j] > 0 else 0.0
        f1 += work[2, j]
    return 1.0 - f1 / k


# (P: (n, k), T: (n, k), work: (3, k) as left by soft_f1_forward, dP: (n, k)) -> None
@jit
def soft_f1_backward(P, T, work, dP):
    """dE/dpᵢⱼ = −(2/k) [tᵢⱼ/Dⱼ − TPⱼ/Dⱼ²] with Dⱼ = predictedⱼ + actualⱼ."""
    n, k = P.shape
    for i in range(n):
        for j in range(k):
            D = work[1, j]
            if D > 0:
                dP[i, j] = -(2.0 / k) * (T[i, j] / D - work[0, j] / (D * D))
            else:
                dP[i, j] = 0.0


# (S: (n, 1), P: (n, 1)) -> None : p = σ(s) for the one-output (binary) soft F1
@jit
def sigmoid_rows(S, P):
    n, k = S.shape
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            if s >= 0:
                P[i, j] = 1.0 / (1.0 + math.exp(-s))
            else:
                e = math.exp(s)
                P[i, j] = e / (1.0 + e)


# (P: (n, 1), T: (n, 1), work: (3, 1)) -> float : binary soft F1 of the positive class
@jit
def soft_f1_binary_forward(P, T, work):
    """E = 1 − 2TP/(Σp + Σt), TP = Σ pᵢtᵢ."""
    n = P.shape[0]
    tp = 0.0
    d = 0.0
    for i in range(n):
        tp += P[i, 0] * T[i, 0]
        d += P[i, 0] + T[i, 0]
    work[0, 0] = tp
    work[1, 0] = d
    f1 = 2.0 * tp / d if d > 0 else 0.0
    work[2, 0] = f1
    return 1.0 - f1


@jit
def soft_f1_binary_backward(P, T, work, dS):
    """dE/dsᵢ = −2[tᵢ/D − TP/D²]·pᵢ(1 − pᵢ), D = Σp + Σt (chain rule through σ)."""
    n = P.shape[0]
    tp = work[0, 0]
    D = work[1, 0]
    for i in range(n):
        p = P[i, 0]
        if D > 0:
            dS[i, 0] = -2.0 * (T[i, 0] / D - tp / (D * D)) * p * (1.0 - p)
        else:
            dS[i, 0] = 0.0
