"""Weight initializers (math.md §5), each drawing from a seeded ``numpy.random.Generator``.

For a weight matrix A of shape (n_in, n_out) (for a convolution kernel (O, C, KH, KW):
n_in = C·KH·KW, n_out = O·KH·KW):

========================  ==============================================
``normal(std=0.01)``      A ~ N(0, std²)
``uniform(scale=0.05)``   A ~ U(−scale, scale)
``xavier_uniform``        A ~ U(−r, r), r = √(6/(n_in + n_out))   (Var = 2/(n_in + n_out))
``xavier_normal``         A ~ N(0, 2/(n_in + n_out))
``he_uniform``            A ~ U(−r, r), r = √(6/n_in)             (Var = 2/n_in)
``he_normal``             A ~ N(0, 2/n_in)
``zeros``                 A = 0
``constant(value=0)``     A = value  (all equal: the symmetry problem)
========================  ==============================================
"""

import math

import numpy as np

from ._registry import lookup


def _fans(shape):
    """(fan_in, fan_out): (n_in, n_out) for a dense A; for a convolution kernel (O, C, KH, KW),
    C·KH·KW inputs and O·KH·KW outputs per position (as PyTorch and Keras count them)."""
    if len(shape) > 2:
        field = math.prod(shape[2:])
        return shape[1] * field, shape[0] * field
    fan_in = shape[0]
    fan_out = shape[1] if len(shape) > 1 else shape[0]
    return fan_in, fan_out


def normal(shape, rng, dtype, std=0.01):
    return (rng.standard_normal(shape) * std).astype(dtype)


def uniform(shape, rng, dtype, scale=0.05):
    return rng.uniform(-scale, scale, shape).astype(dtype)


def xavier_uniform(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, shape).astype(dtype)


def xavier_normal(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(shape, rng, dtype):
    fan_in, _ = _fans(shape)
    r = math.sqrt(6.0 / fan_in)
    return rng.uniform(-r, r, shape).astype(dtype)


def he_normal(shape, rng, dtype):
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def zeros(shape, rng, dtype):
    return np.zeros(shape, dtype=dtype)


def constant(shape, rng, dtype, value=0.0):
    return np.full(shape, value, dtype=dtype)


INITIALIZERS = {f.__name__: f for f in (normal, uniform, xavier_uniform, xavier_normal,
                                        he_uniform, he_normal, zeros, constant)}
ALIASES = {"glorot_uniform": "xavier_uniform", "glorot_normal": "xavier_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal"}
_PARAMS = {"normal": ("std",), "uniform": ("scale",), "constant": ("value",)}


def parse(spec):
    """(name, params) from ``"he_normal"`` or ``{"name": "normal", "std": 0.1}``, validated."""
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
    else:
        name, params = spec, {}
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    lookup(INITIALIZERS, "initializer", name)
    allowed = _PARAMS.get(name, ())
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"initializer '{name}' takes no parameter '{key}'"
                             + (f" (it takes {', '.join(allowed)})" if allowed else ""))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"initializer '{name}' parameter '{key}' must be a number, got {value!r}")
        if key in ("std", "scale") and not value > 0:
            raise ValueError(f"initializer '{name}' {key} must be > 0, got {value}")
    return name, params


def initialize(spec, shape, rng, dtype):
    """A new array of ``shape`` drawn by initializer ``spec`` from ``rng``."""
    name, params = parse(spec)
    return np.ascontiguousarray(INITIALIZERS[name](tuple(shape), rng, np.dtype(dtype), **params))


def names():
    return sorted(INITIALIZERS)
