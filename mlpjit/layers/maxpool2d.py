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


# The 2×2 windows with stride 2 of nearly every CNN: the same formulas with the window written
# out, four loads and no inner loops, so the loop over j vectorizes (forward 1.7 ms → see
# docs/performance.md for the CNN's profile).

# (Xf: X flat, NC = N·C, H, W, OH, OW, Yf: Y flat) -> None
@jit
def maxpool2x2_forward(Xf, NC, H, W, OH, OW, Yf):
    """Y[i, j] = max(X[2i, 2j], X[2i, 2j+1], X[2i+1, 2j], X[2i+1, 2j+1]), a NaN winning."""
    for nc in range(NC):
        for i in range(OH):
            top = U((nc * H + 2 * i) * W)
            bottom = top + U(W)
            out = U((nc * OH + i) * OW)
            for j in range(OW):
                a, b = Xf[top + U(2 * j)], Xf[top + U(2 * j + 1)]
                c, d = Xf[bottom + U(2 * j)], Xf[bottom + U(2 * j + 1)]
                best = a
                best = b if b > best or b != b else best
                best = c if c > best or c != c else best
                best = d if d > best or d != d else best
                Yf[out + U(j)] = best


# (x, y: float, nan: y != y) -> bool
@jit
def _is_max(x, y, nan):
    """Whether input x is the window's maximum y, a NaN matching a NaN y (bitwise: no branch)."""
    return (x == y) | (nan & (x != x))


# (Xf, Yf, Gf: dY flat, NC, H, W, OH, OW, Df: dX flat) -> None
@jit
def maxpool2x2_backward(Xf, Yf, Gf, NC, H, W, OH, OW, Df):
    """dX = 0 but at each window's first input equal to Y (the first NaN when Y is NaN), which
    gets dY: the windows do not overlap, so each input is written once, without branches (and
    only an odd last row or column, in no window, needs zeroing first).  The windows' top and
    bottom rows are written by two loops (each a pair of interleaved stores): one loop writing
    all four took 616 µs on conv 1's 32 × 32 × 26 × 26, LLVM going through 14 vectors of
    pointers; the two, 466 µs with 4 (docs/performance.md, benchmarks/gathers.py)."""
    if H != 2 * OH or W != 2 * OW:
        for t in range(NC * H * W):
            Df[U(t)] = 0.0
    for nc in range(NC):
        for i in range(OH):
            top = U((nc * H + 2 * i) * W)
            bottom = top + U(W)
            out = U((nc * OH + i) * OW)
            for j in range(OW):   # the top row: a, b
                y, g = Yf[out + U(j)], Gf[out + U(j)]
                nan = y != y
                ea = _is_max(Xf[top + U(2 * j)], y, nan)
                eb = _is_max(Xf[top + U(2 * j + 1)], y, nan)
                Df[top + U(2 * j)] = g if ea else 0.0
                Df[top + U(2 * j + 1)] = g if eb & ~ea else 0.0
            for j in range(OW):   # the bottom row: c, d, after a and b
                y, g = Yf[out + U(j)], Gf[out + U(j)]
                nan = y != y
                ea = _is_max(Xf[top + U(2 * j)], y, nan)
                eb = _is_max(Xf[top + U(2 * j + 1)], y, nan)
                ec = _is_max(Xf[bottom + U(2 * j)], y, nan)
                Df[bottom + U(2 * j)] = g if ec & ~(ea | eb) else 0.0
                Df[bottom + U(2 * j + 1)] = g if ~(ea | eb | ec) else 0.0


# (X: (N, C, H, W), KH, KW, sh, sw, Y: (N, C, OH, OW)) -> None
@jit
def maxpool2d_forward(X, KH, KW, sh, sw, Y):
    """Y = the window's maximum (a NaN in the window wins, so it propagates)."""
    N, C, H, W = X.shape
    OH, OW = Y.shape[2], Y.shape[3]
    Xf = X.reshape(-1)
    Yf = Y.reshape(-1)
    if KH == 2 and KW == 2 and sh == 2 and sw == 2:
        maxpool2x2_forward(Xf, N * C, H, W, OH, OW, Yf)
        return
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
    Xf = X.reshape(-1)
    Yf = Y.reshape(-1)
    Gf = dY.reshape(-1)
    Df = dX.reshape(-1)
    if KH == 2 and KW == 2 and sh == 2 and sw == 2:
        maxpool2x2_backward(Xf, Yf, Gf, N * C, H, W, OH, OW, Df)
        return
    dX[...] = 0.0
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
                        if _is_max(v, target, nan):
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

    def onnx_nodes(self, g, x):
        """ONNX: MaxPool with the same window and stride, no padding (⌊⌋ output size)."""
        return g.op("MaxPool", x, out="Y", kernel_shape=list(self.size), strides=list(self.stride))
