"""Finite-difference check of hand-derived gradients (math.md §7).

For every parameter θ (and the input X), the analytic gradient from ``backward`` is compared
with the central difference (E(θ + ε) − E(θ − ε))/2ε computed in float64.
"""

import numpy as np

from . import losses as _losses
from .model import Sequential


def relative_error(analytic, numeric):
    """max |a − n| / max(max |a|, max |n|): the largest error relative to the gradient's scale.

    Element-wise ratios blow up on components that are zero up to rounding; dividing by the
    tensor's largest magnitude keeps the measure meaningful while a wrong formula still shows
    errors of order 1.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(n).max())
    diff = np.abs(a - n).max()
    return float(diff / scale) if scale > 0 else float(diff)


def gradcheck(model, loss, X, Y, eps=1e-6, training=False, max_checks=None, seed=0,
              check_input=True):
    """Largest relative error between analytic and central-difference gradients.

    Args:
        model: a :class:`~mlpjit.Sequential` or a single layer.  A float32 model is checked
            through a float64 copy (``astype``); custom layers must compute in float64.
        loss: a loss name or :class:`~mlpjit.losses.Loss`.
        X, Y: a (small) batch and its targets.
        eps: the finite-difference step.
        training: run in training mode; random masks (dropout) are drawn once and reused.
        max_checks: check at most this many randomly chosen elements of each parameter
            (and of X); None checks them all.

    Returns:
        ``{"0.A": err, "0.b": err, ..., "input": err}`` (see :func:`relative_error`).
    """
    if not isinstance(model, Sequential):
        model = Sequential([model])
    if model.dtype != np.float64:
        model = model.astype(np.float64)
    loss = _losses.get(loss)
    X = np.array(X, dtype=np.float64)
    rng = np.random.default_rng(seed)

    model.freeze_randomness(True)
    try:
        def objective():
            return loss.forward(model.forward(X, training=training), Y)

        objective()
        dX = np.array(model.backward(loss.backward(), need_dX=True))
        results = {}
        for name, p, g in model.parameters():
            results[name] = _check(p, np.array(g), objective, eps, max_checks, rng)
        if check_input:
            results["input"] = _check(X, dX, objective, eps, max_checks, rng)
        return results
    finally:
        model.freeze_randomness(False)


def _check(p, analytic, objective, eps, max_checks, rng):
    flat = p.reshape(-1)
    idx = np.arange(flat.size)
    if max_checks is not None and flat.size > max_checks:
        idx = np.sort(rng.choice(flat.size, size=max_checks, replace=False))
    numeric = np.empty(idx.size)
    for r, i in enumerate(idx):
        orig = flat[i]
        flat[i] = orig + eps
        e_plus = objective()
        flat[i] = orig - eps
        e_minus = objective()
        flat[i] = orig
        numeric[r] = (e_plus - e_minus) / (2 * eps)
    return relative_error(analytic.reshape(-1)[idx], numeric)
