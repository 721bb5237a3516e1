"""``mlpjit report``: one self-contained HTML page of a run folder or of a sweep folder.

The page needs nothing but a browser: the stylesheet is inline, every figure is an inline
``data:image/png;base64`` PNG (drawn with the figures of :mod:`mlpjit.plot`), and it names no
external address at all.

A run folder's report, one titled section each: an overview (final figures, times), the
resolved config, the model (:func:`mlpjit.explain.summary` as tables: each layer's forward and
backward equations with the run's shapes, parameters, multiply-adds, bytes; the totals, the
loss, the update), the learning curves, the learning rate, the per-layer gradient norms, the
test split (a classifier's confusion matrix as a heat map and its per-class precision, recall,
F1 and support; a regression's MAE, RMSE and R²), a histogram of each layer's weights A and,
for image data, the misclassified test images with their true and predicted labels.

A sweep folder's report: the sweep's definition (sweep.yaml), its table (sweep.csv, sortable by
each column, failed runs marked with their error) and the learning curves of its finished runs
overlaid.

What a folder lacks (no epochs yet, no test split, data that cannot be loaded any more) is said
in the section it concerns; the page is still complete.  A folder that is neither a run nor a
sweep is a :class:`~mlpjit.errors.ConfigError`.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

import click
import numpy as np

from .errors import ConfigError, DataError, MlpjitError

__all__ = ["write_report", "report"]

WIDE = (960, 400)            # figure sizes in pixels
SHORT = (960, 300)
MAX_MISCLASSIFIED = 32
GRID_COLUMNS = 8
CHUNK = 500                  # test examples predicted at a time, looking for misclassified ones
_METRIC_ORDER = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                 "test_accuracy")


# --- the page ---------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; }
p.sub { color: #666; margin-top: 0; }
nav { font-size: .9em; margin: 1em 0; }
nav a { margin-right: 1em; color: #0b5cad; text-decoration: none; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.layer { width: 100%; }
table.layer th { width: 9em; }
table.layer pre { margin: 0; padding: 0; background: none; font-size: .95em; }
pre.config { columns: 3 16em; column-rule: 1px solid #e3e5e8; }
pre { background: #f6f8fa; padding: .7em; overflow-x: auto; font-size: .88em; line-height: 1.35; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.missing { color: #6b4e16; background: #fcf8e3; padding: .5em .8em; border-left: 4px solid #f0ad4e; }
tr.failed td { background: #fdecea; }
td.error { color: #a61b1b; min-width: 24em; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th[data-dir="asc"]::after { content: " \\25B2"; }
table.sortable th[data-dir="desc"]::after { content: " \\25BC"; }
details { margin: .5em 0; }
footer { margin-top: 3em; color: #888; font-size: .85em; }
"""

# Sorts a table.sortable on a header click; cells compare by data-sort (or their text),
# numbers numerically, empty cells last.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
      heads.forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", dir);
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var text = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
        text = text.trim();
        var num = Number(text);
        return text === "" ? null : (isNaN(num) ? text : num);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        var c = (typeof x === "number" && typeof y === "number") ? x - y
              : String(x).localeCompare(String(y));
        return dir === "asc" ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

# Counts the images that decoded, for a headless browser to read from the DOM.
IMAGES_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
"""


def _e(value):
    return html.escape(str(value), quote=True)


def _missing(text):
    return f'<p class="missing">{_e(text)}</p>'


def _img(png, alt):
    """An <img> of PNG bytes, inline, at its natural size."""
    import struct
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    data = base64.b64encode(png).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{_e(alt)}">')


def _table(head, rows, numeric=(), attrs=""):
    """An HTML table: ``head`` names, ``rows`` of cell texts (already formatted); the columns
    in ``numeric`` are right-aligned."""
    out = [f"<table{attrs}>", "<thead><tr>"]
    out += [f'<th{" class=num" if i in numeric else ""}>{_e(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = "".join(f'<td{" class=num" if i in numeric else ""}>{_e(v)}</td>'
                        for i, v in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _kv_table(items, raw=False, cls="kv"):
    """A two-column table of (name, value) rows; ``raw`` values are HTML already."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v if raw else _e(v)}</td></tr>" for k, v in items)
    return f'<table class="{cls}"><tbody>{rows}</tbody></table>'


def _page(title, subtitle, sections, scripts=()):
    """The whole document: ``sections`` is a list of (id, title, body html)."""
    nav = " ".join(f'<a href="#{_e(sid)}">{_e(stitle)}</a>' for sid, stitle, _ in sections)
    body = "\n".join(f'<section id="{_e(sid)}">\n<h2>{_e(stitle)}</h2>\n{content}\n</section>'
                     for sid, stitle, content in sections)
    from . import __version__
    script = "".join(f"<script>{s}</script>\n" for s in (*scripts, IMAGES_SCRIPT))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{_e(title)}</h1>\n<p class=\"sub\">{_e(subtitle)}</p>\n<nav>{nav}</nav>\n"
            f"{body}\n<footer>written by mlpjit {_e(__version__)} (mlpjit report)</footer>\n"
            f"{script}</body>\n</html>\n")


def _section(sections, sid, title, build):
    """Add a section; a user-facing error while building it becomes its text."""
    try:
        body = build()
    except MlpjitError as e:
        body = _missing(str(e))
    sections.append((sid, title, body))


def _fmt(v):
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _figure(name, value):
    """A final figure as the terminal shows it: accuracies in percent."""
    if name.endswith("accuracy") and isinstance(value, (int, float)):
        return f"{100 * value:.2f}%"
    return f"{value:.4f}" if isinstance(value, float) else _fmt(value)


# --- reading a run folder ---------------------------------------------------------------------

class _Run:
    """What a run folder holds, each part loaded once, with the reason when it cannot be."""

    def __init__(self, path, trust=()):
        self.path = Path(path)
        self.trust = list(trust)   # modules the run's files may name (a run folder is data)
        self.summary = self._summary()
        self.cfg, self.cfg_error = self._config()
        self.trained, self.weights_error = self._trained()
        self.meta = dict(getattr(self.trained, "metadata", None) or {})
        self.ds = self.model = self.loss = None
        self.data_error = self.cfg_error or "no config.yaml"
        if self.cfg is not None:
            try:
                self._model_and_data()
                self.data_error = None
            except MlpjitError as e:
                self.data_error = str(e)

    def _summary(self):
        path = self.path / "summary.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _config(self):
        from .config import load_config, resolved_dict
        path = self.path / "config.yaml"
        if not path.is_file():
            return None, f"{path}: no such file"
        try:
            return resolved_dict(load_config(path, trust=self.trust)), None
        except MlpjitError as e:
            return None, str(e)

    def _trained(self):
        """The trained model: model.npz, else the weights of checkpoint.npz (a run in progress)."""
        from .io import read_npz
        from .model import Sequential
        model_path, checkpoint = self.path / "model.npz", self.path / "checkpoint.npz"
        try:
            if model_path.is_file():
                return Sequential.load(model_path, trust=self.trust), None
            if checkpoint.is_file():
                arrays = read_npz(checkpoint, kind="mlpjit checkpoint")
                return Sequential.from_arrays({k[6:]: v for k, v in arrays.items()
                                               if k.startswith("model/")}, str(checkpoint),
                                              trust=self.trust), None
        except MlpjitError as e:
            return None, str(e)
        return None, f"{self.path}: no model.npz or checkpoint.npz yet (no epoch finished)"

    def _model_and_data(self):
        from .data import load_dataset
        from .trainer import model_for_data
        cfg = self.cfg
        ds = load_dataset(dict(cfg["data"]), cfg["seed"])
        model, loss, ds = model_for_data(cfg, ds)
        if self.trained is not None:
            try:
                model.load_state_arrays(self.trained.state_arrays(), source="model.npz")
            except MlpjitError as e:
                raise DataError(f"the trained weights do not match config.yaml ({e})") from None
        self.ds, self.model, self.loss = ds, model, loss

    @property
    def name(self):
        if self.cfg is not None:
            return self.cfg["name"]
        return (self.summary or {}).get("name") or self.path.resolve().name

    @property
    def task(self):
        if self.ds is not None:
            return self.ds.task
        if self.meta.get("task"):
            return self.meta["task"]
        s = self.summary or {}
        if "test_regression" in s:
            return "regression"
        return "classification" if "test_confusion_matrix" in s else None

    def class_names(self, k):
        names = self.meta.get("class_names") or (self.ds.class_names if self.ds is not None else None)
        return list(names) if names and len(names) == k else list(range(k))


# --- run sections -------------------------------------------------------------------------------

def _overview(run, rows):
    s = run.summary
    items = [("run folder", str(run.path.resolve()))]
    if s is None:
        items.append(("status", "not finished (no summary.json)"
                      + (f"; {len(rows)} epochs recorded" if rows else "")))
        final = {k: v for k, v in (rows[-1] if rows else {}).items()
                 if k.endswith(("loss", "accuracy"))}
    else:
        final = s.get("final") or {}
        es = s.get("early_stopping") or {}
        epochs = f"{s.get('epochs')}" + (f" (early stop; best {es['best']:.4g} at epoch "
                                        f"{es['best_epoch']})" if es.get("stopped") else "")
        items += [("epochs", epochs), ("seed", s.get("seed")),
                  ("parameters", _fmt(s.get("n_params"))),
                  ("training time", f"{s.get('train_seconds', 0):.1f} s "
                                    f"({s.get('total_seconds', 0):.1f} s total)")]
        versions = s.get("versions") or {}
        if versions:
            items.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    if run.task:
        items.append(("task", run.task))
    out = [_kv_table(items)]
    names = [k for k in _METRIC_ORDER if k in final] + [k for k in final if k not in _METRIC_ORDER]
    if names:
        out.append("<h3>Final figures</h3>")
        out.append(_table(names, [[_figure(k, final[k]) for k in names]],
                          numeric=range(len(names))))
    return "\n".join(out)


def _config_section(run):
    path = run.path / "config.yaml"
    if not path.is_file():
        return _missing(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return _missing(f"{path}: cannot read ({e})")
    note = "" if run.cfg_error is None else _missing(run.cfg_error)
    return f'{note}<pre class="config">{_e(text)}</pre>'


def _model_section(run):
    from .explain import summary
    from .trainer import make_optimizer_from
    if run.model is None:
        return _missing(f"the model summary needs the run's model and data, which cannot be "
                        f"loaded: {run.data_error}")
    cfg, ds = run.cfg, run.ds
    bs = cfg["train"]["batch_size"]
    batch = ds.n_train if bs == "full" else min(int(bs), ds.n_train)
    opt = make_optimizer_from(cfg, run.model)
    info = summary(run.model, run.loss, opt, ds.input_shape, batch, ds.n_train,
                   cfg.get("schedule"), cfg.get("clip"))
    return _explain_html(info)


def _explain_html(info):
    """:func:`mlpjit.explain.summary` as HTML: a table per layer, then totals, loss, update."""
    from .explain import _bytes, _count
    from .layers.base import dims
    t = info["totals"]
    out = [f"<p>Inputs {_e(dims(info['input_shape']))} per example, batch {t['batch']:,}, "
           f"{_e(t['dtype'])}.</p>"]
    for r in info["layers"]:
        params = ", ".join(f"{n} {dims(s)}" for n, s in r["param_shapes"].items())
        rows = [("forward", "<pre>" + _e("\n".join(r["forward"])) + "</pre>"),
                ("backward", "<pre>" + _e("\n".join(r["backward"])) + "</pre>"),
                ("parameters", _e(f"{r['params']:,}" + (f" ({params})" if params else ""))),
                ("multiply-adds", _e(f"forward {_count(r['macs_forward'])}, backward "
                                     f"{_count(r['macs_backward'])} per batch")),
                ("arrays kept", _e(f"{_bytes(r['bytes'])} (parameters and gradients "
                                   f"{_bytes(r['param_bytes'])})"))]
        out.append(f"<h3>({_e(r['label'])}) {_e(r['layer'])}: {_e(dims(r['in']))} → "
                   f"{_e(dims(r['out']))} per example</h3>")
        out.append(_kv_table(rows, raw=True, cls="layer"))
    totals = [("parameters", f"{t['params']:,}"),
              ("FLOPs per example", f"{_count(t['flops_per_example'])} (2 × multiply-adds: forward "
                                    f"{_count(t['macs_forward_per_example'])}, backward "
                                    f"{_count(t['macs_backward_per_example'])})")]
    if "flops_per_epoch" in t:
        totals.append(("FLOPs per epoch", f"{_count(t['flops_per_epoch'])} "
                                          f"({t['n_train']:,} training examples)"))
    totals.append(("memory of a step", f"{_bytes(t['step_bytes'])} (arrays kept, parameters and "
                                       f"gradients, optimizer state "
                                       f"{_bytes(t['optimizer_state_bytes'])}, the batch)"))
    u = info["update"]
    hp = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in u["hyperparameters"].items())
    totals.append((f"loss: {info['loss']['name']}", info["loss"]["formula"]))
    totals.append((f"update: {u['optimizer']} ({hp})", u["formula"]))
    if u.get("schedule"):
        totals.append(("learning rate schedule", str(u["schedule"])))
    if u.get("clip"):
        totals.append(("clipping", str(u["clip"])))
    out.append("<h3>Totals, loss and update</h3>")
    out.append(_kv_table(totals, cls="layer"))
    return "\n".join(out)


def _no_epochs(run, rows):
    if rows:
        return None
    where = run.path / "metrics.jsonl"
    return _missing(f"no epochs recorded yet ({where} " +
                    ("is empty)" if where.is_file() else "does not exist)"))


def _curves_section(run, rows):
    from .plot import _runs_png
    what = "loss and accuracy" if run.task == "classification" else "loss"
    return _no_epochs(run, rows) or _img(_runs_png([run.path], size=WIDE), f"{what} against epoch")


def _lr_section(run, rows):
    from .plot import _runs_png
    return _no_epochs(run, rows) or _img(_runs_png([run.path], metric="lr", size=SHORT,
                                                   title="learning rate"),
                                         "learning rate against epoch")


def _grad_norms_section(run, rows):
    from .plot import _grad_norms_png
    return _no_epochs(run, rows) or _img(_grad_norms_png(run.path, size=WIDE),
                                         "gradient norm per layer against epoch")


def _test_results(run):
    """summary.json's test figures, or the same computed from the model and the data (a run
    that has not finished), or a DataError saying why there are none."""
    from . import metrics as M
    s = run.summary or {}
    if "test_confusion_matrix" in s or "test_regression" in s:
        return s
    if run.ds is not None:
        X, y = run.ds.X_test, run.ds.y_test
        if X is None or len(X) == 0:
            raise DataError(f"no test split: data '{run.cfg['data']['name']}' has no test examples, "
                            f"so there is no confusion matrix or test metric")
        if run.trained is None:
            raise DataError(run.weights_error)
        classification = run.ds.task == "classification"
        k = run.ds.n_classes
        names = run.class_names(k) if classification else None
        from .core import _target_scale_of, scaled_target
        target_scale = None if classification else _target_scale_of(run.model)
        if target_scale is not None:   # a target trained scaled: compared in its own units
            y = scaled_target(y, target_scale)
        r = M.split_metrics(run.model, run.loss, X, y, run.ds.x_scale, classification, detail=True,
                            n_classes=k, class_names=names, target_scale=target_scale)
        if not classification:
            return {"test_regression": r["regression"]}
        return {"test_confusion_matrix": r["confusion_matrix"].tolist(), "test_classes": names,
                "test_per_class": r["per_class"]}
    if run.summary is not None and not any(k.startswith("test_") for k in s.get("final", {})):
        raise DataError("no test split: the run measured no test figures")
    raise DataError(f"no test figures: the run has not finished and its data cannot be "
                    f"loaded ({run.data_error})")


def _test_section(run):
    res = _test_results(run)
    if "test_regression" in res:
        r = res["test_regression"]
        return ('<table id="regression-metrics"><thead><tr><th>metric</th><th class=num>value'
                '</th></tr></thead><tbody>'
                f'<tr><td>MAE</td><td class=num data-metric="mae">{r["mae"]:.6g}</td></tr>'
                f'<tr><td>RMSE</td><td class=num data-metric="rmse">{r["rmse"]:.6g}</td></tr>'
                f'<tr><td>R²</td><td class=num data-metric="r2">{r["r2"]:.6g}</td></tr>'
                f'<tr><td>test examples</td><td class=num>{r["n"]:,}</td></tr>'
                '</tbody></table>')
    C = np.asarray(res["test_confusion_matrix"], dtype=np.int64)
    names = [str(n) for n in (res.get("test_classes") or range(len(C)))]
    out = [f"<p>{int(C.sum()):,} test examples, accuracy "
           f"{100 * np.trace(C) / max(int(C.sum()), 1):.2f}%; rows: the true class, columns: the "
           f"predicted one.</p>",
           _img(_confusion_png(C, names), "confusion matrix"),
           "<details><summary>the counts as a table</summary>",
           _confusion_table(C, names), "</details>"]
    per_class = res.get("test_per_class")
    if per_class:
        out.append("<h3>Per class</h3>")
        out.append(_per_class_table(per_class))
    return "\n".join(out)


def _confusion_table(C, names):
    head = "".join(f"<th class=num>{_e(n)}</th>" for n in names)
    rows = "".join(f"<tr><th>{_e(name)}</th>" + "".join(f"<td class=num>{int(v)}</td>" for v in row)
                   + "</tr>" for name, row in zip(names, C))
    return (f'<table id="confusion-matrix"><thead><tr><th>true \\ predicted</th>{head}</tr>'
            f"</thead><tbody>{rows}</tbody></table>")


def _per_class_table(report):
    def row(name, r):
        return [name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                _fmt(r.get("support"))]
    rows = [row(r["class"], r) for r in report["classes"]]
    rows += [row(key, report[key]) for key in ("macro avg", "weighted avg") if key in report]
    return _table(["class", "precision", "recall", "F1", "support"], rows, numeric=(1, 2, 3, 4),
                  attrs=' id="per-class"')


def _confusion_png(C, names):
    """The confusion matrix as a heat map, the count written in each cell."""
    from .plot import _new_figure, _png_bytes
    k = len(C)
    side = int(min(max(300 + 36 * k, 380), 900))
    fig = _new_figure((side + 90, side), 100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(C, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    short = [n if len(n) <= 14 else n[:13] + "…" for n in names]
    ax.set_xticks(range(k), short, rotation=45 if max(map(len, short)) > 3 else 0, ha="right"
                  if max(map(len, short)) > 3 else "center")
    ax.set_yticks(range(k), short)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 30:
        top = C.max() if C.size else 0
        size = "small" if k <= 12 else "x-small"
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(C[i, j])), ha="center", va="center", fontsize=size,
                        color="white" if top and C[i, j] > top / 2 else "black")
    return _png_bytes(fig)


def _weights_section(run):
    from .layers.base import dims
    from .plot import _new_figure, _png_bytes
    if run.trained is None:
        raise DataError(run.weights_error)
    weights = [(name, p) for name, p, _ in run.trained.parameters() if name.endswith(".A")]
    if not weights:
        raise DataError("the model has no weight matrices (no parameter named *.A)")
    cols = min(len(weights), 4)
    nrows = math.ceil(len(weights) / cols)
    fig = _new_figure((240 * cols, 210 * nrows), 100)
    for i, (name, A) in enumerate(weights):
        values = np.asarray(A, dtype=np.float64).ravel()
        ax = fig.add_subplot(nrows, cols, i + 1)
        ax.hist(values[np.isfinite(values)], bins=50, color="#4c72b0")
        ax.set_title(f"{name} {dims(A.shape)}\nmean {values.mean():.3g}, std {values.std():.3g}",
                     fontsize="small")
        ax.tick_params(labelsize="x-small")
    return (f"<p>{len(weights)} weight matrices; each panel counts the values of one layer's "
            f"A.</p>" + _img(_png_bytes(fig), "histograms of the weights"))


def _image_shape(run):
    """(C, H, W) of one example when the inputs are images, else None."""
    ds, meta = run.ds, run.meta
    if ds is not None and ds.image_shape is not None:
        return tuple(int(d) for d in ds.image_shape)
    shape = meta.get("input_shape") or ()
    if len(shape) == 3:
        return tuple(int(d) for d in shape)
    if list(shape) == [784] and meta.get("data") == "mnist":
        return (1, 28, 28)
    return None


def _misclassified_section(run, shape):
    from . import metrics as M
    if run.ds is None:
        raise DataError(f"the test images need the run's data, which cannot be loaded: "
                        f"{run.data_error}")
    ds = run.ds
    if ds.X_test is None or len(ds.X_test) == 0:
        raise DataError(f"no test split: data '{run.cfg['data']['name']}' has no test examples")
    if run.trained is None:
        raise DataError(run.weights_error)
    X, y, n = ds.X_test, ds.y_test, len(ds.X_test)
    wrong, pred = [], []
    for start in range(0, n, CHUNK):  # until enough are found: a CNN's predictions take seconds
        out = M.predictions(run.model, run.loss, X[start:start + CHUNK], ds.x_scale)
        p = np.asarray(run.loss.predict_classes(out))
        idx = np.flatnonzero(p != y[start:start + CHUNK])
        wrong += list(start + idx)
        pred += list(p[idx])
        if len(wrong) >= MAX_MISCLASSIFIED:
            break
    else:
        if not wrong:
            return f"<p>All {n:,} test images are classified correctly.</p>"
    shown = np.array(wrong[:MAX_MISCLASSIFIED])
    total = _n_misclassified(run) if len(wrong) >= MAX_MISCLASSIFIED else len(wrong)
    names = [str(c) for c in run.class_names(ds.n_classes)]
    images = X.reshape((n,) + shape)[shown]
    text = (f"<p>{'' if total is None else f'{total:,} of '}{n:,} test images are misclassified"
            + (f"; the first {len(shown)} are shown" if total != len(shown) else "")
            + ", each with its true and predicted class.</p>")
    return text + _img(_image_grid_png(images, y[shown], pred[:len(shown)], names),
                       "misclassified test images")


def _n_misclassified(run):
    """The number of misclassified test examples, from the confusion matrix (None without one)."""
    try:
        C = np.asarray(_test_results(run).get("test_confusion_matrix"), dtype=np.int64)
    except MlpjitError:
        return None
    return int(C.sum() - np.trace(C)) if C.ndim == 2 else None


def _image_grid_png(images, truth, pred, names):
    """Images (N, C, H, W) in a grid, titled "true t / predicted p"."""
    from .plot import _new_figure, _png_bytes
    cols = min(len(images), GRID_COLUMNS)
    nrows = math.ceil(len(images) / cols)
    fig = _new_figure((120 * cols, 150 * nrows), 100, layout=None)  # constrained: seconds
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.32 / nrows, wspace=0.12,
                        hspace=0.5)
    for i, (img, t, p) in enumerate(zip(images, truth, pred)):
        ax = fig.add_subplot(nrows, cols, i + 1)
        x = np.asarray(img, dtype=np.float64)
        if x.shape[0] == 3:
            x = np.transpose(x, (1, 2, 0))
            lo, hi = float(x.min()), float(x.max())
            ax.imshow((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x))
        else:
            ax.imshow(x[0], cmap="gray_r", interpolation="nearest")
        ax.set_title(f"true {names[int(t)][:10]}\npredicted {names[int(p)][:10]}", fontsize=8.5,
                     color="#a61b1b", linespacing=1.15)
        ax.set_xticks([])
        ax.set_yticks([])
    return _png_bytes(fig)


def _run_page(path, trust=()):
    from .trainer import read_metrics
    run = _Run(path, trust)
    rows = [r for r in read_metrics(path) if isinstance(r, dict)]
    sections = []
    _section(sections, "overview", "Overview", lambda: _overview(run, rows))
    _section(sections, "config", "Config", lambda: _config_section(run))
    _section(sections, "model", "Model", lambda: _model_section(run))
    _section(sections, "curves", "Learning curves", lambda: _curves_section(run, rows))
    _section(sections, "lr", "Learning rate", lambda: _lr_section(run, rows))
    _section(sections, "grad-norms", "Gradient norms per layer",
             lambda: _grad_norms_section(run, rows))
    test_title = ("Test split: regression metrics" if run.task == "regression"
                  else "Test split: confusion matrix and per-class metrics")
    _section(sections, "test", test_title, lambda: _test_section(run))
    _section(sections, "weights", "Weights", lambda: _weights_section(run))
    shape = _image_shape(run)
    if shape is not None and run.task == "classification":
        _section(sections, "misclassified", "Misclassified test images",
                 lambda: _misclassified_section(run, shape))
    return _page(f"{run.name}: run report", str(Path(path).resolve()), sections)


# --- a sweep folder ------------------------------------------------------------------------------

def _read_sweep_csv(path):
    csv_path = path / "sweep.csv"
    if not csv_path.is_file():
        return None, []
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            head = next(reader, None)
            rows = [r for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: cannot read ({e})") from None
    if not head:
        return None, []
    return head, [dict(zip(head, r + [""] * (len(head) - len(r)))) for r in rows]


def _cell(col, text):
    """A sweep.csv cell: numbers shown short and sorted by their full value."""
    try:
        v = float(text)
    except ValueError:
        return f'<td class="error">{_e(text)}</td>' if col == "error" and text else f"<td>{_e(text)}</td>"
    if col.endswith("accuracy") and "." in text:
        shown = f"{100 * v:.2f}%"
    elif "." in text or "e" in text.lower():
        shown = f"{v:.4g}" if math.isfinite(v) else text
    else:
        shown = text
    return f'<td class=num data-sort="{_e(text)}">{_e(shown)}</td>'


def _sweep_table(head, rows):
    out = ['<table class="sortable" id="sweep-table"><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        failed = r.get("status") == "failed"
        out.append(f'<tr{" class=failed" if failed else ""}>'
                   + "".join(_cell(h, r.get(h, "")) for h in head) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _sweep_page(path):
    from .plot import _runs_png
    from .trainer import read_metrics
    head, rows = _read_sweep_csv(path)
    sections = []

    def definition():
        p = path / "sweep.yaml"
        if not p.is_file():
            return _missing(f"{p}: no such file")
        return f"<pre>{_e(p.read_text(encoding='utf-8'))}</pre>"

    def table():
        if head is None:
            return _missing(f"no runs recorded yet ({path / 'sweep.csv'} does not exist)")
        ok = sum(r.get("status") == "ok" for r in rows)
        failed = [r for r in rows if r.get("status") == "failed"]
        text = [f"<p>{len(rows)} runs: {ok} ok, {len(failed)} failed. Click a column's header to "
                f"sort by it.</p>", '<div style="overflow-x:auto">', _sweep_table(head, rows),
                "</div>"]
        if failed:
            text.append("<h3>Failed runs</h3><ul id=\"failed-runs\">")
            text += [f"<li><b>{_e(r.get('run_dir', '?'))}</b>: {_e(r.get('error') or 'no error recorded')}"
                     "</li>" for r in failed]
            text.append("</ul>")
        return "\n".join(text)

    def curves():
        dirs = [path / r["run_dir"] for r in rows if r.get("status") == "ok" and r.get("run_dir")]
        dirs = [d for d in dirs if read_metrics(d)]
        if not dirs:
            return _missing("no finished run with recorded epochs yet")
        text = (f"<p>{len(dirs)} finished run{'s' if len(dirs) != 1 else ''} overlaid; train "
                f"solid, validation dashed, test dotted.</p>")
        return text + _img(_runs_png(dirs, size=(960, 460)), "learning curves of the runs")

    _section(sections, "sweep", "Sweep", definition)
    _section(sections, "runs", "Runs", table)
    _section(sections, "curves", "Learning curves", curves)
    return _page(f"{path.resolve().name}: sweep report", str(path.resolve()), sections,
                 scripts=(SORT_SCRIPT,))


# --- entry points ------------------------------------------------------------------------------

def _kind(target):
    """"run" or "sweep", or a ConfigError naming the folder."""
    if not target.exists():
        raise ConfigError(f"{target}: no such folder")
    if not target.is_dir():
        raise ConfigError(f"{target}: not a folder (give a run folder or a sweep folder)")
    if (target / "sweep.yaml").is_file() or (target / "sweep.csv").is_file():
        return "sweep"
    if any((target / f).is_file() for f in ("config.yaml", "metrics.jsonl", "model.npz")):
        return "run"
    raise ConfigError(f"{target}: neither a run folder (no config.yaml, metrics.jsonl or "
                      f"model.npz) nor a sweep folder (no sweep.yaml)")


def write_report(target, out=None, trust=()):
    """Write the HTML report of a run folder or a sweep folder to ``out`` (default
    ``<target>/report.html``), atomically; return its path."""
    from .io import atomic_write_text
    from .plot import _matplotlib
    target = Path(target)
    kind = _kind(target)
    from .io import check_out
    out = target / "report.html" if out is None else Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as report.html")
    check_out(out, (".html", ".htm"))
    _matplotlib()  # no figures without it: say so before any work
    text = _sweep_page(target) if kind == "sweep" else _run_page(target, trust)
    try:
        atomic_write_text(out, text)
    except OSError as e:
        raise DataError(f"--out {out}: cannot write ({e.strerror or e})") from None
    return out


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="RUN_DIR|SWEEP_DIR", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (default <RUN_DIR or SWEEP_DIR>/report.html).")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the run's files to load layers from this module (see docs/writing-a-layer.md).")
def report(target, out, trust):
    """Write one self-contained HTML report of a run folder or a sweep folder.

    \b
    A run: overview, config, the model's equations and sizes, learning
    curves, learning rate, per-layer gradient norms, the test split's
    confusion matrix and per-class metrics (or MAE, RMSE, R²), histograms
    of the weights and, for images, the misclassified test images.
    A sweep: sweep.yaml, the table of its runs (sortable by each column,
    failed runs with their error) and the runs' learning curves.
    The file has its figures inline and loads nothing from the network:
    open it in a browser, mail it, keep it.

    \b
    Examples:
      mlpjit report runs/mnist_mlp-20261123-120000
      mlpjit report runs/xor --out xor.html
      mlpjit report sweeps/act-lr
    """
    path = write_report(target, out, trust)
    click.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
