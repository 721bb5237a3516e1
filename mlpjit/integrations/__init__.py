"""The shipped loggers of optional tools (:mod:`mlpjit.loggers`), each in its own module and
imported only when a run uses it:

* :mod:`mlpjit.integrations.tensorboard`: ``train.log: [tensorboard]`` (``pip install
  "mlpjit[tensorboard]"``);
* :mod:`mlpjit.integrations.mlflow`: ``train.log: [mlflow]`` (``pip install "mlpjit[mlflow]"``).

This package imports nothing itself (``import mlpjit`` stays fast); what both loggers share,
the metric names of a ``metrics.jsonl`` row, is :func:`flat_metrics`.
"""

import numbers

__all__ = ["flat_metrics", "NOT_METRICS"]

# keys of a metrics.jsonl row that are not measurements: the step itself, and the marker of
# the first epoch trained under a changed plan ({"from": 10, "to": 20})
NOT_METRICS = ("epoch", "replanned")


def flat_metrics(row, prefix=""):
    """``{name: float}`` of every number in a ``metrics.jsonl`` row, nested dicts flattened with
    ``/`` (``{"act_mean": {"0": 0.1}}`` → ``act_mean/0``, ``grad_norms/0.A``), in the row's
    order.  Left out: ``epoch`` (the step), ``replanned``, booleans (``early_stop``) and
    anything that is not a number."""
    out = {}
    for key, value in row.items():
        if not prefix and key in NOT_METRICS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name + "/"))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
    return out
