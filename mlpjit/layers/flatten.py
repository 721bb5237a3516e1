"""Each example's (C, H, W) as one row of C·H·W values (row-major), for a dense layer.

Forward:  Y = X.reshape(N, C·H·W).
Backward: dX = dY.reshape(N, C, H, W).
Both are views: no kernel runs, and nothing is kept.
"""

import math

from ..registry import register_layer
from .base import Layer, dims


@register_layer("flatten")
class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W), as a view (see the module docstring)."""
    row_separable = True

    def output_shape(self, in_shape):
        if in_shape is None or any(d is None for d in in_shape):
            return (None,)
        return (math.prod(in_shape),)

    def aliases(self, training):
        return {"Y": "X", "dX": "dY"}

    def onnx_nodes(self, g, x):
        """ONNX: Flatten(axis=1): (N, C, H, W) → (N, C·H·W), row-major as here."""
        return g.op("Flatten", x, out="Y", axis=1)

    def explain(self, in_shape, batch, first=False):
        out = self.output_shape(in_shape)
        return {"forward": [f"Y = X viewed as rows   {dims((batch,) + tuple(in_shape))} → {dims((batch,) + tuple(out))}"],
                "backward": [f"dX = dY viewed as X   {dims((batch,) + tuple(out))} → {dims((batch,) + tuple(in_shape))}"],
                "macs": (0, 0)}

    def __repr__(self):
        return "Flatten()"
