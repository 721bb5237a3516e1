"""``mlpjit trace``: one forward and backward pass, every intermediate array by its lecture name.

Layer by layer going forward: X, M (= X·A for a dense layer), S, Y; then the loss E and its
derivative dY; then going back: dS, db, dA, dX.  An array of at most ``SMALL`` values is
printed whole; a larger one as its shape, min, max, norm and top-left corner.  Last, the
central-difference check of each parameter's gradient on the same example, in float64
(:func:`mlpjit.gradcheck`).  Everything runs in float64 on a copy of the model.
"""

from __future__ import annotations

import numpy as np

from .gradcheck import gradcheck
from .layers.base import dims

__all__ = ["trace_text", "SMALL"]

SMALL = 64  # values of an array printed whole


def _fmt(a, p):
    a = np.asarray(a, dtype=np.float64)
    if a.size <= SMALL:
        body = np.array2string(a, precision=p, separator=", ", max_line_width=100,
                               formatter={"float_kind": lambda v: f"{v:.{p}g}"})
        return body
    corner = a.reshape(a.shape[0], -1)[:3, :4] if a.ndim > 1 else a[:6]
    c = np.array2string(corner, separator=", ", max_line_width=100,
                        formatter={"float_kind": lambda v: f"{v:.{p}g}"})
    return (f"{dims(a.shape)}  min {a.min():.{p}g}  max {a.max():.{p}g}  norm "
            f"{np.linalg.norm(a):.{p}g}  corner {c}")


def _walk(layers, prefix=""):
    for i, layer in enumerate(layers):
        label = f"{prefix}{i}"
        inner = getattr(layer, "layers", None)
        yield label, layer
        if inner:
            yield from _walk(inner, label + ".")


def _show(lines, name, a, p, indent="    "):
    text = _fmt(a, p)
    if "\n" in text:
        pad = " " * (len(indent) + len(name) + 3)
        text = text.replace("\n", "\n" + pad)
    lines.append(f"{indent}{name} = {text}")


def trace_text(model, loss, ds, start, n, precision=6):
    """The trace of examples ``start .. start + n − 1`` of the training split, as text."""
    p = precision
    m = model.astype(np.float64)
    X = ds.scaled(ds.X_train[start:start + n]).reshape((n,) + tuple(ds.input_shape))
    y = ds.y_train[start:start + n]
    lines = [f"trace of training example{'s' if n > 1 else ''} {start}"
             + (f"..{start + n - 1}" if n > 1 else "") + f" (float64, {p} significant digits)", ""]
    target = y if ds.task != "classification" else (
        [ds.class_names[int(v)] for v in y] if ds.class_names else list(y))
    lines.append(f"input X {dims(X.shape)}, target {np.asarray(target).tolist()}")
    lines.append("")
    out = m.forward(X, training=True)
    m.freeze_randomness(True)       # the check below sees the same dropout masks
    E = loss.forward(out, y)
    dOut = np.array(loss.backward())
    m.backward(dOut, need_dX=True)
    lines.append("forward")
    for label, layer in _walk(m.layers):
        lines.append(f"  ({label}) {layer!r}")
        for name, a in layer.lecture_arrays("forward"):
            _show(lines, name, a, p)
    lines.append("")
    lines.append(f"loss {loss.name}")
    lines.append(f"    E = {E:.{p}g}")
    _show(lines, "dY", dOut, p)
    lines.append("")
    lines.append("backward")
    for label, layer in reversed(list(_walk(m.layers))):
        lines.append(f"  ({label}) {layer!r}")
        for name, a in layer.lecture_arrays("backward"):
            _show(lines, name, a, p)
    lines.append("")
    errors = gradcheck(m, loss, X, y, training=True)
    lines.append("central differences (E(θ + ε) − E(θ − ε))/2ε against backward, float64:")
    for name, err in errors.items():
        verdict = "OK" if err <= 1e-6 else "CHECK"
        lines.append(f"    {name:>10}  worst relative error {err:.2e}  {verdict}")
    m.freeze_randomness(False)
    return "\n".join(lines) + "\n"


class Trace:
    """A traced step (:func:`trace_text`'s text): ``str()`` prints it, Jupyter shows it as
    preformatted text."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    __repr__ = __str__

    def _repr_html_(self):
        from html import escape
        return f"<pre class='mlpjit'>{escape(self.text)}</pre>"


def trace(model, X, y, loss=None, start=0, n=1, precision=6):
    """``mlpjit trace`` for a model built in code: every array of one training step on examples
    ``start .. start + n − 1`` of (X, y), in float64, and the central-difference check of every
    gradient; a :class:`Trace`.  ``loss`` defaults to the last fit's."""
    from . import losses as _losses
    from .data import Dataset
    from .errors import ConfigError
    from .fitting import _features, _loss_of, _targets
    name, L = _loss_of(model, loss)
    X = _features("X", X)
    width = int(np.prod(model.output_shape(X.shape[1:])))
    task, y, k = _targets("y", y, len(X), L, width)
    if not 0 <= start < len(X) or n < 1 or start + n > len(X):
        raise ConfigError(f"trace: examples {start}..{start + n - 1} are not in X's {len(X)} rows")
    ds = Dataset("arrays", task, X, y, None, None, None, None, k)
    return Trace(trace_text(model, _losses.get(name), ds, start, n, precision))
