"""Dropout, batch gathering, predicted classes, gradient clipping and optimizer updates (math.md §5)."""

import math

from .._jit import jit
from .intrinsics import prefetch


# (X: (N,), U: (N,) uniform [0, 1), p: float, scale: float, Y: (N,), mask: (N,)) -> None
@jit
def dropout_forward(X, U, p, scale, Y, mask):
    """mask = scale·[U ≥ p] with scale = 1/(1 − p) (inverted dropout); Y = X ∘ mask."""
    for i in range(X.shape[0]):
        m = scale if U[i] >= p else 0.0
        mask[i] = m
        Y[i] = X[i] * m


# (dY: (N,), mask: (N,), dX: (N,)) -> None
@jit
def mul_into(dY, mask, dX):
    """dX = dY ∘ mask."""
    for i in range(dY.shape[0]):
        dX[i] = dY[i] * mask[i]


# (X: (N,), Y: (N,)) -> None
@jit
def copy_into(X, Y):
    """Y = X (a plain loop: a slice assignment would cost seconds of compiling)."""
    for i in range(X.shape[0]):
        Y[i] = X[i]


# (X: (N, d) any real dtype, idx: int[:] (n,), scale: float, out: (n, d)) -> None
@jit
def gather_rows(X, idx, scale, out):
    """out[r] = X[idx[r]] · scale (a batch gathered into a reused buffer, cast on the fly)."""
    d = X.shape[1]
    for r in range(idx.shape[0]):
        src = idx[r]
        for j in range(d):
            out[r, j] = X[src, j] * scale


# (X: (N, d), idx: int[:] (n,)) -> None
@jit
def prefetch_rows(X, idx):
    """Ask for rows X[idx] to be brought into cache ahead of a gather_rows of them (a batch's rows
    are scattered over a data set larger than the cache, so each would wait for memory)."""
    row = X.shape[1] * X.itemsize
    for r in range(idx.shape[0]):
        o = idx[r] * row
        for q in range(0, row, 64):
            prefetch(X, o + q)


# (g: (N,)) -> float
@jit
def sum_squares(g):
    """Σ gᵢ² (for gradient norms)."""
    total = 0.0
    for i in range(g.shape[0]):
        total += g[i] * g[i]
    return total


# (g: (N,), c: float) -> None
@jit
def scale_inplace(g, c):
    for i in range(g.shape[0]):
        g[i] *= c


# (norm: float, c: float) -> float
@jit
def clip_norm_factor(norm, c):
    """Global clipping: g ← c·g/‖g‖ if ‖g‖ > c, i.e. the factor c/‖g‖ (or 1 when ‖g‖ ≤ c)."""
    return c / norm if norm > c else 1.0


# (g: (N,), c: float) -> None
@jit
def clip_value_inplace(g, c):
    """gᵢ ← sign(gᵢ)·c where |gᵢ| > c (local clipping)."""
    for i in range(g.shape[0]):
        if g[i] > c:
            g[i] = c
        elif g[i] < -c:
            g[i] = -c


# (θ, g, v: (N,), lr, momentum, weight_decay: float, nesterov: bool) -> None
@jit
def sgd_update(theta, g, v, lr, momentum, weight_decay, nesterov):
    """SGD with momentum and L2 weight decay, as torch.optim.SGD:

    g' = g + λθ;  v ← μv + g';  step = g' + μv (Nesterov) or v;  θ ← θ − η·step.
    With μ = 0 this is plain θ ← θ − η(g + λθ).
    """
    for i in range(theta.shape[0]):
        gi = g[i] + weight_decay * theta[i]
        if momentum != 0.0:
            v[i] = momentum * v[i] + gi
            if nesterov:
                gi = gi + momentum * v[i]
            else:
                gi = v[i]
        theta[i] -= lr * gi


# (θ, g, m, v: (N,), lr, beta1, beta2, eps, weight_decay: float, t: int) -> None
@jit
def adam_update(theta, g, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient, as torch.optim.Adam:

    m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  θ ← θ − η·m̂/(√v̂ + ε),
    m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).
    """
    c1 = 1.0 - beta1 ** t
    c2 = 1.0 - beta2 ** t
    for i in range(theta.shape[0]):
        gi = g[i] + weight_decay * theta[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        theta[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


# How a classifier's outputs become a class (Loss.pred_rule picks one):
PRED_NONE, PRED_ARGMAX, PRED_POSITIVE, PRED_HALF = 0, 1, 2, 3   # none, argmax, logit > 0, output > 0.5


@jit
def predict_row(out, i, rule):
    """The class of row i: the first largest output (PRED_ARGMAX), or 1/0 by out[i, 0] > 0
    (PRED_POSITIVE, a logit) or > 0.5 (PRED_HALF)."""
    if rule == PRED_ARGMAX:
        best = 0
        for j in range(1, out.shape[1]):
            if out[i, j] > out[i, best]:
                best = j
        return best
    if rule == PRED_POSITIVE:
        return 1 if out[i, 0] > 0 else 0
    return 1 if out[i, 0] > 0.5 else 0


# (out: (n, k), rule: int, classes: int[:] (n,)) -> None
@jit
def predict_classes_into(out, rule, classes):
    for i in range(out.shape[0]):
        classes[i] = predict_row(out, i, rule)


# (out: (n, k), labels: int[:] (n,), rule: int) -> int
@jit
def count_correct(out, labels, rule):
    correct = 0
    for i in range(out.shape[0]):
        if predict_row(out, i, rule) == labels[i]:
            correct += 1
    return correct
