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

A long experiment runs in pieces: ``reproduce(..., max_time=SECONDS)`` gives every training run the
time left (``ctx.deadline``); a run stopped at the limit keeps its checkpoint and the same command
resumes it, and runs already finished are reused.  An experiment that catches the stop may return
a partial :class:`Result` (``complete=False``): it is stored and reported as such, and the stop
goes on to the caller.
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
    quick: bool = False      # from `reproduce --quick` (a smoke test), not a full run
    complete: bool = True    # False: stopped at --max-time; the table holds the runs finished so far


@dataclasses.dataclass
class Context:
    runs: Path          # run folders go below here (not committed)
    figures: Path       # PNGs go here (committed, referenced from EXPERIMENTS.md)
    seeds: int = 3
    quick: bool = False
    log: object = print
    trained: int = 0    # runs trained by this call
    reused: int = 0     # runs found finished in their run folders
    deadline: float | None = None   # time.monotonic() at which training stops (--max-time)
    stopped: Exception | None = None   # the stop (time limit or signal) an experiment caught

    def time_left(self):
        return None if self.deadline is None else self.deadline - time.monotonic()

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


def reproduce(selected=None, out=REPO, quick=False, log=print, max_time=None):
    """Run the selected experiments (all by default), store each result as JSON next to its
    figures, and regenerate ``EXPERIMENTS.md`` in ``out`` from every stored result.

    With ``max_time`` (seconds) training stops when that time is spent: the run being trained
    keeps its checkpoint, a partial result is stored where the experiment gives one, and
    :class:`~mlpjit.core.Stopped` is raised; the same call continues where it stopped."""
    from ..core import Stopped
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
    deadline = None if max_time is None else time.monotonic() + max_time
    try:
        for name in selected:
            ctx = Context(runs=out / "runs" / "experiments", figures=figures,
                          seeds=1 if quick else 3, quick=quick, log=log, deadline=deadline)
            title, claim, fn = EXPERIMENTS[name]
            log(f"== {name}: {title}")
            t0 = time.perf_counter()
            result = fn(ctx)
            result.name, result.title, result.claim = name, title, claim
            result.command = f"mlpjit reproduce {name}" + (" --quick" if quick else "")
            result.quick = quick
            stored = figures / f"{name}.json"
            before = json.loads(stored.read_text()) if stored.exists() else {}
            # the seconds of every piece add up (a partial result stores those spent so far)
            carried = before.get("seconds", 0.0) if not before.get("complete", True) else 0.0
            result.seconds = carried + time.perf_counter() - t0
            if ctx.reused and not ctx.trained and before.get("complete", True) and before:
                result.seconds = before.get("seconds", result.seconds)   # all reused: keep the time that trained them
            result.plots = [str(Path(p).resolve().relative_to(out.resolve())) for p in result.plots]
            atomic_write_text(stored, json.dumps(dataclasses.asdict(result), indent=1) + "\n")
            log(f"   {result.verdict} ({result.seconds:.0f}s)")
            if not result.complete:   # the stop the experiment caught, a signal's exit code kept
                stop = ctx.stopped or Stopped("stopped at the time limit (--max-time)")
                raise type(stop)(f"{name}: {stop}; its partial table is in {stored}", code=stop.code)
    finally:
        write_report(out)


def write_report(out):
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
             f"NumPy {np.__version__}, Numba {numba.__version__}, mlpjit {__version__}. "
             "The *run* column says which rows come from a full run and which from `--quick` "
             "(shortened budgets, a smoke test: not the reference figures) or a run stopped at "
             "`--max-time` (partial: the same command continues it).",
             "", "| # | experiment | supported? | run |", "|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        mark = {True: "yes", False: "**no**", None: "see text"}[r.supported]
        lines.append(f"| {i} | [{r.title}](#{_anchor(i, r.title)}) | {mark} | {run_kind(r)} |")
    for i, r in enumerate(results, 1):
        lines += ["", f"## {i}. {r.title}", "", f"**Claim.** {r.claim}", "",
                  f"**Command.** `{r.command}` ({r.seconds:.0f} s, {run_kind(r)})", ""]
        lines += _table(r.table, r.columns)
        for p in r.plots:
            lines += ["", f"![{r.title}]({p})"]
        if r.notes:
            lines += ["", r.notes]
        lines += ["", f"**Verdict.** {r.verdict}"]
    atomic_write_text(out / "EXPERIMENTS.md", "\n".join(lines) + "\n")


def stored_kinds(out):
    """{'full' | 'quick' | 'partial': [experiment names]} of the results stored under ``out``."""
    _load_all()
    kinds = {}
    for name in EXPERIMENTS:
        path = Path(out) / "docs" / "experiments" / f"{name}.json"
        if path.exists():
            kinds.setdefault(run_kind(Result(**json.loads(path.read_text()))), []).append(name)
    return kinds


def run_kind(result):
    """'full', 'quick' or 'partial' (stopped at --max-time): where a stored result came from."""
    return "partial" if not result.complete else "quick" if result.quick else "full"


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
    resolved config is reused, and one that holds a checkpoint of it is resumed, so an interrupted
    ``reproduce`` continues where it stopped.  Training stops at ``ctx.deadline``
    (:class:`~mlpjit.core.Stopped`, the checkpoint written).
    A diverging run returns ``summary = {"diverged": message}`` with the metrics it reached."""
    import shutil

    from ..config import apply_overrides, config_from_dict, dump_yaml, load_config, resolved_dict
    from ..core import Stopped
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
    same = (run_dir / "config.yaml").is_file() and (run_dir / "config.yaml").read_text() == text
    if same and (run_dir / "summary.json").exists():
        ctx.reused += 1
        return run_dir, json.loads((run_dir / "summary.json").read_text()), read_metrics(run_dir)
    left = ctx.time_left()
    if left is not None and left <= 0:
        raise Stopped(f"stopped at the time limit (--max-time) before {name}")
    trainer = Trainer(cfg, run_dir, log=(lambda *a: None) if quiet else ctx.log, progress=False)
    if same and (run_dir / "checkpoint.npz").is_file():
        trainer.load_checkpoint()   # a run stopped at --max-time (or interrupted): go on from there
        ctx.log(f"   resuming {run_dir} at epoch {trainer.epoch + 1}")
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        atomic_write_text(run_dir / "config.yaml", text)
    ctx.trained += 1
    try:
        summary = trainer.fit(max_time=left)
    except TrainingDiverged as e:
        return run_dir, {"diverged": str(e), "final": {}}, read_metrics(run_dir)
    return run_dir, summary, read_metrics(run_dir)
