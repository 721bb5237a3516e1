"""Learning-rate schedules: the rate of epoch e (from 0) out of a plan of E epochs (math.md §5).

=================================  =============================================
``constant``                       η
``step(every=10, gamma=0.1)``      η·γ^⌊e/every⌋
``exponential(gamma=0.95)``        η·γ^e
``cosine(min_lr=0)``               η_min + (η − η_min)(1 + cos(π·e/E))/2
``linear(start=0, over=10)``       start + (η − start)·min(1, e/over)
=================================  =============================================

``schedule`` drives the learning rate; ``schedules: {momentum: {...}}`` drives any other float
hyperparameter of the optimizer the same way, from its configured value (η above).

Every schedule steps by epoch (``per: epoch``, the default: e counts epochs, E is
``train.epochs``) or by update (``per: update``: e counts the updates from the start of the run,
E is ``train.epochs`` times the batches of an epoch, so ``linear(start=0.5, over=1000)`` ramps
over the first 1,000 updates).  Either way the compiled step reads each batch's values from its
arguments: nothing recompiles.

A schedule is a registered class: its constructor's arguments are its config keys, and
``lr(base, epoch, epochs)`` gives the rate.  ``register_schedule(name, depends_on_plan=...)``
says whether the rates depend on the planned number of epochs E (only cosine here), which is
what decides whether a resume with another ``train.epochs`` re-plans it.
"""

import math
from typing import Annotated

from pydantic import Field

from .registry import optimizer_value, register_schedule
from .registry import schedules as _registry
from .schema import Float, Int, NonNegative, validated

Gamma = Annotated[Float, Field(gt=0, le=1)]


class Schedule:
    depends_on_plan = None   # set by register_schedule(..., depends_on_plan=...)

    def lr(self, base, epoch, epochs):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


@register_schedule("constant", depends_on_plan=False)
class Constant(Schedule):
    """η in every epoch."""

    def lr(self, base, epoch, epochs):
        return base


@register_schedule("step", depends_on_plan=False)
class Step(Schedule):
    """η·γ^⌊epoch/every⌋."""

    @validated
    def __init__(self, every: Annotated[Int, Field(ge=1)] = 10, gamma: Gamma = 0.1):
        self.every, self.gamma = int(every), float(gamma)

    def lr(self, base, epoch, epochs):
        return base * self.gamma ** (epoch // self.every)


@register_schedule("exponential", depends_on_plan=False)
class Exponential(Schedule):
    """η·γ^epoch."""

    @validated
    def __init__(self, gamma: Gamma = 0.95):
        self.gamma = float(gamma)

    def lr(self, base, epoch, epochs):
        return base * self.gamma ** epoch


@register_schedule("cosine", depends_on_plan=True)
class Cosine(Schedule):
    """η_min + (η − η_min)(1 + cos(π·epoch/epochs))/2."""

    @validated
    def __init__(self, min_lr: NonNegative = 0.0):
        self.min_lr = float(min_lr)

    def lr(self, base, epoch, epochs):
        lo = self.min_lr
        return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


@register_schedule("linear", depends_on_plan=False)
class Linear(Schedule):
    """start + (η − start)·min(1, epoch/over): from ``start`` to the configured value over
    ``over`` epochs, then constant (a learning-rate warm-up from 0, or Srivastava et al.'s
    momentum ramp 0.5 → 0.99: ``schedules: {momentum: {type: linear, start: 0.5, over: 500}}``)."""

    @validated
    def __init__(self, start: NonNegative = 0.0, over: Annotated[Int, Field(ge=1)] = 10):
        self.start, self.over = float(start), int(over)

    def lr(self, base, epoch, epochs):
        return self.start + (base - self.start) * min(1.0, epoch / self.over)


def scheduled_values(cfg, epoch, epochs):
    """{hyperparameter: its value in ``epoch``} of the config's ``schedules`` (the optimizer's
    hyperparameters other than the learning rate), each from the optimizer section's value."""
    return {name: schedule_from_config(sched).lr(optimizer_value(cfg["optimizer"], name), epoch, epochs)
            for name, sched in (cfg.get("schedules") or {}).items()}


PER = ("epoch", "update")   # what a schedule's e counts (the config key ``per``)


def schedule_from_config(config):
    """A schedule from ``{"type": "step", "every": 5}`` (or a bare name); ``per`` is read by
    :func:`per_update`, not the schedule."""
    if isinstance(config, str):
        config = {"type": config}
    config = dict(config or {"type": "constant"})
    config.pop("per", None)
    return _registry.get(config.pop("type", "constant"))(**config)


def per_update(config) -> bool:
    """Whether the schedule of ``config`` steps by update (``per: update``) rather than by epoch."""
    return isinstance(config, dict) and config.get("per", "epoch") == "update"


def epoch_values(config, base, epoch, epochs, n_batches):
    """The value of each of the ``n_batches`` updates of epoch ``epoch`` (0-based) out of
    ``epochs``, from the configured ``base``: by epoch one value repeated; by update, update
    u = epoch·n_batches + b of a plan of epochs·n_batches updates."""
    import numpy as np
    sched = schedule_from_config(config)
    if not per_update(config):
        return np.full(n_batches, float(sched.lr(base, epoch, epochs)))
    u0, total = epoch * n_batches, epochs * n_batches
    return np.array([sched.lr(base, u0 + b, total) for b in range(n_batches)], dtype=np.float64)


def depends_on_plan(config, lr, epoch, old, new, n_batches=1) -> bool:
    """Whether the schedule of ``config`` gives other values from ``epoch`` on under a plan of
    ``new`` epochs than under ``old``: what its registration says, else measured (over updates
    for a schedule by update, ``n_batches`` to an epoch)."""
    sched = schedule_from_config(config)
    declared = getattr(sched, "depends_on_plan", None)
    if declared is not None:
        return bool(declared)
    k = n_batches if per_update(config) else 1
    return any(sched.lr(lr, e, old * k) != sched.lr(lr, e, new * k) for e in range(epoch * k, new * k))


def names():
    return _registry.names()
