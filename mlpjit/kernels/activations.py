"""Activation kernels: ``Y = f(S)`` and ``dS = f'(S) ∘ dY`` (math.md §2).

Every kernel works on flat 1-D arrays (a layer passes ``S.reshape(-1)``, a view) and writes
into the output array it is given.  ``alpha`` is the activation's one parameter (α of
leaky_relu and elu, ``a`` of tanh_linear); the others ignore it.

Derivatives use the forward output ``Y`` where that is cheaper (sigmoid, tanh, relu,
softsign via S, elu via Y) and ``S`` where it is not (gelu, swish, arctan, softplus).

Values at the kinks (documented choice):
relu'(0) = 0 (as PyTorch and scikit-learn), leaky_relu'(0) = α, elu'(0) = 1.

``activation_forward(code, alpha, s, y)`` and ``activation_backward(code, alpha, s, y, dy, ds)``
dispatch on an integer code, so compiled training loops can run any activation; the codes are
the ``CODES`` table below.
"""

import math

import numpy as np

from .._jit import jit

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS = 0, 1, 2, 3, 4, 5
ARCTAN, SOFTSIGN, ELU, SWISH, GELU, TANH_LINEAR = 6, 7, 8, 9, 10, 11

CODES = {
    "identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
    "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "arctan": ARCTAN, "softsign": SOFTSIGN,
    "elu": ELU, "swish": SWISH, "gelu": GELU, "tanh_linear": TANH_LINEAR,
}

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


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


# --- forward: y = f(s) ------------------------------------------------------------------
# (code: int, alpha: float, s: float[:], y: float[:]) -> None

@jit
def activation_forward(code, alpha, s, y):
    n = s.shape[0]
    if code == IDENTITY:
        for i in range(n):
            y[i] = s[i]
    elif code == SIGMOID:
        for i in range(n):
            y[i] = sigmoid_scalar(s[i])
    elif code == TANH:
        for i in range(n):
            y[i] = math.tanh(s[i])
    elif code == RELU:
        for i in range(n):
            y[i] = s[i] if s[i] > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            y[i] = s[i] if s[i] > 0 else alpha * s[i]
    elif code == SOFTPLUS:
        for i in range(n):
            y[i] = softplus_scalar(s[i])
    elif code == ARCTAN:
        for i in range(n):
            y[i] = math.atan(s[i])
    elif code == SOFTSIGN:
        for i in range(n):
            y[i] = s[i] / (1.0 + abs(s[i]))
    elif code == ELU:
        for i in range(n):
            y[i] = s[i] if s[i] >= 0 else alpha * math.expm1(s[i])
    elif code == SWISH:
        for i in range(n):
            y[i] = s[i] * sigmoid_scalar(s[i])
    elif code == GELU:
        for i in range(n):
            y[i] = 0.5 * s[i] * (1.0 + math.erf(s[i] * _INV_SQRT2))
    elif code == TANH_LINEAR:
        for i in range(n):
            y[i] = math.tanh(s[i]) + alpha * s[i]


# --- backward: ds = f'(s) ∘ dy ------------------------------------------------------------
# (code: int, alpha: float, s: float[:], y: float[:], dy: float[:], ds: float[:]) -> None

@jit
def activation_backward(code, alpha, s, y, dy, ds):
    n = s.shape[0]
    if code == IDENTITY:
        for i in range(n):
            ds[i] = dy[i]
    elif code == SIGMOID:                       # σ' = y(1 − y)
        for i in range(n):
            ds[i] = dy[i] * y[i] * (1.0 - y[i])
    elif code == TANH:                          # tanh' = 1 − y²
        for i in range(n):
            ds[i] = dy[i] * (1.0 - y[i] * y[i])
    elif code == RELU:                          # 1 if s > 0 else 0
        for i in range(n):
            ds[i] = dy[i] if s[i] > 0 else 0.0
    elif code == LEAKY_RELU:                    # 1 if s > 0 else α
        for i in range(n):
            ds[i] = dy[i] if s[i] > 0 else alpha * dy[i]
    elif code == SOFTPLUS:                      # softplus' = σ(s)
        for i in range(n):
            ds[i] = dy[i] * sigmoid_scalar(s[i])
    elif code == ARCTAN:                        # 1/(1 + s²)
        for i in range(n):
            ds[i] = dy[i] / (1.0 + s[i] * s[i])
    elif code == SOFTSIGN:                      # 1/(1 + |s|)²
        for i in range(n):
            d = 1.0 + abs(s[i])
            ds[i] = dy[i] / (d * d)
    elif code == ELU:                           # 1 if s ≥ 0 else αeˢ = y + α
        for i in range(n):
            ds[i] = dy[i] if s[i] >= 0 else dy[i] * (y[i] + alpha)
    elif code == SWISH:                         # σ + sσ(1 − σ)
        for i in range(n):
            g = sigmoid_scalar(s[i])
            ds[i] = dy[i] * (g + s[i] * g * (1.0 - g))
    elif code == GELU:                          # Φ(s) + sφ(s)
        for i in range(n):
            x = s[i]
            cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT2))
            pdf = _INV_SQRT2PI * math.exp(-0.5 * x * x)
            ds[i] = dy[i] * (cdf + x * pdf)
    elif code == TANH_LINEAR:                   # 1 − tanh²(s) + a = 1 − (y − a·s)² + a
        for i in range(n):
            t = math.tanh(s[i])
            ds[i] = dy[i] * (1.0 - t * t + alpha)
