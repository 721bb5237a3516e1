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

Each is a registered function ``f(shape, rng, dtype, **params)``; its keyword parameters, with
their annotated ranges, are its config keys (``{name: normal, std: 0.02}``).
"""

import math

import numpy as np

from .registry import initializers as _registry
from .registry import register_initializer
from .schema import ConfigIssue, Float, Positive, normalize_spec


def _fans(shape):
    """(fan_in, fan_out): (n_in, n_out) for a dense A; for a convolution kernel (O, C, KH, KW),
    C·KH·KW inputs and O·KH·KW outputs per position (as PyTorch and Keras count them)."""
    if len(shape) > 2:
        field = math.prod(shape[2:])
        return shape[1] * field, shape[0] * field
    fan_in = shape[0]
    fan_out = shape[1] if len(shape) > 1 else shape[0]
    return fan_in, fan_out


@register_initializer("normal")
def normal(shape, rng, dtype, std: Positive = 0.01):
    return (rng.standard_normal(shape) * std).astype(dtype)


@register_initializer("uniform")
def uniform(shape, rng, dtype, scale: Positive = 0.05):
    return rng.uniform(-scale, scale, shape).astype(dtype)


@register_initializer("xavier_uniform", aliases=("glorot_uniform",))
def xavier_uniform(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, shape).astype(dtype)


@register_initializer("xavier_normal", aliases=("glorot_normal",))
def xavier_normal(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


@register_initializer("he_uniform", aliases=("kaiming_uniform",))
def he_uniform(shape, rng, dtype):
    fan_in, _ = _fans(shape)
    r = math.sqrt(6.0 / fan_in)
    return rng.uniform(-r, r, shape).astype(dtype)


@register_initializer("he_normal", aliases=("kaiming_normal",))
def he_normal(shape, rng, dtype):
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


@register_initializer("zeros")
def zeros(shape, rng, dtype):
    return np.zeros(shape, dtype=dtype)


@register_initializer("constant")
def constant(shape, rng, dtype, value: Float = 0.0):
    return np.full(shape, value, dtype=dtype)


def parse(spec):
    """(name, params) from ``"he_normal"`` or ``{"name": "normal", "std": 0.1}``, validated
    (ValueError naming the initializer and the parameter)."""
    try:
        full = normalize_spec(spec, "initializer")
    except ConfigIssue as e:
        name = spec.get("name") if isinstance(spec, dict) else spec
        raise ValueError(f"initializer '{name}' {e.key} {e.message}" if e.key else e.message) from None
    name = full.pop("name")
    return name, full


def initialize(spec, shape, rng, dtype):
    """A new array of ``shape`` drawn by initializer ``spec`` from ``rng``."""
    name, params = parse(spec)
    return np.ascontiguousarray(_registry.get(name)(tuple(shape), rng, np.dtype(dtype), **params))


def names():
    return _registry.names()
