"""Max pooling over KH×KW windows, per example and channel (math.md §6).

Forward:  Y[n, c, i, j] = max_{p,q} X[n, c, i·sh + p, j·sw + q]; a NaN in a window wins, so it
          propagates.
Backward: dX[n, c, winner] += dY[n, c, i, j]; every other input of the window gets 0 (where
          windows overlap, an input that wins several receives the sum).  The winner is the
          first input equal to Y in row-major order inside the window (smallest p, then
          smallest q): ties go to the first maximum.
Shapes:   (N, C, H, W) → (N, C, OH, OW), OH = ⌊(H − KH)/sh⌋ + 1; no padding.  Kept for
          backward: X and Y (the winner is found again by comparing the window with Y).
"""

from numba import uint64 as U

from .._jit import jit
from ..registry import register_layer
from .base import Call, Pool2D


# (X: (N, C, H, W), KH, KW, sh, sw, Y: (N, C, OH, OW)) -> None
@jit
def maxpool2d_forward(X, KH, KW, sh, sw, Y):
    """Y = the window's maximum (a NaN in the window wins, so it propagates)."""
    N, C, H, W = X.shape
    OH, OW = Y.shape[2], Y.shape[3]
    Xf = X.reshape(-1)
    Yf = Y.reshape(-1)
    for nc in range(N * C):
        for i in range(OH):
            out = U((nc * OH + i) * OW)
            for j in range(OW):
                corner = U((nc * H + i * sh) * W + j * sw)  # X[n, c, i·sh, j·sw]
                best = Xf[corner]
                for p in range(KH):
                    for q in range(KW):
                        v = Xf[corner + U(p * W + q)]
                        best = v if v > best or v != v else best
                Yf[out + U(j)] = best


# (X, Y from maxpool2d_forward, dY: (N, C, OH, OW), KH, KW, sh, sw, dX: (N, C, H, W)) -> None
@jit
def maxpool2d_backward(X, Y, dY, KH, KW, sh, sw, dX):
    """dX = 0, then dX[winner] += dY, the winner being the first input of the window in row-major
    order that equals Y (the first maximum; the first NaN when Y is NaN).  Found again here
    rather than stored by the forward pass: the scan costs less than keeping an index.
    Overlapping windows add up."""
    N, C, H, W = dX.shape
    OH, OW = dY.shape[2], dY.shape[3]
    dX[...] = 0.0
    Xf = X.reshape(-1)
    Yf = Y.reshape(-1)
    Gf = dY.reshape(-1)
    Df = dX.reshape(-1)
    for nc in range(N * C):
        for i in range(OH):
            out = U((nc * OH + i) * OW)
            for j in range(OW):
                corner = U((nc * H + i * sh) * W + j * sw)
                target = Yf[out + U(j)]
                nan = target != target
                found = False
                for p in range(KH):
                    for q in range(KW):
                        k = corner + U(p * W + q)
                        v = Xf[k]
                        if v == target or (nan and v != v):
                            Df[k] += Gf[out + U(j)]
                            found = True
                            break
                    if found:
                        break


@register_layer("maxpool2d")
class MaxPool2D(Pool2D):
    """Max pooling over size×size windows moved by ``stride`` (default: the size)."""

    def window_formulas(self):
        return ("Y[n,c,i,j] = max of the window", "dX[winner] += dY[n,c,i,j] (the window's first maximum)")

    def forward_calls(self, training):
        return [Call(maxpool2d_forward, "X", "KH", "KW", "sh", "sw", "Y")]

    def backward_calls(self, training=True):
        return [Call(maxpool2d_backward, "X", "Y", "dY", "KH", "KW", "sh", "sw", "dX")]

