"""A layer of your own, in one file: y = a2·sin(a0·x + a1) + a3 (docs/writing-a-layer.md).

Forward (per example, x one number):
    z = a0·x + a1,   y = a2·sin(z) + a3.
Backward, with dy = ∂E/∂y, by the chain rule (summed over the batch for the parameters):
    ∂E/∂z = dy·a2·cos(z)
    da0 = Σ ∂E/∂z·x     da1 = Σ ∂E/∂z     da2 = Σ dy·sin(z)     da3 = Σ dy
    dx  = ∂E/∂z·a0
Shapes: X (N, 1) → Y (N, 1); the parameter a is (4,); kept for backward: Z (N, 1).

Registered as ``sine``, so a config can use it once it imports this module::

    imports: [sine]
    model: {layers: [{type: sine, a: [1.0, 0.0, 1.0, 0.0]}]}

and both the layer-by-layer path and the compiled training step call the two kernels below.
"""

import math
from typing import Annotated

import numpy as np
from pydantic import Field

import mlpjit
from mlpjit.schema import Float


@mlpjit.jit
def sine_forward(X, a, Z, Y):
    """z = a0·x + a1, y = a2·sin(z) + a3."""
    for i in range(X.shape[0]):
        z = a[0] * X[i, 0] + a[1]
        Z[i, 0] = z
        Y[i, 0] = a[2] * math.sin(z) + a[3]


@mlpjit.jit
def sine_backward(X, a, Z, dY, da, dX):
    """da = Σ (∂E/∂z·x, ∂E/∂z, dy·sin z, dy) with ∂E/∂z = dy·a2·cos z;  dx = ∂E/∂z·a0."""
    for j in range(4):
        da[j] = 0.0
    for i in range(X.shape[0]):
        z = Z[i, 0]
        dz = dY[i, 0] * a[2] * math.cos(z)
        da[0] += dz * X[i, 0]
        da[1] += dz
        da[2] += dY[i, 0] * math.sin(z)
        da[3] += dY[i, 0]
        dX[i, 0] = dz * a[0]


@mlpjit.register_layer("sine")
class SineLayer(mlpjit.Layer):
    """y = a2·sin(a0·x + a1) + a3 on inputs of shape (batch, 1); parameters ``a`` = [a0..a3]."""

    params = ("a",)                 # trainable; its gradient is the attribute ``da``
    forward_kernel = sine_forward   # arguments by name: X, a, Z (a buffer, below), Y
    backward_kernel = sine_backward

    def __init__(self, a: Annotated[list[Float], Field(min_length=4, max_length=4)] = (1.0, 0.0, 1.0, 0.0),
                 dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.a = np.array(a, dtype=self.dtype)
        self.da = np.zeros_like(self.a)

    def output_shape(self, in_shape):
        if in_shape is not None and tuple(in_shape) != (1,):
            raise ValueError(f"{self!r} takes one number per example, but gets shape {tuple(in_shape)}")
        return (1,)

    def buffers(self, in_shape):
        return {"Z": (1,)}          # z for each example, kept for backward

    def __repr__(self):
        return "SineLayer(a=[" + ", ".join(f"{v:.4g}" for v in self.a) + "])"
