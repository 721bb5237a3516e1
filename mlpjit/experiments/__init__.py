"""The classic experiments, each one function that trains, measures and returns a :class:`Result`.

``mlpjit reproduce [NAME...]`` runs them (see :func:`reproduce`) and regenerates
``EXPERIMENTS.md`` from every stored result, so re-running one experiment keeps the others.

An experiment module registers its functions with :func:`experiment`::

    @experiment("xor", "XOR and logic", claim="One linear unit learns AND, OR, NOT but not XOR; ...")
    def xor(ctx):
        ...                      # train through mlpjit (configs in configs/experiments/)
        return Result(table=[...], plots=[...], verdict="...", supported=True)

``ctx`` (a :class:`Context`) gives the folder for run folders (``ctx.runs``), the folder for
figures (``ctx.figures``), ``ctx.seeds`` (3, or 1 with ``--quick``) and ``ctx.quick`` (shorter
budgets for tests, trained layer by layer: a quick run is shorter than compiling a step for
each of its architectures).
"""

import dataclasses
import datetime as _dt
import json
import platform
import time
from pathlib import Path

from ..io import atomic_write_text
from ..packaged import CONFIGS as SHIPPED_CONFIGS
from ..packaged import EXPERIMENT_CONFIGS as CONFIGS
from ..trainer import cpu_model

REPO = Path(__file__).resolve().parents[2]   # the folder above the package (a checkout's root)


@dataclasses.dataclass
class Result:
    """What an experiment measured: a table (rows of dicts), figures, and the verdict sentence."""
    table: list
    verdict: str
    supported: bool | None = None
    plots: list = dataclasses.field(default_factory=list)   # PNG paths (relative to the report)
    columns: list | None = None                              # table column order (default: keys of row 0)
    notes: str = ""
    # filled in by reproduce():
    name: str = ""
    title: str = ""
    claim: str = ""
    command: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class Context:
    runs: Path          # run folders go below here (not committed)
    figures: Path       # PNGs go here (committed, referenced from EXPERIMENTS.md)
    seeds: int = 3
    quick: bool = False
    log: object = print
    trained: int = 0    # runs trained by this call
    reused: int = 0     # runs found finished in their run folders

    def run_dir(self, *parts):
        path = self.runs.joinpath(*[str(p) for p in parts])
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


EXPERIMENTS = {}   # name -> (title, claim, function), in the order registered


def experiment(name, title, claim):
    def register(fn):
        EXPERIMENTS[name] = (title, claim, fn)
        return fn
    return register


def _load_all():
    from . import classic, extra, papers  # noqa: F401  (registers the experiments)


def names():
    _load_all()
    return list(EXPERIMENTS)


def mean_std(values):
    """'m ± s' of a list of numbers (s the sample std; '—' for none)."""
    import numpy as np
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}"


def reproduce(selected=None, out=REPO, quick=False, log=print):
    """Run the selected experiments (all by default), store each result as JSON next to its
    figures, and regenerate ``EXPERIMENTS.md`` in ``out`` from every stored result."""
    from ..errors import ConfigError
    from ..registry import unknown_name
    _load_all()
    selected = list(selected or EXPERIMENTS)
    for name in selected:
        if name not in EXPERIMENTS:
            raise ConfigError(unknown_name("experiment", name, EXPERIMENTS))
    out = Path(out)
    figures = out / "docs" / "experiments"
    figures.mkdir(parents=True, exist_ok=True)
    for name in selected:
        ctx = Context(runs=out / "runs" / "experiments", figures=figures,
                      seeds=1 if quick else 3, quick=quick, log=log)
        title, claim, fn = EXPERIMENTS[name]
        log(f"== {name}: {title}")
        t0 = time.perf_counter()
        result = fn(ctx)
        result.name, result.title, result.claim = name, title, claim
        result.command = f"mlpjit reproduce {name}"
        result.seconds = time.perf_counter() - t0
        stored = figures / f"{name}.json"
        if ctx.reused and not ctx.trained and stored.exists():   # all reused: keep the time that trained them
            result.seconds = json.loads(stored.read_text()).get("seconds", result.seconds)
        result.plots = [str(Path(p).resolve().relative_to(out.resolve())) for p in result.plots]
        atomic_write_text(figures / f"{name}.json", json.dumps(dataclasses.asdict(result), indent=1) + "\n")
        log(f"   {result.verdict} ({result.seconds:.0f}s)")
    write_report(out, quick=quick)


def write_report(out, quick=False):
    out = Path(out)
    figures = out / "docs" / "experiments"
    import numba
    import numpy as np

    from .. import __version__
    results = []
    for name in EXPERIMENTS:
        path = figures / f"{name}.json"
        if path.exists():
            results.append(Result(**json.loads(path.read_text())))
    lines = ["# Experiments", "",
             "Generated by `mlpjit reproduce` (do not edit by hand: re-run it). "
             f"Last written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} on "
             f"{platform.machine()} ({cpu_model()}), {_cores()} cores; Python {platform.python_version()}, "
             f"NumPy {np.__version__}, Numba {numba.__version__}, mlpjit {__version__}."
             + (" **Quick mode** (shortened budgets): not the reference figures." if quick else ""),
             "", "| # | experiment | supported? |", "|---|---|---|"]
    for i, r in enumerate(results, 1):
        mark = {True: "yes", False: "**no**", None: "see text"}[r.supported]
        lines.append(f"| {i} | [{r.title}](#{_anchor(i, r.title)}) | {mark} |")
    for i, r in enumerate(results, 1):
        lines += ["", f"## {i}. {r.title}", "", f"**Claim.** {r.claim}", "",
                  f"**Command.** `{r.command}` ({r.seconds:.0f} s)", ""]
        lines += _table(r.table, r.columns)
        for p in r.plots:
            lines += ["", f"![{r.title}]({p})"]
        if r.notes:
            lines += ["", r.notes]
        lines += ["", f"**Verdict.** {r.verdict}"]
    atomic_write_text(out / "EXPERIMENTS.md", "\n".join(lines) + "\n")


def _anchor(i, title):
    import re
    return f"{i}-" + re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows, columns=None):
    if not rows:
        return []
    columns = columns or list(rows[0])
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return out


def _cores():
    from ..threads import cores
    return cores()


def train(ctx, config, overrides=(), name="run", quiet=True):
    """Train ``config`` (a path, usually under configs/experiments/, or a dict) with ``overrides``
    ("key.path=value" strings, as ``--set``) into ``ctx.runs/<name>``; returns
    ``(run_dir, summary, metrics)``.  A run folder that already holds a finished run of the same
    resolved config is reused, so an interrupted ``reproduce`` continues where it stopped.
    A diverging run returns ``summary = {"diverged": message}`` with the metrics it reached."""
    import shutil

    from ..config import apply_overrides, config_from_dict, dump_yaml, load_config, resolved_dict
    from ..errors import TrainingDiverged
    from ..trainer import Trainer, read_metrics
    if ctx.quick:   # a smoke test: the layer path, with no step to compile per architecture
        overrides = [*overrides, "train.compiled=false"]
    if isinstance(config, dict):
        cfg_obj = apply_overrides(config_from_dict(config), overrides)
    else:
        cfg_obj = load_config(config, overrides)
    cfg = resolved_dict(cfg_obj)
    run_dir = ctx.run_dir(name)
    text = dump_yaml(cfg_obj)
    if (run_dir / "summary.json").exists() and (run_dir / "config.yaml").read_text() == text:
        ctx.reused += 1
        return run_dir, json.loads((run_dir / "summary.json").read_text()), read_metrics(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.yaml", text)
    ctx.trained += 1
    trainer = Trainer(cfg, run_dir, log=(lambda *a: None) if quiet else ctx.log, progress=False)
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        return run_dir, {"diverged": str(e), "final": {}}, read_metrics(run_dir)
    return run_dir, summary, read_metrics(run_dir)
