"""Average pooling over KH×KW windows, per example and channel (math.md §6).

Forward:  Y[n, c, i, j] = (1/(KH·KW)) Σ_{p,q} X[n, c, i·sh + p, j·sw + q].
Backward: dX[n, c, i·sh + p, j·sw + q] += dY[n, c, i, j]/(KH·KW) for every p, q.
Shapes:   (N, C, H, W) → (N, C, OH, OW), OH = ⌊(H − KH)/sh⌋ + 1; no padding.  Kept: nothing.
"""

from numba import uint64 as U

from .._jit import jit
from ..registry import register_layer
from .base import Call, Pool2D


# (X: (N, C, H, W), KH, KW, sh, sw, Y: (N, C, OH, OW)) -> None
@jit
def avgpool2d_forward(X, KH, KW, sh, sw, Y):
    """Y = the window's mean."""
    N, C, H, W = X.shape
    OH, OW = Y.shape[2], Y.shape[3]
    inv = 1.0 / (KH * KW)
    Xf = X.reshape(-1)
    Yf = Y.reshape(-1)
    for nc in range(N * C):
        for i in range(OH):
            out = U((nc * OH + i) * OW)
            for j in range(OW):
                corner = U((nc * H + i * sh) * W + j * sw)
                acc = 0.0
                for p in range(KH):
                    for q in range(KW):
                        acc += Xf[corner + U(p * W + q)]
                Yf[out + U(j)] = acc * inv


# (dY: (N, C, OH, OW), KH, KW, sh, sw, dX: (N, C, H, W)) -> None
@jit
def avgpool2d_backward(dY, KH, KW, sh, sw, dX):
    """dX = 0, then every input of a window gets dY/(KH·KW)."""
    N, C, H, W = dX.shape
    OH, OW = dY.shape[2], dY.shape[3]
    inv = 1.0 / (KH * KW)
    dX[...] = 0.0
    Gf = dY.reshape(-1)
    Df = dX.reshape(-1)
    for nc in range(N * C):
        for i in range(OH):
            out = U((nc * OH + i) * OW)
            for j in range(OW):
                corner = U((nc * H + i * sh) * W + j * sw)
                g = Gf[out + U(j)] * inv
                for p in range(KH):
                    for q in range(KW):
                        Df[corner + U(p * W + q)] += g


@register_layer("avgpool2d")
class AvgPool2D(Pool2D):
    """Average pooling over size×size windows moved by ``stride`` (default: the size)."""

    def window_formulas(self):
        return ("Y[n,c,i,j] = mean of the window", "dX[window] += dY[n,c,i,j]/(KH·KW)")

    def forward_calls(self, training):
        return [Call(avgpool2d_forward, "X", "KH", "KW", "sh", "sw", "Y")]

    def backward_calls(self, training=True):
        return [Call(avgpool2d_backward, "dY", "KH", "KW", "sh", "sw", "dX")]

    def onnx_nodes(self, g, x):
        """ONNX: AveragePool with the same window and stride, no padding (every window is whole,
        so it divides by KH·KW as here)."""
        return g.op("AveragePool", x, out="Y", kernel_shape=list(self.size), strides=list(self.stride))
