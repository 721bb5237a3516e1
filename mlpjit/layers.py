"""Layers with hand-derived forward and backward passes (math.md §1–§3, §5).

A layer is an object with ``forward(X, training)`` and ``backward(dY)``; it keeps what the
forward pass computed (X, S, Y) for the backward pass and needs to know nothing about the rest
of the network.  Parameters and their gradients are attributes named as in the math (``A``,
``b``, ``dA``, ``db``); ``parameters()`` lists them as ``(name, param, grad)``.

The arrays a layer returns from ``forward``/``backward`` are its own buffers, reused by the next
call with the same batch size: copy them to keep them (``Sequential.predict`` returns copies).
"""

import numpy as np

from . import activations as _activations
from ._registry import lookup
from .initializers import initialize, parse as _parse_init
from .kernels import activations as KA
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
        """Shape of one example's output given one example's input shape."""
        return tuple(input_shape)

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
        self._A = initialize(self.init, (self.in_features, self.out_features), rng, self.dtype)
        self._b = np.full(self.out_features, self.bias_init, dtype=self.dtype)
        self.dA = np.zeros_like(self._A)
        self.db = np.zeros_like(self._b)
        self._identity = type(self.activation) is _activations.Identity
        self._n = -1
        self._X = None

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
            self.S = np.empty((n, m), self.dtype)
            self.Y = self.S if self._identity else np.empty((n, m), self.dtype)
            self.dS = np.empty((n, m), self.dtype)
            self.dX = np.empty((n, k), self.dtype)
            self._n = n

    def forward(self, X, training=False):
        X = _as_input(X, self.dtype, repr(self))
        if X.ndim != 2 or X.shape[1] != self.in_features:
            raise ValueError(f"{self!r} expects input of shape (batch, {self.in_features}), "
                             f"got {X.shape}")
        self._buffers(X.shape[0])
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
        KL.dense_backward_params(self._X, dS, self.dA, self.db)
        if not need_dX:
            return None
        KL.dense_backward_input(dS, self._A, self.dX)
        return self.dX

    def parameters(self):
        return [("A", self._A, self.dA), ("b", self._b, self.db)]

    def output_shape(self, input_shape):
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


LAYERS = {cls.type_name: cls for cls in (Dense, Activation, Softmax, Dropout)}


def layer_from_config(config, dtype=np.float32, seed=None):
    """Build a layer from ``get_config()`` output (``{"type": "dense", ...}``)."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"layer config must be a dict with a 'type', got {config!r}")
    return lookup(LAYERS, "layer type", config["type"]).from_config(config, dtype=dtype, seed=seed)
