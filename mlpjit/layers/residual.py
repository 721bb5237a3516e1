"""A residual block ``Y = X + F(X)``, F being the block's layers applied in order (math.md §5).

Forward:  Y = X + F(X).
Backward: X is used twice (by F and by the skip connection), so its derivative is the sum of
          both: dX = dY + dF/dX·dY, the second term being F's backward pass on dY.
Shapes:   F must keep the shape: X and F(X) are both (N, ...) of the same size.
Parameters are named ``"<inner index>.A"`` etc. (``"3.0.A"`` inside a Sequential).

In the compiled step the block is three kinds of node: its start (Y is X; backward adds the
skip's derivative, dX = dY + dY_end), F's layers, and its end (Y = F(X) + X; dX is dY, sent
into F).
"""

from typing import Annotated

import numpy as np
from pydantic import Field

from ..kernels.misc import add_into
from ..registry import register_layer
from .base import Call, Layer, Ref, as_input, build_layers, dims, float_dtype, fmt_shape, same_shape


class LayerList:
    """Marker annotation: a list of layer configs (the config schema puts the layer union here)."""


@register_layer("residual")
class Residual(Layer):
    """``Y = X + F(X)`` with F = ``layers`` in order (see the module docstring)."""

    container = True

    def __init__(self, layers: Annotated[LayerList, Field(min_length=1)]):
        layers = list(layers)
        if not layers:
            raise ValueError("Residual needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"residual layer {i} is not an mlpjit Layer: {layer!r}")
        self.layers = layers
        self.output_shape(None)

    def output_shape(self, in_shape):
        shape = in_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except ValueError as e:
                raise ValueError(f"residual layer {i}: {e}") from None
        if in_shape is not None and not same_shape(in_shape, shape):
            raise ValueError(f"the residual block maps {fmt_shape(in_shape)} to {fmt_shape(shape)}; "
                             f"y = x + F(x) needs F to keep the shape")
        return in_shape if in_shape is not None else shape

    # --- the layer-by-layer path ---------------------------------------------------------------
    def forward(self, X, training=False):
        X = as_input(X, float_dtype(X), repr(self))
        F = X
        for layer in self.layers:
            F = layer.forward(F, training=training)
        if F.shape != X.shape:
            raise ValueError(f"the residual block maps shape {X.shape[1:]} to {F.shape[1:]}; "
                             f"y = x + F(x) needs F to keep the shape")
        if self.__dict__.get("_key") != (X.shape, X.dtype):
            self._Y, self._dX = np.empty_like(X), np.empty_like(X)
            self._key = (X.shape, X.dtype)
        add_into(X, np.ascontiguousarray(F, X.dtype), self._Y)
        self._ns = {"X": X, "F": F, "Y": self._Y}
        return self._Y

    def backward(self, dY, need_dX=True):
        self._need_forward()
        X = self._ns["X"]
        dY = as_input(dY, X.dtype, repr(self))
        if dY.shape != X.shape:
            raise ValueError(f"{self!r}: dY must have shape {X.shape}, got {dY.shape}")
        dF = dY
        for layer in reversed(self.layers):
            dF = layer.backward(dF, need_dX=True)
        add_into(dY, np.ascontiguousarray(dF, X.dtype), self._dX)
        self._ns.update(dY=dY, dX=self._dX)
        return self._dX

    def lecture_arrays(self, phase):
        ns = self.__dict__.get("_ns") or {}
        names = ["X", "Y"] if phase == "forward" else ["dY", "dX"]
        return [(k, ns[k]) for k in names if k in ns]

    # --- the compiled step -----------------------------------------------------------------------
    def nodes(self):
        begin = _Begin(self)
        end = _End(self, begin)
        begin.end = end
        inner = [node for layer in self.layers for node in layer.nodes()]
        return [begin, *inner, end]

    # --- ONNX (mlpjit.export) ------------------------------------------------------------------
    def onnx_nodes(self, g, x):
        """ONNX: F's layers in order (each its own nodes, named ``<block>.<i>.…``), then
        Y = Add(X, F(X))."""
        f = x
        for i, layer in enumerate(self.layers):
            f = g.layer(layer, f, i)
        return g.op("Add", x, f, out="Y")

    # --- parameters, structure -------------------------------------------------------------------
    def parameters(self):
        return [(f"{i}.{name}", p, g) for i, layer in enumerate(self.layers)
                for name, p, g in layer.parameters()]

    def incoming_weights(self):
        return [(f"{i}.{name}", p, mode) for i, layer in enumerate(self.layers)
                for name, p, mode in layer.incoming_weights()]

    def state_items(self):
        return [(f"{i}.{name}", a) for i, layer in enumerate(self.layers)
                for name, a in layer.state_items()]

    def freeze_randomness(self, frozen=True):
        for layer in self.layers:
            layer.freeze_randomness(frozen)

    def get_config(self):
        return {"type": "residual", "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        from . import layer_from_config
        specs = config["layers"]
        if not isinstance(specs, list):
            raise ValueError("residual 'layers' must be a list")
        rngs = (np.random.default_rng(seed).spawn(len(specs)) if seed is not None
                else [None] * len(specs))
        return cls([layer_from_config(c, dtype=dtype, seed=r) for c, r in zip(specs, rngs)])

    @classmethod
    def build(cls, config, in_shape, dtype, init_seed, run_seed, where="layer"):
        specs = config["layers"]
        n = len(specs)
        layers, _ = build_layers(specs, in_shape, f"{where}.layers", dtype, init_seed.spawn(n),
                                 run_seed.spawn(n))
        return cls(layers)

    def astype(self, dtype):
        return Residual([layer.astype(dtype) for layer in self.layers])

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Residual([{inner}])"


class _Begin(Layer):
    """The start of a residual block in the compiled step: Y is X; dX = dY + dY of the end."""
    row_separable = True

    def __init__(self, block):
        self.block = block

    def aliases(self, training):
        return {"Y": "X"}

    def backward_calls(self, training=True):
        return [Call(add_into, "dY", Ref(self.end, "dY"), "dX")]

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        return {"forward": [f"x is kept for the skip connection   {x}"],
                "backward": [f"dX = dY + dY of the block's end (x was used twice)   {x}"], "macs": (0, 0)}

    def __repr__(self):
        return "residual start: y = x (x is also kept for the skip)"

    structure = __repr__


class _End(Layer):
    """The end of a residual block in the compiled step: Y = F(X) + X; dX is dY (into F)."""
    row_separable = True

    def __init__(self, block, begin):
        self.block, self.begin = block, begin

    def forward_calls(self, training):
        return [Call(add_into, "X", Ref(self.begin, "X"), "Y")]

    def explain(self, in_shape, batch, first=False):
        x = dims((batch,) + tuple(in_shape))
        return {"forward": [f"Y = F(x) + x   {x}"], "backward": [f"dX = dY (into F)   {x}"], "macs": (0, 0)}

    def aliases(self, training):
        return {"dX": "dY"}

    def __repr__(self):
        return "residual end: y = F(x) + x"

    structure = __repr__
