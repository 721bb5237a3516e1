"""Layers with hand-derived forward and backward passes (math.md §1–§3, §5).

A layer is an object with ``forward(X, training)`` and ``backward(dY)``; it keeps what the
forward pass computed (X, S, Y) for the backward pass and needs to know nothing about the rest
of the network.  Parameters and their gradients are attributes named as in the math (``A``,
``b``, ``dA``, ``db``); ``parameters()`` lists them as ``(name, param, grad)``.

The arrays a layer returns from ``forward``/``backward`` are its own buffers, reused by the next
call with the same batch size: copy them to keep them (``Sequential.predict`` returns copies).
"""

import numpy as np

from . import _memory
from . import activations as _activations
from ._registry import lookup
from .initializers import initialize, parse as _parse_init
from .kernels import activations as KA
from .kernels import conv as KC
from .kernels import linear as KL
from .kernels import misc as KM
from .kernels import softmax as KS

DTYPES = {"float32": np.float32, "float64": np.float64}


def _check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _float_dtype(X):
    """X's dtype if it is one the kernels are compiled for (float32/float64), else float64."""
    if isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64):
        return X.dtype
    return np.dtype(np.float64)


def _as_input(X, dtype, what):
    """X as a C-contiguous array of ``dtype`` (a copy only when it must convert)."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {X.dtype}")
    if X.dtype != dtype or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=dtype)
    return X


class Layer:
    """Base class of all layers.

    Subclasses implement ``forward(X, training=False)`` and ``backward(dY)`` (returning dX),
    and, if they have parameters, ``parameters()``.  ``get_config()`` describes structure
    (a dict with ``"type"``) so that ``Layer.from_config`` can rebuild it.
    """

    type_name = None

    def forward(self, X, training=False):
        raise NotImplementedError

    def backward(self, dY, need_dX=True):
        raise NotImplementedError

    def parameters(self):
        """``[(name, param, grad), ...]`` in a stable order; empty for layers without parameters."""
        return []

    def output_shape(self, input_shape):
        """Shape of one example's output given one example's input shape (sizes not yet known
        are None; ``input_shape`` None means nothing is known).  Raises ValueError, naming the
        layer, when the layer cannot take that input."""
        return None if input_shape is None else tuple(input_shape)

    def get_config(self):
        return {"type": self.type_name}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        config = dict(config)
        config.pop("type", None)
        return cls(**config)

    def astype(self, dtype):
        """A copy of this layer computing in ``dtype`` (parameters converted)."""
        new = layer_from_config(self.get_config(), dtype=dtype)
        for (_, p_new, _), (_, p_old, _) in zip(new.parameters(), self.parameters()):
            p_new[...] = p_old
        return new

    def freeze_randomness(self, frozen=True):
        """Reuse the last random draw (dropout mask) on later forward passes, for gradient checks."""

    def _need_forward(self):
        if getattr(self, "_X", None) is None:
            raise RuntimeError(f"{self!r}: backward() called before forward(training=True)")


def sparse_scratch(bs, k, dtype):
    """Scratch for skipping the zeros of up to bs input rows of width k (``Dense`` and the
    compiled loop): idx (bs, k) int32, val (bs, k), ints (cnt, ptr, rows: bs + k + 1 + bs·k
    int32), vals (bs·k); ``kernels.linear.sparse_views`` cuts it for a batch."""
    return (np.zeros((bs, k), np.int32), np.zeros((bs, k), dtype),
            np.zeros(bs + k + 1 + bs * k, np.int32), np.zeros(bs * k, dtype))


class Dense(Layer):
    """Fully connected layer ``Y = f(X·A + b)``.

    Forward:  M = X·A,  S = M + b,  Y = f(S).
    Backward: dS = f'(S) ∘ dY,  dM = dS,  db = Σ_rows dS,  dA = Xᵀ·dM,  dX = dM·Aᵀ.

    Args:
        in_features (n), out_features (m): sizes; A is (n, m), b is (m,).
        activation: name (``"relu"``), dict (``{"name": "elu", "alpha": 0.5}``) or
            :class:`~mlpjit.activations.Activation`; default identity.
        init: initializer of A (name or dict, see :mod:`mlpjit.initializers`); b starts at
            ``bias_init`` (0).
        dtype: float32 (default, for training) or float64 (for gradient checks).
        seed: seed of the generator that draws A (or pass ``rng``, a numpy Generator).

    Shapes: X (batch, n) → Y (batch, m).  After ``backward``: ``dA`` (n, m), ``db`` (m,).

    An input with few nonzeros (fewer than 22%, e.g. MNIST pixels at 19%) takes the
    sparse-input products: X·A and Xᵀ·dS skip X's zeros (the same sums in another order; see
    ``kernels/linear.py``).  A, b, dA and db start on 64-byte boundaries.

    >>> import numpy as np, mlpjit
    >>> layer = mlpjit.Dense(3, 4, activation="tanh", dtype=np.float64, seed=0)
    >>> layer.forward(np.ones((2, 3))).shape
    (2, 4)
    """

    type_name = "dense"

    def __init__(self, in_features, out_features, activation="identity", init="xavier_uniform",
                 dtype=np.float32, seed=None, bias_init=0.0, rng=None):
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        self.dtype = _check_dtype(dtype)
        self.activation = _activations.get(activation)
        self.init = init if isinstance(init, str) else dict(init)
        _parse_init(self.init)
        self.bias_init = float(bias_init)
        rng = np.random.default_rng(seed) if rng is None else rng
        self._A = _memory.copy(initialize(self.init, (self.in_features, self.out_features), rng,
                                          self.dtype))
        self._b = _memory.full(self.out_features, self.bias_init, self.dtype)
        self.dA = _memory.zeros_like(self._A)
        self.db = _memory.zeros_like(self._b)
        self._identity = type(self.activation) is _activations.Identity
        self._n = -1
        self._X = None
        self._sparse = False  # whether the last forward pass skipped X's zeros (see backward)
        self._sparse_n = -1

    # A and b stay C-contiguous arrays of the layer's dtype: assignment copies into them.
    @property
    def A(self):
        return self._A

    @A.setter
    def A(self, value):
        self._assign("A", self._A, value)

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._assign("b", self._b, value)

    def _assign(self, name, target, value):
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
        target[...] = value

    def _buffers(self, n):
        if n != self._n:
            m, k = self.out_features, self.in_features
            self.S = _memory.empty((n, m), self.dtype)
            self.Y = self.S if self._identity else _memory.empty((n, m), self.dtype)
            self.dS = _memory.empty((n, m), self.dtype)
            self.dX = _memory.empty((n, k), self.dtype)
            self._n = n

    def _sparse_buffers(self, n):
        if n != self._sparse_n:
            self._sparse_scratch = sparse_scratch(n, self.in_features, self.dtype)
            self._sparse_n = n

    def forward(self, X, training=False):
        X = _as_input(X, self.dtype, repr(self))
        if X.ndim != 2 or X.shape[1] != self.in_features:
            raise ValueError(f"{self!r} expects input of shape (batch, {self.in_features}), "
                             f"got {X.shape}")
        self._buffers(X.shape[0])
        self._sparse = bool(KL.sparse_pays(X, self.out_features))
        if self._sparse:  # mostly zeros (e.g. MNIST pixels): visit only the nonzeros
            self._sparse_buffers(X.shape[0])
            idx, val, cnt, _, _, _ = KL.sparse_views(*self._sparse_scratch, X.shape[0])
            KL.sparse_rows(X, idx, val, cnt)
            KL.sparse_dense_forward(idx, val, cnt, self._A, self._b, self.S)
        else:
            KL.dense_forward(X, self._A, self._b, self.S)
        if not self._identity:
            self.activation.forward(self.S, self.Y)
        self._X = X
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = _as_input(dY, self.dtype, repr(self))
        if dY.shape != self.S.shape:
            raise ValueError(f"{self!r}: dY must have shape {self.S.shape}, got {dY.shape}")
        if self._identity:
            dS = dY
        else:
            self.activation.backward(self.S, self.Y, dY, self.dS)
            dS = self.dS
        if self._sparse:
            idx, val, cnt, ptr, rows, vals = KL.sparse_views(*self._sparse_scratch, dS.shape[0])
            KL.sparse_cols(idx, val, cnt, ptr, rows, vals)
            KL.sparse_dense_backward_params(ptr, rows, vals, dS, self.dA, self.db)
        else:
            KL.dense_backward_params(self._X, dS, self.dA, self.db)
        if not need_dX:
            return None
        KL.dense_backward_input(dS, self._A, self.dX)
        return self.dX

    def parameters(self):
        return [("A", self._A, self.dA), ("b", self._b, self.db)]

    def output_shape(self, input_shape):
        if input_shape is not None:
            if len(input_shape) != 1:
                raise ValueError(f"{self!r} needs flat rows, but gets {_fmt_shape(input_shape)}; "
                                 f"put a flatten layer before it")
            if input_shape[0] is not None and input_shape[0] != self.in_features:
                raise ValueError(f"{self!r} expects {self.in_features} inputs but gets "
                                 f"{input_shape[0]}")
        return (self.out_features,)

    def get_config(self):
        return {"type": "dense", "in_features": self.in_features, "units": self.out_features,
                "activation": self.activation.get_config(), "init": self.init,
                "bias_init": self.bias_init}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        c = dict(config)
        c.pop("type", None)
        return cls(c.pop("in_features"), c.pop("units"), dtype=dtype, seed=seed, **c)

    def __repr__(self):
        act = "" if self._identity else f", activation={self.activation!r}"
        return f"Dense({self.in_features} → {self.out_features}{act})"


class Activation(Layer):
    """An activation function as a layer of its own.

    Forward: Y = f(X).  Backward: dX = f'(X) ∘ dY.  Shapes: any; Y and dX have X's shape.
    """

    type_name = "activation"

    def __init__(self, activation, **params):
        self.activation = _activations.get(activation, **params)
        self._X = None
        self._shape = None

    def forward(self, X, training=False):
        X = _as_input(X, _float_dtype(X), repr(self))
        if X.shape != self._shape or X.dtype != self.Y.dtype:
            self.Y = np.empty_like(X)
            self.dX = np.empty_like(X)
            self._shape = X.shape
        self.activation.forward(X, self.Y)
        self._X = X
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = _as_input(dY, self._X.dtype, repr(self))
        if dY.shape != self._X.shape:
            raise ValueError(f"{self!r}: dY must have shape {self._X.shape}, got {dY.shape}")
        self.activation.backward(self._X, self.Y, dY, self.dX)
        return self.dX

    def get_config(self):
        return {"type": "activation", "activation": self.activation.get_config()}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        return cls(config["activation"])

    def __repr__(self):
        return f"Activation({self.activation!r})"


class Softmax(Layer):
    """Softmax over the last axis, as a layer.

    Forward:  Yᵢ = softmax(Xᵢ) = e^(Xᵢ − max Xᵢ) / Σⱼ e^(Xᵢⱼ − max Xᵢ), per row i.
    Backward: dXᵢ = Yᵢ ∘ (dYᵢ − ⟨dYᵢ, Yᵢ⟩)  (Jacobian ∂yⱼ/∂xₗ = yⱼ(𝟙[j = l] − yₗ), never built).
    Shapes: (batch, k) → (batch, k).

    To train a classifier, prefer an identity output with the ``cross_entropy`` loss, which
    fuses softmax and log-likelihood into the stable gradient (p − y)/N.
    """

    type_name = "softmax"

    def __init__(self):
        self._X = None
        self._shape = None

    def forward(self, X, training=False):
        X = _as_input(X, _float_dtype(X), repr(self))
        if X.ndim != 2 or X.shape[1] == 0:
            raise ValueError(f"Softmax expects a 2-D input (batch, k ≥ 1), got shape {X.shape}")
        if X.shape != self._shape or X.dtype != self.Y.dtype:
            self.Y = np.empty_like(X)
            self.dX = np.empty_like(X)
            self._shape = X.shape
        KS.softmax_forward(X, self.Y)
        self._X = X
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = _as_input(dY, self.Y.dtype, repr(self))
        if dY.shape != self.Y.shape:
            raise ValueError(f"Softmax: dY must have shape {self.Y.shape}, got {dY.shape}")
        KS.softmax_backward(self.Y, dY, self.dX)
        return self.dX

    def output_shape(self, input_shape):
        if input_shape is not None and len(input_shape) != 1:
            raise ValueError(f"Softmax needs flat rows, but gets {_fmt_shape(input_shape)}")
        return input_shape

    def __repr__(self):
        return "Softmax()"


class Dropout(Layer):
    """Inverted dropout with probability ``p``.

    Training:   mask = [U ≥ p]/(1 − p) with U ~ U[0, 1) drawn per element; Y = X ∘ mask.
    Prediction: Y = X (the identity; no scaling needed, thanks to the 1/(1 − p) in training).
    Backward:   dX = dY ∘ mask (the same mask and scale).
    Shapes: any; Y has X's shape.  Masks come from ``numpy.random.default_rng(seed)``; the
    generator's state is ``rng_state`` (saved in checkpoints for an exact resume).
    """

    type_name = "dropout"

    def __init__(self, p, seed=None):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self._frozen = False
        self._shape = None
        self._X = None
        self._active = False

    def forward(self, X, training=False):
        X = _as_input(X, _float_dtype(X), repr(self))
        self._X = X
        self._active = training and self.p > 0.0
        if not self._active:
            return X
        if X.shape != self._shape or X.dtype != self.Y.dtype:
            self.U = np.empty(X.size, np.float64)  # float64 draws, as the compiled loop makes
            self.mask = np.empty_like(X)
            self.Y = np.empty_like(X)
            self.dX = np.empty_like(X)
            self._shape = X.shape
            self._frozen_valid = False
        if not (self._frozen and self._frozen_valid):
            self.rng.random(out=self.U)
            self._frozen_valid = True
        KM.dropout_forward(X.reshape(-1), self.U, self.p, 1.0 / (1.0 - self.p),
                           self.Y.reshape(-1), self.mask.reshape(-1))
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        if not self._active:
            return dY
        dY = _as_input(dY, self.Y.dtype, repr(self))
        if dY.shape != self.Y.shape:
            raise ValueError(f"{self!r}: dY must have shape {self.Y.shape}, got {dY.shape}")
        KM.mul_into(dY.reshape(-1), self.mask.reshape(-1), self.dX.reshape(-1))
        return self.dX

    def freeze_randomness(self, frozen=True):
        self._frozen = frozen

    @property
    def rng_state(self):
        return self.rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state):
        self.rng.bit_generator.state = state

    def get_config(self):
        return {"type": "dropout", "p": self.p}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        return cls(config["p"], seed=seed)

    def __repr__(self):
        return f"Dropout(p={self.p:g})"


# --- shapes ------------------------------------------------------------------------------------
# ``output_shape(input_shape)`` maps one example's shape to the next; unknown sizes are None
# (a Sequential checks its chain with an unknown input, the trainer again with the data's shape).

def _pair(name, value):
    """(a, b) from an int or a pair of ints, each ≥ 1."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
        return (_check_size(name, value[0]), _check_size(name, value[1]))
    v = _check_size(name, value)
    return (v, v)


PADDINGS = ("valid", "same", "full")


def _padding(padding, KH, KW):
    """((top, bottom), (left, right)) from "valid" (none), "same" (k − 1 in all, the odd one at the
    bottom/right), "full" (k − 1 on each side) or an integer p ≥ 0 (p on each side)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return ((KH - 1) // 2, KH - 1 - (KH - 1) // 2), ((KW - 1) // 2, KW - 1 - (KW - 1) // 2)
        if padding == "full":
            return (KH - 1, KH - 1), (KW - 1, KW - 1)
        raise ValueError(f"unknown padding '{padding}' (valid: {', '.join(PADDINGS)}, or an integer ≥ 0)")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)} or an integer ≥ 0, got {padding!r}")
    p = int(padding)
    return (p, p), (p, p)


def _image_shape(layer, input_shape):
    """(C, H, W) of one example for a layer that needs images; a clear error otherwise."""
    if input_shape is None:
        return None, None, None
    if len(input_shape) != 3:
        raise ValueError(f"{layer!r} needs images (channels, height, width) per example, but gets "
                         f"{_fmt_shape(input_shape)}")
    return input_shape


def _fmt_shape(shape):
    if len(shape) == 1:
        return f"flat rows of {shape[0] if shape[0] is not None else '?'} features"
    return "shape (" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _pooled(layer, what, KH, KW, sh, sw, pads, H, W):
    """(OH, OW) of a window sliding over the padded input, or a clear error."""
    if H is None or W is None:
        return None, None
    Hp, Wp = H + sum(pads[0]), W + sum(pads[1])
    if KH > Hp or KW > Wp:
        padded = "" if Hp == H and Wp == W else "padded "
        raise ValueError(f"{layer!r}: the {what} {KH}×{KW} is larger than the {padded}input {Hp}×{Wp}")
    return (Hp - KH) // sh + 1, (Wp - KW) // sw + 1


def _check_4d(layer, X, C):
    if X.ndim != 4 or X.shape[1] != C:
        raise ValueError(f"{layer!r} expects input of shape (batch, {C}, height, width), got {X.shape}")


class Conv2D(Layer):
    """2-D convolution on NCHW batches: ``Y = f(conv(X, A) + b)`` (math.md §1, §6).

    Forward:  S[n, o, i, j] = b[o] + Σ_{c,p,q} X[n, c, i·sh + p − pt, j·sw + q − pl]·A[o, c, p, q]
              (a pixel in the padding reads 0),  Y = f(S).
    Backward: dS = f'(S) ∘ dY,  db[o] = Σ_{n,i,j} dS[n, o, i, j],
              dA[o, c, p, q] = Σ_{n,i,j} dS[n, o, i, j]·X[n, c, i·sh + p − pt, j·sw + q − pl],
              dX[n, c, y, x] = Σ dS[n, o, i, j]·A[o, c, p, q] over every (o, i, j, p, q) that
              read X[n, c, y, x]  — the forward loop with its line replaced by the two
              derivative lines ("complex dot product", see :mod:`mlpjit.kernels.conv`).

    Args:
        in_channels (C), out_channels (O): numbers of input and output maps.
        kernel_size: KH = KW, or a pair (KH, KW).  stride: s, or a pair (sh, sw); default 1.
        padding: ``"valid"`` (none), ``"same"`` (k − 1 in all: the output keeps ⌈H/s⌉ rows;
            for an even k the extra row goes at the bottom/right), ``"full"`` (k − 1 on each
            side) or an integer p (p zeros on each side).
        activation, init, bias_init, dtype, seed, rng: as :class:`Dense`; the initializers
            count fan_in = C·KH·KW and fan_out = O·KH·KW.

    Shapes: X (N, C, H, W) → Y (N, O, OH, OW) with OH = ⌊(H + p − KH)/sh⌋ + 1 (p: the padding
    added to the height in all), OW likewise.  A is (O, C, KH, KW), b is (O,).

    The kernels run through im2col and BLAS; :func:`~mlpjit.kernels.conv.conv2d_forward_direct`
    and its backward are the plain loops they are tested against.
    """

    type_name = "conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding="valid",
                 activation="identity", init="xavier_uniform", dtype=np.float32, seed=None,
                 bias_init=0.0, rng=None):
        self.in_channels = _check_size("in_channels", in_channels)
        self.out_channels = _check_size("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = padding if isinstance(padding, str) else int(padding) if not isinstance(padding, bool) else padding
        self._pads = _padding(padding, *self.kernel_size)
        self.dtype = _check_dtype(dtype)
        self.activation = _activations.get(activation)
        self.init = init if isinstance(init, str) else dict(init)
        _parse_init(self.init)
        self.bias_init = float(bias_init)
        rng = np.random.default_rng(seed) if rng is None else rng
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self._A = initialize(self.init, shape, rng, self.dtype)
        self._b = np.full(self.out_channels, self.bias_init, dtype=self.dtype)
        self.dA = np.zeros_like(self._A)
        self.db = np.zeros_like(self._b)
        self._identity = type(self.activation) is _activations.Identity
        self._key = None
        self._X = None

    A = Dense.A
    b = Dense.b
    _assign = Dense._assign

    @property
    def A2(self):
        """A viewed as the (O, C·KH·KW) matrix the im2col products use (shares memory)."""
        return self._A.reshape(self.out_channels, -1)

    def output_shape(self, input_shape):
        C, H, W = _image_shape(self, input_shape)
        if C is not None and C != self.in_channels:
            raise ValueError(f"{self!r} expects {self.in_channels} input channels, but its input "
                             f"has {C}")
        OH, OW = _pooled(self, "kernel", *self.kernel_size, *self.stride, self._pads, H, W)
        return (self.out_channels, OH, OW)

    def geometry(self, H, W):
        """(OH, OW, pt, pl): output size and the padding before the first row and column."""
        OH, OW = _pooled(self, "kernel", *self.kernel_size, *self.stride, self._pads, H, W)
        return OH, OW, self._pads[0][0], self._pads[1][0]

    # im2col columns for this many examples at most in prediction mode: predicting a large
    # batch then needs C·KH·KW·OH·OW·PREDICT_CHUNK values of scratch, not that times the batch
    PREDICT_CHUNK = 64

    def _buffers(self, N, H, W, training):
        key = (N, H, W, training)
        if key != self._key:
            O, C = self.out_channels, self.in_channels
            KH, KW = self.kernel_size
            OH, OW, _, _ = self.geometry(H, W)
            if self._key is None or self._key[:3] != (N, H, W):
                self.S = np.empty((N, O, OH, OW), self.dtype)
                self.Y = self.S if self._identity else np.empty_like(self.S)
                self._grad_buffers = None
            n = N if training else min(N, self.PREDICT_CHUNK)
            self._cols = np.empty(C * KH * KW * n * OH * OW, self.dtype)
            self._ST = np.empty(O * n * OH * OW, self.dtype)   # Sᵀ, then dSᵀ
            self._key = key

    def forward(self, X, training=False):
        X = _as_input(X, self.dtype, repr(self))
        _check_4d(self, X, self.in_channels)
        N, _, H, W = X.shape
        self._buffers(N, H, W, training)
        KH, KW = self.kernel_size
        sh, sw = self.stride
        OH, OW, pt, pl = self.geometry(H, W)
        step = N if training else self.PREDICT_CHUNK  # (backward needs all columns at once)
        for a in range(0, N, step):
            b = min(a + step, N)
            k = (b - a) * OH * OW
            # contiguous (C·KH·KW, k) and (O, k) views of the scratch (BLAS writes need them)
            self.cols = self._cols[:self.in_channels * KH * KW * k].reshape(-1, k)
            self.ST = self._ST[:self.out_channels * k].reshape(-1, k)
            KC.conv2d_forward(X[a:b], self.A2, self._b, KH, KW, sh, sw, pt, pl, self.cols,
                              self.ST, self.S[a:b])
        if not self._identity:
            self.activation.forward(self.S, self.Y)
        self._X = X
        self._trained_forward = training
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        if not self._trained_forward and self._X.shape[0] > self.PREDICT_CHUNK:
            self.forward(self._X, training=True)  # the columns of the whole batch, for dA
        dY = _as_input(dY, self.dtype, repr(self))
        if dY.shape != self.S.shape:
            raise ValueError(f"{self!r}: dY must have shape {self.S.shape}, got {dY.shape}")
        if self._grad_buffers is None:  # allocated at the first backward: prediction needs none
            self._grad_buffers = (np.empty_like(self.S), np.empty_like(self._X),
                                  np.empty_like(self.cols))  # (training: cols covers the batch)
        self.dS, self.dX, dcols = self._grad_buffers
        if self._identity:
            dS = dY
        else:
            self.activation.backward(self.S, self.Y, dY, self.dS)
            dS = self.dS
        KC.conv2d_backward_params(dS, self.cols, self.ST, self.dA.reshape(self.out_channels, -1),
                                  self.db)
        if not need_dX:
            return None
        KH, KW = self.kernel_size
        sh, sw = self.stride
        OH, OW, pt, pl = self.geometry(*self._X.shape[2:])
        KC.conv2d_backward_input(self.ST, self.A2, KH, KW, sh, sw, pt, pl, OH, OW, dcols, self.dX)
        return self.dX

    def parameters(self):
        return [("A", self._A, self.dA), ("b", self._b, self.db)]

    def get_config(self):
        return {"type": "conv2d", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": self.padding,
                "activation": self.activation.get_config(), "init": self.init,
                "bias_init": self.bias_init}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        c = dict(config)
        c.pop("type", None)
        return cls(c.pop("in_channels"), c.pop("out_channels"), c.pop("kernel_size"),
                   dtype=dtype, seed=seed, **c)

    def __repr__(self):
        KH, KW = self.kernel_size
        extra = "" if self.stride == (1, 1) else f", stride={self.stride[0] if self.stride[0] == self.stride[1] else self.stride}"
        extra += "" if self.padding == "valid" else f", padding={self.padding!r}"
        act = "" if self._identity else f", activation={self.activation!r}"
        return f"Conv2D({self.in_channels} → {self.out_channels}, {KH}×{KW}{extra}{act})"


class _Pool2D(Layer):
    """Shared parts of the pooling layers: a size×size window moved by ``stride`` (default: size,
    windows side by side), no padding; OH = ⌊(H − KH)/sh⌋ + 1."""

    def __init__(self, size, stride=None):
        self.size = _pair("size", size)
        self.stride = self.size if stride is None else _pair("stride", stride)
        self._key = None
        self._X = None

    def output_shape(self, input_shape):
        C, H, W = _image_shape(self, input_shape)
        OH, OW = _pooled(self, "window", *self.size, *self.stride, ((0, 0), (0, 0)), H, W)
        return (C, OH, OW)

    def _prepare(self, X):
        X = _as_input(X, _float_dtype(X), repr(self))
        if X.ndim != 4:
            raise ValueError(f"{self!r} expects input of shape (batch, channels, height, width), "
                             f"got {X.shape}")
        N, C, H, W = X.shape
        if (X.shape, X.dtype) != self._key:
            OH, OW = _pooled(self, "window", *self.size, *self.stride, ((0, 0), (0, 0)), H, W)
            self.Y = np.empty((N, C, OH, OW), X.dtype)
            self.dX = None  # allocated by the first backward: prediction needs none
            self._key = (X.shape, X.dtype)
        self._X = X
        return X

    def _check_dY(self, dY):
        self._need_forward()
        dY = _as_input(dY, self.Y.dtype, repr(self))
        if dY.shape != self.Y.shape:
            raise ValueError(f"{self!r}: dY must have shape {self.Y.shape}, got {dY.shape}")
        if self.dX is None:
            self.dX = np.empty_like(self._X)
        return dY

    def get_config(self):
        return {"type": self.type_name, "size": list(self.size), "stride": list(self.stride)}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        return cls(config["size"], config.get("stride"))

    def __repr__(self):
        KH, KW = self.size
        extra = "" if self.stride == self.size else f", stride={self.stride[0] if self.stride[0] == self.stride[1] else self.stride}"
        return f"{type(self).__name__}({KH}×{KW}{extra})"


class MaxPool2D(_Pool2D):
    """Max pooling over KH×KW windows, per example and channel.

    Forward:  Y[n, c, i, j] = max_{p,q} X[n, c, i·sh + p, j·sw + q]; a NaN in a window wins,
              so it propagates.
    Backward: dX[n, c, winner] += dY[n, c, i, j]; every other input of the window gets 0
              (where windows overlap, an input that wins several receives the sum).  The
              winner is the first input equal to Y in row-major order inside the window
              (smallest p, then smallest q): ties go to the first maximum.
    Shapes: (N, C, H, W) → (N, C, OH, OW), OH = ⌊(H − KH)/sh⌋ + 1.
    """

    type_name = "maxpool2d"

    def forward(self, X, training=False):
        X = self._prepare(X)
        KC.maxpool2d_forward(X, *self.size, *self.stride, self.Y)
        return self.Y

    def backward(self, dY, need_dX=True):
        dY = self._check_dY(dY)
        KC.maxpool2d_backward(self._X, self.Y, dY, *self.size, *self.stride, self.dX)
        return self.dX


class AvgPool2D(_Pool2D):
    """Average pooling over KH×KW windows, per example and channel.

    Forward:  Y[n, c, i, j] = (1/(KH·KW)) Σ_{p,q} X[n, c, i·sh + p, j·sw + q].
    Backward: dX[n, c, i·sh + p, j·sw + q] += dY[n, c, i, j]/(KH·KW) for every p, q.
    Shapes: (N, C, H, W) → (N, C, OH, OW), OH = ⌊(H − KH)/sh⌋ + 1.
    """

    type_name = "avgpool2d"

    def forward(self, X, training=False):
        X = self._prepare(X)
        KC.avgpool2d_forward(X, *self.size, *self.stride, self.Y)
        return self.Y

    def backward(self, dY, need_dX=True):
        dY = self._check_dY(dY)
        KC.avgpool2d_backward(dY, *self.size, *self.stride, self.dX)
        return self.dX


class Flatten(Layer):
    """Each example's (C, H, W) as one row of C·H·W values (row-major), for a dense layer.

    Forward: Y = X.reshape(N, C·H·W).  Backward: dX = dY.reshape(N, C, H, W).  Both are views.
    """

    type_name = "flatten"

    def __init__(self):
        self._X = None

    def output_shape(self, input_shape):
        if input_shape is None:
            return (None,)
        if any(d is None for d in input_shape):
            return (None,)
        return (int(np.prod(input_shape)),)

    def forward(self, X, training=False):
        X = _as_input(X, _float_dtype(X), repr(self))
        if X.ndim < 2:
            raise ValueError(f"Flatten expects a batch (N, ...), got shape {X.shape}")
        self._X = X
        return X.reshape(X.shape[0], -1)

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = _as_input(dY, self._X.dtype, repr(self))
        if dY.size != self._X.size:
            raise ValueError(f"Flatten: dY must have {self._X.size} values, got shape {dY.shape}")
        return dY.reshape(self._X.shape)

    def __repr__(self):
        return "Flatten()"


class Residual(Layer):
    """A residual block: ``Y = X + F(X)``, with F the block's layers applied in order.

    Forward:  Y = X + F(X).
    Backward: X is used twice (by F and by the skip connection), so its derivative is the sum
              of both: dX = dY + dF/dX·dY, where the second term is F's backward pass on dY.
    Shapes: F must keep the shape: X and F(X) are both (N, ...) of the same size.
    Parameters are named ``"<inner index>.A"`` etc. (``"3.0.A"`` inside a Sequential).
    """

    type_name = "residual"

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("Residual needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"residual layer {i} is not an mlpjit Layer: {layer!r}")
        self.layers = layers
        self._X = None
        self._key = None
        self.output_shape(None)

    def output_shape(self, input_shape):
        shape = input_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except ValueError as e:
                raise ValueError(f"residual layer {i}: {e}") from None
        if input_shape is not None and not _same_shape(input_shape, shape):
            raise ValueError(f"the residual block maps {_fmt_shape(input_shape)} to {_fmt_shape(shape)}; "
                             f"y = x + F(x) needs F to keep the shape")
        return input_shape if input_shape is not None else shape

    def forward(self, X, training=False):
        X = _as_input(X, _float_dtype(X), repr(self))
        F = X
        for layer in self.layers:
            F = layer.forward(F, training=training)
        if F.shape != X.shape:
            raise ValueError(f"the residual block maps shape {X.shape[1:]} to {F.shape[1:]}; "
                             f"y = x + F(x) needs F to keep the shape")
        if (X.shape, X.dtype) != self._key:
            self.Y = np.empty_like(X)
            self.dX = np.empty_like(X)
            self._key = (X.shape, X.dtype)
        KC.add_into(X.reshape(-1), np.ascontiguousarray(F, X.dtype).reshape(-1), self.Y.reshape(-1))
        self._X = X
        return self.Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = _as_input(dY, self._X.dtype, repr(self))
        if dY.shape != self._X.shape:
            raise ValueError(f"{self!r}: dY must have shape {self._X.shape}, got {dY.shape}")
        dF = dY
        for layer in reversed(self.layers):
            dF = layer.backward(dF, need_dX=True)
        KC.add_into(dY.reshape(-1), np.ascontiguousarray(dF, self._X.dtype).reshape(-1),
                    self.dX.reshape(-1))
        return self.dX

    def parameters(self):
        return [(f"{i}.{name}", p, g) for i, layer in enumerate(self.layers)
                for name, p, g in layer.parameters()]

    def freeze_randomness(self, frozen=True):
        for layer in self.layers:
            layer.freeze_randomness(frozen)

    def get_config(self):
        return {"type": "residual", "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        specs = config["layers"]
        if not isinstance(specs, list):
            raise ValueError("residual 'layers' must be a list")
        rngs = (np.random.default_rng(seed).spawn(len(specs)) if seed is not None
                else [None] * len(specs))
        return cls([layer_from_config(c, dtype=dtype, seed=r) for c, r in zip(specs, rngs)])

    def astype(self, dtype):
        new = Residual([layer.astype(dtype) for layer in self.layers])
        return new

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Residual([{inner}])"


def _same_shape(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


LAYERS = {cls.type_name: cls for cls in (Dense, Activation, Softmax, Dropout, Conv2D, MaxPool2D,
                                          AvgPool2D, Flatten, Residual)}


def layer_from_config(config, dtype=np.float32, seed=None):
    """Build a layer from ``get_config()`` output (``{"type": "dense", ...}``)."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"layer config must be a dict with a 'type', got {config!r}")
    return lookup(LAYERS, "layer type", config["type"]).from_config(config, dtype=dtype, seed=seed)
