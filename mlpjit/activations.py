"""Activation functions f with their derivatives f' (math.md §2), each with its two kernels.

An activation is a registered class with two compiled kernels on arrays of any shape (all
C-contiguous and of one dtype)::

    forward_kernel(S, Y[, param])            # Y = f(S)
    backward_kernel(S, Y, dY, dS[, param])   # dS = f'(S) ∘ dY  (Y is the forward output)

A layer calls them (``Dense``: ``Y = f(S)``; the ``activation`` layer: ``Y = f(X)``), both from
Python and from the compiled step.  The one parameter, if any, is a constructor argument whose
annotation states its range (``alpha`` of leaky_relu and elu, ``a`` of tanh_linear); the config
key ``{name: elu, alpha: 0.5}`` comes from that signature.

Derivatives use the forward output ``Y`` where that is cheaper (sigmoid, tanh, relu, elu) and
``S`` where it is not (gelu, swish, arctan, softplus, softsign).  Values at the kinks
(documented choice): relu'(0) = 0 (as PyTorch and scikit-learn), leaky_relu'(0) = α, elu'(0) = 1.

To write your own, subclass :class:`Activation`, give it two ``@mlpjit.jit`` kernels and
register it (``docs/writing-a-layer.md``)::

    @mlpjit.register_activation("square")
    class Square(mlpjit.activations.Activation):
        forward_kernel = square_forward      # (S, Y)
        backward_kernel = square_backward    # (S, Y, dY, dS)

        def onnx_nodes(self, g, x):           # optional: for mlpjit export (mlpjit.export)
            return g.op("Mul", x, x, out="Y")

Each activation's ``onnx_nodes(g, x)`` writes f(x) as ONNX nodes (:mod:`mlpjit.export`); one
without it is refused by the export, in one line naming it.

>>> import numpy as np, mlpjit
>>> act = mlpjit.activations.get("leaky_relu", alpha=0.1)
>>> act(np.array([-2.0, 3.0]))
array([-0.2,  3. ])
"""

import inspect
import math
from typing import Annotated

import numpy as np
from numba import types
from numba.extending import overload
from pydantic import Field

from ._jit import FASTMATH, jit
from .registry import activations as _registry
from .registry import register_activation
from .schema import Float, validated

__all__ = ["Activation", "get", "names"]


class Activation:
    """Base class: an element-wise function f and its derivative, as two compiled kernels.

    Subclasses set ``forward_kernel`` and ``backward_kernel``; an activation with a parameter
    takes it in ``__init__`` (annotated with its range) and keeps it as an attribute of the same
    name, which both kernels receive as their last argument.
    """

    forward_kernel = None
    backward_kernel = None

    def __init__(self):
        pass

    # --- what the kernels receive ------------------------------------------------------------
    @classmethod
    def param_names(cls):
        """The constructor's parameters (in order): the kernels' trailing arguments."""
        init = cls.__init__
        if init not in _PARAMS:
            _PARAMS[init] = [p for p in inspect.signature(init).parameters if p != "self"]
        return _PARAMS[init]

    def constants(self, prefix=""):
        """{prefix + parameter: value}: the scalars the kernels take after their arrays."""
        return {prefix + p: getattr(self, p) for p in self.param_names()}

    @property
    def compiled(self):
        """Whether f runs through its two compiled kernels (an activation whose ``forward`` /
        ``backward`` are NumPy code works on the layer-by-layer path only)."""
        cls = type(self)
        return (cls.forward is Activation.forward and cls.backward is Activation.backward
                and cls.forward_kernel is not None and cls.backward_kernel is not None)

    def forward_call(self, s, y, prefix=""):
        """The kernel call ``y = f(s)`` among a layer's calls (arrays named s and y there)."""
        from .layers.base import Call
        if not self.compiled:
            return Call(self.forward, s, y)
        return Call(type(self).forward_kernel, s, y, *self.constants(prefix))

    def backward_call(self, s, y, dy, ds, prefix=""):
        from .layers.base import Call
        if not self.compiled:
            return Call(self.backward, s, y, dy, ds)
        return Call(type(self).backward_kernel, s, y, dy, ds, *self.constants(prefix))

    # --- direct use ----------------------------------------------------------------------------
    def forward(self, S, Y):
        """Y = f(S), written into ``Y``."""
        type(self).forward_kernel(S, Y, *self.constants().values())

    def backward(self, S, Y, dY, dS):
        """dS = f'(S) ∘ dY, written into ``dS`` (``Y`` is the forward output)."""
        type(self).backward_kernel(S, Y, dY, dS, *self.constants().values())

    def __call__(self, x):
        """f(x) as a new array (for plotting and tests)."""
        x = np.ascontiguousarray(x, dtype=np.result_type(x, np.float32))
        y = np.empty_like(x)
        self.forward(x, y)
        return y

    def derivative(self, x):
        """f'(x) as a new array."""
        x = np.ascontiguousarray(x, dtype=np.result_type(x, np.float32))
        y = self(x)
        ds = np.empty_like(x)
        self.backward(x, y, np.ones_like(x), ds)
        return ds

    @property
    def name(self):
        return getattr(type(self), "registered_name", type(self).__name__.lower())

    @property
    def param_name(self):
        names = self.param_names()
        return names[0] if names else None

    @property
    def param(self):
        """The one parameter's value (α or a), or None."""
        return getattr(self, self.param_name) if self.param_name else None

    def get_config(self):
        params = self.constants()
        return self.name if not params else {"name": self.name, **params}

    def __repr__(self):
        params = ", ".join(f"{k}={v:g}" for k, v in self.constants().items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other):
        return type(self) is type(other) and self.constants() == other.constants()

    __hash__ = None


_PARAMS = {}


def get(spec, **params):
    """An activation from a name (``"relu"``), a config dict (``{"name": "elu", "alpha": 0.5}``),
    an :class:`Activation` instance (returned as is) or None (identity)."""
    if spec is None:
        return Identity()
    if isinstance(spec, Activation):
        if params:
            raise TypeError("parameters can only be given with an activation name")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ValueError(f"activation config {spec} needs a 'name'")
        return get(name, **spec, **params)
    cls = _registry.get(spec)
    try:
        return cls(**params)
    except TypeError as e:
        allowed = cls.param_names()
        raise TypeError(f"activation '{_registry.canonical(spec)}' takes "
                        + (f"{', '.join(repr(p) for p in allowed)}" if allowed else "no parameters")
                        + f" ({e})") from None


def names():
    return _registry.names()


def _kernel_names(act):
    return type(act).forward_kernel, type(act).backward_kernel


# --- scalar helpers ------------------------------------------------------------------------------

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)

# tanh for float32: Eigen's rational approximation (odd degree-13 / even degree-6 polynomial on
# [−7.905, 7.905], identity below 4e-4, ±1 beyond ±9), within 6 float32 ulps of the exact tanh (max
# relative error 3.5e-7, measured on 2M points).  Pure arithmetic, so compiled loops vectorize it,
# where each libm tanh call costs ~9 ns.  float64 arrays keep the exact math.tanh (gradient checks).
_T_CLAMP = np.float32(7.90531110763549805)
_T_TINY = np.float32(0.0004)
_T_SAT = np.float32(9.0)      # float32 tanh is exactly ±1 from here on
_T_ONE = np.float32(1.0)
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (np.float32(v) for v in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (np.float32(v) for v in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))


def tanh_scalar(x):
    """tanh(x): exact for float64, the rational approximation above for float32."""
    return math.tanh(x)


@overload(tanh_scalar, jit_options={"fastmath": set(FASTMATH)})
def _tanh_scalar(x):
    if x == types.float32:
        def tanh_f32(x):
            c = min(max(x, -_T_CLAMP), _T_CLAMP)
            x2 = c * c
            p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * c
            q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
            r = p / q
            r = _T_ONE if x >= _T_SAT else (-_T_ONE if x <= -_T_SAT else r)
            return x if abs(x) < _T_TINY else r
        return tanh_f32
    return lambda x: math.tanh(x)


@jit
def sigmoid_scalar(x):
    """σ(x) = 1/(1 + e⁻ˣ), evaluated without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def softplus_scalar(x):
    """ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# --- the activations, each with its kernels --------------------------------------------------
# Kernels take C-contiguous arrays of any shape and work on them as flat views:
#   forward (S, Y[, param]) -> None;   backward (S, Y, dY, dS[, param]) -> None

@jit
def identity_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i]


@jit
def identity_backward(S, Y, dY, dS):
    dy, ds = dY.reshape(-1), dS.reshape(-1)
    for i in range(dy.shape[0]):
        ds[i] = dy[i]


@register_activation("identity", aliases=("linear",))
class Identity(Activation):
    """f(x) = x;  f'(x) = 1."""
    forward_kernel = identity_forward
    backward_kernel = identity_backward

    def onnx_nodes(self, g, x):
        """ONNX: x itself (no node)."""
        return x


@jit
def sigmoid_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = sigmoid_scalar(s[i])


@jit
def sigmoid_backward(S, Y, dY, dS):
    y, dy, ds = Y.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(y.shape[0]):                 # σ' = y(1 − y)
        ds[i] = dy[i] * y[i] * (1.0 - y[i])


@register_activation("sigmoid", aliases=("logistic",))
class Sigmoid(Activation):
    """f(x) = σ(x) = 1/(1 + e⁻ˣ);  f'(x) = σ(x)(1 − σ(x)) = y(1 − y)."""
    forward_kernel = sigmoid_forward
    backward_kernel = sigmoid_backward

    def onnx_nodes(self, g, x):
        """ONNX: Sigmoid."""
        return g.op("Sigmoid", x, out="Y")


@jit
def tanh_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = tanh_scalar(s[i])


@jit
def tanh_backward(S, Y, dY, dS):
    y, dy, ds = Y.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(y.shape[0]):                 # tanh' = 1 − y²
        ds[i] = dy[i] * (1.0 - y[i] * y[i])


@register_activation("tanh")
class Tanh(Activation):
    """f(x) = tanh x;  f'(x) = 1 − tanh² x = 1 − y²."""
    forward_kernel = tanh_forward
    backward_kernel = tanh_backward

    def onnx_nodes(self, g, x):
        """ONNX: Tanh (exact; the float32 kernel is within 6 ulps of it)."""
        return g.op("Tanh", x, out="Y")


@jit
def relu_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):                 # written so that NaN passes through (NaN ≤ 0 is false)
        y[i] = 0.0 if s[i] <= 0 else s[i]


@jit
def relu_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1 if s > 0 else 0
        ds[i] = dy[i] if s[i] > 0 else 0.0


@register_activation("relu")
class Relu(Activation):
    """f(x) = max(0, x);  f'(x) = 1 if x > 0 else 0 (0 at x = 0)."""
    forward_kernel = relu_forward
    backward_kernel = relu_backward

    def onnx_nodes(self, g, x):
        """ONNX: Relu."""
        return g.op("Relu", x, out="Y")


@jit
def leaky_relu_forward(S, Y, alpha):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i] if s[i] > 0 else alpha * s[i]


@jit
def leaky_relu_backward(S, Y, dY, dS, alpha):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1 if s > 0 else α
        ds[i] = dy[i] if s[i] > 0 else alpha * dy[i]


@register_activation("leaky_relu")
class LeakyRelu(Activation):
    """f(x) = max(αx, x), 0 ≤ α ≤ 1;  f'(x) = 1 if x > 0 else α."""

    @validated
    def __init__(self, alpha: Annotated[Float, Field(ge=0, le=1)] = 0.01):
        self.alpha = float(alpha)

    forward_kernel = leaky_relu_forward
    backward_kernel = leaky_relu_backward

    def onnx_nodes(self, g, x):
        """ONNX: PRelu(x, α) with α a constant of the model's dtype (LeakyRelu's α attribute is
        always float32)."""
        return g.op("PRelu", x, g.const(self.alpha, "alpha"), out="Y")


@jit
def softplus_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = softplus_scalar(s[i])


@jit
def softplus_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # softplus' = σ(s)
        ds[i] = dy[i] * sigmoid_scalar(s[i])


@register_activation("softplus")
class Softplus(Activation):
    """f(x) = ln(1 + eˣ) (computed as max(x,0) + ln(1 + e^−|x|));  f'(x) = σ(x)."""
    forward_kernel = softplus_forward
    backward_kernel = softplus_backward

    def onnx_nodes(self, g, x):
        """ONNX: Relu(x) + Log(1 + Exp(−|x|)), the kernel's overflow-free form (ONNX's Softplus is
        ln(eˣ + 1), and onnxruntime has no float64 Softplus)."""
        e = g.op("Exp", g.op("Neg", g.op("Abs", x)))
        return g.op("Add", g.op("Relu", x), g.op("Log", g.op("Add", g.const(1.0, "one"), e)), out="Y")


@jit
def arctan_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = math.atan(s[i])


@jit
def arctan_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1/(1 + s²)
        ds[i] = dy[i] / (1.0 + s[i] * s[i])


@register_activation("arctan")
class Arctan(Activation):
    """f(x) = tan⁻¹ x;  f'(x) = 1/(1 + x²)."""
    forward_kernel = arctan_forward
    backward_kernel = arctan_backward

    def onnx_nodes(self, g, x):
        """ONNX: Atan."""
        return g.op("Atan", x, out="Y")


@jit
def softsign_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i] / (1.0 + abs(s[i]))


@jit
def softsign_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1/(1 + |s|)²
        d = 1.0 + abs(s[i])
        ds[i] = dy[i] / (d * d)


@register_activation("softsign")
class Softsign(Activation):
    """f(x) = x/(1 + |x|);  f'(x) = 1/(1 + |x|)²."""
    forward_kernel = softsign_forward
    backward_kernel = softsign_backward

    def onnx_nodes(self, g, x):
        """ONNX: x / (1 + |x|) (onnxruntime has no float64 Softsign)."""
        return g.op("Div", x, g.op("Add", g.const(1.0, "one"), g.op("Abs", x)), out="Y")


@jit
def elu_forward(S, Y, alpha):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i] if s[i] >= 0 else alpha * math.expm1(s[i])


@jit
def elu_backward(S, Y, dY, dS, alpha):
    s, y, dy, ds = S.reshape(-1), Y.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1 if s ≥ 0 else αeˢ = y + α
        ds[i] = dy[i] if s[i] >= 0 else dy[i] * (y[i] + alpha)


@register_activation("elu")
class Elu(Activation):
    """f(x) = x if x ≥ 0 else α(eˣ − 1), α > 0;  f'(x) = 1 if x ≥ 0 else αeˣ = y + α."""

    @validated
    def __init__(self, alpha: Annotated[Float, Field(gt=0)] = 1.0):
        self.alpha = float(alpha)

    forward_kernel = elu_forward
    backward_kernel = elu_backward

    def onnx_nodes(self, g, x):
        """ONNX: Where(x ≥ 0, x, α·(Exp(x) − 1)) (onnxruntime has no float64 Elu)."""
        neg = g.op("Mul", g.const(self.alpha, "alpha"), g.op("Sub", g.op("Exp", x), g.const(1.0, "one")))
        return g.op("Where", g.op("GreaterOrEqual", x, g.const(0.0, "zero")), x, neg, out="Y")


@jit
def swish_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = s[i] * sigmoid_scalar(s[i])


@jit
def swish_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # σ + sσ(1 − σ)
        g = sigmoid_scalar(s[i])
        ds[i] = dy[i] * (g + s[i] * g * (1.0 - g))


@register_activation("swish", aliases=("silu",))
class Swish(Activation):
    """f(x) = x·σ(x) (SiLU);  f'(x) = σ(x) + x·σ(x)(1 − σ(x))."""
    forward_kernel = swish_forward
    backward_kernel = swish_backward

    def onnx_nodes(self, g, x):
        """ONNX: x·Sigmoid(x)."""
        return g.op("Mul", x, g.op("Sigmoid", x), out="Y")


@jit
def gelu_forward(S, Y):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = 0.5 * s[i] * (1.0 + math.erf(s[i] * _INV_SQRT2))


@jit
def gelu_backward(S, Y, dY, dS):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # Φ(s) + sφ(s)
        x = s[i]
        cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT2))
        pdf = _INV_SQRT2PI * math.exp(-0.5 * x * x)
        ds[i] = dy[i] * (cdf + x * pdf)


@register_activation("gelu")
class Gelu(Activation):
    """f(x) = x·Φ(x), Φ the normal CDF (exact, with erf);  f'(x) = Φ(x) + x·φ(x)."""
    forward_kernel = gelu_forward
    backward_kernel = gelu_backward

    def onnx_nodes(self, g, x):
        """ONNX: ½·x·(1 + Erf(x/√2)) (the Gelu operator needs opset 20)."""
        erf = g.op("Erf", g.op("Mul", x, g.const(_INV_SQRT2, "inv_sqrt2")))
        half_x = g.op("Mul", x, g.const(0.5, "half"))
        return g.op("Mul", half_x, g.op("Add", g.const(1.0, "one"), erf), out="Y")


@jit
def tanh_linear_forward(S, Y, a):
    s, y = S.reshape(-1), Y.reshape(-1)
    for i in range(s.shape[0]):
        y[i] = tanh_scalar(s[i]) + a * s[i]


@jit
def tanh_linear_backward(S, Y, dY, dS, a):
    s, dy, ds = S.reshape(-1), dY.reshape(-1), dS.reshape(-1)
    for i in range(s.shape[0]):                 # 1 − tanh²(s) + a
        t = tanh_scalar(s[i])
        ds[i] = dy[i] * (1.0 - t * t + a)


@register_activation("tanh_linear")
class TanhLinear(Activation):
    """f(x) = tanh x + a·x (avoids flat spots);  f'(x) = 1 − tanh² x + a."""

    @validated
    def __init__(self, a: Float = 0.1):
        self.a = float(a)

    forward_kernel = tanh_linear_forward
    backward_kernel = tanh_linear_backward

    def onnx_nodes(self, g, x):
        """ONNX: Tanh(x) + a·x."""
        return g.op("Add", g.op("Tanh", x), g.op("Mul", g.const(self.a, "a"), x), out="Y")


ReLU, LeakyReLU, ELU, GELU = Relu, LeakyRelu, Elu, Gelu
