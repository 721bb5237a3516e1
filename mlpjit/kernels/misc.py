"""Element-wise helpers, batch gathering and predicted classes (math.md §5)."""

from .._jit import jit
from .intrinsics import prefetch


# (dY, mask, dX: arrays of one shape) -> None
@jit
def mul_into(dY, mask, dX):
    """dX = dY ∘ mask."""
    g, mk, d = dY.reshape(-1), mask.reshape(-1), dX.reshape(-1)
    for i in range(g.shape[0]):
        d[i] = g[i] * mk[i]


# (X, R, Y: arrays of one shape) -> None
@jit
def add_into(X, R, Y):
    """Y = X + R (a residual block's output x + F(x), and its input derivative)."""
    x, r, y = X.reshape(-1), R.reshape(-1), Y.reshape(-1)
    for i in range(x.shape[0]):
        y[i] = x[i] + r[i]


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
