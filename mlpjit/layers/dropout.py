"""Inverted dropout with probability p (math.md §5).

Training:   mask = [U ≥ p]/(1 − p) with U ~ U[0, 1) drawn per element; Y = X ∘ mask.
Prediction: Y = X (the identity; no scaling needed, thanks to the 1/(1 − p) in training).
Backward:   dX = dY ∘ mask (the same mask and scale).
Shapes:     any; Y has X's shape.  Kept for backward: mask (X's shape).

The draws U (float64, one per element) come from ``numpy.random.default_rng(seed)``; the
generator's state is ``rng_state`` (saved in checkpoints for an exact resume).  The compiled
step draws a chunk's numbers ahead from the same generator, in the same order.
"""

import math

import numpy as np

from .._jit import jit
from ..kernels.misc import mul_into
from ..registry import register_layer
from ..schema import Unit, validated
from .base import Call, Layer, dims


# (X: any shape, U: float64 (X.size,) uniform [0, 1), p: float, Y, mask: X's shape) -> None
@jit
def dropout_forward(X, U, p, Y, mask):
    """mask = [U ≥ p]/(1 − p) (inverted dropout); Y = X ∘ mask."""
    scale = 1.0 / (1.0 - p)
    x, y, mk = X.reshape(-1), Y.reshape(-1), mask.reshape(-1)
    for i in range(x.shape[0]):
        m = scale if U[i] >= p else 0.0
        mk[i] = m
        y[i] = x[i] * m


@register_layer("dropout")
class Dropout(Layer):
    """Inverted dropout (see the module docstring).

    >>> import numpy as np, mlpjit
    >>> mlpjit.Dropout(0.5, seed=0).forward(np.ones((1, 4)), training=True)
    array([[2., 0., 2., 2.]])
    """
    row_separable = True

    @validated
    def __init__(self, p: Unit, seed=None):
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def active(self, training):
        return training and self.p > 0.0

    def buffers(self, in_shape):
        return {"mask": in_shape}

    def constants(self):
        return {"p": self.p}

    def draws(self, in_shape):
        return math.prod(in_shape) if self.p > 0.0 else 0

    def aliases(self, training):
        return {} if self.active(training) else {"Y": "X", "dX": "dY"}

    def forward_calls(self, training):
        return [Call(dropout_forward, "X", "U", "p", "Y", "mask")] if self.active(training) else []

    def backward_calls(self, training=True):
        return [Call(mul_into, "dY", "mask", "dX")] if self.active(training) else []

    def onnx_nodes(self, g, x):
        """ONNX: Identity (prediction mode: Y = X)."""
        return g.op("Identity", x, out="Y")

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        return {"forward": [f"mask = [U ≥ {self.p:g}]/(1 − {self.p:g}),  Y = X ∘ mask   {x}  (prediction: Y = X)"],
                "backward": [f"dX = dY ∘ mask   {x}"], "macs": (0, 0)}

    @property
    def rng_state(self):
        return self.rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state):
        self.rng.bit_generator.state = state

    def __repr__(self):
        return f"Dropout(p={self.p:g})"
