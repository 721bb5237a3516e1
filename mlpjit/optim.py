"""Optimizers and gradient clipping (math.md §5), each with its kernels.

An optimizer updates the parameters of ``model.parameters()`` in place from their gradients::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ... model.backward(...) ...
    norm = clip_grad_norm(model.parameters(), 5.0)   # optional; returns the norm it saw
    opt.step()

Clipping: global (norm) g ← c·g/‖g‖ when ‖g‖ > c, with ‖g‖ over all parameters together;
local (value) gᵢ ← sign(gᵢ)·c when |gᵢ| > c.

Max-norm (``max_norm=c``, Srivastava et al. 2014, §5.1): after each update, each unit's vector
of incoming weights w (a column of a dense layer's A, an output channel of a convolution's A)
is projected onto the ball of radius c: w ← w·min(1, c/‖w‖).  The optimizer then needs the
model, to know which weights come into which unit: ``SGD(model, lr=0.1, max_norm=3.0)``
(layers declare theirs in ``Layer.incoming``).  Biases are not constrained.

An optimizer is a registered class whose ``update_kernel`` updates one parameter, its arguments
named: ``theta`` (the parameter, flat), ``g`` (its gradient), one array per state ``slot``,
``lr``, ``t`` (the step number, from 1) and the optimizer's hyperparameters (its constructor's
arguments, which are also its config keys).  ``step`` calls it for each parameter; the compiled
training step calls the same kernel.
"""

import inspect
import math
from typing import Optional

import numpy as np

from . import _memory
from ._jit import jit
from .kernels.misc import add_into, copy_into
from .registry import optimizers as _registry
from .registry import register_optimizer
from .schema import Bool, NonNegative, Positive, Unit, validated

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer", "global_norm", "clip_grad_norm",
           "clip_grad_value", "apply_max_norm", "scheduled_lr"]


# --- clipping kernels ------------------------------------------------------------------------------

# (g: (N,)) -> float
@jit
def sum_squares(g):
    """Σ gᵢ² (for gradient norms)."""
    total = 0.0
    for i in range(g.shape[0]):
        total += g[i] * g[i]
    return total


# (G: (S, N) the shards' gradients, g: (N,), shards, lo, hi) -> float
@jit
def reduce_shards(G, g, shards, lo, hi):
    """g[lo:hi] = Σ_s G[s, lo:hi] over the first ``shards`` rows, in order; returns
    Σ g[lo:hi]² (a sharded step's gradient and its share of the norm)."""
    a = g[lo:hi]
    copy_into(G[0, lo:hi], a)
    for s in range(1, shards):
        add_into(a, G[s, lo:hi], a)
    return sum_squares(a)


# (g: (N,), c: float) -> None
@jit
def scale_inplace(g, c):
    for i in range(g.shape[0]):
        g[i] *= c


# (norm: float, c: float) -> float
@jit
def clip_norm_factor(norm, c):
    """Global clipping: g ← c·g/‖g‖ if ‖g‖ > c, i.e. the factor c/‖g‖ (or 1 when ‖g‖ ≤ c)."""
    return c / norm if norm > c else 1.0


# (g: (N,), c: float) -> None
@jit
def clip_value_inplace(g, c):
    """gᵢ ← sign(gᵢ)·c where |gᵢ| > c (local clipping)."""
    for i in range(g.shape[0]):
        if g[i] > c:
            g[i] = c
        elif g[i] < -c:
            g[i] = -c


# (A: (n, m) the incoming weights of m units, one per column; c: float; norms: (m,)) -> None
@jit
def max_norm_columns(A, c, norms):
    """Each column a_j ← a_j·min(1, c/‖a_j‖) (a dense layer's units); ``norms`` is scratch."""
    n, m = A.shape
    norms[:] = 0.0
    for i in range(n):
        for j in range(m):
            norms[j] += A[i, j] * A[i, j]
    for j in range(m):
        norms[j] = c / math.sqrt(norms[j]) if norms[j] > c * c else 1.0
    for i in range(n):
        for j in range(m):
            A[i, j] *= norms[j]


# (A: (O, K) the incoming weights of O units, one per row; c: float) -> None
@jit
def max_norm_rows(A, c):
    """Each row a_o ← a_o·min(1, c/‖a_o‖) (a convolution's output channels, A viewed as
    (O, C·KH·KW))."""
    for o in range(A.shape[0]):
        ss = sum_squares(A[o])
        if ss > c * c:
            scale_inplace(A[o], c / math.sqrt(ss))


def apply_max_norm(incoming, c, scratch=None):
    """Max-norm on ``[(name, A, "columns" | "rows"), ...]`` (``model.incoming_weights()``);
    ``scratch``: one float64 array of A.shape[1] per "columns" entry (made here when None)."""
    for k, (_, A, mode) in enumerate(incoming):
        if mode == "columns":
            norms = np.empty(A.shape[1], np.float64) if scratch is None else scratch[k]
            max_norm_columns(A, c, norms)
        else:
            max_norm_rows(A.reshape(A.shape[0], -1), c)


def _flat(a):
    return a.reshape(-1)


def global_norm(params):
    """‖g‖₂ over the gradients of all parameters together."""
    return math.sqrt(sum(sum_squares(_flat(g)) for _, _, g in params))


def clip_grad_norm(params, max_norm, norm=None):
    """Scale all gradients by c/‖g‖ if ‖g‖ > c; return ‖g‖ as it was before clipping
    (``norm``, if the caller has computed it already)."""
    norm = global_norm(params) if norm is None else norm
    factor = clip_norm_factor(norm, max_norm)
    if factor != 1.0:
        for _, _, g in params:
            scale_inplace(_flat(g), factor)
    return norm


def clip_grad_value(params, max_value):
    """Clip each gradient component to [−c, c]."""
    for _, _, g in params:
        clip_value_inplace(_flat(g), max_value)


# --- optimizers ---------------------------------------------------------------------------------------

class Optimizer:
    """Base: holds ``(name, param, grad)`` triples and per-parameter state arrays (``slots``)."""

    slots = ()
    update_kernel = None
    elementwise = False   # whether the update of each element needs that element alone (then a
                          # sharded step updates blocks of a parameter in parallel)
    quiet_defaults = {}   # {key: value}: left out of a dumped config while at that value (a key
                          # added after configs were written, so that they read back the same)

    def __init__(self, params, lr, max_norm=None):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        model = params if hasattr(params, "parameters") else None
        self.params = list(params.parameters() if model is not None else params)
        self.lr = float(lr)
        self.max_norm = None if max_norm is None else float(max_norm)
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        if self.max_norm is not None and model is None:
            raise ValueError("max_norm needs the model, to know each unit's incoming weights: "
                             "pass it instead of its parameters (SGD(model, ..., max_norm=c))")
        # [(name, A, "columns" | "rows")]: the weights max_norm constrains
        self.incoming = model.incoming_weights() if self.max_norm is not None else []
        self._norms = [np.empty(A.shape[1], np.float64) if mode == "columns" else None
                       for _, A, mode in self.incoming]   # max_norm_columns' scratch, made once
        self.state = {slot: {name: _memory.zeros_like(p) for name, p, _ in self.params}
                      for slot in self.slots}
        self.t = 0

    @property
    def name(self):
        return getattr(type(self), "registered_name", type(self).__name__.lower())

    @classmethod
    def hyperparameters(cls):
        """The constructor's arguments after ``params`` and ``lr`` but ``max_norm`` (the kernel's
        constants)."""
        return [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "params", "lr", "max_norm")]

    def constants(self):
        return {name: getattr(self, name) for name in self.hyperparameters()}

    def kernel_args(self):
        """The update kernel's parameter names, in order."""
        from .layers.base import kernel_names
        return kernel_names(type(self).update_kernel)

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        kernel = type(self).update_kernel
        names = self.kernel_args()
        consts = dict(self.constants(), lr=lr, t=self.t)
        for name, p, g in self.params:
            ns = dict(consts, theta=_flat(p), g=_flat(g))
            for slot in self.slots:
                ns[slot] = _flat(self.state[slot][name])
            kernel(*[ns[a] for a in names])
        if self.max_norm is not None:
            apply_max_norm(self.incoming, self.max_norm, self._norms)

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

    def __repr__(self):
        extra = {} if self.max_norm is None else {"max_norm": self.max_norm}
        args = ", ".join(f"{k}={v!r}" for k, v in dict(lr=self.lr, **self.constants(), **extra).items())
        return f"{type(self).__name__}({args})"


# (θ, g, velocity: (N,), lr, momentum, dampening, weight_decay: float, nesterov: bool, t: int) -> None
@jit
def sgd_update(theta, g, velocity, lr, momentum, dampening, weight_decay, nesterov, t):
    """SGD with momentum and L2 weight decay, as torch.optim.SGD:

    g' = g + λθ;  v ← μv + (1 − τ)g' (v ← g' at the first step, t = 1);
    step = g' + μv (Nesterov) or v;  θ ← θ − η·step.
    With μ = 0 this is plain θ ← θ − η(g + λθ).  Dampening τ = μ makes v an average of the
    gradients (Hinton et al. 2012's Δw ← μΔw − (1 − μ)εg, with η = ε).  PyTorch's "first step"
    is the first with μ ≠ 0: the two differ only for a momentum scheduled up from 0 with τ ≠ 0.
    """
    keep = 1.0 if t <= 1 else 1.0 - dampening
    for i in range(theta.shape[0]):
        gi = g[i] + weight_decay * theta[i]
        if momentum != 0.0:
            velocity[i] = momentum * velocity[i] + keep * gi
            if nesterov:
                gi = gi + momentum * velocity[i]
            else:
                gi = velocity[i]
        theta[i] -= lr * gi


def _check_nesterov(values):
    from .schema import ConfigIssue
    if values.get("nesterov") and values.get("momentum", 0.0) == 0:
        raise ConfigIssue(f"true requires momentum > 0 (got momentum={values.get('momentum', 0.0)!r})",
                          "nesterov")
    if values.get("nesterov") and values.get("dampening", 0.0) != 0:
        raise ConfigIssue(f"true requires dampening 0 (got dampening={values.get('dampening')!r}), "
                          f"as in torch.optim.SGD", "nesterov")


@register_optimizer("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with momentum μ, dampening τ, Nesterov option and L2 weight
    decay λ (the update of ``torch.optim.SGD``):

    g' = g + λθ;  v ← μv + (1 − τ)g' (v ← g' at the first step);
    θ ← θ − η·(g' + μv if nesterov else v)   (θ ← θ − ηg' if μ = 0);
    then, with ``max_norm`` c, each unit's incoming weights w ← w·min(1, c/‖w‖).

    Dampening equal to the momentum (both scheduled alike) is the momentum of Hinton et al.
    (2012) and Srivastava et al. (2014): Δw ← μΔw − (1 − μ)ηg, whose step stays about η·g as μ
    rises, where plain momentum's grows to η·g/(1 − μ).
    """

    slots = ("velocity",)
    update_kernel = sgd_update
    elementwise = True
    check_config = staticmethod(_check_nesterov)
    quiet_defaults = {"dampening": 0.0}

    @validated
    def __init__(self, params, lr: Positive = 0.01, momentum: Unit = 0.0, nesterov: Bool = False,
                 weight_decay: NonNegative = 0.0, max_norm: Optional[Positive] = None,
                 dampening: Unit = 0.0):
        super().__init__(params, lr, max_norm)
        if nesterov and momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        if nesterov and dampening != 0:
            raise ValueError("nesterov momentum needs dampening 0 (as torch.optim.SGD)")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)
        self.dampening = float(dampening)


# (θ, g, m, v: (N,), lr, beta1, beta2, eps, weight_decay: float, t: int) -> None
@jit
def adam_update(theta, g, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient, as torch.optim.Adam:

    m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  θ ← θ − η·m̂/(√v̂ + ε),
    m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).
    """
    c1 = 1.0 - beta1 ** t
    c2 = 1.0 - beta2 ** t
    for i in range(theta.shape[0]):
        gi = g[i] + weight_decay * theta[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        theta[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


@register_optimizer("adam")
class Adam(Optimizer):
    """Adam: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − η·m̂/(√v̂ + ε) with bias-corrected
    m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ); L2 weight decay λ is added to g (as ``torch.optim.Adam``);
    then, with ``max_norm`` c, each unit's incoming weights w ← w·min(1, c/‖w‖)."""

    slots = ("m", "v")
    update_kernel = adam_update
    elementwise = True

    @validated
    def __init__(self, params, lr: Positive = 0.001, beta1: Unit = 0.9, beta2: Unit = 0.999,
                 eps: Positive = 1e-8, weight_decay: NonNegative = 0.0,
                 max_norm: Optional[Positive] = None):
        super().__init__(params, lr, max_norm)
        self.beta1, self.beta2, self.eps, self.weight_decay = float(beta1), float(beta2), float(eps), float(weight_decay)


def make_optimizer(name, params, **kwargs):
    return _registry.get(name)(params, **kwargs)


def scheduled_lr(lr, schedule, epoch, epochs):
    """Learning rate of epoch ``epoch`` (0-based) out of ``epochs`` under a schedule config
    (``{"type": "cosine", ...}``, see :mod:`mlpjit.schedules`)."""
    from .schedules import schedule_from_config
    return schedule_from_config(schedule).lr(lr, epoch, epochs)
