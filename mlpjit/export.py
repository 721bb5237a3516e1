"""Export to ONNX: a model's whole prediction as one ONNX graph (``mlpjit export``, ``Sequential.to_onnx``).

The file is written with the ``onnx`` package (``pip install "mlpjit[onnx]"``) in opset
:data:`OPSET` (17, ONNX IR version 8: onnxruntime 1.13 and later, and most other runtimes, read
it).  It computes what ``model.predict`` computes, from the same raw inputs::

    X                   (N, F), or (N, C, H, W) for a model that starts with a convolution or pooling:
                        raw inputs in the training data's units (0-255 pixels for MNIST)
    X₀ = x_scale · X    the input scaling recorded in training (left out when it is 1)
    Xᵢ₊₁ = layerᵢ(Xᵢ)   each layer's nodes, in prediction mode (dropout off, batchnorm's running
                        statistics, standardize's stored μ and σ)
    logits              (N, k) = X_L = model.logits(X)

and then, by what the model was trained for (its metadata, as ``model.predict`` reads it):

===========================================  ===============================================================
model                                        outputs
===========================================  ===============================================================
classifier, loss on logits                   ``logits`` (N, k); ``probabilities`` (N, k) = softmax(logits)
(cross_entropy, soft_f1)                     = model.predict(X); ``classes`` (N,) int64 = argmax
classifier, binary_cross_entropy             ``logits`` (N, k); ``probabilities`` (N, k) = σ(logits), for
(soft_f1 with one output)                    one output the probability of class 1; ``classes`` (N,)
                                             int64 = [logit > 0] (k = 1) or argmax
classifier, another loss (mse on classes)    ``outputs`` (N, k) = model.predict(X); ``classes`` (N,) int64
regressor                                    ``outputs`` (N, k) = model.logits(X) (in the scaled target's
                                             units when the target was scaled); ``values`` (N, k) =
                                             outputs·y_scale + y_mean = model.predict(X)
never trained                                ``outputs`` (N, k) = model.predict(X)
===========================================  ===============================================================

``classes`` are ids 0..k−1 (``model.predict_classes(X, names=False)``); their names are in the
file's metadata (``class_names``, JSON).  A model trained on a table (``metadata["encoding"]``)
takes its *encoded* features, the numbers :class:`mlpjit.tables.TableEncoding` makes of the raw
columns (text one-hot): the encoding is in the metadata (``encoding``, JSON), strings are not
encoded in the graph.  The graph computes in the model's dtype: float32 in, float32 out; a
float64 model gives a float64 graph (onnxruntime's CPU kernels have no float64 Conv,
AveragePool, Erf or Atan: such a file checks, but onnxruntime refuses to run it).

Each layer writes its own nodes, in its own file, beside its kernels ("one layer, one file")::

    def onnx_nodes(self, g, x):          # x: the name of the input tensor; returns the output's
        y = g.op("Gemm", x, g.param("A", self.A), g.param("b", self.b))
        return g.activation(self.activation, y)

and each activation likewise (:mod:`mlpjit.activations`); :class:`Graph` is the ``g`` they
write with.  A layer or activation of your own without ``onnx_nodes`` (or one that changes the
forward pass of a class it inherits ``onnx_nodes`` from) is refused in one
:class:`~mlpjit.errors.ExportError` line naming it, and nothing is written.
"""

import json
from pathlib import Path

import numpy as np

from .errors import ExportError, MlpjitError

__all__ = ["OPSET", "IR_VERSION", "INSTALL_HINT", "Graph", "onnx_model", "to_onnx", "require_onnx",
           "export_method"]

OPSET = 17          # every operator the layers use exists there; onnxruntime ≥ 1.13 runs it
IR_VERSION = 8      # the IR version of opset 17 (onnx 1.13): the newest would shut out older runtimes
INSTALL_HINT = 'pip install "mlpjit[onnx]"'


def require_onnx():
    """The ``onnx`` module, or one MlpjitError line saying how to install it."""
    try:
        import onnx
        from onnx import helper  # noqa: F401
    except ImportError:
        raise MlpjitError(f"exporting to ONNX needs the onnx package, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return onnx


def _elem_type(onnx, dtype):
    return {np.dtype(np.float32): onnx.TensorProto.FLOAT,
            np.dtype(np.float64): onnx.TensorProto.DOUBLE}[np.dtype(dtype)]


# --- which classes say how they export ----------------------------------------------------------

def export_method(obj, forward_names):
    """``(obj.onnx_nodes, None)`` when obj says how it exports, else ``(None, None)`` (no class of
    it defines ``onnx_nodes``, or one sets it to None) or ``(None, owner)``: a class below
    ``owner``, the class that defines ``onnx_nodes``, changes the forward pass (defines one of
    ``forward_names``: a kernel, the calls), so the inherited nodes would export owner's math."""
    mro = type(obj).__mro__
    owner = next((c for c in mro if "onnx_nodes" in c.__dict__), None)
    if owner is None or owner.__dict__["onnx_nodes"] is None:
        return None, None
    for cls in mro[:mro.index(owner)]:
        if any(name in cls.__dict__ for name in forward_names):
            return None, owner
    return getattr(obj, "onnx_nodes"), None


def _described(obj, registered=True):
    """``Name, type 'name', from module m``: the class, its registered name and its module."""
    cls = type(obj)
    name = getattr(cls, "registered_name", None) if registered else None
    what = f"{cls.__name__}" + (f", type '{name}'" if name else "")
    if not cls.__module__.startswith("mlpjit."):
        what += f", from module {cls.__module__}"
    return what


_LAYER_FORWARD = ("forward", "forward_calls", "forward_kernel", "aliases", "nodes")
_ACTIVATION_FORWARD = ("forward", "forward_kernel", "forward_call")


class Graph:
    """What ``onnx_nodes(g, x)`` writes with: the graph being built, in the model's dtype.

    * ``g.op(op_type, *inputs, out=None, **attributes) -> name``: one node with one output,
      named ``<layer>.<out>`` (``"2.S"``; the op's name in lower case when ``out`` is None);
    * ``g.param(name, array) -> name``: an initializer named as the model file names the array
      (``"2.A"``), in the model's dtype;
    * ``g.const(value, name="c") -> name``: a constant (a number or an array) in the model's dtype;
    * ``g.activation(act, x) -> name``: f(x), written by the activation's ``onnx_nodes``;
    * ``g.layer(layer, x, index) -> name``: a layer inside a container (a residual block's);
    * ``g.dtype``: the model's numpy dtype; ``g.elem_type``: the ONNX element type.

    Names are unique (a second ``"2.S"`` becomes ``"2.S_2"``).
    """

    def __init__(self, dtype, onnx=None):
        self.onnx = onnx or require_onnx()
        self.dtype = np.dtype(dtype)
        self.elem_type = _elem_type(self.onnx, self.dtype)
        self.nodes, self.initializers = [], []
        self._names = set()
        self._path = []

    # --- names --------------------------------------------------------------------------------
    @property
    def where(self):
        """The current layer's path (``"3.0"``: layer 0 of the residual block at index 3)."""
        return ".".join(self._path)

    def name(self, hint):
        """A new tensor name: ``<layer path>.<hint>``, made unique."""
        base = f"{self.where}.{hint}" if self._path else str(hint)
        name, k = base, 2
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    # --- what a layer writes ----------------------------------------------------------------
    def op(self, op_type, *inputs, out=None, **attributes):
        """One node ``op_type(inputs)`` (attributes as keywords); returns its output's name."""
        y = self.name(out or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [y], name=y, **attributes))
        return y

    def param(self, name, array):
        """The array as an initializer named ``<layer path>.<name>`` (the model file's name)."""
        return self._initializer(self.name(name), np.asarray(array, dtype=self.dtype))

    def const(self, value, name="c"):
        """A number or an array as a constant initializer of the model's dtype."""
        return self._initializer(self.name(name), np.asarray(value, dtype=self.dtype))

    def ints(self, values, name):
        """An int64 constant (a shape for Reshape)."""
        return self._initializer(self.name(name), np.asarray(values, dtype=np.int64))

    def _initializer(self, name, array):
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def activation(self, act, x):
        """f(x) by the activation's ``onnx_nodes(g, x)``; an ExportError line when it has none."""
        method, inherited = export_method(act, _ACTIVATION_FORWARD)
        if method is None:
            where = f"layer {self.where}: " if self._path else ""
            if inherited is not None:
                raise ExportError(f"{where}activation '{act.name}' ({_described(act, registered=False)}) changes the forward "
                                  f"pass of {inherited.__name__} but inherits its ONNX export: give "
                                  f"{type(act).__name__} its own onnx_nodes(g, x) method (see mlpjit.export); "
                                  f"nothing was written")
            raise ExportError(f"{where}activation '{act.name}' ({_described(act, registered=False)}) does not say how it "
                              f"exports to ONNX: give {type(act).__name__} an onnx_nodes(g, x) method "
                              f"(see mlpjit.export); nothing was written")
        return method(self, x)

    def layer(self, layer, x, index):
        """The output of ``layer`` on x, its nodes named under ``<path>.<index>``; an ExportError
        line naming the layer when it does not say how it exports."""
        self._path.append(str(index))
        try:
            method, inherited = export_method(layer, _LAYER_FORWARD)
            if method is None:
                if inherited is not None:
                    raise ExportError(f"layer {self.where} ({_described(layer)}) changes the forward pass of "
                                      f"{inherited.__name__} but inherits its ONNX export: give "
                                      f"{type(layer).__name__} its own onnx_nodes(g, x) method (see "
                                      f"mlpjit.export); nothing was written")
                raise ExportError(f"layer {self.where} ({_described(layer)}) does not say how it exports to "
                                  f"ONNX: give {type(layer).__name__} an onnx_nodes(g, x) method (see "
                                  f"mlpjit.export); nothing was written")
            return method(self, x)
        finally:
            self._path.pop()


# --- the model -----------------------------------------------------------------------------------

def _input_shape(model, given):
    """One example's input shape: ``given``, else the metadata's ``input_shape``, else the first
    layer's width (a flat model built in code); with the output's width k."""
    meta = getattr(model, "metadata", None) or {}
    shape = given if given is not None else meta.get("input_shape")
    if shape is None:
        first = model.layers[0]
        width = getattr(first, "in_features", None) or getattr(first, "num_features", None)
        if model.takes_images or width is None:
            raise ExportError("the model does not record its input shape (metadata input_shape): "
                              "pass input_shape=(C, H, W) or (F,) to to_onnx")
        shape = (width,)
    shape = tuple(int(d) for d in shape)
    try:
        out = model.output_shape(shape)
    except ValueError as e:
        raise ExportError(f"input shape {shape} does not fit the model: {e}") from None
    if len(out) != 1 or out[0] is None:
        raise ExportError(f"the model gives outputs of shape {tuple(out)} per example; ONNX export "
                          f"needs flat rows (end with flatten and a dense layer)")
    return shape, int(out[0])


def _classes(g, scores, rule):
    """int64 class ids (N,) by a ``kernels.misc.PRED_*`` rule: the first largest output, or one
    output above a threshold (0 for a logit, 0.5 otherwise)."""
    from .kernels.misc import PRED_ARGMAX, PRED_HALF, PRED_POSITIVE
    if rule == PRED_ARGMAX:
        return g.op("ArgMax", scores, out="argmax", axis=1, keepdims=0, select_last_index=0)
    if rule not in (PRED_POSITIVE, PRED_HALF):
        raise ExportError(f"the loss's class rule {rule} has no ONNX form")
    above = g.op("Greater", scores, g.const(0.0 if rule == PRED_POSITIVE else 0.5, "threshold"))
    first = g.op("Reshape", above, g.ints([-1], "rows"), out="positive")
    return g.op("Cast", first, out="class_ids", to=g.onnx.TensorProto.INT64)


def onnx_model(model, input_shape=None):
    """The ``onnx.ModelProto`` of a model's prediction (see the module docstring), checked by
    ``onnx.checker.check_model(full_check=True)``.  ``input_shape``: one example's shape, when
    the model's metadata does not record it (a model built in code that starts with images)."""
    onnx = require_onnx()
    from . import __version__
    from .predicting import loss_of, task_of
    helper = onnx.helper
    meta = getattr(model, "metadata", None) or {}
    shape, k = _input_shape(model, input_shape)
    g = Graph(model.dtype, onnx)
    images = len(shape) == 3
    if meta.get("encoding"):
        x_doc = "the encoded features of a table's rows (see metadata 'encoding')"
    elif images:
        x_doc = "raw images (N, C, H, W) in the training data's units (flat rows: reshape them)"
    else:
        x_doc = "raw inputs, one row per example, in the training data's units"
    inputs = [helper.make_tensor_value_info("X", g.elem_type, ["N", *shape], doc_string=x_doc)]
    g._names.update(("X", "logits", "probabilities", "classes", "outputs", "values"))

    x = "X"
    scale = float(meta.get("x_scale", 1.0))
    if scale != 1.0:   # as predicting.inputs: the model's layers take X·x_scale
        x = g.op("Mul", x, g.const(scale, "x_scale"), out="X_scaled")
    for i, layer in enumerate(model.layers):
        x = g.layer(layer, x, i)

    loss, task = loss_of(model), task_of(model)
    outputs = []

    def output(tensor, name, doc, shape=("N", k), elem_type=None):
        g.nodes.append(helper.make_node("Identity", [tensor], [name], name=name))
        outputs.append(helper.make_tensor_value_info(name, elem_type or g.elem_type, list(shape),
                                                     doc_string=doc))

    if loss is None:
        output(x, "outputs", "the network's outputs (a model never trained: model.predict(X))")
    elif task == "classification":
        method, inherited = export_method(loss, ("transform",))
        if method is None:
            raise ExportError(f"loss '{loss.name}' ({_described(loss, registered=False)}) has an output transform but "
                              f"does not say how it exports to ONNX: give {type(loss).__name__} an "
                              f"onnx_nodes(g, Yhat, k) method; nothing was written")
        if loss.on_logits:
            output(x, "logits", "the logits (model.logits(X))")
            probs = method(g, x, k)
            op = next((n.op_type for n in g.nodes if probs in n.output), None)
            how = {"Softmax": "softmax of the logits",
                   "Sigmoid": "σ of the one logit: the probability of class 1" if k == 1 else "σ of each logit"}
            output(probs, "probabilities", f"each class's probability (model.predict(X)): "
                   f"{how.get(op, 'the loss transform of the logits')}")
        else:
            output(method(g, x, k), "outputs", "the network's outputs (model.predict(X))")
        output(_classes(g, x, loss.pred_rule(k)), "classes",
               "the predicted class ids 0..k-1 (model.predict_classes(X, names=False)); their names: "
               "metadata 'class_names'", shape=("N",), elem_type=onnx.TensorProto.INT64)
    else:
        scaled = meta.get("y_scale") is not None
        output(x, "outputs", "the network's outputs (model.logits(X))"
               + (", in the scaled target's units" if scaled else ""))
        y = x
        if scaled:   # as predicting.output: y = ŷ·s + m
            y = g.op("Mul", y, g.const(meta["y_scale"], "y_scale"))
            y = g.op("Add", y, g.const(meta["y_mean"], "y_mean"))
        output(y, "values", "the predicted values in the target's units (model.predict(X))")

    graph = helper.make_graph(g.nodes, str(meta.get("data") or "mlpjit"), inputs, outputs, g.initializers,
                              doc_string=f"mlpjit {__version__}: model.predict(X) as one graph "
                                         f"(see metadata_props)")
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mlpjit", producer_version=__version__,
                              doc_string="exported by mlpjit (mlpjit export / Sequential.to_onnx)")
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, _props(model, meta, shape, loss, task, outputs))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ExportError(f"the ONNX graph does not pass onnx.checker ({first[:200]}); nothing was "
                          f"written") from None
    return proto


def _props(model, meta, shape, loss, task, outputs):
    """metadata_props: strings, JSON where the value is a list or an object."""
    from . import __version__
    props = {"mlpjit_version": __version__, "opset": str(OPSET),
             "input_shape": json.dumps(list(shape)),
             "inputs": "X: " + ("a table's encoded features (see 'encoding')" if meta.get("encoding")
                                else "raw inputs in the training data's units"),
             "outputs": json.dumps({o.name: o.doc_string for o in outputs}, ensure_ascii=False),
             "dtype": np.dtype(model.dtype).name}
    if task is not None:
        props["task"] = task
    if loss is not None:
        props["loss"] = loss.name
    for key in ("data", "n_classes"):
        if meta.get(key) is not None:
            props[key] = str(meta[key])
    if meta.get("x_scale") is not None:
        props["x_scale"] = repr(float(meta["x_scale"]))   # applied in the graph: for the record
    for key in ("class_names", "target_names", "y_mean", "y_scale"):
        if meta.get(key) is not None:
            props[key] = json.dumps(meta[key], ensure_ascii=False)
    if meta.get("encoding") is not None:   # X holds the encoded features: these, in this order
        from .tables import TableEncoding
        props["encoding"] = json.dumps(meta["encoding"], ensure_ascii=False)
        props["features"] = json.dumps(TableEncoding.from_json(meta["encoding"]).feature_names,
                                       ensure_ascii=False)
    return props


def to_onnx(model, path, input_shape=None):
    """Write the model's ONNX file to ``path`` (atomically: the whole file or nothing); returns the
    path.  See :func:`onnx_model`."""
    proto = onnx_model(model, input_shape)
    data = proto.SerializeToString()
    from .io import atomic_write
    atomic_write(path, lambda f: f.write(data))
    return Path(path)
