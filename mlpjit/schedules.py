"""Learning-rate schedules: the rate of epoch e (from 0) out of a plan of E epochs (math.md §5).

=================================  =============================================
``constant``                       η
``step(every=10, gamma=0.1)``      η·γ^⌊e/every⌋
``exponential(gamma=0.95)``        η·γ^e
``cosine(min_lr=0)``               η_min + (η − η_min)(1 + cos(π·e/E))/2
=================================  =============================================

A schedule is a registered class: its constructor's arguments are its config keys, and
``lr(base, epoch, epochs)`` gives the rate.
"""

import math
from typing import Annotated

from pydantic import Field

from .registry import register_schedule
from .registry import schedules as _registry
from .schema import Float, Int, NonNegative, validated

Gamma = Annotated[Float, Field(gt=0, le=1)]


class Schedule:
    def lr(self, base, epoch, epochs):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


@register_schedule("constant")
class Constant(Schedule):
    """η in every epoch."""

    def lr(self, base, epoch, epochs):
        return base


@register_schedule("step")
class Step(Schedule):
    """η·γ^⌊epoch/every⌋."""

    @validated
    def __init__(self, every: Annotated[Int, Field(ge=1)] = 10, gamma: Gamma = 0.1):
        self.every, self.gamma = int(every), float(gamma)

    def lr(self, base, epoch, epochs):
        return base * self.gamma ** (epoch // self.every)


@register_schedule("exponential")
class Exponential(Schedule):
    """η·γ^epoch."""

    @validated
    def __init__(self, gamma: Gamma = 0.95):
        self.gamma = float(gamma)

    def lr(self, base, epoch, epochs):
        return base * self.gamma ** epoch


@register_schedule("cosine")
class Cosine(Schedule):
    """η_min + (η − η_min)(1 + cos(π·epoch/epochs))/2."""

    @validated
    def __init__(self, min_lr: NonNegative = 0.0):
        self.min_lr = float(min_lr)

    def lr(self, base, epoch, epochs):
        lo = self.min_lr
        return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def schedule_from_config(config):
    """A schedule from ``{"type": "step", "every": 5}`` (or a bare name)."""
    if isinstance(config, str):
        config = {"type": config}
    config = dict(config or {"type": "constant"})
    return _registry.get(config.pop("type", "constant"))(**config)


def names():
    return _registry.names()
