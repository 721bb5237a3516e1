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
from numba import types
from numba.extending import overload

from .._jit import FASTMATH, jit

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS = 0, 1, 2, 3, 4, 5
ARCTAN, SOFTSIGN, ELU, SWISH, GELU, TANH_LINEAR = 6, 7, 8, 9, 10, 11

CODES = {
    "identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
    "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "arctan": ARCTAN, "softsign": SOFTSIGN,
    "elu": ELU, "swish": SWISH, "gelu": GELU, "tanh_linear": TANH_LINEAR,
}

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


# tanh for float32: Eigen's rational approximation (odd degree-13 / even degree-6 polynomial on
# [−7.905, 7.905], identity below 4e-4, ±1 beyond ±9), within 6 float32 ulps of the exact tanh (max relative
# error 3.5e-7, measured on 2M points).  Pure arithmetic, so compiled loops vectorize it, where
# each libm tanh call costs ~9 ns.  float64 arrays keep the exact math.tanh (gradient checks).
_T_CLAMP = np.float32(7.90531110763549805)
_T_TINY = np.float32(0.0004)
_T_SAT = np.float32(9.0)      # float32 tanh is exactly ±1 from here on
_T_ONE = np.float32(1.0)
_T_A = tuple(np.float32(v) for v in (4.89352455891786e-03, 6.37261928875436e-04,
                                     1.48572235717979e-05, 5.12229709037114e-08,
                                     -8.60467152213735e-11, 2.00018790482477e-13,
                                     -2.76076847742355e-16))
_T_B = tuple(np.float32(v) for v in (4.89352518554385e-03, 2.26843463243900e-03,
                                     1.18534705686654e-04, 1.19825839466702e-06))
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = _T_A
_B0, _B2, _B4, _B6 = _T_B


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
            y[i] = tanh_scalar(s[i])
    elif code == RELU:             # written so that NaN passes through (NaN ≤ 0 is false)
        for i in range(n):
            y[i] = 0.0 if s[i] <= 0 else s[i]
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
            y[i] = tanh_scalar(s[i]) + alpha * s[i]


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
            t = tanh_scalar(s[i])
            ds[i] = dy[i] * (1.0 - t * t + alpha)
