"""Optimizers, learning-rate schedules and gradient clipping (math.md §5).

An optimizer updates the parameters of ``model.parameters()`` in place from their gradients::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ... model.backward(...) ...
    norm = clip_grad_norm(model.parameters(), 5.0)   # optional; returns the norm it saw
    opt.step()

Clipping: global (norm) g ← c·g/‖g‖ when ‖g‖ > c, with ‖g‖ over all parameters together;
local (value) gᵢ ← sign(gᵢ)·c when |gᵢ| > c.
"""

import math

import numpy as np

from . import _memory
from ._registry import lookup
from .kernels import misc as KM


def _flat(a):
    return a.reshape(-1)


def global_norm(params):
    """‖g‖₂ over the gradients of all parameters together."""
    return math.sqrt(sum(KM.sum_squares(_flat(g)) for _, _, g in params))


def clip_grad_norm(params, max_norm, norm=None):
    """Scale all gradients by c/‖g‖ if ‖g‖ > c; return ‖g‖ as it was before clipping
    (``norm``, if the caller has computed it already)."""
    norm = global_norm(params) if norm is None else norm
    factor = KM.clip_norm_factor(norm, max_norm)
    if factor != 1.0:
        for _, _, g in params:
            KM.scale_inplace(_flat(g), factor)
    return norm


def clip_grad_value(params, max_value):
    """Clip each gradient component to [−c, c]."""
    for _, _, g in params:
        KM.clip_value_inplace(_flat(g), max_value)


class Optimizer:
    """Base: holds ``(name, param, grad)`` triples and per-parameter state arrays."""

    name = "optimizer"
    slots = ()

    def __init__(self, params, lr):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.params = list(params)
        self.lr = float(lr)
        self.state = {slot: {name: _memory.zeros_like(p) for name, p, _ in self.params}
                      for slot in self.slots}
        self.t = 0

    def state_arrays(self):
        """The optimizer state as named arrays (for checkpoints)."""
        out = {f"{slot}/{name}": a for slot, arrays in self.state.items() for name, a in arrays.items()}
        out["t"] = np.array(self.t)
        return out

    def load_state_arrays(self, arrays):
        for slot, per_param in self.state.items():
            for name, a in per_param.items():
                a[...] = arrays[f"{slot}/{name}"]
        self.t = int(arrays["t"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum μ, Nesterov option and L2 weight decay λ
    (the update of ``torch.optim.SGD``):

    g' = g + λθ;  v ← μv + g';  θ ← θ − η·(g' + μv if nesterov else v)   (θ ← θ − ηg' if μ = 0).
    """

    name = "sgd"
    slots = ("velocity",)

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        v = self.state["velocity"]
        for name, p, g in self.params:
            KM.sgd_update(_flat(p), _flat(g), _flat(v[name]), lr, self.momentum,
                          self.weight_decay, self.nesterov)


class Adam(Optimizer):
    """Adam: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − η·m̂/(√v̂ + ε) with bias-corrected
    m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ); L2 weight decay λ is added to g (as ``torch.optim.Adam``)."""

    name = "adam"
    slots = ("m", "v")

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = float(beta1), float(beta2), float(eps), float(weight_decay)

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        m, v = self.state["m"], self.state["v"]
        for name, p, g in self.params:
            KM.adam_update(_flat(p), _flat(g), _flat(m[name]), _flat(v[name]), lr, self.beta1,
                           self.beta2, self.eps, self.weight_decay, self.t)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name, params, **kwargs):
    return lookup(OPTIMIZERS, "optimizer", name)(params, **kwargs)


def scheduled_lr(lr, schedule, epoch, epochs):
    """Learning rate of epoch ``epoch`` (0-based) out of ``epochs``.

    constant: η;  step: η·γ^⌊epoch/every⌋;  exponential: η·γ^epoch;
    cosine: η_min + (η − η_min)(1 + cos(π·epoch/epochs))/2.
    """
    kind = schedule.get("type", "constant")
    if kind == "constant":
        return lr
    if kind == "step":
        return lr * schedule.get("gamma", 0.1) ** (epoch // schedule.get("every", 10))
    if kind == "exponential":
        return lr * schedule.get("gamma", 0.95) ** epoch
    if kind == "cosine":
        lo = schedule.get("min_lr", 0.0)
        return lo + (lr - lo) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ValueError(f"unknown schedule '{kind}'; valid: constant, cosine, exponential, step")
