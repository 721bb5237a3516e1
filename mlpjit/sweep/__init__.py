"""Hyperparameter sweeps: the product of ``--grid`` values (times seeds) as ordinary runs.

``mlpjit sweep CONFIG --grid optimizer.lr=0.01,0.1 --seeds 3 --jobs 2`` validates every
combination's config first (a mistake is one :class:`~mlpjit.errors.ConfigError` naming the
``--grid`` item, and nothing is created), then trains each combination in its own run folder
under the sweep folder (default ``sweeps/<name>-<timestamp>/``)::

    sweeps/spirals-20261123-120000/
      sweep.yaml                          base config, --set overrides, grids, seeds
      sweep.csv                           one row per run, rewritten (atomically) as runs finish
      optimizer.lr=0.01,seed=0/           an ordinary run folder (config.yaml, metrics.jsonl, ...)
      optimizer.lr=0.01,seed=1/
      ...

Run folders are named from the swept values and the seed, so running the same command again
with the same ``--out`` skips the runs that finished (``summary.json`` present and
``config.yaml`` equal to the resolved config), resumes unfinished ones from their checkpoint and
starts the others afresh.  A failing run (diverged, or any exception) is reported and recorded
in ``sweep.csv``; it does not stop the others.

Random search: ``--sample N --space optimizer.lr=loguniform(1e-3,0.3)`` draws N trials (see
:mod:`mlpjit.search_space`; seeded, so the same command draws the same trials), crossed with
the ``--grid`` values and the seeds; their folders are named from the drawn values.

Backends: ``--backend local`` (the default) trains ``--jobs`` runs at a time in worker
processes; ``--backend dask`` trains each run as a task on a Dask cluster, a local one of
``--workers`` processes or the one at ``--scheduler ADDRESS`` (see :mod:`mlpjit.sweep.dask_backend`).
Both write the same run folders and ``sweep.csv``.

Optuna search: ``--search tpe --trials 50 --space ... --metric val_loss --prune hyperband``
runs an Optuna study instead (kept in ``<sweep folder>/study.db`` and continued by the same
command), whose sampler proposes each trial and whose pruner stops unpromising runs at an
epoch's end; ``mlpjit sweep --show FOLDER`` prints its best trials, the parameters' importance
and its plots (see :mod:`mlpjit.sweep.search` and :mod:`mlpjit.sweep.pruning`).

Python API: :func:`run_sweep` (returns the rows of ``sweep.csv``), :func:`parse_grid`;
the click command :data:`sweep`.

The package: :mod:`~mlpjit.sweep.plan` (grids, trials, folders, ``sweep.csv``, the command),
:mod:`~mlpjit.sweep.run` (one run, wherever it trains), :mod:`~mlpjit.sweep.backends` (the
interface every backend implements, and the local process pool) and
:mod:`~mlpjit.sweep.dask_backend` (a Dask cluster), :mod:`~mlpjit.sweep.search` (Optuna studies)
and :mod:`~mlpjit.sweep.pruning` (the runs' per-epoch reports to a study).
"""

from .plan import (METRIC_COLUMNS, SWEEP_FORMAT, ranking_metric, parse_grid, run_sweep,
                   summary_table, sweep)

__all__ = ["run_sweep", "parse_grid", "sweep", "summary_table", "METRIC_COLUMNS",
           "ranking_metric", "SWEEP_FORMAT"]
