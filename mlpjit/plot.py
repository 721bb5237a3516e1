"""Learning-curve and gradient-norm figures of run folders (PNG, via matplotlib's Agg backend).

``mlpjit plot RUN_DIR...`` overlays the learning curves of one or more runs: loss against epoch
and, for classification runs, accuracy against epoch (train solid, validation dashed, test
dotted; one colour per run).  ``--metric NAME`` draws that one metric of every run instead, and
``--grad-norms RUN_DIR`` draws the per-layer gradient norms of one run on a log scale.

The same figures are available from Python (:func:`plot_runs`, :func:`plot_grad_norms`), and
:func:`plot_lines` draws any ``{label: (xs, ys)}`` series for experiment-specific figures.

matplotlib is optional (``pip install "mlpjit[plot]"``); it is imported only when a figure is
drawn, never through ``pyplot`` (no interactive state, no display needed).  Every figure is
rendered to PNG bytes first (``_runs_png``, ``_grad_norms_png`` and ``_lines_png`` return
those bytes, for the HTML run report of :mod:`mlpjit.report`) and then written atomically
with :func:`mlpjit.io.atomic_write`.
"""

import io as _io
import math
import numbers
import re
import warnings
from pathlib import Path

import click

from .errors import ConfigError, DataError, MlpjitError

DEFAULT_SIZE = (1000, 450)   # pixels
DEFAULT_DPI = 100
MIN_PIXELS, MAX_PIXELS = 100, 10000
SPLITS = (("train", "train", "-"), ("val", "validation", "--"), ("test", "test", ":"))
X_AXES = ("epoch", "seconds")
_NOT_METRICS = {"epoch", "grad_norms"}

__all__ = ["plot_runs", "plot_grad_norms", "plot_lines", "available_metrics", "parse_size", "plot"]


# --- matplotlib ---------------------------------------------------------------------------

def _matplotlib():
    """(Figure, FigureCanvasAgg), or an MlpjitError saying how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MlpjitError('plotting needs matplotlib, which is not installed: '
                          'pip install "mlpjit[plot]"') from None
    return Figure, FigureCanvasAgg


def _check_size(size):
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size: expected (width, height) in pixels, got {size!r}") from None
    for name, v in (("width", w), ("height", h)):
        if not MIN_PIXELS <= v <= MAX_PIXELS:
            raise ConfigError(f"{name} {v}: must be between {MIN_PIXELS} and {MAX_PIXELS} pixels")
    return w, h


def _check_out(out):
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the figure is a PNG; give a file name ending in .png")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name ending in .png")
    from .io import check_out
    return check_out(out, (".png",))


def _new_figure(size, dpi, layout="constrained"):
    """A Figure of exactly ``size`` pixels at ``dpi`` (text scales with dpi, pixels do not);
    ``layout=None`` for a figure placed by hand (``subplots_adjust``)."""
    Figure, FigureCanvasAgg = _matplotlib()
    w, h = _check_size(size)
    dpi = int(dpi)
    if not 10 <= dpi <= 1000:
        raise ConfigError(f"dpi {dpi}: must be between 10 and 1000")
    # Agg truncates width*dpi to an int: a hair over the exact size keeps e.g. 333 px at 333.
    fig = Figure(figsize=((w + 1e-3) / dpi, (h + 1e-3) / dpi), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig, dpi=DEFAULT_DPI):
    """``fig`` rendered as PNG bytes."""
    buf = _io.BytesIO()
    with warnings.catch_warnings():  # e.g. "constrained layout not applied" on tiny figures
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buf, format="png", dpi=int(dpi), metadata={"Software": None})
    return buf.getvalue()


def _save(fig, out, dpi):
    """Render ``fig`` to PNG bytes, then write them atomically to ``out``; return ``out``."""
    from .io import atomic_write

    data = _png_bytes(fig, dpi)
    out = Path(out)
    try:
        atomic_write(out, lambda f: f.write(data), durable=False)
    except OSError as e:
        raise DataError(f"--out {out}: cannot write ({e.strerror or e})") from None
    return out


# --- run folders --------------------------------------------------------------------------

def _read_run(run_dir):
    """The metrics rows of a run folder, or a DataError naming the folder."""
    from .trainer import read_metrics

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    if not (run_dir / "metrics.jsonl").is_file():
        raise DataError(f"{run_dir}: not a run folder (no metrics.jsonl)")
    try:
        rows = [r for r in read_metrics(run_dir) if isinstance(r, dict)]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{run_dir / 'metrics.jsonl'}: cannot read ({e})") from None
    if not rows:
        raise DataError(f"{run_dir / 'metrics.jsonl'}: no epochs recorded yet (empty metrics file)")
    return rows


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def available_metrics(rows):
    """Numeric per-epoch keys of metrics rows (``epoch`` and ``grad_norms`` excluded), in order."""
    names = {}
    for row in rows:
        for k, v in row.items():
            if k not in _NOT_METRICS and _is_number(v):
                names.setdefault(k, None)
    return list(names)


def _run_labels(run_dirs):
    """Legend names: the folder names, or the paths as given where names would clash."""
    names = [Path(d).name or Path(d).resolve().name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def _x_values(rows, x, run_dir):
    if x == "epoch":
        return [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    if x == "seconds":
        xs, total = [], 0.0
        for r in rows:
            s = r.get("epoch_seconds")
            if not _is_number(s):
                raise DataError(f"{run_dir}: metrics.jsonl has no epoch_seconds at epoch "
                                f"{r.get('epoch', '?')}; cannot plot against seconds")
            total += float(s)
            xs.append(total)
        return xs
    raise ConfigError(f"x '{x}': must be one of {', '.join(X_AXES)}")


def _series(rows, xs, key, scale=1.0):
    """(xs, ys) of ``key``; epochs without the key are left out (NaN stays, as a gap)."""
    px, py = [], []
    for xv, r in zip(xs, rows):
        v = r.get(key)
        if _is_number(v):
            px.append(xv)
            py.append(float(v) * scale)
    return px, py


def _x_label(x):
    return "epoch" if x == "epoch" else "training time (s)"


def _integer_ticks(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 epoch: tick "1"


def _marker(xs):
    """A dot where a line has a single point (one epoch), which a line alone would not show."""
    return "o" if len(xs) == 1 else None


def _metric_label(name):
    return f"{name} (%)" if name.endswith("accuracy") else name


def _scale(name):
    return 100.0 if name.endswith("accuracy") else 1.0


def _colours(n):
    from matplotlib import colormaps
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def default_out(run_dirs, grad_norms=False):
    first = Path(run_dirs[0])
    return first / ("grad_norms.png" if grad_norms else "plot.png")


# --- figures ------------------------------------------------------------------------------

def plot_runs(run_dirs, out=None, metric=None, x="epoch", title=None, size=DEFAULT_SIZE,
              dpi=DEFAULT_DPI):
    """Learning curves of one or more run folders overlaid; returns the written PNG's path.

    Without ``metric``: a loss panel and (when any run has accuracies) an accuracy panel,
    train / validation / test as solid / dashed / dotted lines, one colour per run.  With
    ``metric`` (e.g. ``"test_accuracy"``, ``"lr"``): that metric of every run on one panel.
    ``x`` is ``"epoch"`` or ``"seconds"`` (cumulative ``epoch_seconds``); ``size`` is
    (width, height) in pixels; ``out`` defaults to ``<first run>/plot.png``.
    """
    run_dirs, runs = _load_runs(run_dirs, x, size)
    out = _check_out(default_out(run_dirs) if out is None else out)
    return _save(_runs_figure(run_dirs, runs, metric, x, title, size, dpi), out, dpi)


def _runs_png(run_dirs, metric=None, x="epoch", title=None, size=DEFAULT_SIZE, dpi=DEFAULT_DPI):
    """The figure of :func:`plot_runs` as PNG bytes (nothing written)."""
    run_dirs, runs = _load_runs(run_dirs, x, size)
    return _png_bytes(_runs_figure(run_dirs, runs, metric, x, title, size, dpi), dpi)


def _load_runs(run_dirs, x, size):
    """(run folders as a list, their metrics rows), the arguments checked."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ConfigError("give at least one run folder")
    if x not in X_AXES:
        raise ConfigError(f"x '{x}': must be one of {', '.join(X_AXES)}")
    _check_size(size)
    return run_dirs, [_read_run(d) for d in run_dirs]


def _runs_figure(run_dirs, runs, metric, x, title, size, dpi):
    """The Figure of :func:`plot_runs` for the metrics rows ``runs`` of ``run_dirs``."""
    if metric is not None:
        for d, rows in zip(run_dirs, runs):
            names = available_metrics(rows)
            if metric not in names:
                raise DataError(f"{d}: unknown metric '{metric}' (available: {', '.join(names)})")
    xs = [_x_values(rows, x, d) for d, rows in zip(run_dirs, runs)]

    labels = _run_labels(run_dirs)
    colours = _colours(len(runs))
    fig = _new_figure(size, dpi)
    from matplotlib.lines import Line2D

    if metric is not None:
        ax = fig.add_subplot(1, 1, 1)
        for rows, xv, label, colour in zip(runs, xs, labels, colours):
            px, py = _series(rows, xv, metric, _scale(metric))
            ax.plot(px, py, color=colour, label=label, marker=_marker(px))
        ax.set_xlabel(_x_label(x))
        ax.set_ylabel(_metric_label(metric))
        if x == "epoch":
            _integer_ticks(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    else:
        kinds = ["loss"]
        if any(f"{s}_accuracy" in available_metrics(rows) for rows in runs for s, _, _ in SPLITS):
            kinds.append("accuracy")
        axes = [fig.add_subplot(1, len(kinds), i + 1) for i in range(len(kinds))]
        splits_seen = []
        for ax, kind in zip(axes, kinds):
            for rows, xv, colour in zip(runs, xs, colours):
                for split, split_name, style in SPLITS:
                    key = f"{split}_{kind}"
                    px, py = _series(rows, xv, key, _scale(key))
                    if px:
                        ax.plot(px, py, color=colour, linestyle=style, marker=_marker(px))
                        if split_name not in splits_seen:
                            splits_seen.append(split_name)
            ax.set_xlabel(_x_label(x))
            ax.set_ylabel("accuracy (%)" if kind == "accuracy" else "loss")
            if x == "epoch":
                _integer_ticks(ax)
            ax.set_title(kind, fontsize="medium")
            ax.grid(True, alpha=0.3)
        handles = [Line2D([], [], color=c, linestyle="-", label=lbl) for c, lbl in zip(colours, labels)]
        styles = {name: style for _, name, style in SPLITS}
        handles += [Line2D([], [], color="0.3", linestyle=styles[name], label=name)
                    for name in splits_seen]
        axes[0].legend(handles=handles, loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _layer_key(name):
    # "0.A", "2.A", "10.A" in layer order (numeric prefix), anything else after, by name
    m = re.match(r"(\d+)", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def plot_grad_norms(run_dir, out=None, x="epoch", title=None, size=DEFAULT_SIZE, dpi=DEFAULT_DPI):
    """Per-layer gradient norms (``grad_norms`` of metrics.jsonl) of one run against epoch, on a
    log-scale y axis; returns the written PNG's path (default ``<run>/grad_norms.png``)."""
    run_dir = _one_run(run_dir)
    if x not in X_AXES:
        raise ConfigError(f"x '{x}': must be one of {', '.join(X_AXES)}")
    _check_size(size)
    rows = _read_run(run_dir)
    out = _check_out(default_out([run_dir], grad_norms=True) if out is None else out)
    series, title = _grad_norm_series(run_dir, rows, x, title)
    return plot_lines(series, out, _x_label(x), "gradient norm", logy=True, title=title,
                      size=size, dpi=dpi, integer_x=(x == "epoch"))


def _grad_norms_png(run_dir, x="epoch", title=None, size=DEFAULT_SIZE, dpi=DEFAULT_DPI):
    """The figure of :func:`plot_grad_norms` as PNG bytes (nothing written)."""
    run_dir = _one_run(run_dir)
    if x not in X_AXES:
        raise ConfigError(f"x '{x}': must be one of {', '.join(X_AXES)}")
    _check_size(size)
    series, title = _grad_norm_series(run_dir, _read_run(run_dir), x, title)
    return _lines_png(series, _x_label(x), "gradient norm", logy=True, title=title,
                      size=size, dpi=dpi, integer_x=(x == "epoch"))


def _one_run(run_dir):
    if isinstance(run_dir, (list, tuple)):
        if len(run_dir) != 1:
            raise ConfigError(f"--grad-norms takes exactly one run folder (got {len(run_dir)})")
        run_dir = run_dir[0]
    return run_dir


def _grad_norm_series(run_dir, rows, x, title):
    """({layer: (xs, norms)} in layer order, the figure's title) of one run's metrics rows."""
    xs = _x_values(rows, x, run_dir)
    layers = {}
    for xv, r in zip(xs, rows):
        norms = r.get("grad_norms")
        if isinstance(norms, dict):
            for name, v in norms.items():
                if _is_number(v):
                    layers.setdefault(name, ([], []))
                    layers[name][0].append(xv)
                    layers[name][1].append(float(v))
    if not layers:
        raise DataError(f"{run_dir}: metrics.jsonl has no per-layer gradient norms (grad_norms)")
    series = {name: layers[name] for name in sorted(layers, key=_layer_key)}
    if title is None:
        title = f"{_run_labels([run_dir])[0]}: gradient norm per layer (dA, mean over the epoch)"
    return series, title


def plot_lines(series, out, xlabel, ylabel, logy=False, title=None, size=DEFAULT_SIZE,
               dpi=DEFAULT_DPI, logx=False, integer_x=False):
    """One panel with a line per ``{label: (xs, ys)}`` entry (insertion order, a colour each);
    returns the written PNG's path.  For experiment-specific figures.

    ``logy`` / ``logx`` put that axis on a log scale (``logy`` is dropped when no series has a
    positive value); ``integer_x`` keeps x ticks on whole numbers (epochs).
    """
    out = _check_out(out)
    fig = _lines_figure(series, xlabel, ylabel, logy, title, size, dpi, logx, integer_x)
    return _save(fig, out, dpi)


def _lines_png(series, xlabel, ylabel, logy=False, title=None, size=DEFAULT_SIZE,
               dpi=DEFAULT_DPI, logx=False, integer_x=False):
    """The figure of :func:`plot_lines` as PNG bytes (nothing written)."""
    fig = _lines_figure(series, xlabel, ylabel, logy, title, size, dpi, logx, integer_x)
    return _png_bytes(fig, dpi)


def _lines_figure(series, xlabel, ylabel, logy, title, size, dpi, logx, integer_x):
    """The Figure of :func:`plot_lines`."""
    if not series:
        raise DataError("nothing to plot (no series)")
    checked = {}
    for label, pair in series.items():
        try:
            xs, ys = pair
            xs, ys = [float(v) for v in xs], [float(v) for v in ys]
        except (TypeError, ValueError):
            raise DataError(f"series '{label}': expected (xs, ys) sequences of numbers") from None
        if len(xs) != len(ys):
            raise DataError(f"series '{label}': {len(xs)} x values but {len(ys)} y values")
        checked[str(label)] = (xs, ys)
    fig = _new_figure(size, dpi)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for (label, (xs, ys)), colour in zip(checked.items(), _colours(len(checked))):
        ax.plot(xs, ys, color=colour, label=label, marker=_marker(xs))
        positive &= any(math.isfinite(v) and v > 0 for v in ys)
    if logy and positive:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    elif integer_x:
        _integer_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if logy and positive else ""))
    ax.grid(True, alpha=0.3, which="both" if logy else "major")
    ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


# --- command line -------------------------------------------------------------------------

def parse_size(text):
    """'1000x450' -> (1000, 450)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 1000x450")
    return _check_size((int(m.group(1)), int(m.group(2))))


@click.command("plot")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(file_okay=False))
@click.option("--metric", metavar="NAME",
              help="Plot only this metric of every run, e.g. test_accuracy, val_loss, lr.")
@click.option("--grad-norms", "grad_norms", is_flag=True,
              help="Plot the per-layer gradient norms of one run (log scale).")
@click.option("--x", "x", type=click.Choice(X_AXES), default="epoch", show_default=True,
              help="Horizontal axis: epoch, or cumulative training seconds.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="PNG file to write (default <first run>/plot.png or grad_norms.png).")
@click.option("--title", help="Figure title.")
@click.option("--size", metavar="WxH", help=f"Figure size in pixels "
                                            f"(default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}).")
@click.option("--width", type=int, help="Figure width in pixels.")
@click.option("--height", type=int, help="Figure height in pixels.")
@click.option("--dpi", type=int, default=DEFAULT_DPI, show_default=True,
              help="Dots per inch: scales text and lines; the pixel size stays --size.")
def plot(run_dirs, metric, grad_norms, x, out, title, size, width, height, dpi):
    """Plot learning curves of one or more run folders to a PNG file.

    \b
    Loss and accuracy against epoch, train / validation / test as solid /
    dashed / dotted lines, one colour per run (regression runs: loss only).
    --metric NAME plots one metric of every run; --grad-norms plots the
    per-layer gradient norms of one run on a log scale.

    \b
    Examples:
      mlpjit plot runs/xor
      mlpjit plot runs/sgd runs/adam --out compare.png
      mlpjit plot runs/sgd runs/adam --metric test_accuracy --x seconds
      mlpjit plot --grad-norms runs/deep_sigmoid
      mlpjit plot runs/xor --size 1600x600 --dpi 150 --title "XOR"
    """
    if size is not None and (width is not None or height is not None):
        raise ConfigError("give --size WxH or --width/--height, not both")
    dims = parse_size(size) if size is not None else DEFAULT_SIZE
    dims = _check_size((width if width is not None else dims[0],
                        height if height is not None else dims[1]))
    if not 10 <= dpi <= 1000:
        raise ConfigError(f"--dpi {dpi}: must be between 10 and 1000")
    if grad_norms:
        if metric is not None:
            raise ConfigError("--grad-norms and --metric do not go together")
        if len(run_dirs) != 1:
            raise ConfigError(f"--grad-norms takes exactly one run folder (got {len(run_dirs)})")
        path = plot_grad_norms(run_dirs[0], out, x=x, title=title, size=dims, dpi=dpi)
    else:
        path = plot_runs(run_dirs, out, metric=metric, x=x, title=title, size=dims, dpi=dpi)
    click.echo(f"wrote {path}")
