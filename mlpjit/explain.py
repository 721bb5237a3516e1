"""``mlpjit explain``: a model's mathematics with the user's own shapes.

For each layer, in order: its forward and backward equations at the batch size (``M = X·A
(64×784)·(784×256) → (64×256)``, from the layer's own :meth:`~mlpjit.Layer.explain`), its
parameters, multiply-adds forward and backward, and the bytes of the arrays it keeps; then the
totals (parameters, FLOPs per example and per epoch, memory of a step) and the loss and the
update rule with their formulas.  :func:`summary` returns it as data (the run report uses it),
:func:`render` as plain text or Markdown.
"""

from __future__ import annotations

import inspect
import re
import math

import numpy as np

from .layers.base import _spec, dims
from .resources import refuse

__all__ = ["summary", "render", "check_run", "explain", "Explanation"]


def _nodes(model):
    """(label, node) for every node of the compiled step, with config-like labels."""
    out = []
    for i, layer in enumerate(model.layers):
        nodes = layer.nodes()
        if len(nodes) == 1:
            out.append((str(i), nodes[0]))
            continue
        inner = iter(range(len(nodes)))
        for j, node in enumerate(nodes):
            if j == 0:
                out.append((f"{i} start", node))
            elif j == len(nodes) - 1:
                out.append((f"{i} end", node))
            else:
                out.append((f"{i}.{next(inner)}", node))
    return out


def _plain_doc(obj):
    """A class's docstring as text for a terminal: reST's ``code`` and :role:`x` marks dropped."""
    doc = inspect.getdoc(type(obj)) or ""
    doc = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], doc)
    return doc.replace("``", "")


def _doc(obj):
    return " ".join(_plain_doc(obj).split("\n\n")[0].split())


def _formula(obj):
    """The first paragraph that holds a formula (``=`` or ``←``) of a class's docstring."""
    doc = _plain_doc(obj)
    for para in doc.split("\n\n"):
        if "=" in para or "←" in para:
            return " ".join(para.split())
    return " ".join(doc.split())


def summary(model, loss, optimizer, input_shape, batch, n_train=None, schedule=None, clip=None):
    """The explanation as data: ``{"layers": [...], "totals": {...}, "loss": ..., "update": ...}``."""
    shape = tuple(int(s) for s in input_shape)
    dtype = np.dtype(model.dtype)
    item = dtype.itemsize
    layers = []
    first_param = None
    nodes = _nodes(model)
    for k, (_, node) in enumerate(nodes):
        if node.params and first_param is None:
            first_param = k
    total_bytes = 0
    for k, (label, node) in enumerate(nodes):
        out_shape = tuple(int(s) for s in node.output_shape(shape))
        first = first_param is None or k <= first_param
        ex = node.explain(shape, batch, first=first)
        kept = sum(batch * math.prod(_spec(spec, dtype)[0]) * _spec(spec, dtype)[1].itemsize
                   for spec in node.buffers(shape).values())
        kept += sum(math.prod(_spec(spec, dtype)[0]) * _spec(spec, dtype)[1].itemsize
                    for spec in node.scratch(shape, batch).values())
        if "Y" not in node.aliases(True):
            kept += batch * math.prod(out_shape) * item
        if not first and "dX" not in node.aliases(True):
            kept += batch * math.prod(shape) * item
        n_params = sum(p.size for _, p, _ in node.parameters())
        param_bytes = sum(p.nbytes + g.nbytes for _, p, g in node.parameters())
        total_bytes += kept + param_bytes
        layers.append({"label": label, "layer": repr(node), "in": shape, "out": out_shape,
                       "params": int(n_params),
                       "param_shapes": {name: tuple(p.shape) for name, p, _ in node.parameters()},
                       "forward": ex["forward"], "backward": ex["backward"],
                       "macs_forward": int(ex["macs"][0]), "macs_backward": int(ex["macs"][1]),
                       "bytes": int(kept), "param_bytes": int(param_bytes)})
        shape = out_shape
    slots = getattr(optimizer, "slots", ())
    opt_bytes = sum(p.nbytes for _, p, _ in model.parameters()) * len(slots)
    total_bytes += opt_bytes + batch * math.prod(input_shape) * item
    macs_f = sum(r["macs_forward"] for r in layers)
    macs_b = sum(r["macs_backward"] for r in layers)
    flops_example = 2 * (macs_f + macs_b) / batch
    totals = {"params": int(model.n_params), "batch": int(batch), "dtype": dtype.name,
              "macs_forward_per_example": macs_f / batch, "macs_backward_per_example": macs_b / batch,
              "flops_per_example": flops_example, "optimizer_state_bytes": int(opt_bytes),
              "step_bytes": int(total_bytes)}
    if n_train:
        totals["n_train"] = int(n_train)
        totals["flops_per_epoch"] = flops_example * n_train
    update = {"optimizer": getattr(optimizer, "name", type(optimizer).__name__),
              "formula": _formula(optimizer),
              "hyperparameters": dict(lr=getattr(optimizer, "lr", None), **optimizer.constants())}
    if schedule:
        update["schedule"] = dict(schedule)
    if clip:
        update["clip"] = dict(clip)
    if getattr(optimizer, "max_norm", None) is not None:
        update["max_norm"] = {"c": optimizer.max_norm,
                              "weights": [name for name, _, _ in optimizer.incoming]}
    return {"layers": layers, "totals": totals,
            "loss": {"name": loss.name, "formula": _formula(loss)}, "update": update,
            "input_shape": tuple(int(s) for s in input_shape)}


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _count(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def render(info, markdown=False):
    """The explanation as text: plain (default) or Markdown."""
    t = info["totals"]
    lines = []
    h1 = "# " if markdown else ""
    h2 = "## " if markdown else ""
    lines.append(f"{h1}Model for inputs {dims(info['input_shape'])} per example, batch {t['batch']}, "
                 f"{t['dtype']}")
    lines.append("")
    for r in info["layers"]:
        lines.append(f"{h2}({r['label']}) {r['layer']}: {dims(r['in'])} → {dims(r['out'])} per example")
        if markdown:
            lines.append("")
            lines.append("```")
        ind = "" if markdown else "    "
        lines.append(f"{ind}forward:")
        lines += [f"{ind}  {x}" for x in r["forward"]]
        lines.append(f"{ind}backward:")
        lines += [f"{ind}  {x}" for x in r["backward"]]
        params = ", ".join(f"{n} {dims(s)}" for n, s in r["param_shapes"].items())
        lines.append(f"{ind}parameters: {r['params']:,}" + (f" ({params})" if params else ""))
        lines.append(f"{ind}multiply-adds: forward {_count(r['macs_forward'])}, backward "
                     f"{_count(r['macs_backward'])} per batch; arrays kept: {_bytes(r['bytes'])}")
        if markdown:
            lines.append("```")
        lines.append("")
    lines.append(f"{h2}Totals")
    if markdown:
        lines.append("")
    b = "- " if markdown else "  "
    lines.append(f"{b}parameters: {t['params']:,}")
    lines.append(f"{b}FLOPs per example: {_count(t['flops_per_example'])} "
                 f"(2 × multiply-adds: forward {_count(t['macs_forward_per_example'])}, backward "
                 f"{_count(t['macs_backward_per_example'])})")
    if "flops_per_epoch" in t:
        lines.append(f"{b}FLOPs per epoch: {_count(t['flops_per_epoch'])} ({t['n_train']:,} training examples)")
    lines.append(f"{b}memory of a step: {_bytes(t['step_bytes'])} (arrays kept, parameters and "
                 f"gradients, optimizer state {_bytes(t['optimizer_state_bytes'])}, the batch)")
    lines.append("")
    lines.append(f"{h2}Loss: {info['loss']['name']}")
    if markdown:
        lines.append("")
    lines.append(f"{b}{info['loss']['formula']}")
    lines.append("")
    u = info["update"]
    hp = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in u["hyperparameters"].items())
    lines.append(f"{h2}Update: {u['optimizer']} ({hp})")
    if markdown:
        lines.append("")
    lines.append(f"{b}{u['formula']}")
    if u.get("schedule"):
        lines.append(f"{b}learning rate schedule: {u['schedule']}")
    if u.get("clip"):
        lines.append(f"{b}clipping: {u['clip']}")
    if u.get("max_norm"):
        mn = u["max_norm"]
        lines.append(f"{b}max-norm after each update: each unit's incoming weights w <- w·min(1, "
                     f"{mn['c']:g}/‖w‖), in {', '.join(mn['weights'])}")
    return "\n".join(lines) + "\n"


def check_run(data, model, optimizer, batch, loss=None):
    """Refuse a built run that cannot fit: data, parameters, gradients, optimizer state and the
    step's buffers (the figures ``mlpjit explain`` prints)."""
    d = sum(getattr(a, "nbytes", 0) for a in (data.X_train, data.y_train, data.X_val, data.y_val,
                                               data.X_test, data.y_test) if a is not None)
    try:
        info = summary(model, loss, optimizer, data.input_shape, batch)
        step = info["totals"]["step_bytes"]
    except Exception:  # an unusual layer the summary cannot size: parameters only
        step = sum(p.nbytes * 2 for _, p, _ in model.parameters())
    refuse("the run", d + step, [("data", d), ("model, gradients, optimizer state and step buffers", step)])
    return d + step


class Explanation:
    """:func:`summary`'s data with its two faces: ``str()`` is ``mlpjit explain``'s text, and in
    Jupyter (``_repr_html_``) each layer's equations, shapes, parameters and costs, then the
    totals, the loss and the update.  ``info`` is the data."""

    def __init__(self, info):
        self.info = info

    def __str__(self):
        return render(self.info)

    def __repr__(self):
        return render(self.info)

    def _repr_html_(self):
        from html import escape
        info, t = self.info, self.info["totals"]
        out = [f"<div class='mlpjit'><b>Model for inputs {escape(dims(info['input_shape']))} per example, "
               f"batch {t['batch']}, {t['dtype']}</b><table>"
               "<tr><th></th><th>layer</th><th>shapes</th><th>forward</th><th>backward</th>"
               "<th>parameters</th><th>multiply-adds (fwd, bwd)</th></tr>"]
        for r in info["layers"]:
            fwd = escape("\n".join(r["forward"]))
            bwd = escape("\n".join(r["backward"]))
            out.append(f"<tr><td>({escape(r['label'])})</td><td>{escape(r['layer'])}</td>"
                       f"<td>{escape(dims(r['in']))} → {escape(dims(r['out']))}</td>"
                       f"<td><pre>{fwd}</pre></td><td><pre>{bwd}</pre></td><td>{r['params']:,}</td>"
                       f"<td>{_count(r['macs_forward'])}, {_count(r['macs_backward'])}</td></tr>")
        u = info["update"]
        out.append(f"</table><p>parameters {t['params']:,}; FLOPs per example "
                   f"{_count(t['flops_per_example'])}; memory of a step {_bytes(t['step_bytes'])}</p>"
                   f"<p>loss {escape(info['loss']['name'])}: <code>{escape(info['loss']['formula'])}</code></p>"
                   f"<p>update {escape(str(u['optimizer']))}: <code>{escape(u['formula'])}</code></p></div>")
        return "".join(out)


def explain(model, batch_size=32, loss=None, optimizer=None, input_shape=None, schedule=None, clip=None):
    """``mlpjit explain`` for a model built in code (``model.explain()``): an
    :class:`Explanation`.  ``loss`` and ``optimizer`` (an optimizer, or a name: ``"adam"``)
    default to the last fit's (else cross_entropy and SGD); ``input_shape`` (one example's) to
    what the model was trained on, or to its first layer's inputs."""
    from . import losses as _losses
    from .errors import ConfigError
    from .optim import make_optimizer
    state = getattr(model, "_fit_state", None) or {}
    meta = getattr(model, "metadata", None) or {}
    name = loss or state.get("loss") or meta.get("loss") or "cross_entropy"
    if optimizer is None:
        optimizer = state.get("optimizer_object") or make_optimizer("sgd", model, lr=0.01)
    elif isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, model, lr=0.01)
    shape = input_shape or meta.get("input_shape")
    if shape is None:
        if getattr(model, "in_features", None) is None:
            raise ConfigError("explain: give input_shape (one example's shape, e.g. (1, 28, 28))")
        shape = (model.in_features,)
    return Explanation(summary(model, _losses.get(name), optimizer, tuple(shape), int(batch_size),
                               schedule=schedule or state.get("schedule"), clip=clip or state.get("clip")))
