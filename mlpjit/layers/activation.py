"""An activation function as a layer of its own: ``Y = f(X)`` (math.md §2).

Forward:  Y = f(X).
Backward: dX = f'(X) ∘ dY.
Shapes:   any; Y and dX have X's shape.  Kept for backward: nothing beyond X and Y.
The kernels are the activation's own (:mod:`mlpjit.activations`).
"""

from .. import activations as _activations
from ..registry import register_layer
from ..schema import ActivationSpec
from .base import Layer, dims


@register_layer("activation")
class Activation(Layer):
    """``Y = f(X)`` element-wise, for any activation (name, config dict or object).

    >>> import numpy as np, mlpjit
    >>> mlpjit.Activation("relu").forward(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """
    row_separable = True

    def __init__(self, activation: ActivationSpec, **activation_params):
        self.activation = _activations.get(activation, **activation_params)

    def constants(self):
        return self.activation.constants(prefix="act_")

    def forward_calls(self, training):
        return [self.activation.forward_call("X", "Y", prefix="act_")]

    def backward_calls(self, training=True):
        return [self.activation.backward_call("X", "Y", "dY", "dX", prefix="act_")]

    def onnx_nodes(self, g, x):
        """ONNX: Y = f(X), the activation's nodes."""
        return g.activation(self.activation, x)

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        f = self.activation.name
        return {"forward": [f"Y = {f}(X)   {x}"], "backward": [f"dX = {f}'(X) ∘ dY   {x}"], "macs": (0, 0)}

    def __repr__(self):
        return f"Activation({self.activation!r})"
