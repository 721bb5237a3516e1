"""Activation functions f with their derivatives f' (math.md §2).

Each activation is an object that a :class:`~mlpjit.Dense` layer (or the standalone
:class:`~mlpjit.layers.Activation` layer) calls as::

    act.forward(S, Y)            # Y = f(S)
    act.backward(S, Y, dY, dS)   # dS = f'(S) ∘ dY

on arrays of any shape, all C-contiguous and of one dtype.  The built-in ones run the compiled
kernels of :mod:`mlpjit.kernels.activations`.  To write your own, subclass :class:`Activation`
and override ``forward``/``backward`` (NumPy is fine); ``mlpjit.gradcheck`` checks it.

>>> import numpy as np, mlpjit
>>> act = mlpjit.activations.get("leaky_relu", alpha=0.1)
>>> act(np.array([-2.0, 3.0]))
array([-0.2,  3. ])
"""

import numpy as np

from ._registry import lookup
from .kernels import activations as K


class Activation:
    """Base class: an element-wise function f and its derivative.

    Subclasses set ``name`` and, for the compiled built-ins, ``code`` (a key of
    ``kernels.activations.CODES``); ``param`` is the one parameter (α or a), or None.
    """

    name = "activation"
    code = None
    param_name = None
    default_param = None

    def __init__(self, **kwargs):
        self.param = None
        if self.param_name is not None:
            value = kwargs.pop(self.param_name, self.default_param)
            self.param = float(self._check_param(value))
        if kwargs:
            raise TypeError(f"activation '{self.name}' takes no parameter "
                            f"{', '.join(repr(k) for k in kwargs)}"
                            + (f" (it takes '{self.param_name}')" if self.param_name else ""))

    def _check_param(self, value):
        return value

    def forward(self, S, Y):
        """Y = f(S), written into ``Y``."""
        K.activation_forward(self.code, self._alpha(), S.reshape(-1), Y.reshape(-1))

    def backward(self, S, Y, dY, dS):
        """dS = f'(S) ∘ dY, written into ``dS`` (``Y`` is the forward output)."""
        K.activation_backward(self.code, self._alpha(), S.reshape(-1), Y.reshape(-1),
                              dY.reshape(-1), dS.reshape(-1))

    def _alpha(self):
        return 0.0 if self.param is None else self.param

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

    def get_config(self):
        if self.param_name is None:
            return self.name
        return {"name": self.name, self.param_name: self.param}

    def __repr__(self):
        if self.param_name is None:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}({self.param_name}={self.param:g})"

    def __eq__(self, other):
        return type(self) is type(other) and self.param == other.param

    __hash__ = None


def _make(name, doc, param_name=None, default=None, check=None):
    attrs = {"name": name, "code": K.CODES[name], "__doc__": doc,
             "param_name": param_name, "default_param": default}
    if check is not None:
        attrs["_check_param"] = staticmethod(check)
    cls_name = "".join(part.capitalize() for part in name.split("_"))
    return type(cls_name, (Activation,), attrs)


def _alpha_in_unit_interval(value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"leaky_relu alpha must be in [0, 1], got {value}")
    return value


def _positive(value):
    if not float(value) > 0.0:
        raise ValueError(f"elu alpha must be > 0, got {value}")
    return value


Identity = _make("identity", "f(x) = x;  f'(x) = 1.")
Sigmoid = _make("sigmoid", "f(x) = σ(x) = 1/(1 + e⁻ˣ);  f'(x) = σ(x)(1 − σ(x)) = y(1 − y).")
Tanh = _make("tanh", "f(x) = tanh x;  f'(x) = 1 − tanh² x = 1 − y².")
Relu = _make("relu", "f(x) = max(0, x);  f'(x) = 1 if x > 0 else 0 (0 at x = 0).")
LeakyRelu = _make("leaky_relu", "f(x) = max(αx, x), 0 ≤ α ≤ 1;  f'(x) = 1 if x > 0 else α.",
                  "alpha", 0.01, _alpha_in_unit_interval)
Softplus = _make("softplus", "f(x) = ln(1 + eˣ) (computed as max(x,0) + ln(1 + e^−|x|));  f'(x) = σ(x).")
Arctan = _make("arctan", "f(x) = tan⁻¹ x;  f'(x) = 1/(1 + x²).")
Softsign = _make("softsign", "f(x) = x/(1 + |x|);  f'(x) = 1/(1 + |x|)².")
Elu = _make("elu", "f(x) = x if x ≥ 0 else α(eˣ − 1);  f'(x) = 1 if x ≥ 0 else αeˣ = y + α.",
            "alpha", 1.0, _positive)
Swish = _make("swish", "f(x) = x·σ(x) (SiLU);  f'(x) = σ(x) + x·σ(x)(1 − σ(x)).")
Gelu = _make("gelu", "f(x) = x·Φ(x), Φ the normal CDF (exact, with erf);  f'(x) = Φ(x) + x·φ(x).")
TanhLinear = _make("tanh_linear", "f(x) = tanh x + a·x (avoids flat spots);  f'(x) = 1 − tanh² x + a.",
                   "a", 0.1)
ReLU, LeakyReLU, ELU, GELU = Relu, LeakyRelu, Elu, Gelu

ACTIVATIONS = {cls.name: cls for cls in (Identity, Sigmoid, Tanh, Relu, LeakyRelu, Softplus,
                                          Arctan, Softsign, Elu, Swish, Gelu, TanhLinear)}
ALIASES = {"linear": "identity", "silu": "swish", "logistic": "sigmoid"}


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
    name = ALIASES.get(spec, spec) if isinstance(spec, str) else spec
    return lookup(ACTIVATIONS, "activation", name)(**params)


def names():
    return sorted(ACTIVATIONS)
