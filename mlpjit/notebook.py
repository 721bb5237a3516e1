"""How mlpjit's objects show in Jupyter (``_repr_html_``): a model as a table of its layers with
their shapes, parameters and equations; a fit's history as its curves (inline SVG: no plotting
library needed) and its last epoch."""

from html import escape

import numpy as np

_CSS = ("<style>.mlpjit td,.mlpjit th{text-align:left;vertical-align:top;padding:2px 8px}"
        ".mlpjit code{white-space:pre-wrap}</style>")


def _input_shape(model):
    shape = (getattr(model, "metadata", None) or {}).get("input_shape")
    if shape:
        return tuple(shape)
    first = getattr(model, "in_features", None)
    return (int(first),) if first else None


def model_html(model):
    """A table: each layer, its output per example, its parameters and its forward equations
    (the first formula of its docstring, as ``mlpjit explain`` prints them)."""
    from .explain import _formula
    shape = _input_shape(model)
    rows = []
    for i, layer in enumerate(model.layers):
        out = ""
        if shape is not None:
            try:
                shape = tuple(layer.output_shape(shape))
                out = " × ".join(str(s) for s in shape)
            except ValueError:
                shape = None
        n = sum(p.size for _, p, _ in layer.parameters())
        rows.append(f"<tr><td>({i})</td><td>{escape(repr(layer))}</td><td>{out}</td><td>{n:,}</td>"
                    f"<td><code>{escape(_formula(layer))}</code></td></tr>")
    head = "<tr><th></th><th>layer</th><th>output per example</th><th>parameters</th><th>equations</th></tr>"
    dtype = np.dtype(model.dtype).name
    return (f"{_CSS}<div class='mlpjit'><b>Sequential</b>: {len(model.layers)} layers, "
            f"{model.n_params:,} parameters, {dtype}<table>{head}{''.join(rows)}</table></div>")


def _svg(series, title, width=320, height=180):
    """A line chart of {name: [values]} against the epoch (1, 2, ...)."""
    values = [v for vs in series.values() for v in vs if np.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    n = max(len(v) for v in series.values())
    pad = 30

    def xy(i, v):
        x = pad + (width - pad - 8) * (i / max(n - 1, 1))
        y = height - pad - (height - pad - 10) * ((v - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"font-family='sans-serif' font-size='10'>",
             f"<text x='{pad}' y='10'>{escape(title)}</text>",
             f"<line x1='{pad}' y1='{height - pad}' x2='{width - 8}' y2='{height - pad}' stroke='#999'/>",
             f"<line x1='{pad}' y1='10' x2='{pad}' y2='{height - pad}' stroke='#999'/>",
             f"<text x='2' y='{height - pad}'>{lo:.3g}</text><text x='2' y='20'>{hi:.3g}</text>",
             f"<text x='{width - 60}' y='{height - 12}'>epoch {n}</text>"]
    for k, (name, vs) in enumerate(series.items()):
        color = colors[k % len(colors)]
        points = " ".join(xy(i, v) for i, v in enumerate(vs) if np.isfinite(v))
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{points}'/>")
        parts.append(f"<text x='{pad + 6 + 80 * k}' y='{height - 2}' fill='{color}'>{escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def history_html(history):
    """The loss and accuracy curves of a fit, and its last epoch's figures."""
    h = history.history
    charts = []
    for what in ("loss", "accuracy"):
        series = {k: h[k] for k in (what, f"val_{what}") if k in h}
        if series:
            charts.append(_svg(series, what))
    last = {k: v[-1] for k, v in h.items() if k.endswith(("loss", "accuracy"))}
    cells = "".join(f"<td>{escape(k)} {v:.4g}</td>" for k, v in last.items())
    how = "compiled step" if history.compiled else f"layer by layer ({escape(str(history.why_not))})"
    stopped = f"<br>{escape(history.stopped)}" if history.stopped else ""
    return (f"{_CSS}<div class='mlpjit'><b>History</b>: {len(history.epoch)} epochs, {how}{stopped}"
            f"<div>{''.join(charts)}</div><table><tr>{cells}</tr></table></div>")
