"""Planning and recording a sweep: grid points and trials, run folders, ``sweep.csv``, the
summary table, :func:`run_sweep` and the ``mlpjit sweep`` command (see :mod:`mlpjit.sweep`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import yaml

from ..errors import ConfigError
from ..io import FolderLock
from ..search_space import draw_trials, parse_space, parse_value, split_values
from .backends import BACKENDS, make_backend
from .records import (METRIC_COLUMNS, SWEEP_FORMAT, _Point, _Progress, _display,
                      _override_text, _prepare_out, _replace_prefix, _sigterm_as_interrupt, _state,
                      _write_csv)
from .search import DIRECTIONS, PRUNERS, SEARCHES

MAX_TRIALS = 100_000   # --sample / --trials: more is a typo, not a sweep (no machine would finish it)

__all__ = ["run_sweep", "parse_grid", "sweep", "METRIC_COLUMNS", "SWEEP_FORMAT"]

_MAX_NAME = 120


# --- parsing --grid ------------------------------------------------------------------------

def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets/braces and quotes: ``a,[1, 2],{x: 1, y: 2}``."""
    return split_values(text)


def parse_grid(item: str) -> tuple[str, list]:
    """``"optimizer.lr=0.01,0.1"`` -> ``("optimizer.lr", [0.01, 0.1])``.

    Each value is read like a ``--set`` value (``yaml.safe_load``); commas inside ``[...]``,
    ``{...}`` or quotes do not split.  Raises :class:`ConfigError` naming the item.
    """
    prefix = f"--grid {item}"
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{prefix}: expected key.path=value1,value2,...")
    if any(not p.strip() for p in key.split(".")):
        raise ConfigError(f"{prefix}: empty key in {key!r} (expected key.path=value1,value2,...)")
    if not raw.strip():
        raise ConfigError(f"{prefix}: no values (expected key.path=value1,value2,...)")
    values = []
    for text in _split_values(raw):
        if not text:
            raise ConfigError(f"{prefix}: empty value in the list (expected key.path=value1,value2,...)")
        values.append(parse_value(text, prefix))
    return key, values


def _sanitize(name: str) -> str:
    """A run name as a portable folder name (deterministic; long names get a hash suffix)."""
    safe = re.sub(r"[^A-Za-z0-9._,=+\-]+", "_", name)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if len(safe) > _MAX_NAME:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        safe = safe[: _MAX_NAME - 11] + "-" + digest
    return safe


# --- planning ----------------------------------------------------------------------------

def _seed_list(seeds) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, bool):
        raise ConfigError(f"--seeds: expected a number of seeds >= 1 (got {seeds!r})")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds: expected a number of seeds >= 1 (got {seeds})")
        return list(range(seeds))
    out = list(seeds)
    if not out or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in out):
        raise ConfigError(f"--seeds: expected a number of seeds or a list of seeds >= 0 (got {seeds!r})")
    if len(set(out)) != len(out):
        raise ConfigError(f"--seeds: the same seed is given twice ({seeds!r})")
    return out


def _grid_item_text(key: str, values: Sequence) -> str:
    return f"{key}=" + ",".join(_display(v) for v in values)


def _check_grids(grids: dict) -> dict[str, list]:
    if not isinstance(grids, dict):
        raise ConfigError(f"grids: expected a mapping of key path -> list of values (got {grids!r})")
    out = {}
    for key, values in grids.items():
        if not isinstance(key, str) or not key.strip() or any(not p.strip() for p in key.split(".")):
            raise ConfigError(f"--grid {key!r}: expected a key path such as optimizer.lr")
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise ConfigError(f"--grid {key}: expected a list of values (got {values!r})")
        values = list(values)
        if not values:
            raise ConfigError(f"--grid {key}=: no values (expected key.path=value1,value2,...)")
        seen = []
        for v in values:
            if v in seen:
                raise ConfigError(f"--grid {_grid_item_text(key, values)}: "
                                  f"value {_display(v)!r} is given twice")
            seen.append(v)
        out[key.strip()] = values
    return out


def _space_item_text(key: str, dist) -> str:
    return f"{key}={dist!r}"


def _check_space(space: dict | None, sample: int | None, grids: dict) -> dict:
    """The ``--space`` distributions ({key path: distribution}) checked against ``--sample``."""
    space = dict(space or {})
    if sample is None:
        if space:
            first = next(iter(space.items()))
            raise ConfigError(f"--space {_space_item_text(*first)}: give the number of trials "
                              f"to draw with --sample N")
        return space
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ConfigError(f"--sample: expected a number of trials >= 1 (got {sample!r})")
    if not space:
        raise ConfigError(f"--sample {sample}: give the distributions to draw from with "
                          f"--space key.path=uniform(a,b)|loguniform(a,b)|choice(x,y,...)")
    for key, dist in space.items():
        if not hasattr(dist, "sample"):
            raise ConfigError(f"--space {key}: expected a distribution (got {dist!r})")
        if key in grids:
            raise ConfigError(f"--space {_space_item_text(key, dist)}: key {key!r} is already "
                              f"swept by --grid")
    return space


def _plan(config_path, grids, seeds, overrides, space=None, sample=None) -> list[_Point]:
    """Validate every combination's config (before anything is created) and name the runs.

    The runs are the product of the ``grids`` values, the ``sample`` trials drawn from
    ``space`` and the seeds (innermost).
    """
    from ..config import load_config, resolved_dict

    overrides = [str(o) for o in overrides]
    base = load_config(config_path, overrides)  # a mistake in CONFIG or --set: its own message
    if seeds is not None and "seed" in grids:
        raise ConfigError(f"--grid {_grid_item_text('seed', grids['seed'])}: "
                          f"give the seeds either with --grid seed=... or with --seeds, not both")
    if seeds is not None and space and "seed" in space:
        raise ConfigError(f"--space {_space_item_text('seed', space['seed'])}: "
                          f"give the seeds either with --space seed=... or with --seeds, not both")
    # each grid value alone, so that a bad key or value names its --grid item
    for key, values in grids.items():
        item = _grid_item_text(key, values)
        for v in values:
            ov = f"{key}={_override_text(v)}"
            try:
                load_config(config_path, overrides + [ov])
            except ConfigError as e:
                raise _replace_prefix(e, f"--set {ov}", f"--grid {item}") from None
    # the random-search trials, drawn from the base config's seed; each drawn value alone
    trials = [{}]
    if space:
        trials = draw_trials(space, sample, resolved_dict(base)["seed"])
        checked = {key: [] for key in space}
        for k, trial in enumerate(trials):
            for key, v in trial.items():
                if v in checked[key]:
                    continue
                checked[key].append(v)
                ov = f"{key}={_override_text(v)}"
                try:
                    load_config(config_path, overrides + [ov])
                except ConfigError as e:
                    raise _replace_prefix(e, f"--set {ov}",
                                          f"--space {_space_item_text(key, space[key])} "
                                          f"(trial {k} draws {_display(v)})") from None
    points, names = [], {}
    seed_values = seeds if seeds is not None else [None]
    for combo in itertools.product(*(grids[k] for k in grids)):
        for trial in trials:
            values = {**dict(zip(grids, combo)), **trial}  # grid keys, then space keys
            for seed in seed_values:
                extra = [f"{k}={_override_text(v)}" for k, v in values.items()]
                if seed is not None:
                    extra.append(f"seed={seed}")
                label = ",".join(f"{k}={_display(v)}" for k, v in values.items())
                try:
                    cfg_obj = load_config(config_path, overrides + extra)
                except ConfigError as e:
                    raise ConfigError(f"--grid point {label or '(base config)'}: {e}") from None
                cfg_seed = resolved_dict(cfg_obj)["seed"]
                raw = label if "seed" in values else ",".join(filter(None, [label, f"seed={cfg_seed}"]))
                name = _sanitize(raw)
                if name in names:  # two values that sanitize alike: keep both, deterministically
                    k = 2
                    while f"{name}-{k}" in names:
                        k += 1
                    name = f"{name}-{k}"
                names[name] = True
                points.append(_Point(len(points), values, seed, cfg_obj, name))
    _check_models(points)
    return points


def _check_models(points: list[_Point]) -> None:
    """The model of every grid point against its data (loading each distinct dataset once)."""
    from ..data import load_dataset
    from ..trainer import model_for_data

    datasets, checked = {}, set()
    for p in points:
        cfg = p.cfg
        key = json.dumps([cfg["data"], cfg["model"], cfg["loss"], cfg["dtype"]], sort_keys=True)
        if key in checked:
            continue
        checked.add(key)
        dkey = json.dumps(cfg["data"], sort_keys=True)
        if dkey not in datasets:
            datasets[dkey] = load_dataset(dict(cfg["data"]), cfg["seed"])
        ds = datasets[dkey]
        label = ",".join(f"{k}={_display(v)}" for k, v in p.values.items()) or "(base config)"
        try:
            model_for_data(cfg, ds)
        except ConfigError as e:
            raise ConfigError(f"--grid point {label}: {e}") from None


# --- rows, sweep.csv and the summary table -----------------------------------------------

def _row(point: _Point, run_dir: Path, result: dict | None) -> dict:
    row = dict(point.values)
    if "seed" not in row:
        row["seed"] = point.seed
    row["status"] = "pending" if result is None else result["status"]
    summary = (result or {}).get("summary") or {}
    row.update({k: v for k, v in (summary.get("final") or {}).items()})
    row["epochs"] = summary.get("epochs")
    row["train_seconds"] = summary.get("train_seconds")
    row["run_dir"] = run_dir.name  # relative to the sweep folder, which can be moved
    row["error"] = (result or {}).get("error")
    return row


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _fmt_stat(values: list[float], kind: str) -> str:
    """mean ± sample std (no ± for a single value); kind: 'percent', 'seconds' or 'number'."""
    if not values:
        return "-"
    mean, std = _mean_std(values)
    if kind == "percent":
        return f"{100 * mean:.2f}%" + ("" if std is None else f" ± {100 * std:.2f}")
    if kind == "seconds":
        return f"{mean:.2f}s" + ("" if std is None else f" ± {std:.2f}")
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def ranking_metric(rows: list[dict]) -> tuple[str | None, str | None]:
    """(the metric that chooses, the test metric reported beside it): a validation metric when
    the runs have one (val_accuracy, else val_loss); without a validation split the test metric
    is only reported and the training metric chooses (train_accuracy, else train_loss)."""
    def first(names):
        return next((m for m in names if any(r.get(m) is not None for r in rows)), None)
    choose = first(("val_accuracy", "val_loss")) or first(("train_accuracy", "train_loss"))
    return choose, first(("test_accuracy", "test_loss"))


def summary_table(keys: list[str], rows: list[dict]) -> str:
    """One line per grid point: runs ok/total, mean ± std over seeds of the metric that chooses
    (the validation metric; see :func:`ranking_metric`), of the test metric beside it (never
    used to choose), and of train_seconds; then the best grid point by the choosing metric."""
    ok_rows = [r for r in rows if r["status"] == "ok"]
    metric, test = ranking_metric(ok_rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(_display(r[k]) for k in keys), []).append(r)
    shown = [m for m in (metric, test) if m]
    head = list(keys) + ["runs ok"] + (shown or ["metric"]) + ["train_seconds"]
    table = [head]
    means = {}
    for group, members in groups.items():
        good = [r for r in members if r["status"] == "ok"]
        cells = []
        for m in shown or [None]:
            vals = [r[m] for r in good if m and r.get(m) is not None]
            if m == metric and vals:
                means[group] = sum(vals) / len(vals)
            cells.append(_fmt_stat(vals, "percent" if m and m.endswith("accuracy") else "number"))
        secs = [r["train_seconds"] for r in good if r.get("train_seconds") is not None]
        table.append(list(group) + [f"{len(good)}/{len(members)}"] + cells + [_fmt_stat(secs, "seconds")])
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    if metric and means:
        higher = metric.endswith("accuracy")
        best = (max if higher else min)(means, key=means.get)
        where = ", ".join(f"{k}={v}" for k, v in zip(keys, best)) or "the only grid point"
        lines.append("")
        lines.append(f"best by {metric} (the mean over seeds): {where}"
                     + ("" if test is None else f"; {test} is reported, never used to choose"))
        if not metric.startswith("val"):
            lines.append("no validation split: the training figures choose; set data.validation "
                         "to choose by held-out data")
    return "\n".join(lines)


# --- the sweep ----------------------------------------------------------------------------


def _refuse_study(out: Path) -> None:
    """A --grid/--sample sweep does not write into the folder of a --search study."""
    if (out / "study.db").is_file():
        raise ConfigError(f"--out {out}: holds an Optuna study (study.db) of --search; continue "
                          f"it with its own command (see its sweep.yaml), or choose another --out")


def _sweep_yaml(config_path, overrides, grids, seeds, points, jobs, space=None, sample=None,
                backend=None) -> str:
    from .. import __version__
    doc = {
        "format": SWEEP_FORMAT,
        "config": str(config_path),
        "config_abs": str(Path(config_path).resolve()),
        "overrides": list(overrides),
        "grids": {k: list(v) for k, v in grids.items()},
        "space": {k: repr(d) for k, d in (space or {}).items()},
        "sample": sample,
        "seeds": (None if seeds is None else
                  len(seeds) if seeds == list(range(len(seeds))) else list(seeds)),
        "jobs": jobs,
        "backend": backend or {"name": "local"},
        "runs": [p.name for p in points],
        "command": _command_line(config_path, overrides, grids, seeds, space, sample),
        "mlpjit": __version__,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _command_line(config_path, overrides, grids, seeds, space=None, sample=None) -> str:
    import shlex
    parts = ["mlpjit", "sweep", str(config_path)]
    for k, v in grids.items():
        parts += ["--grid", _grid_item_text(k, v)]
    if sample is not None:
        parts += ["--sample", str(sample)]
        for k, d in (space or {}).items():
            parts += ["--space", _space_item_text(k, d)]
    if seeds is not None:
        if seeds == list(range(len(seeds))):
            parts += ["--seeds", str(len(seeds))]
        else:
            parts += ["--grid", "seed=" + ",".join(map(str, seeds))]
    for o in overrides:
        parts += ["--set", str(o)]
    return " ".join(shlex.quote(p) for p in parts)


def run_sweep(config_path, grids: dict[str, list], seeds: int | None = None, jobs: int = 1,
              out: Path | None = None, overrides: Sequence[str] = (),
              log: Callable[[str], Any] = print, *, space: dict | None = None,
              sample: int | None = None, backend: str = "local", scheduler: str | None = None,
              workers: int | None = None, retries: int | None = None,
              progress: bool = False, search=None, trials: int | None = None,
              metric: str | None = None, direction: str | None = None,
              prune=None) -> list[dict]:
    """Run the product of ``grids`` ({key path: [values]}) times ``seeds`` as ordinary runs.

    ``seeds``: None runs the config's own seed only; N runs seeds 0..N-1 (a list of seeds is
    also accepted).  ``out`` is the sweep folder (default ``sweeps/<name>-<timestamp>``);
    running again with the same ``out`` skips finished runs.  ``overrides`` are ``--set``
    items applied before the grid values.  ``sample`` random trials are drawn from ``space``
    ({key path: distribution}, see :mod:`mlpjit.search_space`) and crossed with the grids and
    seeds.  Every combination is validated before anything is created
    (:class:`ConfigError` naming the ``--grid`` or ``--space`` item).

    ``backend="local"`` trains ``jobs`` runs in parallel worker processes (1: in this
    process).  ``backend="dask"`` trains each run as one task on a Dask cluster (see
    :mod:`mlpjit.sweep.dask_backend`): the one at ``scheduler`` (an address such as
    ``tcp://10.0.0.5:8786``), else a local cluster of ``workers`` processes started for the
    sweep; a run whose worker dies is tried again up to ``retries`` times (default 3).
    ``progress`` shows a bar over the runs on stderr when it is a terminal.

    Returns one dict per run, in grid order (seeds innermost): the grid and space values by
    key path, ``seed``, ``status`` ("ok" / "failed"), the final metrics (``train_loss``,
    ``train_accuracy``, ``val_*``, ``test_*`` where measured), ``epochs``, ``train_seconds``,
    ``run_dir`` (the run folder's name, relative to the sweep folder) and ``error`` (None
    when ok) — the rows of ``sweep.csv``.
    Raises KeyboardInterrupt after writing sweep.csv when interrupted (Ctrl-C).

    ``search`` (``"tpe"``, ``"random"``, ``"cmaes"``, ``"grid"`` or an Optuna sampler) runs an
    Optuna study of ``trials`` trials instead, choosing by ``metric`` in ``direction`` and
    pruning with ``prune``: see :func:`mlpjit.sweep.search.run_search`, which then returns one
    row per finished trial.
    """
    from ..io import atomic_write_text
    from .search import check_search_options

    check_search_options(search, trials, metric, direction, prune, seeds, sample)
    if search is not None:
        from .search import run_search
        make_backend(backend, jobs, scheduler, workers, retries, log=log)  # checks, before anything
        return run_search(config_path, space or {}, grids or {}, search=search, trials=trials,
                          metric=metric, direction=direction, prune=prune, jobs=jobs, out=out,
                          overrides=overrides, log=log, backend=backend, scheduler=scheduler,
                          workers=workers, retries=retries, progress=progress)
    runner = make_backend(backend, jobs, scheduler, workers, retries, log=log)  # checks, before anything
    grids = _check_grids(dict(grids or {}))
    space = _check_space(space, sample, grids)
    seed_list = _seed_list(seeds)
    overrides = [str(o) for o in (overrides or ())]
    points = _plan(config_path, grids, seed_list, overrides, space, sample)
    keys = list(grids) + list(space)
    out = _prepare_out(out, points[0].cfg["name"])
    _refuse_study(out)
    states = {p.index: _state(p, out / p.name) for p in points}
    n_todo = sum(state != "done" for state in states.values())

    held = contextlib.ExitStack()   # the sweep folder's lock, to the end
    with held:
        runner.n_runs = n_todo
        interrupted = False
        results: dict[int, dict] = {}
        # nothing to do: no cluster to start or reach
        with runner if n_todo else contextlib.nullcontext(runner):
            if n_todo:
                runner.check_data([p.cfg for p in points if states[p.index] != "done"])
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"--out {out}: cannot create the sweep folder ({e.strerror or e})") from None
            held.enter_context(FolderLock(out, "sweep folder"))   # one sweep writes a folder at a time
            atomic_write_text(out / "sweep.yaml", _sweep_yaml(config_path, overrides, grids, seed_list,
                                                              points, jobs, space, sample, runner.describe()))
            log(f"sweep folder: {out} ({len(points)} run{'s' if len(points) != 1 else ''})")

            tasks = []
            for p in points:
                run_dir = out / p.name
                state = states[p.index]
                if state == "done":
                    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
                    results[p.index] = {"status": "ok", "summary": summary, "skipped": True}
                    continue
                if state == "new" and run_dir.exists():
                    shutil.rmtree(run_dir) if run_dir.is_dir() else run_dir.unlink()
                tasks.append((p, {"cfg": p.cfg, "config_text": p.config_text, "run_dir": str(run_dir),
                                  "resume": state == "resume"}))
            skipped = len(results)
            if skipped:
                log(f"skipping {skipped} finished run{'s' if skipped != 1 else ''}")

            def rows():
                return [_row(p, out / p.name, results.get(p.index)) for p in points]

            bar = _Progress(len(tasks), log, enabled=progress)

            def finish(p, res):
                """Record one finished run: its line, its row in sweep.csv, the bar."""
                results[p.index] = res
                row = _row(p, out / p.name, res)
                where = out / p.name
                count = bar.done + 1
                if res["status"] == "ok":
                    shown = ""
                    for fig in [m for m in ranking_metric([row]) if m]:
                        v = row[fig]
                        shown += f"  {fig} {100 * v:.2f}%" if fig.endswith("accuracy") else f"  {fig} {v:.4g}"
                    extra = (", resumed" if res.get("resumed") else "") + \
                        (f" on {res['worker']}" if res.get("worker") else "")
                    bar.log(f"[{count}/{len(tasks)}] ok      {where}{shown}  "
                            f"({row['train_seconds']:.2f}s{extra})")
                else:
                    bar.log(f"[{count}/{len(tasks)}] failed  {where}: {res['error']}")
                _write_csv(out / "sweep.csv", keys, [r for r in rows() if r["status"] != "pending"])
                bar.finished(res["status"] == "ok")

            _write_csv(out / "sweep.csv", keys, [r for r in rows() if r["status"] != "pending"])
            try:
                with _sigterm_as_interrupt():
                    if tasks:
                        runner.run(tasks, finish, bar)
            except KeyboardInterrupt as e:
                interrupted = e
            finally:
                bar.close()

        final_rows = rows()
        done_rows = [r for r in final_rows if r["status"] != "pending"]
        _write_csv(out / "sweep.csv", keys, done_rows, durable=True)
        if interrupted:
            log(f"sweep interrupted; {len(done_rows)} of {len(final_rows)} runs recorded in "
                f"{out / 'sweep.csv'}; run the same command again to continue")
            raise interrupted
        failed = [r for r in final_rows if r["status"] == "failed"]
        log("")
        log(summary_table(keys, final_rows))
        log("")
        log(f"{len(final_rows) - len(failed)} ok, {len(failed)} failed"
            + (f", {skipped} skipped (already finished)" if skipped else "")
            + f"; results in {out / 'sweep.csv'}")
        return final_rows


# --- the command ----------------------------------------------------------------------------

@click.command("sweep", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(), required=False)
@click.option("--grid", "grid_items", multiple=True, metavar="KEY.PATH=V1,V2,...",
              help="Values to sweep for a config key, read like --set values (repeatable; "
                   "the sweep runs the product of all grids).")
@click.option("--sample", type=click.IntRange(min=1, max=MAX_TRIALS), metavar="N",
              help="Random search: draw N trials from the --space distributions (seeded by "
                   "the config's seed, so the same command draws the same trials).")
@click.option("--space", "space_items", multiple=True, metavar="KEY.PATH=DIST",
              help="A distribution to draw a config key from with --sample: uniform(a,b), "
                   "loguniform(a,b), randint(a,b) or choice(x,y,...) (repeatable).")
@click.option("--seeds", type=click.IntRange(min=1),
              help="Run every grid point with seeds 0..N-1 (default: the config's seed only).")
@click.option("--search", type=click.Choice(SEARCHES),
              help="An Optuna study instead of a grid: its sampler proposes each trial's values "
                   "from the --space distributions (--grid lists are choices); "
                   "pip install \"mlpjit[search]\".")
@click.option("--trials", type=click.IntRange(min=1, max=MAX_TRIALS), metavar="N",
              help="--search: trials in the study (the same command with a larger N continues "
                   "it; default for --search grid: every grid point).")
@click.option("--metric", metavar="NAME",
              help="--search: what chooses: val_loss (the default; needs data.validation), "
                   "val_accuracy, train_loss or train_accuracy; never a test metric.")
@click.option("--direction", type=click.Choice(DIRECTIONS),
              help="--search: minimize a loss, maximize an accuracy (the default follows --metric).")
@click.option("--prune", type=click.Choice(PRUNERS),
              help="--search: stop unpromising trials at an epoch's end (default none).")
@click.option("--show", "show", type=click.Path(file_okay=False), metavar="SWEEP_FOLDER",
              help="Print the best trials, the parameters' importance and the plots of a "
                   "--search sweep folder, and exit.")
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True,
              help="Where runs train: local worker processes, or a Dask cluster "
                   "(pip install \"mlpjit[dask]\").")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Runs trained in parallel (local backend: worker processes; 1 trains in this process).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Dask backend: submit the runs to the cluster of this scheduler "
                   "(e.g. tcp://10.0.0.5:8786) instead of starting a local one.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Dask backend without --scheduler: worker processes of the local cluster "
                   "(default: the number of cores, at most one per run).")
@click.option("--retries", type=click.IntRange(min=0),
              help="Dask backend: times a run is tried again when its worker dies (default 3).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Sweep folder (default sweeps/<name>-<timestamp>); the same --out again "
                   "skips finished runs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config key for every run, e.g. --set train.epochs=20 (repeatable).")
def sweep(config, grid_items, sample, space_items, seeds, search, trials, metric, direction,
          prune, show, backend, jobs, scheduler, workers, retries, out, overrides):
    """Train every combination of --grid values (times --seeds) as ordinary runs.

    Each run gets a run folder in the sweep folder, named from its swept values and
    seed (e.g. optimizer.lr=0.1,seed=0).  Every combination's config is checked
    before any run starts.  sweep.csv (one row per run: swept values, seed, status,
    final metrics, epochs, train_seconds, run folder, error) is rewritten as runs
    finish, and a table of mean ± std over seeds per grid point is printed at the end.
    A failed run (e.g. diverged) does not stop the others; the exit code is then 1.
    Running the same command with the same --out again skips finished runs and
    resumes or restarts the others.

    Random search: --sample N draws N trials from the --space distributions (crossed
    with the --grid values and the seeds); the folders are named from the drawn values.

    --backend dask trains each run as a task on a Dask cluster: a local one of
    --workers processes, or the cluster of --scheduler (started with `dask scheduler`
    and `dask worker ADDRESS` on any machines).  The runs' files come back to this
    machine; a run whose worker dies is retried (--retries).

    Optuna search: --search tpe|random|cmaes|grid --trials N runs a study (in the
    sweep folder's study.db) whose sampler proposes the --space values of each
    trial; the trials are ranked by --metric (default val_loss, which needs
    data.validation) and --prune median|halving|hyperband stops unpromising ones at
    an epoch's end.  The same command continues the study; --show SWEEP_FOLDER
    prints its best trials, the parameters' importance and its plots.

    \b
    Examples:
      mlpjit sweep spirals --grid optimizer.lr=0.01,0.05,0.1 --seeds 3
      mlpjit sweep spirals --grid model.layers.0.activation=sigmoid,tanh,relu \\
          --grid optimizer.lr=0.01,0.1 --seeds 2 --jobs 2 --out sweeps/act-lr
      mlpjit sweep mnist_mlp --grid model.layers.1.p=0.0,0.1,0.3 --set train.epochs=5
      mlpjit sweep xor --seeds 10 --out sweeps/xor-seeds
      mlpjit sweep spirals --sample 20 --space "optimizer.lr=loguniform(1e-3,0.3)" \\
          --space "optimizer.momentum=uniform(0.5,0.99)" --out sweeps/random
      mlpjit sweep spirals --grid optimizer.lr=0.01,0.1 --seeds 4 --backend dask --workers 2
      mlpjit sweep spirals --set data.validation=600 --search tpe --trials 30 \\
          --space "optimizer.lr=loguniform(1e-3,0.3)" --prune median --out sweeps/tpe
      mlpjit sweep --show sweeps/tpe
      mlpjit sweep spirals --grid optimizer.lr=0.01,0.1 --seeds 4 \\
          --backend dask --scheduler tcp://10.0.0.5:8786
    """
    if show is not None:
        ctx = click.get_current_context()
        given = [p.opts[0] if p.opts else p.name for p in ctx.command.params
                 if p.name != "show" and ctx.get_parameter_source(p.name)
                 is not click.core.ParameterSource.DEFAULT]
        if given:
            raise ConfigError(f"--show {show}: give the sweep folder alone "
                              f"(not with {given[0].upper() if given[0] == 'config' else given[0]})")
        from .search import show_study
        show_study(Path(show), log=click.echo)
        return
    if config is None:
        raise click.UsageError("Missing argument 'CONFIG'.")
    grids: dict[str, list] = {}
    for item in grid_items:
        key, values = parse_grid(item)
        if key in grids:
            raise ConfigError(f"--grid {item}: key {key!r} is already swept by another --grid")
        grids[key] = values
    space: dict = {}
    for item in space_items:
        key, dist = parse_space(item)
        if key in space:
            raise ConfigError(f"--space {item}: key {key!r} is already drawn by another --space")
        space[key] = dist
    rows = run_sweep(config, grids, seeds=seeds, jobs=jobs, out=Path(out) if out else None,
                     overrides=overrides, log=click.echo, space=space, sample=sample,
                     backend=backend, scheduler=scheduler, workers=workers, retries=retries,
                     progress=True, search=search, trials=trials, metric=metric,
                     direction=direction, prune=prune)
    if search is not None:   # a failed trial is a result of the search; none finished is not
        if rows and not any(r["status"] in ("ok", "pruned") for r in rows):
            sys.exit(1)
        return
    if any(r["status"] == "failed" for r in rows):
        sys.exit(1)
