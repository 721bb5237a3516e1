"""2-D convolution on NCHW batches (math.md §1, §6): the layer and its kernels.

A convolution is a "complex dot product": a loop ``c[z] += a[x] * b[y]`` whose indices do not
depend on the values.  Here, with the kernel A of shape (O, C, KH, KW), stride (sh, sw) and
padding (ph, pw) before the first row/column::

    S[n, o, i, j] = b[o] + Σ_{c, p, q} X[n, c, i·sh + p − ph, j·sw + q − pw] · A[o, c, p, q]

(terms whose input position falls in the padding are zero).  Its backward pass is the same loop
with that line replaced by the two derivative lines ``dX[...] += dS[...] · A[...]`` and
``dA[...] += dS[...] · X[...]``, and ``db[o] = Σ dS[:, o]``.

``conv2d_forward_direct``/``conv2d_backward_direct`` are exactly those loops: the reference.
The fast path lays the input patches out as columns (im2col), so the sums become matrix
products through BLAS::

    cols[(c, p, q), (n, i, j)] = X[n, c, i·sh + p − ph, j·sw + q − pw]      (C·KH·KW, N·OH·OW)
    Sᵀ = A₂·cols            with A₂ = A viewed as (O, C·KH·KW)
    dA₂ = dSᵀ·colsᵀ,  dcols = A₂ᵀ·dSᵀ,  dX = col2im(dcols)  (scatter-add back to the pixels)

and is tested against the direct loops.
"""

from typing import Annotated, Any, Literal, Union

import numpy as np
from numba import uint64 as U
from pydantic import BeforeValidator, Field

from .. import _memory
from .. import activations as _activations
from .._jit import jit
from ..initializers import initialize, parse as _parse_init
from ..kernels.linear import gemm_nn, gemm_nt, gemm_tn
from ..registry import register_layer
from ..schema import ActivationSpec, ConfigIssue, Float, InitSpec, Int, Size, SizePair, validated
from .base import Call, Layer, as_input, check_dtype, dims, image_shape, pair, pooled
from .dense import Dense


# --- the reference: the complex dot product and its two copies --------------------------------

# (X: (N, C, H, W), A: (O, C, KH, KW), b: (O,), sh, sw, ph, pw, S: (N, O, OH, OW)) -> None
@jit
def conv2d_forward_direct(X, A, b, sh, sw, ph, pw, S):
    """S[n, o, i, j] = b[o] + Σ_{c,p,q} X[n, c, i·sh+p−ph, j·sw+q−pw]·A[o, c, p, q]."""
    N, C, H, W = X.shape
    O, _, KH, KW = A.shape
    OH, OW = S.shape[2], S.shape[3]
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    S[n, o, i, j] = b[o]
                    for c in range(C):
                        for p in range(KH):
                            y = i * sh + p - ph
                            if y < 0 or y >= H:
                                continue
                            for q in range(KW):
                                x = j * sw + q - pw
                                if x < 0 or x >= W:
                                    continue
                                S[n, o, i, j] += X[n, c, y, x] * A[o, c, p, q]


# (X, A, dS: (N, O, OH, OW), sh, sw, ph, pw, dX: (N, C, H, W), dA: (O, C, KH, KW), db: (O,)) -> None
@jit
def conv2d_backward_direct(X, A, dS, sh, sw, ph, pw, dX, dA, db):
    """The forward loop with its line replaced by dX += dS·A and dA += dS·X; db = Σ dS."""
    N, C, H, W = X.shape
    O, _, KH, KW = A.shape
    OH, OW = dS.shape[2], dS.shape[3]
    dX[...] = 0.0
    dA[...] = 0.0
    db[...] = 0.0
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    g = dS[n, o, i, j]
                    db[o] += g
                    for c in range(C):
                        for p in range(KH):
                            y = i * sh + p - ph
                            if y < 0 or y >= H:
                                continue
                            for q in range(KW):
                                x = j * sw + q - pw
                                if x < 0 or x >= W:
                                    continue
                                dX[n, c, y, x] += g * A[o, c, p, q]
                                dA[o, c, p, q] += g * X[n, c, y, x]


# --- the fast path: im2col + BLAS --------------------------------------------------------------

# (q, s, pad, W, OW) -> (lo, hi): the output columns j whose input column j·s + q − pad is in [0, W)
@jit
def _inside(q, s, pad, W, OW):
    lo = min(OW, max(0, -((q - pad) // s)))   # ⌈(pad − q)/s⌉, within [0, OW]
    hi = min(OW, (W - 1 + pad - q) // s + 1)  # floor division: empty when negative
    return lo, max(lo, hi)


# The fast-path kernels below index flat views with unsigned offsets (``U(...)``): Numba then
# skips its negative-index wrap-around on every access, which otherwise keeps these short
# inner loops from vectorizing (im2col: 3.6× faster, measured on the 32-channel 13×13 case).

# (X: (N, C, H, W), KH, KW, sh, sw, ph, pw, OH, OW, cols: (C·KH·KW, N·OH·OW)) -> None
@jit
def im2col(X, KH, KW, sh, sw, ph, pw, OH, OW, cols):
    """cols[(c, p, q), (n, i, j)] = X[n, c, i·sh + p − ph, j·sw + q − pw] (0 in the padding)."""
    N, C, H, W = X.shape
    ohw = OH * OW
    Xf = X.reshape(-1)
    Cf = cols.reshape(-1)
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = (c * KH + p) * KW + q
                lo, hi = _inside(q, sw, pw, W, OW)
                for n in range(N):
                    for i in range(OH):
                        y = i * sh + p - ph
                        dst = U(row * cols.shape[1] + n * ohw + i * OW)
                        if y < 0 or y >= H:
                            for j in range(OW):
                                Cf[dst + U(j)] = 0.0
                            continue
                        for j in range(lo):
                            Cf[dst + U(j)] = 0.0
                        # X[n, c, y, j·sw + q − pw] for lo ≤ j < hi
                        src = U(((n * C + c) * H + y) * W + lo * sw + q - pw)
                        run = dst + U(lo)
                        if sw == 1:
                            for j in range(hi - lo):
                                Cf[run + U(j)] = Xf[src + U(j)]
                        else:
                            for j in range(hi - lo):
                                Cf[run + U(j)] = Xf[src + U(j * sw)]
                        for j in range(hi, OW):
                            Cf[dst + U(j)] = 0.0


# (dcols: (C·KH·KW, N·OH·OW), KH, KW, sh, sw, ph, pw, OH, OW, dX: (N, C, H, W)) -> None
@jit
def col2im(dcols, KH, KW, sh, sw, ph, pw, OH, OW, dX):
    """dX = 0, then dX[n, c, i·sh + p − ph, j·sw + q − pw] += dcols[(c, p, q), (n, i, j)]."""
    N, C, H, W = dX.shape
    ohw = OH * OW
    dX[...] = 0.0
    Df = dX.reshape(-1)
    Gf = dcols.reshape(-1)
    for n in range(N):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    row = (c * KH + p) * KW + q
                    lo, hi = _inside(q, sw, pw, W, OW)
                    for i in range(OH):
                        y = i * sh + p - ph
                        if y < 0 or y >= H:
                            continue
                        src = U(row * dcols.shape[1] + n * ohw + i * OW + lo)
                        dst = U(((n * C + c) * H + y) * W + lo * sw + q - pw)
                        if sw == 1:
                            for j in range(hi - lo):
                                Df[dst + U(j)] += Gf[src + U(j)]
                        else:
                            for j in range(hi - lo):
                                Df[dst + U(j * sw)] += Gf[src + U(j)]


# (X: (N, C, H, W), A: (O, C, KH, KW), b: (O,), sh, sw, ph, pw,
#  cols: (≥ C·KH·KW·N·OH·OW,), ST: (≥ O·N·OH·OW,), S: (N, O, OH, OW)) -> None
@jit
def conv2d_forward(X, A, b, sh, sw, ph, pw, cols, ST, S):
    """S = conv(X, A) + b through im2col: Sᵀ = A₂·cols, then bias and NCHW order."""
    N, O, OH, OW = S.shape
    C, KH, KW = A.shape[1], A.shape[2], A.shape[3]
    ohw = OH * OW
    k = N * ohw
    cw = cols[:C * KH * KW * k].reshape((C * KH * KW, k))
    st = ST[:O * k].reshape((O, k))
    im2col(X, KH, KW, sh, sw, ph, pw, OH, OW, cw)
    gemm_nn(A.reshape((O, C * KH * KW)), cw, st)
    Sf = S.reshape(-1)
    Tf = ST
    for n in range(N):
        for o in range(O):
            bo = b[o]
            dst = U((n * O + o) * ohw)
            src = U(o * N * ohw + n * ohw)
            for t in range(ohw):
                Sf[dst + U(t)] = Tf[src + U(t)] + bo


# (dS: (N, O, OH, OW), cols (from the forward pass), ST: scratch for dSᵀ,
#  dA: (O, C, KH, KW), db: (O,)) -> None
@jit
def conv2d_backward_params(dS, cols, ST, dA, db):
    """db[o] = Σ dS[:, o];  dA₂ = dSᵀ·colsᵀ (dSᵀ is dS in (O, N·OH·OW) order, written to ST)."""
    N, O, OH, OW = dS.shape
    ohw = OH * OW
    k = N * ohw
    ckk = dA.shape[1] * dA.shape[2] * dA.shape[3]
    Sf = dS.reshape(-1)
    Tf = ST
    for o in range(O):
        db[o] = 0.0
    for n in range(N):
        for o in range(O):
            src = U((n * O + o) * ohw)
            dst = U(o * N * ohw + n * ohw)
            acc = 0.0
            for t in range(ohw):
                g = Sf[src + U(t)]
                Tf[dst + U(t)] = g
                acc += g
            db[o] += acc
    gemm_nt(ST[:O * k].reshape((O, k)), cols[:ckk * k].reshape((ckk, k)), dA.reshape((O, ckk)))


# (dS, ST: dSᵀ from conv2d_backward_params, A, sh, sw, ph, pw, dcols: scratch, dX: (N, C, H, W))
@jit
def conv2d_backward_input(dS, ST, A, sh, sw, ph, pw, dcols, dX):
    """dcols = A₂ᵀ·dSᵀ, then dX = col2im(dcols)."""
    N, O, OH, OW = dS.shape
    C, KH, KW = A.shape[1], A.shape[2], A.shape[3]
    k = N * OH * OW
    dc = dcols[:C * KH * KW * k].reshape((C * KH * KW, k))
    gemm_tn(A.reshape((O, C * KH * KW)), ST[:O * k].reshape((O, k)), dc)
    col2im(dc, KH, KW, sh, sw, ph, pw, OH, OW, dX)


PADDINGS = ("valid", "same", "full")


def _padding_value(value: Any) -> Any:
    if isinstance(value, str) and value not in PADDINGS:
        raise ConfigIssue(f"unknown padding {value!r} (valid: {', '.join(PADDINGS)}, or an integer ≥ 0)")
    if not isinstance(value, str) and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigIssue(f"must be one of {', '.join(PADDINGS)} or an integer ≥ 0 (got {value!r})")
    return value


Padding = Annotated[Union[Literal["valid", "same", "full"], Annotated[Int, Field(ge=0)]],
                    BeforeValidator(_padding_value)]


def padding_sizes(padding, KH, KW):
    """((top, bottom), (left, right)) from "valid" (none), "same" (k − 1 in all, the odd one at the
    bottom/right), "full" (k − 1 on each side) or an integer p ≥ 0 (p on each side)."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return ((KH - 1) // 2, KH - 1 - (KH - 1) // 2), ((KW - 1) // 2, KW - 1 - (KW - 1) // 2)
    if padding == "full":
        return (KH - 1, KH - 1), (KW - 1, KW - 1)
    p = int(padding)
    return (p, p), (p, p)


@register_layer("conv2d")
class Conv2D(Layer):
    """2-D convolution on NCHW batches: ``Y = f(conv(X, A) + b)`` (math.md §1, §6).

    Forward:  S[n, o, i, j] = b[o] + Σ_{c,p,q} X[n, c, i·sh + p − pt, j·sw + q − pl]·A[o, c, p, q]
              (a pixel in the padding reads 0),  Y = f(S).
    Backward: dS = f'(S) ∘ dY,  db[o] = Σ_{n,i,j} dS[n, o, i, j],
              dA[o, c, p, q] = Σ_{n,i,j} dS[n, o, i, j]·X[n, c, i·sh + p − pt, j·sw + q − pl],
              dX[n, c, y, x] = Σ dS[n, o, i, j]·A[o, c, p, q] over every (o, i, j, p, q) that
              read X[n, c, y, x]  — the forward loop with its line replaced by the two
              derivative lines ("complex dot product", see the module docstring).

    Args:
        in_channels (C), out_channels (O): numbers of input and output maps (from a config,
            in_channels is taken from the input).
        kernel_size: KH = KW, or a pair (KH, KW).  stride: s, or a pair (sh, sw); default 1.
        padding: ``"valid"`` (none), ``"same"`` (k − 1 in all: the output keeps ⌈H/s⌉ rows;
            for an even k the extra row goes at the bottom/right), ``"full"`` (k − 1 on each
            side) or an integer p (p zeros on each side).
        activation, init, bias_init, dtype, seed, rng: as :class:`~mlpjit.Dense`; the
            initializers count fan_in = C·KH·KW and fan_out = O·KH·KW.

    Shapes: X (N, C, H, W) → Y (N, O, OH, OW) with OH = ⌊(H + p − KH)/sh⌋ + 1 (p: the padding
    added to the height in all), OW likewise.  A is (O, C, KH, KW), b is (O,).  Kept for
    backward: S (N, O, OH, OW), the im2col columns; dS unless the activation is the identity.

    The kernels run through im2col and BLAS; ``conv2d_forward_direct`` and its backward are
    the plain loops they are tested against.
    """
    row_separable = True

    params = ("A", "b")
    incoming = {"A": "rows"}   # output channel o's incoming weights: A[o] (optimizer.max_norm)
    inferred = {"in_channels": 0}
    image_input = True
    # im2col columns for this many examples at most in prediction mode: predicting a large batch
    # then needs C·KH·KW·OH·OW·PREDICT_CHUNK values of scratch, not that times the batch
    PREDICT_CHUNK = 64

    @validated
    def __init__(self, in_channels: Size, out_channels: Size, kernel_size: SizePair,
                 stride: SizePair = 1, padding: Padding = "valid",
                 activation: ActivationSpec = "identity", init: InitSpec = "xavier_uniform",
                 bias_init: Float = 0.0, dtype=np.float32, seed=None, rng=None):
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = pair("stride", stride)
        self.padding = padding
        self.pads = padding_sizes(padding, *self.kernel_size)
        self.dtype = check_dtype(dtype)
        self.activation = _activations.get(activation)
        self.init = init if isinstance(init, str) else dict(init)
        _parse_init(self.init)
        self.bias_init = float(bias_init)
        rng = np.random.default_rng(seed) if rng is None else rng
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self._A = _memory.empty(shape, self.dtype)
        initialize(self.init, shape, rng, self.dtype, out=self._A)
        self._b = _memory.full(self.out_channels, self.bias_init, self.dtype)
        self.dA = _memory.zeros_like(self._A)
        self.db = _memory.zeros_like(self._b)

    A = Dense.A
    b = Dense.b
    identity = Dense.identity

    def output_shape(self, in_shape):
        C, H, W = image_shape(self, in_shape)
        if C is not None and C != self.in_channels:
            raise ValueError(f"{self!r} expects {self.in_channels} input channels, but its input "
                             f"has {C}")
        OH, OW = pooled(self, "kernel", *self.kernel_size, *self.stride, self.pads, H, W)
        return (self.out_channels, OH, OW)

    @classmethod
    def param_count(cls, config, in_shape):
        O, k = config.get("out_channels"), config.get("kernel_size")
        k = (k, k) if isinstance(k, int) else tuple(k) if isinstance(k, (list, tuple)) else None
        if not isinstance(O, int) or k is None or len(in_shape) != 3:
            return None
        return O * in_shape[0] * k[0] * k[1] + O

    def geometry(self, H, W):
        """(OH, OW, pt, pl): output size and the padding before the first row and column."""
        OH, OW = pooled(self, "kernel", *self.kernel_size, *self.stride, self.pads, H, W)
        return OH, OW, self.pads[0][0], self.pads[1][0]

    def buffers(self, in_shape):
        out = self.output_shape(in_shape)
        return {"S": out} if self.identity else {"S": out, "dS": out}

    def scratch(self, in_shape, batch):
        C, H, W = in_shape
        _, OH, OW = self.output_shape(in_shape)
        KH, KW = self.kernel_size
        k = batch * OH * OW
        return {"cols": (C * KH * KW * k,), "ST": (self.out_channels * k,),
                "dcols": (C * KH * KW * k,)}

    def constants(self):
        (pt, _), (pl, _) = self.pads
        return {"sh": self.stride[0], "sw": self.stride[1], "ph": pt, "pw": pl,
                **self.activation.constants(prefix="act_")}

    def aliases(self, training):
        return {"Y": "S", "dS": "dY"} if self.identity else {}

    def forward_calls(self, training):
        calls = [Call(conv2d_forward, "X", "A", "b", "sh", "sw", "ph", "pw", "cols", "ST", "S")]
        if not self.identity:
            calls.append(self.activation.forward_call("S", "Y", prefix="act_"))
        return calls

    def backward_calls(self, training=True):
        calls = [] if self.identity else [self.activation.backward_call("S", "Y", "dY", "dS", prefix="act_")]
        calls.append(Call(conv2d_backward_params, "dS", "cols", "ST", "dA", "db"))
        calls.append(Call(conv2d_backward_input, "dS", "ST", "A", "sh", "sw", "ph", "pw", "dcols",
                          "dX", input_grad=True))
        return calls

    def onnx_nodes(self, g, x):
        """ONNX: S = Conv(X, A, b) with the same kernel layout (O, C, KH, KW), strides and the
        explicit pads [top, left, bottom, right] of ``padding`` (so "same" puts an even kernel's
        extra row at the bottom, as here), then Y = f(S)."""
        (pt, pb), (pl, pr) = self.pads
        s = g.op("Conv", x, g.param("A", self.A), g.param("b", self.b), out="S",
                 kernel_shape=list(self.kernel_size), strides=list(self.stride), pads=[pt, pl, pb, pr])
        return g.activation(self.activation, s)

    def forward(self, X, training=False):
        X = as_input(X, self.dtype, repr(self))
        N = X.shape[0] if X.ndim == 4 else 0
        if training or N <= self.PREDICT_CHUNK:
            return super().forward(X, training)
        # prediction on a large batch: chunk by chunk, so the columns stay small
        out_shape = (N,) + tuple(self.output_shape(X.shape[1:]))
        if self.__dict__.get("_predicted") is None or self._predicted.shape != out_shape:
            self._predicted = np.empty(out_shape, self.dtype)
        for a in range(0, N, self.PREDICT_CHUNK):
            b = min(a + self.PREDICT_CHUNK, N)
            self._predicted[a:b] = super().forward(X[a:b], False)
        self._ns = None  # (backward needs a forward pass of the whole batch)
        return self._predicted

    def explain(self, in_shape, batch, first=False):
        N = batch
        C, H, W = in_shape
        O, OH, OW = self.output_shape(in_shape)
        KH, KW = self.kernel_size
        ckk, cols = C * KH * KW, N * OH * OW
        f = self.activation.name
        fwd = [f"cols = im2col(X)   {dims((N, C, H, W))} → {dims((ckk, cols))}",
               f"Sᵀ = A₂·cols       {dims((O, ckk))}·{dims((ckk, cols))} → {dims((O, cols))}",
               f"S = Sᵀ (NCHW) + b   {dims((N, O, OH, OW))} + {dims((O,))}",
               "Y = S              (identity)" if self.identity else f"Y = {f}(S)   {dims((N, O, OH, OW))}"]
        bwd = ["dS = dY            (identity)" if self.identity else f"dS = {f}'(S) ∘ dY   {dims((N, O, OH, OW))}",
               f"db = Σ_(n,i,j) dS  {dims((N, O, OH, OW))} → {dims((O,))}",
               f"dA₂ = dSᵀ·colsᵀ     {dims((O, cols))}·{dims((cols, ckk))} → {dims((O, ckk))}"]
        if first:
            bwd.append("dX: not computed (nothing before the first layer needs it)")
        else:
            bwd += [f"dcols = A₂ᵀ·dSᵀ     {dims((ckk, O))}·{dims((O, cols))} → {dims((ckk, cols))}",
                    f"dX = col2im(dcols) {dims((ckk, cols))} → {dims((N, C, H, W))}"]
        macs = O * ckk * cols
        return {"forward": fwd, "backward": bwd, "macs": (macs, macs * (1 if first else 2))}

    def __repr__(self):
        KH, KW = self.kernel_size
        extra = "" if self.stride == (1, 1) else f", stride={self.stride[0] if self.stride[0] == self.stride[1] else self.stride}"
        extra += "" if self.padding == "valid" else f", padding={self.padding!r}"
        act = "" if self.identity else f", activation={self.activation!r}"
        return f"Conv2D({self.in_channels} → {self.out_channels}, {KH}×{KW}{extra}{act})"
