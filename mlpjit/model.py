"""``Sequential``: a stack of layers, run forward in order and backward in reverse (math.md §1, §5)."""

import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ModelFileError
from .io import atomic_write_npz, json_array, read_json_array, read_npz
from .layers import DTYPES, Layer, layer_from_config
from .modelfile import FORMAT, check_modules



class Sequential:
    """Layers applied one after the other: X₁ = X, X_{i+1} = layerᵢ(Xᵢ).

    Backward runs the layers in reverse, each layer's dX being the previous layer's dY
    (backpropagation, math.md §5).  ``parameters()`` lists ``("0.A", A, dA), ("0.b", b, db),
    ("1.A", ...)`` in a stable order; ``predict`` runs in prediction mode (dropout off).

    >>> import numpy as np, mlpjit
    >>> model = mlpjit.Sequential([mlpjit.Dense(2, 8, activation="tanh", seed=0),
    ...                            mlpjit.Dense(8, 1, activation="sigmoid", seed=1)])
    >>> model.predict(np.zeros((3, 2))).shape
    (3, 1)
    """

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is not an mlpjit Layer: {layer!r}")
        self.layers = layers
        self.metadata = {}
        self.output_shape(None)  # the chain fits together (channels, widths, flatten before dense)

    def output_shape(self, input_shape):
        """One example's output shape for one example's ``input_shape`` (e.g. ``(784,)`` or
        ``(1, 28, 28)``; None checks only what the layers fix themselves).  Raises ValueError
        naming the first layer that cannot take what the layer before it gives."""
        shape = None if input_shape is None else tuple(input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from None
        return shape

    def forward(self, X, training=False):
        """Output of the last layer (its buffer: copy it to keep it)."""
        for layer in self.layers:
            X = layer.forward(X, training=training)
        return X

    __call__ = forward

    def backward(self, dY, need_dX=True):
        """Fill every layer's gradients; return dX, the derivative with respect to the input
        (None when ``need_dX`` is False, which saves the first layer's dX product)."""
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            dY = self.layers[i].backward(dY, need_dX=need_dX or i > 0)
        return dY

    def walk(self):
        """Every layer, inside residual blocks too, in forward order (blocks before their layers)."""
        def visit(layers):
            for layer in layers:
                yield layer
                yield from visit(getattr(layer, "layers", ()))
        yield from visit(self.layers)

    @property
    def takes_images(self):
        """True when the first layer to see the input needs images (NCHW input: a convolution
        or pooling)."""
        layer = self.layers[0]
        while getattr(layer, "layers", None):
            layer = layer.layers[0]
        return bool(getattr(layer, "image_input", False))

    def parameters(self):
        """``[(name, param, grad), ...]``: ``"<layer index>.<name>"``, the array, its gradient."""
        return [(f"{i}.{name}", p, g) for i, layer in enumerate(self.layers)
                for name, p, g in layer.parameters()]

    def incoming_weights(self):
        """``[(name, A, "columns" | "rows"), ...]``: each unit's incoming weights (max-norm)."""
        return [(f"{i}.{name}", p, mode) for i, layer in enumerate(self.layers)
                for name, p, mode in layer.incoming_weights()]

    @property
    def n_params(self):
        return sum(p.size for _, p, _ in self.parameters())

    @property
    def dtype(self):
        for _, p, _ in self.parameters():
            return p.dtype
        return np.dtype(np.float32)

    @property
    def in_features(self):
        return getattr(self.layers[0], "in_features", None)

    def predict(self, X, batch_size=1024, *, unknown=None, missing=None):
        """What the model predicts for X, as ``mlpjit predict`` does (see :mod:`mlpjit.predicting`).

        ``X`` in the training data's units: raw pixels for MNIST (the recorded ``x_scale`` is
        applied), and for a model trained on a table its raw columns (a CSV path, a DataFrame
        or a dict of columns, encoded as in training; ``unknown="zeros"`` and
        ``missing="drop"`` as ``--unknown``/``--missing``).  Returns the outputs after the
        loss's transform: probabilities (N, k) for a classifier, values in the target's units
        for a regressor; a model never trained returns its raw outputs.  The raw outputs:
        :meth:`logits`; the classes: :meth:`predict_classes`."""
        from .predicting import inputs, output, raw
        X, _, _ = inputs(self, X, unknown=unknown, missing=missing)
        return output(self, raw(self, X, batch_size))

    def logits(self, X, batch_size=1024, *, unknown=None, missing=None):
        """The network's raw outputs for X (taken as :meth:`predict` takes it), in prediction
        mode: logits for a classifier trained on them, the scaled values for a regressor with
        a scaled target."""
        from .predicting import inputs, raw
        X, _, _ = inputs(self, X, unknown=unknown, missing=missing)
        return raw(self, X, batch_size)

    # --- training from code (mlpjit.fitting) -----------------------------------------------
    def fit(self, X, y, **settings):
        """Train on the arrays (X, y) in the compiled step: ``loss``, ``optimizer``, ``schedule``,
        ``clip``, ``epochs``, ``batch_size``, ``validation_split`` or ``validation_data``,
        ``early_stopping``, ``seed``, ... as in the YAML config; returns a
        :class:`~mlpjit.fitting.History` (see :func:`mlpjit.fitting.fit`)."""
        from .fitting import fit
        return fit(self, X, y, **settings)

    def evaluate(self, X, y, loss=None, batch_size=1000):
        """``{"loss": ..., "accuracy": ...}`` on (X, y), with the loss of the last fit (or ``loss``)."""
        from .fitting import evaluate
        return evaluate(self, X, y, loss, batch_size)

    def predict_classes(self, X, batch_size=1024, *, names=True, unknown=None, missing=None):
        """The predicted classes (N,) by the trained loss's rule (the largest output; one
        output: logit > 0), by their names in the training data when it had names
        (``names=False``: ids 0..k-1)."""
        from .predicting import classes, inputs, raw
        X, _, _ = inputs(self, X, unknown=unknown, missing=missing)
        return classes(self, raw(self, X, batch_size), names=names)

    def predict_proba(self, X, batch_size=1024, *, unknown=None, missing=None):
        """Each class's probability (N, k) for a classifier (softmax or σ of the logits; one
        logit gives two columns, as scikit-learn's ``predict_proba``)."""
        from .predicting import inputs, probabilities, raw
        X, _, _ = inputs(self, X, unknown=unknown, missing=missing)
        return probabilities(self, raw(self, X, batch_size))

    def explain(self, batch_size=32, loss=None, optimizer=None, input_shape=None):
        """``mlpjit explain`` from code: each layer's equations with its shapes, parameters,
        costs and memory (print it; Jupyter shows a table).  See :func:`mlpjit.explain.explain`;
        one training step traced: :func:`mlpjit.trace.trace`."""
        from .explain import explain
        return explain(self, batch_size, loss, optimizer, input_shape)

    def adapt(self, X):
        """Fit the first layer's statistics to the inputs X when it has any (``standardize``);
        the trainer does this with the training split before the first epoch."""
        first = self.layers[0]
        if hasattr(first, "adapt"):
            first.adapt(np.asarray(X).reshape(len(X), -1))

    def freeze_randomness(self, frozen=True):
        for layer in self.layers:
            layer.freeze_randomness(frozen)

    # --- structure and files -----------------------------------------------------------
    def get_config(self):
        config = {"layers": [layer.get_config() for layer in self.layers],
                  "dtype": np.dtype(self.dtype).name}
        modules = user_modules(self)
        if modules:
            config["imports"] = modules
            config["import_path"] = _module_folders(modules)
        return config

    @classmethod
    def from_config(cls, config, dtype=None, seed=None, trust=()):
        """Build the stack described by ``get_config()`` (new weights drawn from ``seed``).

        The modules the config names (``imports``: where its own layers are defined) must be
        imported already, or named in ``trust``: a config never imports code by itself, and
        never changes ``sys.path`` (see :func:`mlpjit.modelfile.check_modules`)."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("model config must be a dict with a 'layers' list")
        dtype = np.dtype(dtype or DTYPES.get(config.get("dtype", "float32"), np.float32))
        check_modules(config.get("imports") or (), trust, "the model")
        seeds = np.random.SeedSequence(seed).spawn(len(config["layers"]))
        layers = []
        for c, s in zip(config["layers"], seeds):
            layers.append(layer_from_config(c, dtype=dtype, seed=np.random.default_rng(s)
                                            if seed is not None else None))
        return cls(layers)

    def astype(self, dtype):
        """A copy computing in ``dtype`` (e.g. float64 for gradient checks)."""
        return Sequential([layer.astype(dtype) for layer in self.layers])

    def state_items(self):
        """``[(name, array), ...]`` of the arrays that are not trained but belong to the model
        (running estimates), named like parameters."""
        return [(f"{i}.{name}", a) for i, layer in enumerate(self.layers)
                for name, a in layer.state_items()]

    def state_arrays(self):
        """The parameters and the state arrays by name, as copies."""
        out = {name: np.array(p) for name, p, _ in self.parameters()}
        out.update({name: np.array(a) for name, a in self.state_items()})
        return out

    def load_state_arrays(self, arrays, source="<arrays>"):
        for name, p in [(n, p) for n, p, _ in self.parameters()] + self.state_items():
            if name not in arrays:
                raise ModelFileError(f"{source}: parameter '{name}' is missing")
            a = arrays[name]
            if not isinstance(a, np.ndarray) or a.shape != p.shape:
                raise ModelFileError(f"{source}: parameter '{name}' has shape {getattr(a, 'shape', None)}, "
                                     f"the model needs {p.shape}")
            if a.dtype.kind not in "fiu":
                raise ModelFileError(f"{source}: parameter '{name}' holds {a.dtype} values, not numbers")
            p[...] = a

    def to_arrays(self):
        """Everything ``save`` writes: structure (as JSON), ``metadata`` and parameters."""
        arrays = {"__format__": np.array(FORMAT), "__version__": np.array(__version__),
                  "__config__": json_array(self.get_config()),
                  "__metadata__": json_array(getattr(self, "metadata", None) or {})}
        arrays.update(self.state_arrays())
        return arrays

    @classmethod
    def from_arrays(cls, arrays, source="<arrays>", trust=()):
        """The model of ``to_arrays()``'s dict, every part of it checked before it is used (see
        :mod:`mlpjit.modelfile`): a ModelFileError line names what disagrees."""
        from .modelfile import check_model_arrays
        config, metadata = check_model_arrays(arrays, source, trust)
        from .initializers import skipped
        try:
            with skipped():   # the weights come from the file: drawing them first would be wasted
                model = cls.from_config(config, trust=trust)
        except ModelFileError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise ModelFileError(f"{source}: invalid model structure ({' '.join(str(e).split())[:300]})") from None
        model.load_state_arrays(arrays, source)
        known = {name for name, _, _ in model.parameters()} | {name for name, _ in model.state_items()}
        extra = sorted(k for k in arrays if not k.startswith("__") and k not in known)
        if extra:
            raise ModelFileError(f"{source}: array '{extra[0]}' belongs to no parameter of the model")
        model.metadata = metadata
        from .modelfile import check_metadata
        check_metadata(model, source)
        return model

    def to_onnx(self, path, input_shape=None):
        """Write the model's whole prediction as an ONNX file (opset 17; needs ``pip install
        "mlpjit[onnx]"``), atomically; returns the path.  The file takes the raw inputs
        ``predict`` takes (the recorded ``x_scale`` is in the graph) and gives ``logits`` and
        ``probabilities`` (and ``classes``) for a classifier, ``outputs`` and ``values`` (the
        target's units) for a regressor.  ``input_shape``: one example's shape, for a model
        whose metadata does not record it.  See :mod:`mlpjit.export`."""
        from .export import to_onnx
        return to_onnx(self, path, input_shape=input_shape)

    def save(self, path):
        """Write structure, weights and the ``metadata`` dict (how the trainer used the model:
        loss, task, input scaling, class names) to one ``.npz`` file, atomically."""
        atomic_write_npz(path, self.to_arrays())

    @classmethod
    def load(cls, path, trust=()):
        """Read a model written by ``save``.  The file is data: loading it never runs code from
        it (no pickle) and never imports a module it names; layers from your own modules load
        when those modules are imported already, or named in ``trust`` (``trust=["my_layers"]``).
        Sizes come from the stored arrays, checked before anything is allocated."""
        return cls.from_arrays(read_npz(path), source=str(Path(path)), trust=trust)

    def _repr_html_(self):
        from .notebook import model_html
        return model_html(self)

    def __repr__(self):
        lines = [f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + f"\n)  # {self.n_params:,} parameters"


def user_modules(model):
    """The modules (not mlpjit's) that define the model's layers and activations: a model file
    names them so that loading it imports them."""
    modules = []
    for layer in model.walk():
        for obj in (layer, getattr(layer, "activation", None)):
            if obj is None:
                continue
            module = type(obj).__module__
            if not module.startswith("mlpjit.") and module not in modules:
                modules.append(module)
    return modules


def _module_folders(modules):
    """The folders that hold the top-level packages of ``modules`` (so a model file finds them)."""
    out = []
    for name in modules:
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None)
        if not path:
            continue
        folder = Path(path).resolve().parent
        for _ in range(name.count(".")):
            folder = folder.parent
        if str(folder) not in out:
            out.append(str(folder))
    return out
