"""Weight initializers (math.md §5), each drawing from a seeded ``numpy.random.Generator``.

For a weight matrix A of shape (n_in, n_out) (for a convolution kernel (O, C, KH, KW):
n_in = C·KH·KW, n_out = O·KH·KW):

========================  ==============================================
``normal(std=0.01)``      A ~ N(0, std²)
``uniform(scale=0.05)``   A ~ U(−scale, scale)
``standard_uniform``      A ~ U(−1/√n_in, 1/√n_in)                (Var = 1/(3·n_in); Glorot &
                          Bengio's "standard" initialization, PyTorch's default for Linear)
``xavier_uniform``        A ~ U(−r, r), r = √(6/(n_in + n_out))   (Var = 2/(n_in + n_out))
``xavier_normal``         A ~ N(0, 2/(n_in + n_out))
``he_uniform``            A ~ U(−r, r), r = √(6/n_in)             (Var = 2/n_in)
``he_normal``             A ~ N(0, 2/n_in)
``zeros``                 A = 0
``constant(value=0)``     A = value  (all equal: the symmetry problem)
========================  ==============================================

Each is a registered function ``f(shape, rng, dtype, **params)``; its keyword parameters, with
their annotated ranges, are its config keys (``{name: normal, std: 0.02}``).  The built-in ones
draw a block at a time into the layer's dtype (``out``), so a large layer's weights never
exist twice or in float64.
"""

import contextlib
import inspect
import math
import threading

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


BLOCK = 1 << 20  # values drawn at a time (float64), then stored in the layer's dtype


def _drawn(shape, dtype, draw, out=None):
    """An array of ``shape`` and ``dtype`` (or ``out``) filled by ``draw(n)`` a block of n
    float64 values at a time: the same numbers as one draw of all of them (the generator's
    stream is sequential), without a float64 copy of the whole array."""
    out = np.empty(shape, dtype) if out is None else out
    flat = out.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        n = min(BLOCK, flat.size - start)
        flat[start:start + n] = draw(n)
    return out


@register_initializer("normal")
def normal(shape, rng, dtype, std: Positive = 0.01, out=None):
    return _drawn(shape, dtype, lambda n: rng.standard_normal(n) * std, out)


@register_initializer("uniform")
def uniform(shape, rng, dtype, scale: Positive = 0.05, out=None):
    return _drawn(shape, dtype, lambda n: rng.uniform(-scale, scale, n), out)


@register_initializer("standard_uniform")
def standard_uniform(shape, rng, dtype, out=None):
    fan_in, _ = _fans(shape)
    r = 1.0 / math.sqrt(fan_in)
    return _drawn(shape, dtype, lambda n: rng.uniform(-r, r, n), out)


@register_initializer("xavier_uniform", aliases=("glorot_uniform",))
def xavier_uniform(shape, rng, dtype, out=None):
    fan_in, fan_out = _fans(shape)
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return _drawn(shape, dtype, lambda n: rng.uniform(-r, r, n), out)


@register_initializer("xavier_normal", aliases=("glorot_normal",))
def xavier_normal(shape, rng, dtype, out=None):
    fan_in, fan_out = _fans(shape)
    s = math.sqrt(2.0 / (fan_in + fan_out))
    return _drawn(shape, dtype, lambda n: rng.standard_normal(n) * s, out)


@register_initializer("he_uniform", aliases=("kaiming_uniform",))
def he_uniform(shape, rng, dtype, out=None):
    fan_in, _ = _fans(shape)
    r = math.sqrt(6.0 / fan_in)
    return _drawn(shape, dtype, lambda n: rng.uniform(-r, r, n), out)


@register_initializer("he_normal", aliases=("kaiming_normal",))
def he_normal(shape, rng, dtype, out=None):
    fan_in, _ = _fans(shape)
    s = math.sqrt(2.0 / fan_in)
    return _drawn(shape, dtype, lambda n: rng.standard_normal(n) * s, out)


@register_initializer("zeros")
def zeros(shape, rng, dtype, out=None):
    out = np.empty(shape, dtype) if out is None else out
    out[...] = 0
    return out


@register_initializer("constant")
def constant(shape, rng, dtype, value: Float = 0.0, out=None):
    out = np.empty(shape, dtype) if out is None else out
    out[...] = value
    return out


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


_skipping = threading.local()


@contextlib.contextmanager
def skipped():
    """Inside, :func:`initialize` checks its spec but fills zeros instead of drawing: for arrays
    about to be overwritten (a model file's weights), where the draws would be wasted time."""
    before = getattr(_skipping, "on", False)
    _skipping.on = True
    try:
        yield
    finally:
        _skipping.on = before


def initialize(spec, shape, rng, dtype, out=None):
    """An array of ``shape`` drawn by initializer ``spec`` from ``rng`` (into ``out`` when given:
    a built-in initializer then allocates nothing more)."""
    name, params = parse(spec)
    fn = _registry.get(name)
    if getattr(_skipping, "on", False):
        if out is None:
            return np.zeros(tuple(shape), np.dtype(dtype))
        out[...] = 0
        return out
    if out is not None and "out" in inspect.signature(fn).parameters:
        fn(tuple(shape), rng, np.dtype(dtype), **params, out=out)
        return out
    a = np.ascontiguousarray(fn(tuple(shape), rng, np.dtype(dtype), **params))
    if out is not None:
        out[...] = a
        return out
    return a


def names():
    return _registry.names()
