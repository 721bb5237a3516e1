"""Softmax over the last axis, as a layer (math.md §3).

Forward:  Yᵢ = softmax(Xᵢ) = e^(Xᵢ − max Xᵢ) / Σⱼ e^(Xᵢⱼ − max Xᵢ), per row i.
Backward: dXᵢ = Yᵢ ∘ (dYᵢ − ⟨dYᵢ, Yᵢ⟩)  (the Jacobian ∂yⱼ/∂xₗ = yⱼ(𝟙[j = l] − yₗ), never built).
Shapes:   (batch, k) → (batch, k).  Kept for backward: Y.

To train a classifier, prefer an identity output with the ``cross_entropy`` loss, which fuses
softmax and log-likelihood into the stable gradient (p − y)/N.
"""

from ..kernels.softmax import softmax_backward, softmax_forward
from ..registry import register_layer
from .base import Call, Layer, dims, fmt_shape


@register_layer("softmax")
class Softmax(Layer):
    """Softmax over each row (see the module docstring)."""
    row_separable = True

    outputs_probabilities = True   # a loss on logits after it would apply softmax twice

    def output_shape(self, in_shape):
        if in_shape is not None and len(in_shape) != 1:
            raise ValueError(f"Softmax needs flat rows, but gets {fmt_shape(in_shape)}")
        return in_shape

    def forward_calls(self, training):
        return [Call(softmax_forward, "X", "Y")]

    def backward_calls(self, training=True):
        return [Call(softmax_backward, "Y", "dY", "dX")]

    def onnx_nodes(self, g, x):
        """ONNX: Softmax over the last axis (opset 13 and later: each row alone)."""
        return g.op("Softmax", x, out="Y", axis=-1)

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        return {"forward": [f"Yᵢ = e^(Xᵢ − max Xᵢ) / Σⱼ e^(Xᵢⱼ − max Xᵢ)   {x}"],
                "backward": [f"dXᵢ = Yᵢ ∘ (dYᵢ − ⟨dYᵢ, Yᵢ⟩)   {x}"], "macs": (0, 0)}

    def __repr__(self):
        return "Softmax()"
