"""``mlpjit sweep --search``: an Optuna study behind a sweep (samplers, pruners, ``study.db``).

``mlpjit sweep CONFIG --search tpe --trials 50 --space "optimizer.lr=loguniform(1e-4,0.3)"
--metric val_loss --prune hyperband`` runs an Optuna study: its sampler (``tpe``, ``random``,
``cmaes`` or ``grid``, seeded by the config's seed) proposes each trial's values from the
``--space`` distributions (and ``--grid`` lists, as categorical choices); each trial trains as an
ordinary run in ``<sweep folder>/trial-NNNN/`` and reports its ``--metric`` after every epoch,
so that the pruner (``median``, ``halving``, ``hyperband``) stops an unpromising run at that
epoch boundary (:mod:`mlpjit.sweep.pruning`).  Needs the ``search`` extra
(``pip install "mlpjit[search]"``).

The study lives in ``<sweep folder>/study.db`` (SQLite, through ``optuna.storages.RDBStorage``).
Only the sweep's own process reads and writes it (it asks for trials and tells their results;
the runs' per-epoch reports come to it): SQLite is then safe with any number of local worker
processes or Dask workers, which need no access to the file.  The same command again continues
the study: finished trials are kept (``--trials`` counts them; a larger ``--trials`` adds the
difference), and a trial that was interrupted (Ctrl-C, SIGTERM, a killed sweep) is marked FAIL
with the user attribute ``interrupted`` and its values enqueued as a new trial, which resumes
the same run folder from its checkpoint.

``sweep.csv`` has one row per finished trial (``trial``, the values, ``seed``, ``status``: ok,
pruned or failed, the final metrics, ``epochs``, ...); ``mlpjit sweep --show FOLDER`` prints the
best trials, the importance of each parameter and where the plots are
(``optimization_history.png`` and ``param_importances.png`` beside ``sweep.csv``, with the
``plot`` extra).

Python API: :func:`run_search` (what :func:`mlpjit.sweep.run_sweep` calls with ``search=``),
:func:`show_study`, :func:`write_plots`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..errors import ConfigError

__all__ = ["run_search", "show_study", "write_plots", "require_optuna", "SEARCHES", "PRUNERS",
           "SEARCH_METRICS", "INSTALL_HINT", "STUDY_FILE"]

SEARCHES = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "halving", "hyperband", "none")
SEARCH_METRICS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")
DIRECTIONS = ("minimize", "maximize")
INSTALL_HINT = 'pip install "mlpjit[search]"'
STUDY_FILE = "study.db"
STUDY_NAME = "mlpjit-sweep"
PLOTS = ("optimization_history.png", "param_importances.png")
MIN_IMPORTANCE_TRIALS = 4   # complete trials before the importances mean anything
TOP = 10                    # trials in the table of best trials


def require_optuna(option: str = "--search"):
    """The ``optuna`` module, or a one-line ConfigError saying what to install."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"{option} needs Optuna, which is not installed here; install it with: "
                          f"{INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # no line per trial from Optuna
    return optuna


def check_search_options(search, trials, metric, direction, prune, seeds, sample) -> None:
    """Options that only mean something with (or without) ``--search``: one line each."""
    if search is None:
        for option, value in (("--trials", trials), ("--metric", metric),
                              ("--direction", direction), ("--prune", prune)):
            if value is not None:
                raise ConfigError(f"{option} {value}: only used with --search "
                                  f"tpe|random|cmaes|grid (an Optuna study)")
        return
    if isinstance(search, str) and search not in SEARCHES:
        raise ConfigError(f"--search {search}: unknown search (valid: {', '.join(SEARCHES)})")
    if isinstance(prune, str) and prune not in PRUNERS:
        raise ConfigError(f"--prune {prune}: unknown pruner (valid: {', '.join(PRUNERS)})")
    if direction is not None and direction not in DIRECTIONS:
        raise ConfigError(f"--direction {direction}: expected minimize or maximize")
    if sample is not None:
        raise ConfigError(f"--sample {sample}: with --search, give the number of trials with "
                          f"--trials N")
    if seeds is not None:
        raise ConfigError(f"--seeds {seeds}: not used with --search (each trial trains once, with "
                          f"the config's seed; --space seed=randint(0,99) searches over seeds)")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ConfigError(f"--trials: expected a number of trials >= 1 (got {trials!r})")
    if metric is not None and metric not in SEARCH_METRICS:
        if str(metric).startswith("test_"):
            raise ConfigError(f"--metric {metric}: the test split only reports, it never chooses; "
                              f"use val_{metric[5:]} (with data.validation) or train_{metric[5:]}")
        raise ConfigError(f"--metric {metric}: expected one of {', '.join(SEARCH_METRICS)}")


def _search_name(search) -> str:
    return search if isinstance(search, str) else type(search).__name__


def _prune_name(prune) -> str:
    return "none" if prune is None else prune if isinstance(prune, str) else type(prune).__name__


def _metric_for(metric, direction, data, search_text) -> tuple[str, str]:
    """(metric, direction), checked against the data: a validation metric needs a validation
    split, an accuracy a classification task; the direction follows the metric."""
    has_val = data.X_val is not None and len(data.X_val) > 0
    if metric is None:
        if not has_val:
            raise ConfigError(f"--search {search_text}: data '{data.name}' has no validation split "
                              f"to choose trials by; set data.validation (e.g. --set "
                              f"data.validation=0.2) or choose by --metric train_loss")
        metric = "val_loss"
    if metric.startswith("val_") and not has_val:
        raise ConfigError(f"--metric {metric}: data '{data.name}' has no validation split; set "
                          f"data.validation (e.g. --set data.validation=0.2) or use "
                          f"train_{metric[4:]}")
    if metric.endswith("accuracy") and data.task != "classification":
        raise ConfigError(f"--metric {metric}: data '{data.name}' is a regression task (use "
                          f"{metric.split('_')[0]}_loss)")
    natural = "maximize" if metric.endswith("accuracy") else "minimize"
    if direction is not None and direction != natural:
        what = "an accuracy, higher is better" if natural == "maximize" else "a loss, lower is better"
        raise ConfigError(f"--direction {direction}: {metric} is {what} (--direction {natural})")
    return metric, natural


def _space_of(space: dict, grids: dict) -> dict:
    """The searched parameters: ``--grid`` lists as choices, then the ``--space`` items."""
    from ..search_space import Choice
    out = {}
    for key, values in grids.items():
        dist = Choice(*values)
        dist.check(f"--grid {key}")
        out[key] = dist
    for key, dist in space.items():
        if key in out:
            raise ConfigError(f"--space {key}={dist!r}: key {key!r} is already searched by --grid")
        out[key] = dist
    return out


def _check_values(config_path, overrides, space) -> None:
    """Each end of each distribution (every value of a choice) through the config, alone: a
    bad key or value is one line naming its ``--space`` item."""
    from ..config import load_config
    from ..search_space import Choice
    from .records import _override_text, _replace_prefix
    for key, dist in space.items():
        values = dist.values if isinstance(dist, Choice) else [dist.a, dist.b]
        for v in values:
            ov = f"{key}={_override_text(v)}"
            try:
                load_config(config_path, list(overrides) + [ov])
            except ConfigError as e:
                raise _replace_prefix(e, f"--set {ov}", f"--space {key}={dist!r}") from None


def _sampler(optuna, search, space, seed):
    if not isinstance(search, str):
        return search   # a sampler object (Python API)
    if search == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search == "cmaes":
        if importlib.util.find_spec("cmaes") is None:   # Optuna's CMA-ES sampler needs it
            raise ConfigError("--search cmaes needs the cmaes package, which is not installed "
                              "here; install it with: pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its study.stop() (which only works inside
        study.optimize): --trials, the grid's size by default, ends the search."""

        def after_trial(self, study, trial, state, values):
            pass

    return Grid({k: d.grid_values(f"--space {k}={d!r}") for k, d in space.items()}, seed=seed)


def _pruner(optuna, prune, epochs):
    if prune is None or prune == "none":
        return optuna.pruners.NopPruner()
    if not isinstance(prune, str):
        return prune   # a pruner object (Python API)
    if prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if prune == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(int(epochs), 1),
                                          reduction_factor=3)


def _sampler_seed(seed: int, n_before: int) -> int:
    """The sampler's seed: the config's, mixed with the number of trials the study already has,
    so that a continued study does not draw its first trials again."""
    import numpy as np
    return int(np.random.SeedSequence([int(seed), int(n_before)]).generate_state(1)[0])


def _storage(optuna, out: Path):
    return optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_FILE).resolve()}")


def _interrupted(t) -> bool:
    return bool(t.user_attrs.get("interrupted"))


def _counted(optuna, trials) -> list:
    """The trials that count against ``--trials``: complete, pruned or failed for a reason of
    their own (not an interruption, which is tried again)."""
    S = optuna.trial.TrialState
    return [t for t in trials
            if t.state in (S.COMPLETE, S.PRUNED) or (t.state == S.FAIL and not _interrupted(t))]


def _retry(study, trial_number, params, run_dir) -> None:
    """The values of an interrupted trial as a new (enqueued) trial, in the same run folder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.enqueue_trial(params, user_attrs={"run_dir": run_dir, "retry_of": trial_number})


def _mark_interrupted(optuna, study, trial, run_dir=None) -> None:
    """Trial (a Trial object) as FAIL with the user attribute ``interrupted``, its values
    enqueued again."""
    trial.set_user_attr("interrupted", True)
    params = dict(trial.params)
    run_dir = run_dir or trial.user_attrs.get("run_dir")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    if params and run_dir:
        _retry(study, trial.number, params, run_dir)


# --- rows, the table, sweep.yaml ---------------------------------------------------------------

_STATUS = {"COMPLETE": "ok", "PRUNED": "pruned", "FAIL": "failed"}


def _decoded(space: dict, params: dict) -> dict:
    out = {}
    for key, dist in space.items():
        if key in params:
            try:
                out[key] = dist.decode(params[key])
            except ValueError:
                out[key] = params[key]
        else:
            out[key] = None
    return out


def study_rows(study, space: dict, seed: int) -> list[dict]:
    """One row of ``sweep.csv`` per finished trial (not the interrupted ones, whose retry
    trains on), by trial number."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        status = _STATUS.get(t.state.name)
        if status is None or _interrupted(t):
            continue
        row = {"trial": t.number, **_decoded(space, t.params)}
        row.setdefault("seed", seed)
        row["status"] = status
        row.update(t.user_attrs.get("final") or {})
        row["epochs"] = t.user_attrs.get("epochs")
        row["train_seconds"] = t.user_attrs.get("train_seconds")
        row["run_dir"] = t.user_attrs.get("run_dir")
        row["error"] = t.user_attrs.get("error")
        if status == "pruned" and t.user_attrs.get("pruned_at") is not None:
            row["pruned_at"] = t.user_attrs["pruned_at"]
        rows.append(row)
    return rows


def _fmt(metric: str, value) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if metric.endswith("accuracy") else f"{value:.4f}"


def _short(value) -> str:
    """A value in the table: floats to 4 significant digits (sweep.csv has them in full)."""
    from .records import _display
    if isinstance(value, float):
        return f"{value:.4g}"
    return _display(value)


def search_table(keys: list[str], rows: list[dict], metric: str, direction: str,
                 top: int = TOP) -> str:
    """The best trials (status ok) by ``metric``, with the test metric beside it, never used
    to choose; then the counts of ok, pruned and failed trials and the epochs trained."""
    test = "test_" + metric.split("_", 1)[1]
    ok = [r for r in rows if r["status"] == "ok" and r.get(metric) is not None]
    ok.sort(key=lambda r: r[metric], reverse=direction == "maximize")
    has_test = any(r.get(test) is not None for r in rows)
    head = ["trial"] + list(keys) + [metric] + ([test] if has_test else []) + ["epochs", "train_seconds"]
    table = [head]
    for r in ok[:top]:
        table.append([str(r["trial"])] + [_short(r.get(k)) for k in keys] + [_fmt(metric, r[metric])]
                     + ([_fmt(test, r.get(test))] if has_test else [])
                     + [str(r.get("epochs")), f"{r.get('train_seconds') or 0:.2f}s"])
    lines = []
    better = "higher" if direction == "maximize" else "lower"
    if ok:
        shown = f"the best {min(top, len(ok))} of {len(ok)}" if len(ok) > top else "all"
        lines.append(f"trials that finished ({shown}), by {metric} ({better} is better)"
                     + (f"; {test} is reported, never used to choose" if has_test else "") + ":")
        widths = [max(len(line[i]) for line in table) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
        best = ok[0]
        values = ", ".join(f"{k}={_short(best.get(k))}" for k in keys)
        lines.append("")
        lines.append(f"best by {metric}: trial {best['trial']} ({values}), {metric} "
                     f"{_fmt(metric, best[metric])}"
                     + (f"; {test} {_fmt(test, best.get(test))} is reported, never used to choose"
                        if has_test else ""))
        if not metric.startswith("val"):
            lines.append("no validation metric: the training figures choose; set data.validation "
                         "to choose by held-out data")
    else:
        lines.append(f"no trial has run all its epochs with a {metric} yet")
    n = {s: sum(r["status"] == s for r in rows) for s in ("ok", "pruned", "failed")}
    epochs = sum(int(r["epochs"]) for r in rows if r.get("epochs") is not None)
    lines.append(f"{len(rows)} trial{'s' if len(rows) != 1 else ''}: {n['ok']} ok, "
                 f"{n['pruned']} pruned, {n['failed']} failed; {epochs} epochs trained in all")
    return "\n".join(lines)


def _command_line(config_path, overrides, space, search, trials, metric, prune) -> str:
    import shlex
    parts = ["mlpjit", "sweep", str(config_path), "--search", _search_name(search),
             "--trials", str(trials)]
    for k, d in space.items():
        parts += ["--space", f"{k}={d!r}"]
    parts += ["--metric", metric, "--prune", _prune_name(prune)]
    for o in overrides:
        parts += ["--set", str(o)]
    return " ".join(shlex.quote(p) for p in parts)


def _sweep_yaml(config_path, overrides, space, search, trials, metric, direction, prune, jobs,
                backend) -> str:
    from .. import __version__
    from .records import SWEEP_FORMAT
    doc = {
        "format": SWEEP_FORMAT,
        "config": str(config_path),
        "config_abs": str(Path(config_path).resolve()),
        "overrides": list(overrides),
        "search": _search_name(search),
        "space": {k: repr(d) for k, d in space.items()},
        "trials": trials,
        "metric": metric,
        "direction": direction,
        "prune": _prune_name(prune),
        "study": STUDY_FILE,
        "jobs": jobs,
        "backend": backend,
        "command": _command_line(config_path, overrides, space, search, trials, metric, prune),
        "mlpjit": __version__,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# --- the search -------------------------------------------------------------------------------

def _check_identity(study, identity: dict, out: Path) -> bool:
    """False for a new study; a ConfigError when the study in ``out`` searched another metric,
    space or base config."""
    old = study.user_attrs.get("mlpjit")
    if old is None:
        return False
    if old != identity:
        what = next((k for k in identity if old.get(k) != identity[k]), "search")
        shown = "the base config or --set items" if what == "config" else old.get(what)
        raise ConfigError(f"--out {out}: its study searched a different {what} ({shown}); "
                          f"continue it with the same command, or choose another --out")
    return True


def _no_reports(wait: float = 0.0) -> None:
    """serve() of a search without a pruner: nothing to answer (wait as a channel would)."""
    if wait:
        import time
        time.sleep(wait)


def run_search(config_path, space: dict, grids: dict | None = None, *, search="tpe",
               trials: int | None = None, metric: str | None = None,
               direction: str | None = None, prune=None, jobs: int = 1,
               out: Path | None = None, overrides: Sequence[str] = (),
               log: Callable[[str], Any] = print, backend: str = "local",
               scheduler: str | None = None, workers: int | None = None,
               retries: int | None = None, progress: bool = False,
               plots: bool = True) -> list[dict]:
    """Run (or continue) an Optuna study of ``trials`` trials over ``space`` ({key path:
    distribution of :mod:`mlpjit.search_space`}) and ``grids`` ({key path: [values]}, searched
    as choices), each trial an ordinary run in ``out/trial-NNNN``.

    ``search``: ``"tpe"``, ``"random"``, ``"cmaes"``, ``"grid"`` or an Optuna sampler object;
    ``prune``: ``"median"``, ``"halving"``, ``"hyperband"``, ``"none"``/None or an Optuna
    pruner object; ``metric`` (default ``val_loss``, which needs ``data.validation``) and
    ``direction`` (from the metric).  Backends and their options as in
    :func:`mlpjit.sweep.run_sweep`.  Returns the rows of ``sweep.csv`` (one per finished trial);
    raises KeyboardInterrupt after recording what finished when interrupted.
    """
    from ..config import load_config, resolved_dict
    from ..data import load_dataset
    from ..io import FolderLock, atomic_write_text
    from ..trainer import model_for_data
    from .backends import make_backend
    from .records import (_Point, _Progress, _override_text, _prepare_out, _sigterm_as_interrupt,
                       _state, _write_csv)

    runner = make_backend(backend, jobs, scheduler, workers, retries, log=log)
    search_text = _search_name(search)
    optuna = require_optuna()
    grids = dict(grids or {})
    space = _space_of(dict(space or {}), grids)
    if not space:
        raise ConfigError(f"--search {search_text}: give the parameters to search with --space "
                          f"key.path=uniform(a,b)|loguniform(a,b)|randint(a,b)|choice(x,y,...)")
    for key, dist in space.items():
        if not hasattr(dist, "to_optuna"):
            raise ConfigError(f"--space {key}: expected a distribution (got {dist!r})")
    if search == "grid":
        size = 1
        for key, dist in space.items():
            size *= len(dist.grid_values(f"--space {key}={dist!r}"))
        if trials is None:
            trials = size
        elif trials > size:
            raise ConfigError(f"--trials {trials}: the grid has {size} point{'s' if size != 1 else ''}")
    if trials is None:
        raise ConfigError(f"--search {search_text}: give the number of trials with --trials N")
    overrides = [str(o) for o in (overrides or ())]
    base = load_config(config_path, overrides)   # a mistake in CONFIG or --set: its own message
    _check_values(config_path, overrides, space)
    cfg = resolved_dict(base)
    data = load_dataset(dict(cfg["data"]), cfg["seed"])
    metric, direction = _metric_for(metric, direction, data, search_text)
    model_for_data(cfg, data)   # the base model fits the data (a bad one: its own message)
    del data
    dists = {k: d.to_optuna() for k, d in space.items()}
    out = _prepare_out(out, cfg["name"])
    if out.is_dir() and (out / "sweep.yaml").is_file() and not (out / STUDY_FILE).is_file():
        raise ConfigError(f"--out {out}: holds a --grid/--sample sweep (no {STUDY_FILE}); choose "
                          f"another --out for a --search")
    identity = {"metric": metric, "direction": direction,
                "space": {k: repr(d) for k, d in space.items()},
                "config": json.loads(json.dumps(cfg, default=str))}

    # the trials still to train, from the study when there is one: nothing to train, no
    # cluster to start or reach
    todo = trials
    if (out / STUDY_FILE).is_file():
        earlier = _load(out, "--out")[1]
        _check_identity(earlier, identity, out)
        todo = max(trials - len(_counted(optuna, earlier.get_trials(deepcopy=False))), 0)
    with contextlib.ExitStack() as held:
        runner.n_runs = max(todo, 1)
        if todo:
            held.enter_context(runner)
            runner.check_data([cfg])
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot create the sweep folder ({e.strerror or e})") from None
        held.enter_context(FolderLock(out, "sweep folder"))
        study = optuna.create_study(storage=_storage(optuna, out), study_name=STUDY_NAME,
                                    direction=direction, load_if_exists=True)
        if not _check_identity(study, identity, out):
            study.set_user_attr("mlpjit", identity)
            study.set_user_attr("keys", list(space))
        atomic_write_text(out / "sweep.yaml", _sweep_yaml(config_path, overrides, space, search,
                                                          trials, metric, direction, prune, jobs,
                                                          runner.describe()))
        S = optuna.trial.TrialState
        # trials left running by a sweep that was killed: FAIL (interrupted), tried again
        for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
            _mark_interrupted(optuna, study, optuna.trial.Trial(study, t._trial_id))
        study.sampler = _sampler(optuna, search, space, _sampler_seed(cfg["seed"], len(study.trials)))
        study.pruner = _pruner(optuna, prune, cfg["train"]["epochs"])
        done_before = len(_counted(optuna, study.get_trials(deepcopy=False)))
        todo = min(todo, max(trials - done_before, 0))
        log(f"sweep folder: {out} (study {out / STUDY_FILE}: {search_text}, {trials} trials by "
            f"{metric}, {direction}; pruner {_prune_name(prune)})")
        if done_before:
            log(f"the study has {done_before} finished trial{'s' if done_before != 1 else ''}"
                + ("; nothing to train" if not todo else f"; {todo} more to train"))

        keys = list(space)
        seed = cfg["seed"]
        active: dict[int, Any] = {}
        told = [0]
        bar = _Progress(todo, log, enabled=progress)

        def write_csv(durable=False):
            _write_csv(out / "sweep.csv", ["trial"] + keys, study_rows(study, space, seed),
                       durable=durable)

        def decide(number, epoch, value):
            trial = active.get(number)
            if trial is None:
                return False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # a step reported again (a retried run)
                trial.report(value, epoch)
            return trial.should_prune()

        def finish(p, res):
            trial = active.pop(p.index)
            if res.get("interrupted") or res.get("not_started"):
                _mark_interrupted(optuna, study, trial, p.name)
                return
            summary = res.get("summary") or {}
            final = summary.get("final") or {}
            trial.set_user_attr("final", final)
            trial.set_user_attr("epochs", summary.get("epochs"))
            trial.set_user_attr("train_seconds", summary.get("train_seconds"))
            if res.get("report_seconds") is not None:   # waiting for the study's answers
                trial.set_user_attr("report_seconds", res["report_seconds"])
            status = res["status"]
            value = final.get(metric)
            if status == "ok" and (value is None or not math.isfinite(value)):
                status, res = "failed", {**res, "error": f"the run did not measure {metric}"}
            where = out / p.name
            if p.name != f"trial-{p.index:04d}":   # a retried trial, in the folder it resumes
                where = f"{where} (trial {p.index})"
            count = f"[{bar.done + 1}/{todo}]"
            if status == "ok":
                study.tell(trial, value)
                bar.log(f"{count} ok      {where}  {metric} {_fmt(metric, value)}  "
                        f"({summary.get('train_seconds') or 0:.2f}s"
                        + (", resumed" if res.get("resumed") else "")
                        + (", finished before" if res.get("skipped") else "")
                        + (f" on {res['worker']}" if res.get("worker") else "") + ")")
            elif status == "pruned":
                at = (summary.get("pruned") or {}).get("epoch", summary.get("epochs"))
                trial.set_user_attr("pruned_at", at)
                study.tell(trial, state=S.PRUNED)
                bar.log(f"{count} pruned  {where} at epoch {at} of {cfg['train']['epochs']}  "
                        f"{metric} {_fmt(metric, value)}")
            else:
                trial.set_user_attr("error", res.get("error"))
                study.tell(trial, state=S.FAIL)
                bar.log(f"{count} failed  {where}: {res.get('error')}")
            told[0] += 1
            write_csv()
            bar.finished(status != "failed")

        def next_task():
            while told[0] + len(active) < todo:
                trial = study.ask(dists)
                values = _decoded(space, trial.params)
                extra = [f"{k}={_override_text(v)}" for k, v in values.items()]
                name = trial.user_attrs.get("run_dir") or f"trial-{trial.number:04d}"
                trial.set_user_attr("run_dir", name)
                active[trial.number] = trial
                try:
                    cfg_obj = load_config(config_path, overrides + extra)
                except ConfigError as e:   # values that fit alone but not together
                    p = _Point(trial.number, values, None, base, name)
                    finish(p, {"status": "failed", "error": " ".join(str(e).split())})
                    continue
                p = _Point(trial.number, values, None, cfg_obj, name)
                run_dir = out / name
                state = _state(p, run_dir)
                if state == "done":   # trained before its result was told (a killed sweep)
                    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
                    finish(p, {"status": "pruned" if summary.get("pruned") else "ok",
                               "summary": summary, "skipped": True})
                    continue
                if state == "new" and run_dir.exists():
                    shutil.rmtree(run_dir) if run_dir.is_dir() else run_dir.unlink()
                report = None   # without a pruner the runs report nothing while they train
                if pruning:
                    report = {**channel.spec(trial.number), "metric": metric, "trial": trial.number}
                return p, {"cfg": p.cfg, "config_text": p.config_text, "run_dir": str(run_dir),
                           "resume": state == "resume", "report": report}
            return None

        write_csv()
        interrupted = None
        pruning = prune is not None and prune != "none"
        channel = runner.report_channel(decide) if todo and pruning else None
        try:
            with _sigterm_as_interrupt():
                if todo:
                    runner.run_trials(next_task, finish, bar,
                                      channel.serve if channel else _no_reports, todo)
        except KeyboardInterrupt as e:
            interrupted = e
        finally:
            bar.close()
            for number in list(active):   # asked, but no result came back
                _mark_interrupted(optuna, study, active.pop(number))
            if channel is not None:
                channel.close()
        write_csv(durable=True)
        rows = study_rows(study, space, seed)
        if interrupted:
            log(f"sweep interrupted; {len(rows)} of {trials} trials recorded in {out / 'sweep.csv'} "
                f"and {out / STUDY_FILE}; run the same command again to continue")
            raise interrupted
    log("")
    log(search_table(keys, rows, metric, direction))
    if plots and todo:
        log(_plots_line(write_plots(study, out)))
    log(f"results in {out / 'sweep.csv'}; mlpjit sweep --show {out} for the parameters' importance")
    return rows


# --- --show, importances, plots --------------------------------------------------------------

def _load(out: Path, option: str = "--show"):
    optuna = require_optuna(option)
    out = Path(out)
    if not (out / STUDY_FILE).is_file():
        raise ConfigError(f"{option} {out}: no {STUDY_FILE} there (a sweep folder of --search)")
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(optuna, out))
    except Exception as e:
        raise ConfigError(f"{option} {out}: cannot read {out / STUDY_FILE} "
                          f"({' '.join(str(e).split())[:200]})") from None
    return optuna, study


def _space_from_yaml(out: Path, keys: list[str]) -> dict:
    """The searched distributions, as sweep.yaml records them (to decode the values)."""
    from ..search_space import parse_space
    try:
        doc = yaml.safe_load((out / "sweep.yaml").read_text(encoding="utf-8")) or {}
        return {k: parse_space(f"{k}={doc['space'][k]}")[1] for k in keys}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ConfigError):
        class Raw:
            def decode(self, v):
                return v
        return {k: Raw() for k in keys}


def _evaluator(optuna):
    """(importance evaluator, its name): fANOVA (seeded) with scikit-learn, else PED-ANOVA."""
    if importlib.util.find_spec("sklearn") is not None:   # fANOVA's random forest
        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    return optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA, as scikit-learn (for fANOVA) is missing"


def importances(optuna, study) -> tuple[dict[str, float] | None, str]:
    """({parameter: importance} or None, how it was measured or why not)."""
    S = optuna.trial.TrialState
    n = len(study.get_trials(deepcopy=False, states=(S.COMPLETE,)))
    if n < MIN_IMPORTANCE_TRIALS:
        return None, (f"needs more trials ({n} complete; at least {MIN_IMPORTANCE_TRIALS}, "
                      f"pruned ones do not count)")
    evaluator, how = _evaluator(optuna)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, evaluator=evaluator), \
                f"{how}, over {n} complete trials"
    except Exception as e:   # e.g. a parameter that never varied
        return None, f"not measured ({type(e).__name__}: {' '.join(str(e).split())[:150]})"


def write_plots(study, out: Path) -> tuple[list[Path], str | None]:
    """``optimization_history.png`` and ``param_importances.png`` in ``out`` (Optuna's
    matplotlib plots); (the files written, a note on what was skipped or None)."""
    try:
        import matplotlib
    except ImportError:
        return [], 'plots skipped: matplotlib is not installed (pip install "mlpjit[plot]")'
    import sys
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis
    import optuna
    n = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if n < 2:
        return [], f"plots skipped: {n} complete trial{'s' if n != 1 else ''} (at least 2)"
    metric = (study.user_attrs.get("mlpjit") or {}).get("metric", "Objective Value")
    evaluator = _evaluator(optuna)[0]
    plots = (lambda s: vis.plot_optimization_history(s, target_name=metric),
             lambda s: vis.plot_param_importances(s, evaluator=evaluator, target_name=metric))
    written, skipped = [], []
    for name, plot in zip(PLOTS, plots):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
                fig = ax.figure
                fig.savefig(out / name, dpi=100, bbox_inches="tight")
                plt.close(fig)
            written.append(out / name)
        except Exception as e:   # too few trials for the figure, say
            skipped.append(f"{name} ({' '.join(str(e).split())[:100]})")
    return written, (f"plots skipped: {'; '.join(skipped)}" if skipped else None)


def _plots_line(result) -> str:
    written, note = result
    parts = []
    if written:
        parts.append("plots: " + ", ".join(str(p) for p in written))
    if note:
        parts.append(note)
    return "; ".join(parts) or "plots: none"


def show_study(out, log: Callable[[str], Any] = print) -> list[dict]:
    """``mlpjit sweep --show FOLDER``: the study's best trials (by its metric, the test metric
    beside it, never used to choose), each parameter's importance and the plots (written
    again); returns the rows of ``sweep.csv``."""
    out = Path(out)
    optuna, study = _load(out)
    identity = study.user_attrs.get("mlpjit") or {}
    keys = list(study.user_attrs.get("keys") or identity.get("space") or [])
    metric = identity.get("metric", "val_loss")
    direction = identity.get("direction", "minimize")
    seed = (identity.get("config") or {}).get("seed")
    space = _space_from_yaml(out, keys)
    rows = study_rows(study, space, seed)
    S = optuna.trial.TrialState
    all_trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state in (S.WAITING, S.RUNNING) for t in all_trials)
    interrupted = sum(t.state == S.FAIL and _interrupted(t) for t in all_trials)
    log(f"study {out / STUDY_FILE}: {metric}, {direction}; {len(rows)} finished trials"
        + (f", {interrupted} interrupted (tried again)" if interrupted else "")
        + (f", {waiting} waiting or running" if waiting else ""))
    log("")
    log(search_table(keys, rows, metric, direction))
    log("")
    values, how = importances(optuna, study)
    if values is None:
        log(f"parameter importance: {how}")
    else:
        log(f"parameter importance ({how}):")
        width = max(len(k) for k in values)
        for k, v in values.items():
            log(f"  {k.ljust(width)}  {v:.3f}")
    log(_plots_line(write_plots(study, out)))
    return rows
