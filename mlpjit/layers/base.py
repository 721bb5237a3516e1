"""What every layer shares: the :class:`Layer` protocol, kernel :class:`Call` s, shape helpers.

A layer is one file: its formulas (docstring), its parameters and the arrays it keeps for
backward with their shapes as a function of the input shape, its ``@jit`` kernels, and its
config (the constructor's annotated signature).  It declares

* ``params``: names of its trainable arrays (attributes); the gradient of ``A`` is ``dA``;
* ``state``: names of arrays that are not trained but belong to the model (running estimates);
* ``incoming``: ``{param: "columns" | "rows"}``, the parameters that hold each unit's incoming
  weights — a column of an (inputs, units) matrix (dense) or a row of one viewed as (units, −1)
  (a convolution's channels) — which ``optimizer.max_norm`` bounds;
* ``output_shape(in_shape)``: one example's output shape (shape inference; ValueError if the
  input does not fit);
* ``buffers(in_shape)``: ``{name: shape of one example's part}`` of what forward keeps for
  backward (allocated for a batch: the batch size is prepended);
* ``scratch(in_shape, batch)``: ``{name: shape}`` of work arrays sized otherwise;
* ``constants()``: ``{name: number}``, the scalars its kernels take;
* ``draws(in_shape)``: uniform [0, 1) numbers per example its training forward needs (``U``,
  drawn from ``self.rng``; dropout);
* ``row_separable``: True when each example's rows of Y, dX and its buffers depend on that
  example alone and the parameters' gradients are sums over examples (dense, convolution,
  pooling, activations, dropout): then a sharded step (:mod:`mlpjit.step`) may split a batch
  among threads.  False (the default, and BatchNorm's answer) keeps the step serial;
* ``forward_calls(training)`` / ``backward_calls(training)``: the kernels to call, in order, each a
  :class:`Call` naming its arguments.  The default calls ``forward_kernel`` and
  ``backward_kernel`` with arguments named as their parameters.
* ``onnx_nodes(g, x)`` (optional): its prediction-mode forward pass as ONNX nodes, for
  ``mlpjit export`` (:mod:`mlpjit.export`; ``g`` names tensors and adds parameters); a model
  with a layer that lacks it does not export.

Names a call can use: ``X``, ``Y`` (forward), ``dY``, ``dX`` (backward), every parameter, its
gradient, state, buffer, scratch array and constant, ``U``, and ``training`` / ``need_dX``
(booleans).  ``aliases(training)`` may declare that an array *is* another one seen in its own
shape (``{"Y": "S"}`` for an identity activation, ``{"Y": "X", "dX": "dY"}`` for flatten).

The same declarations drive both paths: :meth:`Layer.forward` / :meth:`Layer.backward` call the
kernels from Python, and :mod:`mlpjit.step` writes them into one compiled function per model.
"""

import inspect
from typing import Optional

import numpy as np

from .. import _memory
from ..schema import SizePair
from ..schema import validated as _validated

__all__ = ["Layer", "Call", "Ref", "check_dtype", "as_input", "float_dtype", "fmt_shape",
           "pair", "image_shape", "pooled", "kernel_names", "LayerKernelError"]


class LayerKernelError(ValueError):
    """A layer's kernels do not fit what the layer declares (a name it does not provide)."""


def kernel_names(kernel):
    """The parameter names of a kernel (an njit dispatcher or a plain function)."""
    fn = getattr(kernel, "py_func", kernel)
    try:
        return _NAMES[fn]
    except (KeyError, TypeError):
        names = tuple(p.name for p in inspect.signature(fn).parameters.values())
        try:
            _NAMES[fn] = names
        except TypeError:
            pass
        return names


_NAMES = {}


class Call:
    """One kernel call in a layer's (or loss's) forward or backward pass.

    ``Call(kernel, "X", "A", "b", "S")`` calls ``kernel(X, A, b, S)`` with the arrays and
    constants of those names; with no names the kernel's own parameter names are used.  An
    argument may also be a number, or a :class:`Ref` to another node's array (residual blocks).
    ``returns`` names what the call returns (a loss's value E); ``input_grad=True`` marks a call
    that only computes dX (skipped for the first layer, whose dX nobody needs).
    """

    __slots__ = ("kernel", "args", "returns", "input_grad")

    def __init__(self, kernel, *args, returns=None, input_grad=False):
        self.kernel = kernel
        self.args = args if args else tuple(kernel_names(kernel))
        self.returns = returns
        self.input_grad = input_grad

    @property
    def name(self):
        return getattr(getattr(self.kernel, "py_func", self.kernel), "__name__", repr(self.kernel))

    def __repr__(self):
        args = ", ".join(a if isinstance(a, str) else repr(a) for a in self.args)
        out = f"{self.returns} = " if self.returns else ""
        return f"{out}{self.name}({args})"


class Ref:
    """An argument naming an array of another node of the compiled step (``Ref(node, "X")``)."""

    __slots__ = ("node", "name")

    def __init__(self, node, name):
        self.node, self.name = node, name

    def __repr__(self):
        return f"<{self.name} of {self.node!r}>"


def check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def float_dtype(X):
    """X's dtype if it is one the kernels are compiled for (float32/float64), else float64."""
    if isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64):
        return X.dtype
    return np.dtype(np.float64)


def as_input(X, dtype, what):
    """X as a C-contiguous array of ``dtype`` (a copy only when it must convert)."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {X.dtype}")
    if X.dtype != dtype or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=dtype)
    return X


def _spec(spec, dtype):
    """(shape, dtype) from a buffer declaration: a shape, or (shape, dtype)."""
    if (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], tuple)
            and not isinstance(spec[1], (int, np.integer))):
        return tuple(int(s) for s in spec[0]), np.dtype(spec[1])
    return tuple(int(s) for s in spec), np.dtype(dtype)


class Layer:
    """Base class of all layers (see the module docstring for what a layer declares).

    ``forward(X, training=False)`` returns Y and ``backward(dY, need_dX=True)`` returns dX,
    both running the layer's kernels on arrays the layer allocates once per batch size and
    reuses: copy them to keep them (``Sequential.predict`` returns copies).
    """

    params = ()
    state = ()
    incoming = {}          # {param: "columns" | "rows"} (see the module docstring)
    inferred = {}          # constructor argument -> the index of the input shape's entry it equals
    image_input = False    # whether the layer needs (C, H, W) examples (a model starting with it
                           # reads images)
    row_separable = False  # examples independent, gradients sums over them (see the docstring)
    dtype = np.dtype(np.float32)
    forward_kernel = None
    backward_kernel = None

    # --- declarations (overridden by each layer) -------------------------------------------
    def output_shape(self, in_shape):
        """Shape of one example's output given one example's input shape (sizes not yet known
        are None; ``in_shape`` None means nothing is known).  Raises ValueError when the layer
        cannot take that input."""
        return None if in_shape is None else tuple(in_shape)

    def buffers(self, in_shape):
        return {}

    def scratch(self, in_shape, batch):
        return {}

    def constants(self):
        return {}

    def draws(self, in_shape):
        return 0

    def aliases(self, training):
        return {}

    def forward_calls(self, training):
        return [Call(type(self).forward_kernel)] if type(self).forward_kernel is not None else []

    def backward_calls(self, training=True):
        return [Call(type(self).backward_kernel)] if type(self).backward_kernel is not None else []

    def structure(self):
        """The layer as the compiled step's text names it (the comment above its calls): its
        type and its activation's name, never a size or a constant.  Those reach the step as
        arguments, so models that differ only in them share one step and its compiled code."""
        act = getattr(self, "activation", None)
        if act is None or getattr(self, "identity", False):
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}({getattr(act, 'name', act)})"

    def nodes(self):
        """The layer as nodes of the compiled step: itself (a residual block: several)."""
        return [self]

    def lecture_arrays(self, phase):
        """[(name, array)] of the last pass by their names in the math, for ``mlpjit trace``:
        going ``"forward"`` X, the buffers, Y; going ``"backward"`` dY, the buffers' derivatives,
        the parameters' gradients, dX."""
        ns = self.__dict__.get("_ns") or {}
        if "X" not in ns:
            return []
        bufs = list(self.buffers(tuple(ns["X"].shape[1:])))
        if phase == "forward":
            names = ["X"] + [b for b in bufs if not b.startswith("d")] + ["Y"]
            return [(k, ns[k]) for k in names if k in ns]
        out = [(k, ns[k]) for k in ["dY"] + [b for b in bufs if b.startswith("d")] if k in ns]
        out += [("d" + name, g) for name, _, g in self.parameters()]
        return out + ([("dX", ns["dX"])] if "dX" in ns else [])

    def explain(self, in_shape, batch, first=False):
        """The layer's equations with the shapes of a batch of ``batch`` examples of ``in_shape``:
        ``{"forward": [lines], "backward": [lines], "macs": (forward, backward)}``.  This
        default shows the kernel calls with the shapes of their arrays; the built-in layers
        write their formulas."""
        out_shape = tuple(self.output_shape(tuple(in_shape)))
        shapes = {"X": (batch,) + tuple(in_shape), "Y": (batch,) + out_shape,
                  "dX": (batch,) + tuple(in_shape), "dY": (batch,) + out_shape}
        for name, spec in self.buffers(tuple(in_shape)).items():
            shapes[name] = (batch,) + _spec(spec, self.dtype)[0]
        for name, spec in self.scratch(tuple(in_shape), batch).items():
            shapes[name] = _spec(spec, self.dtype)[0]
        for name, p, g in self.parameters():
            shapes[name], shapes["d" + name] = p.shape, g.shape

        def line(call):
            args = ", ".join(f"{a} {dims(shapes[a])}" if isinstance(a, str) and a in shapes else str(a)
                             for a in call.args)
            return f"{call.name}({args})"
        return {"forward": [line(c) for c in self.forward_calls(True)] or ["Y = X (a view)"],
                "backward": [line(c) for c in self.backward_calls(True) if not (first and c.input_grad)]
                or ["dX = dY (a view)"], "macs": (0, 0)}

    @property
    def compiled(self):
        """Whether the layer runs in the compiled step: every kernel it calls is compiled
        (``@jit``).  A layer that overrides forward/backward with Python code and declares no
        kernels, or an activation written in NumPy, runs only on the layer-by-layer path."""
        cls = type(self)
        if cls.nodes is not Layer.nodes:  # a container: its nodes decide
            return all(node.compiled for node in self.nodes() if node is not self)
        if (cls.forward is not Layer.forward and cls.forward_calls is Layer.forward_calls
                and cls.forward_kernel is None):
            return False
        calls = self.forward_calls(True) + self.backward_calls(True)
        return all(hasattr(call.kernel, "py_func") for call in calls)

    # --- parameters and state --------------------------------------------------------------
    def parameters(self):
        """``[(name, param, grad), ...]`` in a stable order; empty for layers without parameters."""
        return [(p, getattr(self, p), getattr(self, "d" + p)) for p in self.params]

    def incoming_weights(self):
        """``[(name, param, "columns" | "rows"), ...]``: the parameters of ``incoming``."""
        return [(p, getattr(self, p), mode) for p, mode in type(self).incoming.items()]

    def state_items(self):
        """``[(name, array), ...]``: arrays saved with the model that are not trained."""
        return [(s, getattr(self, s)) for s in self.state]

    def compute_dtype(self, X):
        """The dtype the layer computes in for input X: its own, or X's for layers without
        parameters."""
        return self.dtype if self.params else float_dtype(X)

    # --- the layer-by-layer path ---------------------------------------------------------------
    def namespace(self, n, in_shape, dtype):
        """The arrays the layer owns for a batch of n examples of ``in_shape`` (its buffers,
        scratch and draws, then Y and dX), allocated once per batch shape and reused."""
        key = (n, tuple(in_shape), np.dtype(dtype))
        env = self.__dict__.get("_env")
        if env is not None and self.__dict__.get("_env_key") == key:
            return env
        # a few small namespaces are kept: passes that alternate batch shapes (an epoch's probe
        # and its test split, say) then allocate nothing; large ones are made afresh, as before
        envs = self.__dict__.setdefault("_envs", {})
        if env is not None and self.__dict__.get("_env_key") in envs:
            envs[self._env_key] = (env, self._drawn)
        if key in envs:
            env, self._drawn = envs.pop(key)
            envs[key] = (env, self._drawn)        # the most recent last
        else:
            env = {}
            for name, spec in self.buffers(tuple(in_shape)).items():
                shape, dt = _spec(spec, dtype)
                env[name] = _memory.zeros((n,) + shape, dt)
            for name, spec in self.scratch(tuple(in_shape), n).items():
                shape, dt = _spec(spec, dtype)
                env[name] = _memory.zeros(shape, dt)
            draws = self.draws(tuple(in_shape))
            if draws:
                env["U"] = np.zeros(n * draws, np.float64)
            self._drawn = False
            if sum(a.nbytes for a in env.values()) <= KEPT_NAMESPACE_BYTES:
                envs[key] = (env, False)
                while len(envs) > KEPT_NAMESPACES:
                    envs.pop(next(iter(envs)))
        self._env_key = key
        self._env = env
        return env

    def _alias(self, ns, name, target):
        if name in ("Y", "dY"):
            shape = (ns["X"].shape[0],) + self._out_shape
        elif name == "dX":
            shape = ns["X"].shape
        elif name.startswith("d") and name[1:] in ns:
            shape = ns[name[1:]].shape
        else:
            shape = ns[target].shape
        src = ns[target]
        ns[name] = src if src.shape == tuple(shape) else src.reshape(shape)

    def _namespace_for_calls(self, ns, training, need_dX):
        full = dict(ns)
        full.update(self.constants())
        full["training"] = bool(training)
        full["need_dX"] = bool(need_dX)
        for name, arr, grad in self.parameters():
            full[name] = arr
            full["d" + name] = grad
        for name, arr in self.state_items():
            full[name] = arr
        return full

    def _run(self, calls, ns, training, need_dX):
        full = self._namespace_for_calls(ns, training, need_dX)
        for call in calls:
            if call.input_grad and not need_dX:
                continue
            args = []
            for a in call.args:
                if isinstance(a, str):
                    if a not in full:
                        raise LayerKernelError(
                            f"{self!r}: kernel {call.name} takes '{a}', which the layer does not "
                            f"provide (it provides: {', '.join(sorted(full))})")
                    args.append(full[a])
                else:
                    args.append(a)
            value = call.kernel(*args)
            if call.returns:
                ns[call.returns] = full[call.returns] = value

    def forward(self, X, training=False):
        X = as_input(X, self.compute_dtype(X), repr(self))
        if X.ndim < 2:
            raise ValueError(f"{self!r} expects a batch (N, ...), got shape {X.shape}")
        in_shape, n = tuple(X.shape[1:]), X.shape[0]
        self._out_shape = tuple(self.output_shape(in_shape))
        env = self.namespace(n, in_shape, X.dtype)
        aliases = self.aliases(training)
        if "Y" not in aliases and "Y" not in env:
            env["Y"] = _memory.zeros((n,) + self._out_shape, X.dtype)
        ns = {k: v for k, v in env.items() if k != "dX"}
        ns["X"] = X
        for name, target in aliases.items():
            if not name.startswith("d"):
                self._alias(ns, name, target)
        if training and "U" in env and not (self.__dict__.get("_frozen") and self._drawn):
            self.rng.random(out=env["U"])
            self._drawn = True
        self._run(self.forward_calls(training), ns, training, need_dX=True)
        self._trained_forward = training
        self._ns = ns
        return ns["Y"]

    def backward(self, dY, need_dX=True):
        self._need_forward()
        ns, env = self._ns, self._env
        X = ns["X"]
        dY = as_input(dY, X.dtype, repr(self))
        if dY.shape != ns["Y"].shape:
            raise ValueError(f"{self!r}: dY must have shape {ns['Y'].shape}, got {dY.shape}")
        ns["dY"] = dY
        training = self._trained_forward
        aliases = self.aliases(training)
        if "dX" not in aliases:
            if "dX" not in env:
                env["dX"] = _memory.zeros(X.shape, X.dtype)
            ns["dX"] = env["dX"]
        for name, target in aliases.items():
            if name.startswith("d"):
                self._alias(ns, name, target)
        self._run(self.backward_calls(training), ns, training, need_dX)
        return ns["dX"] if need_dX else None

    def __getattr__(self, name):
        # the arrays of the last pass by their names in the math (layer.S, layer.dX, ...)
        for space in ("_ns", "_env"):
            ns = self.__dict__.get(space)
            if ns is not None and name in ns:
                return ns[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def freeze_randomness(self, frozen=True):
        """Reuse the last random draws (a dropout mask) on later forward passes (gradient checks)."""
        self._frozen = frozen

    def _need_forward(self):
        if self.__dict__.get("_ns") is None:
            raise RuntimeError(f"{self!r}: backward() called before forward(training=True)")

    # --- structure ---------------------------------------------------------------------------
    @classmethod
    def constructor_args(cls):
        """The constructor's named arguments (the config keys, and dtype/seed/rng)."""
        init = cls.__init__
        if init not in _ARGS:
            _ARGS[init] = [p.name for p in inspect.signature(init).parameters.values()
                           if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return _ARGS[init]

    def get_config(self):
        """``{"type": ..., <constructor argument>: value, ...}`` from the attributes of the same
        names (``Layer.from_config`` rebuilds the layer from it)."""
        config = {"type": self.type_name}
        for name in self.constructor_args():
            if name in ("dtype", "seed", "rng"):
                continue
            value = getattr(self, name)
            config[name] = value.get_config() if hasattr(value, "get_config") else _plain(value)
        return config

    @classmethod
    def from_config(cls, config, dtype=np.float32, seed=None):
        """The layer of a ``get_config()`` dict (new parameters drawn from ``seed``)."""
        config = dict(config)
        config.pop("type", None)
        accepted = cls.constructor_args()
        if "dtype" in accepted:
            config["dtype"] = dtype
        if "seed" in accepted:
            config["seed"] = seed
        return cls(**config)

    @classmethod
    def param_count(cls, config, in_shape):
        """How many parameters the layer of this config entry would have for one example of
        ``in_shape``, before building it (None: unknown; the memory check then waits for the
        built model)."""
        return None

    @classmethod
    def build(cls, config, in_shape, dtype, init_seed, run_seed, where="layer"):
        """The layer of a config entry for one example of ``in_shape``: sizes the config leaves
        out (``inferred``: argument → index into the input shape) come from the shape, and one
        that is given must match it.  ``init_seed`` seeds the parameters' generator (``rng``),
        ``run_seed`` the generator of run-time draws (``seed``), both SeedSequences."""
        from ..schema import ConfigIssue
        kwargs = {k: v for k, v in config.items() if k != "type"}
        for name, index in cls.inferred.items():
            if in_shape is None or len(in_shape) <= index or in_shape[index] is None:
                continue  # output_shape reports what is wrong with the input
            value = in_shape[index]
            given = kwargs.get(name)
            if given is not None and given != value:
                noun = name.split("_", 1)[-1]  # in_channels: channels, in_features: features
                raise ConfigIssue(f"{given}, but its input has {value} {noun}", name)
            kwargs[name] = value
        accepted = cls.constructor_args()
        if "dtype" in accepted:
            kwargs["dtype"] = dtype
        if "rng" in accepted:
            kwargs["rng"] = np.random.default_rng(init_seed)
        if "seed" in accepted and "rng" not in accepted:
            kwargs["seed"] = np.random.default_rng(run_seed)
        return cls(**kwargs)

    def astype(self, dtype):
        """A copy of this layer computing in ``dtype`` (parameters and state converted)."""
        new = type(self).from_config(self.get_config(), dtype=dtype)
        for (_, p_new, _), (_, p_old, _) in zip(new.parameters(), self.parameters()):
            p_new[...] = p_old
        for (_, s_new), (_, s_old) in zip(new.state_items(), self.state_items()):
            s_new[...] = s_old
        return new

    @property
    def type_name(self):
        return getattr(type(self), "registered_name", None)

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_env", "_env_key", "_ns", "_envs"):
            state.pop(key, None)
        return state


_ARGS = {}
KEPT_NAMESPACES = 3                # batch shapes whose arrays a layer keeps between passes
KEPT_NAMESPACE_BYTES = 1 << 20     # ... when they are this small (larger ones are made afresh)


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- shapes ------------------------------------------------------------------------------------
# ``output_shape(in_shape)`` maps one example's shape to the next; unknown sizes are None
# (a Sequential checks its chain with an unknown input, the trainer again with the data's shape).

def dims(shape):
    """A shape as the lectures write it: (64×784)."""
    return "(" + "×".join(str(int(d)) for d in shape) + ")"


def pair(name, value):
    """(a, b) from an int or a pair of ints, each ≥ 1."""
    from ..schema import SizePair, check_value, ConfigIssue
    try:
        v = check_value(SizePair, value)
    except ConfigIssue as e:
        raise ValueError(f"{name} {e.message}") from None
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def image_shape(layer, in_shape):
    """(C, H, W) of one example for a layer that needs images; a clear error otherwise."""
    if in_shape is None:
        return None, None, None
    if len(in_shape) != 3:
        raise ValueError(f"{layer!r} needs images (channels, height, width) per example, but gets "
                         f"{fmt_shape(in_shape)}")
    return tuple(in_shape)


def fmt_shape(shape):
    if len(shape) == 1:
        return f"flat rows of {shape[0] if shape[0] is not None else '?'} features"
    return "shape (" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def pooled(layer, what, KH, KW, sh, sw, pads, H, W):
    """(OH, OW) of a window sliding over the padded input, or a clear error."""
    if H is None or W is None:
        return None, None
    Hp, Wp = H + sum(pads[0]), W + sum(pads[1])
    if KH > Hp or KW > Wp:
        padded = "" if Hp == H and Wp == W else "padded "
        raise ValueError(f"{layer!r}: the {what} {KH}×{KW} is larger than the {padded}input {Hp}×{Wp}")
    return (Hp - KH) // sh + 1, (Wp - KW) // sw + 1


def same_shape(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


class Pool2D(Layer):
    """What the pooling layers share: a size×size window moved by ``stride`` (default: the
    size, windows side by side), no padding, per example and channel; OH = ⌊(H − KH)/sh⌋ + 1.
    Their kernels take the window as the constants KH, KW, sh, sw; a subclass gives its
    formulas in ``window_formulas()``."""

    image_input = True
    row_separable = True

    @_validated
    def __init__(self, size: SizePair, stride: Optional[SizePair] = None):
        self.size = pair("size", size)
        self.stride = self.size if stride is None else pair("stride", stride)

    def output_shape(self, in_shape):
        C, H, W = image_shape(self, in_shape)
        OH, OW = pooled(self, "window", *self.size, *self.stride, ((0, 0), (0, 0)), H, W)
        return (C, OH, OW)

    def constants(self):
        return {"KH": self.size[0], "KW": self.size[1], "sh": self.stride[0], "sw": self.stride[1]}

    def window_formulas(self):
        """(forward, backward) of one window, as text for explain()."""
        raise NotImplementedError(f"{type(self).__name__} must give window_formulas()")

    def explain(self, in_shape, batch, first=False):
        C, H, W = in_shape
        _, OH, OW = self.output_shape(in_shape)
        KH, KW = self.size
        x, y = dims((batch, C, H, W)), dims((batch, C, OH, OW))
        fwd, bwd = self.window_formulas()
        return {"forward": [f"{fwd}   {x} → {y}  ({KH}×{KW} windows, stride {self.stride[0]})"],
                "backward": [f"{bwd}   {y} → {x}"], "macs": (0, 0)}

    def __repr__(self):
        KH, KW = self.size
        s = self.stride
        extra = "" if s == self.size else f", stride={s[0] if s[0] == s[1] else s}"
        return f"{type(self).__name__}({KH}×{KW}{extra})"


# --- building layers from config entries ---------------------------------------------------------

def build_layers(specs, in_shape, where, dtype, init_seeds, run_seeds):
    """The layers of config entries ``specs`` (dicts with a ``type``) for one example of
    ``in_shape``; returns (layers, output shape).  Each layer draws its parameters from its own
    ``init_seeds[i]`` and its run-time randomness (dropout masks) from ``run_seeds[i]``
    (SeedSequences).  Errors are ConfigErrors naming the key (``model.layers.2.units: ...``)."""
    from ..errors import ConfigError
    from ..registry import layers as registry
    from ..schema import ConfigIssue
    from ..resources import check_layer
    out, shape = [], None if in_shape is None else tuple(in_shape)
    so_far = 0
    for i, spec in enumerate(specs):
        at = f"{where}.{i}"
        try:
            cls = registry.get(spec["type"])
            count = cls.param_count(spec, shape) if shape is not None else None
            if count:   # refuse parameters that cannot fit before allocating them
                check_layer(at, count, np.dtype(dtype).itemsize, already=so_far)
                so_far += count * np.dtype(dtype).itemsize * 4
            layer = cls.build(spec, shape, dtype, init_seeds[i], run_seeds[i], where=at)
            in_shape, shape = shape, layer.output_shape(shape)
            if not type(layer).__module__.startswith("mlpjit."):
                check_kernels(layer, in_shape)
        except ConfigError:
            raise
        except ConfigIssue as e:
            raise ConfigError(f"{at}.{e.key}: {e.message}" if e.key else f"{at}: {e.message}") from None
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{at}: {e}") from None
        out.append(layer)
    return out, shape


def check_kernels(layer, in_shape):
    """Run a layer of the user's once, forward and backward, on two examples of zeros, so that a
    kernel that does not accept the arrays the layer declares fails here, in one line naming the
    layer, rather than as a Numba traceback in the middle of training.  Parameters, state,
    gradients and random generators are restored afterwards."""
    if in_shape is None or any(d is None for d in in_shape):
        return
    import numba
    saved = [np.array(a) for a in _arrays(layer)]
    rngs = [(obj, obj.bit_generator.state) for obj in _generators(layer)]
    dtype = layer.compute_dtype(np.zeros(0, getattr(layer, "dtype", np.float32)))
    X = np.zeros((2,) + tuple(in_shape), dtype)
    try:
        Y = layer.forward(X, training=True)
        layer.backward(np.zeros_like(Y), need_dX=True)
    except LayerKernelError:
        raise
    except numba.core.errors.NumbaError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File ", "^"))]
        raise LayerKernelError(f"{layer!r}: its kernels do not compile for {np.dtype(dtype)} "
                               f"examples of shape {tuple(in_shape)}: {(useful or lines or ['?'])[0]}") from None
    finally:
        for a, old in zip(_arrays(layer), saved):
            a[...] = old
        for obj, state in rngs:
            obj.bit_generator.state = state
        layer.__dict__.pop("_ns", None)


def _arrays(layer):
    out = []
    for _, p, g in layer.parameters():
        out += [p, g]
    return out + [a for _, a in layer.state_items()]


def _generators(layer):
    rng = layer.__dict__.get("rng")
    return [rng] if isinstance(rng, np.random.Generator) else []
