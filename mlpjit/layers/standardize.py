"""Standardize: each input feature centred and scaled by the training data (math.md §8).

Adapted, not trained (as Keras' ``Normalization.adapt``): before the first epoch the trainer
computes, on the training split as the model sees it,
    μⱼ = (1/N) Σᵢ xᵢⱼ,   σⱼ = √((1/N) Σᵢ (xᵢⱼ − μⱼ)²)   (population, ddof 0),
with σⱼ = 0 (a constant feature) replaced by 1, so that feature passes through centred.
Forward:  Y = (X − μ)/σ.
Backward: dX = dY/σ (μ and σ are constants: they get no gradient).
Shapes:   X (N, F) → Y (N, F); μ and σ are (F,).  Kept for backward: nothing.

μ and σ are the layer's state: saved in ``model.npz`` (so ``evaluate``, ``predict`` and code
that loads the model apply the same scaling) and in checkpoints.  It must be the model's first
layer: it is fitted to the inputs themselves.
"""

from typing import Optional

import numpy as np

from .. import _memory
from .._jit import jit
from ..registry import register_layer
from ..schema import Size, validated
from .base import Call, Layer, check_dtype, dims, fmt_shape


# (X: (N, F), mean, std: (F,), Y: (N, F)) -> None
@jit
def standardize_forward(X, mean, std, Y):
    """Y = (X − μ)/σ per feature."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i, j] = (X[i, j] - mean[j]) / std[j]


# (dY: (N, F), std: (F,), dX: (N, F)) -> None
@jit
def standardize_backward(dY, std, dX):
    """dX = dY/σ."""
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dX[i, j] = dY[i, j] / std[j]


@register_layer("standardize")
class Standardize(Layer):
    """Per-feature standardization learned from the training inputs (see the module docstring).

    Args:
        num_features: F (from a config, and by ``adapt``: taken from the input).
        dtype: float32 (default) or float64.

    >>> import numpy as np, mlpjit
    >>> s = mlpjit.Standardize()
    >>> s.adapt(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> s.forward(np.array([[2.0, 6.0]]))
    array([[0., 1.]], dtype=float32)
    """
    row_separable = True

    state = ("mean", "std")
    inferred = {"num_features": 0}
    must_be_first = True

    @validated
    def __init__(self, num_features: Optional[Size] = None, dtype=np.float32):
        self.dtype = check_dtype(dtype)
        self.num_features = None
        self.adapted = False
        if num_features is not None:
            self._allocate(int(num_features))

    def _allocate(self, F):
        self.num_features = F
        self.mean = _memory.zeros(F, self.dtype)
        self.std = _memory.full(F, 1.0, self.dtype)

    def adapt(self, X):
        """Set μ and σ from the inputs X (N, F) (the training split as the model sees it)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"{self!r}: adapt needs a non-empty (N, features) array, got shape {X.shape}")
        if self.num_features is None:
            self._allocate(X.shape[1])
        elif X.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: adapt got {X.shape[1]} features, the layer has {self.num_features}")
        if not np.isfinite(X).all():
            raise ValueError(f"{self!r}: adapt got NaN or Inf inputs")
        mu = X.mean(axis=0)
        sigma = X.std(axis=0)
        sigma[sigma == 0] = 1.0
        self.mean[...] = mu
        self.std[...] = sigma
        self.adapted = True

    def output_shape(self, in_shape):
        if in_shape is not None:
            if len(in_shape) != 1:
                raise ValueError(f"{self!r} standardizes rows of features, but gets {fmt_shape(in_shape)}")
            if self.num_features is not None and in_shape[0] is not None and in_shape[0] != self.num_features:
                raise ValueError(f"{self!r} expects {self.num_features} features but gets {in_shape[0]}")
        return None if in_shape is None else tuple(in_shape)

    def state_items(self):
        if self.num_features is None:
            return []
        return super().state_items()

    def compute_dtype(self, X):
        return self.dtype

    def forward(self, X, training=False):
        if self.num_features is None:
            raise RuntimeError(f"{self!r}: call adapt(X) with the training inputs first "
                               f"(a model the trainer trains is adapted for you)")
        return super().forward(X, training)

    def forward_calls(self, training):
        return [Call(standardize_forward, "X", "mean", "std", "Y")]

    def backward_calls(self, training=True):
        return [Call(standardize_backward, "dY", "std", "dX")]

    def onnx_nodes(self, g, x):
        """ONNX: Y = (X − μ)/σ with the stored μ (``mean``) and σ (``std``): the file takes raw
        features."""
        if self.num_features is None:
            from ..errors import ExportError
            raise ExportError(f"layer {g.where} ({self!r}) was never adapted: it has no μ and σ to "
                              f"export (train the model, or call model.adapt(X))")
        centred = g.op("Sub", x, g.param("mean", self.mean), out="centred")
        return g.op("Div", centred, g.param("std", self.std), out="Y")

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        return {"forward": [f"Y = (X − μ)/σ   {x}  (μ, σ of the training split)"],
                "backward": ["dX: not computed (the first layer)" if first else f"dX = dY/σ   {x}"],
                "macs": (0, 0)}

    def __repr__(self):
        return f"Standardize({self.num_features})" if self.num_features else "Standardize()"
