"""Batch normalization (Ioffe & Szegedy 2015; math.md §8): the layer and its kernels.

Over a batch, per feature c (for images, per channel c over the N·H·W values of that channel),
with m values x₁..x_m of that feature:

Forward, training:
    μ = (1/m) Σᵢ xᵢ,   σ² = (1/m) Σᵢ (xᵢ − μ)²   (the biased variance),
    x̂ᵢ = (xᵢ − μ)/√(σ² + ε),   yᵢ = γ·x̂ᵢ + β,
    and the running estimates for prediction (PyTorch's convention, momentum m₀ = 0.1):
    μ_run ← (1 − m₀)·μ_run + m₀·μ,   σ²_run ← (1 − m₀)·σ²_run + m₀·σ²·m/(m − 1)  (unbiased;
    a batch of one value per feature adds σ² = 0 as it is).
Forward, prediction:  x̂ᵢ = (xᵢ − μ_run)/√(σ²_run + ε),  yᵢ = γ·x̂ᵢ + β.

Backward, with g = dY, step by step:
    dβ = Σᵢ gᵢ,   dγ = Σᵢ gᵢ·x̂ᵢ,   dx̂ᵢ = γ·gᵢ.
    x̂ᵢ depends on xᵢ directly and through μ and σ²:
      ∂x̂ᵢ/∂xⱼ = (𝟙[i = j] − 1/m)/σ̃ − (xᵢ − μ)·½(σ² + ε)^(−3/2)·∂σ²/∂xⱼ,  σ̃ = √(σ² + ε),
      ∂σ²/∂xⱼ = (2/m)(xⱼ − μ)  (the term through μ vanishes: Σₖ (xₖ − μ) = 0),
    so  ∂x̂ᵢ/∂xⱼ = (1/(m·σ̃))·(m·𝟙[i = j] − 1 − x̂ᵢ·x̂ⱼ), and summing dx̂ᵢ over i:
    dxⱼ = (1/(m·σ̃))·(m·dx̂ⱼ − Σᵢ dx̂ᵢ − x̂ⱼ·Σᵢ dx̂ᵢ·x̂ᵢ)
        = (γ/(m·σ̃))·(m·gⱼ − Σᵢ gᵢ − x̂ⱼ·Σᵢ gᵢ·x̂ᵢ)
        = (γ/(m·σ̃))·(m·gⱼ − dβ − x̂ⱼ·dγ).
    In prediction mode μ and σ² are constants: dxⱼ = γ·gⱼ/√(σ²_run + ε).

Shapes: X (N, F) or (N, C, H, W) → Y of X's shape; γ, β, μ_run, σ²_run (F,) or (C,).  Kept for
backward: X̂ (X's shape), μ and 1/σ̃ per feature.  The running estimates are not trained but
belong to the model: they are saved in ``model.npz`` and in checkpoints (exact resume).
"""

import math
from typing import Annotated

import numpy as np
from pydantic import Field

from .. import _memory
from .._jit import jit
from ..registry import register_layer
from ..schema import Float, Size, validated
from .base import Call, Layer, check_dtype, dims, fmt_shape


# (X: (N, C, ...) , gamma, beta, running_mean, running_var: (C,), momentum, eps: float,
#  training: bool, Xhat: X's shape, mean, inv_std: float64 (C,), Y: X's shape) -> None
@jit
def batchnorm_forward(X, gamma, beta, running_mean, running_var, momentum, eps, training, Xhat,
                      mean, inv_std, Y):
    """x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β per feature, with the batch's μ and biased σ² (and
    the running estimates updated) in training, the running estimates in prediction."""
    N = X.shape[0]
    C = gamma.shape[0]
    L = X.size // max(N * C, 1)
    x = X.reshape((N, C, L))
    xh = Xhat.reshape((N, C, L))
    y = Y.reshape((N, C, L))
    count = N * L
    if training:
        for c in range(C):
            mean[c] = 0.0
            inv_std[c] = 0.0
        for n in range(N):
            for c in range(C):
                acc = 0.0
                for l in range(L):
                    acc += x[n, c, l]
                mean[c] += acc
        for c in range(C):
            mean[c] /= count
        for n in range(N):                      # σ² from a second pass (no cancellation)
            for c in range(C):
                mu = mean[c]
                acc = 0.0
                for l in range(L):
                    d = x[n, c, l] - mu
                    acc += d * d
                inv_std[c] += acc
        for c in range(C):
            var = inv_std[c] / count
            inv_std[c] = 1.0 / math.sqrt(var + eps)
            unbiased = var * count / (count - 1) if count > 1 else var
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c]
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased
    else:
        for c in range(C):
            mean[c] = running_mean[c]
            inv_std[c] = 1.0 / math.sqrt(running_var[c] + eps)
    for n in range(N):
        for c in range(C):
            mu, s, g, b = mean[c], inv_std[c], gamma[c], beta[c]
            for l in range(L):
                h = (x[n, c, l] - mu) * s
                xh[n, c, l] = h
                y[n, c, l] = g * h + b


# (dY, Xhat: (N, C, ...), gamma: (C,), inv_std: float64 (C,), training, need_dX: bool,
#  dgamma, dbeta: (C,), sums: float64 (2, C), dX: X's shape) -> None
@jit
def batchnorm_backward(dY, Xhat, gamma, inv_std, training, need_dX, dgamma, dbeta, sums, dX):
    """dβ = Σ g, dγ = Σ g·x̂, dx = (γ/(m·σ̃))·(m·g − dβ − x̂·dγ) (prediction mode: γ·g/σ̃)."""
    N = dY.shape[0]
    C = gamma.shape[0]
    L = dY.size // max(N * C, 1)
    g = dY.reshape((N, C, L))
    xh = Xhat.reshape((N, C, L))
    dx = dX.reshape((N, C, L))
    count = N * L
    for c in range(C):
        sums[0, c] = 0.0
        sums[1, c] = 0.0
    for n in range(N):
        for c in range(C):
            sg = 0.0
            sgx = 0.0
            for l in range(L):
                sg += g[n, c, l]
                sgx += g[n, c, l] * xh[n, c, l]
            sums[0, c] += sg
            sums[1, c] += sgx
    for c in range(C):
        dbeta[c] = sums[0, c]
        dgamma[c] = sums[1, c]
    if not need_dX:
        return
    for n in range(N):
        for c in range(C):
            if training:
                k = gamma[c] * inv_std[c] / count
                sb, sw = sums[0, c], sums[1, c]
                for l in range(L):
                    dx[n, c, l] = k * (count * g[n, c, l] - sb - xh[n, c, l] * sw)
            else:
                k = gamma[c] * inv_std[c]
                for l in range(L):
                    dx[n, c, l] = k * g[n, c, l]


@register_layer("batchnorm")
class BatchNorm(Layer):
    """Batch normalization over the features of (N, F) input, or the channels of (N, C, H, W)
    input (as ``torch.nn.BatchNorm1d`` / ``BatchNorm2d``); see the module docstring.

    Args:
        num_features: F or C (from a config: taken from the input).
        momentum: weight of the batch in the running estimates (0.1, PyTorch's default).
        eps: ε added to the variance (1e-5).
        dtype: float32 (default) or float64.

    Parameters γ (``gamma``, starts at 1) and β (``beta``, starts at 0); state ``running_mean``
    (starts at 0) and ``running_var`` (starts at 1).

    >>> import numpy as np, mlpjit
    >>> bn = mlpjit.BatchNorm(2, dtype=np.float64)
    >>> bn.forward(np.array([[1.0, 10.0], [3.0, 30.0]]), training=True).round(3)
    array([[-1., -1.],
           [ 1.,  1.]])
    """

    params = ("gamma", "beta")
    state = ("running_mean", "running_var")
    inferred = {"num_features": 0}

    @validated
    def __init__(self, num_features: Size, momentum: Annotated[Float, Field(gt=0, le=1)] = 0.1,
                 eps: Annotated[Float, Field(gt=0)] = 1e-5, dtype=np.float32):
        self.num_features = int(num_features)
        self.momentum, self.eps = float(momentum), float(eps)
        self.dtype = check_dtype(dtype)
        C = self.num_features
        self.gamma = _memory.full(C, 1.0, self.dtype)
        self.beta = _memory.zeros(C, self.dtype)
        self.dgamma = _memory.zeros(C, self.dtype)
        self.dbeta = _memory.zeros(C, self.dtype)
        self.running_mean = _memory.zeros(C, self.dtype)
        self.running_var = _memory.full(C, 1.0, self.dtype)

    def output_shape(self, in_shape):
        if in_shape is not None:
            if len(in_shape) not in (1, 3):
                raise ValueError(f"{self!r} normalizes rows of features (N, F) or images "
                                 f"(N, C, H, W), but gets {fmt_shape(in_shape)}")
            if in_shape[0] is not None and in_shape[0] != self.num_features:
                raise ValueError(f"{self!r} expects {self.num_features} "
                                 f"{'features' if len(in_shape) == 1 else 'channels'} but gets "
                                 f"{in_shape[0]}")
        return None if in_shape is None else tuple(in_shape)

    def buffers(self, in_shape):
        return {"Xhat": in_shape}

    def scratch(self, in_shape, batch):
        C = self.num_features
        return {"mean": ((C,), np.float64), "inv_std": ((C,), np.float64),
                "sums": ((2, C), np.float64)}

    def constants(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def forward_calls(self, training):
        return [Call(batchnorm_forward, "X", "gamma", "beta", "running_mean", "running_var",
                     "momentum", "eps", "training", "Xhat", "mean", "inv_std", "Y")]

    def backward_calls(self, training=True):
        return [Call(batchnorm_backward, "dY", "Xhat", "gamma", "inv_std", "training", "need_dX",
                     "dgamma", "dbeta", "sums", "dX")]

    def onnx_nodes(self, g, x):
        """ONNX: BatchNormalization in inference mode, with the running estimates:
        y = γ·(x − μ_run)/√(σ²_run + ε) + β per feature (N, F) or channel (N, C, H, W)."""
        return g.op("BatchNormalization", x, g.param("gamma", self.gamma), g.param("beta", self.beta),
                    g.param("running_mean", self.running_mean), g.param("running_var", self.running_var),
                    out="Y", epsilon=self.eps)

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        C = dims((self.num_features,))
        m = batch * (int(np.prod(in_shape[1:])) if len(in_shape) > 1 else 1)
        return {"forward": [f"μ, σ² = mean, biased variance of each of the {self.num_features} features over m = {m}   {x} → {C}",
                            f"X̂ = (X − μ)/√(σ² + ε),  Y = γ ∘ X̂ + β   {x}"],
                "backward": [f"dβ = Σ dY,  dγ = Σ dY ∘ X̂   {x} → {C}",
                             f"dX = (γ/(m·√(σ² + ε)))·(m·dY − dβ − X̂ ∘ dγ)   {x}"],
                "macs": (2 * batch * int(np.prod(in_shape)), 3 * batch * int(np.prod(in_shape)))}

    def __repr__(self):
        extra = "" if self.momentum == 0.1 else f", momentum={self.momentum:g}"
        extra += "" if self.eps == 1e-5 else f", eps={self.eps:g}"
        return f"BatchNorm({self.num_features}{extra})"
