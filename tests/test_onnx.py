"""ONNX export, checked rather than assumed: every shipped config's model and every layer type,
written with ``model.to_onnx`` / ``mlpjit export``, passes ``onnx.checker`` (full check) and, run in
onnxruntime on the raw inputs ``model.predict`` takes, gives

    logits / outputs  = model.logits(X)
    probabilities / values = model.predict(X)      (softmax or σ; the target's units)
    classes = model.predict_classes(X, names=False)

to |ONNX − mlpjit| ≤ 1e-5·max(1, |mlpjit|) in float32 (1e-12 in float64)."""

import json
import sys

import numpy as np
import pytest

import mlpjit
from mlpjit.config import load_config, resolved_dict
from mlpjit.data import load_dataset
from mlpjit.errors import ExportError
from mlpjit.export import OPSET
from mlpjit.packaged import CONFIGS
from mlpjit.trainer import Trainer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SHIPPED = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
SMALL = {"mnist": ["data.subset=200", "data.test_subset=20", "data.validation=20"],
         "spirals": ["data.points=60", "data.test_points=20", "data.validation=0"],
         "sine": ["data.points=60", "data.test_points=20", "data.validation=0"]}
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
CLASSIFIER = {"loss": "cross_entropy", "task": "classification"}


# --- helpers ------------------------------------------------------------------------------------

def checked(path):
    """The file's ModelProto, after onnx.checker's full check (strict shape inference)."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def run_onnx(path, X):
    """{output name: array} of onnxruntime on X (as the file's input dtype), one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    dtype = np.float64 if sess.get_inputs()[0].type == "tensor(double)" else np.float32
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"X": np.asarray(X, dtype=dtype)})))


def assert_close(got, want, what, dtype=np.float32):
    """|got − want| ≤ tol·max(1, |want|) element-wise; prints the largest difference."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    print(f"{what}: max |Δ| {np.abs(got - want).max():.2e}, relative {err.max():.2e}")
    assert err.max() <= TOL[np.dtype(dtype)], f"{what}: differs by {err.max():.3g}"


def exported(model, X, tmp_path, what, input_shape=None):
    """Export, check, run in onnxruntime on raw X; compare every output with mlpjit's."""
    path = model.to_onnx(tmp_path / f"{what}.onnx", input_shape=input_shape)
    proto = checked(path)
    outs = run_onnx(path, X)
    dtype = model.dtype
    first = outs["logits"] if "logits" in outs else outs["outputs"]
    assert_close(first, model.logits(X), f"{what} logits", dtype)
    if "probabilities" in outs:
        assert_close(outs["probabilities"], model.predict(X), f"{what} probabilities", dtype)
    if "values" in outs:
        assert_close(outs["values"], model.predict(X), f"{what} values", dtype)
    if "outputs" in outs and "values" not in outs:
        assert_close(outs["outputs"], model.predict(X), f"{what} outputs", dtype)
    if "classes" in outs:
        assert outs["classes"].dtype == np.int64
        np.testing.assert_array_equal(outs["classes"], model.predict_classes(X, names=False))
    return outs, proto


def props(proto):
    return {p.key: p.value for p in proto.metadata_props}


def io_shape(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def shipped(name, tmp_path):
    """A shipped config's model as the trainer builds it (its metadata, its x_scale), untrained,
    its biases set to nonzero values and a zero-initialized A drawn (mnist_softmax), with its
    data set's raw test inputs."""
    path = CONFIGS / f"{name}.yaml"
    source = resolved_dict(load_config(path))["data"]["name"]
    cfg = resolved_dict(load_config(path, SMALL.get(source, [])))
    model = Trainer(cfg, tmp_path / "run", log=lambda *a, **k: None, progress=False).model
    rng = np.random.default_rng(0)
    for _, p, _ in model.parameters():
        if not p.any():
            p[...] = rng.normal(0.0, 0.1 if p.ndim == 1 else 0.05, p.shape)
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    return model, ds, cfg


# --- every shipped config -----------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_configs_model_exports_and_predicts_alike(name, tmp_path):
    model, ds, cfg = shipped(name, tmp_path)
    X = ds.X_test[:9]                                  # raw: 0-255 pixels for MNIST
    if model.takes_images:
        X = X.reshape((len(X),) + tuple(model.metadata["input_shape"]))
    outs, proto = exported(model, X, tmp_path, name)
    meta = props(proto)
    graph = proto.graph
    assert proto.opset_import[0].version == OPSET == 17
    assert [i.name for i in graph.input] == ["X"]
    assert io_shape(graph.input[0]) == ["N", *model.metadata["input_shape"]]
    k = model.output_shape(tuple(model.metadata["input_shape"]))[0]
    assert meta["task"] == ds.task and meta["loss"] == cfg["loss"]
    assert meta["mlpjit_version"] == mlpjit.__version__
    assert float(meta["x_scale"]) == pytest.approx(model.metadata["x_scale"])
    if ds.task == "classification":
        assert [o.name for o in graph.output] == ["logits", "probabilities", "classes"]
        assert io_shape(graph.output[1]) == ["N", k] and io_shape(graph.output[2]) == ["N"]
        if cfg["loss"] == "cross_entropy":
            np.testing.assert_allclose(outs["probabilities"].sum(1), 1.0, rtol=1e-6)
    else:
        assert [o.name for o in graph.output] == ["outputs", "values"]
    # the parameters are initializers named as in model.npz
    assert {n for n, _, _ in model.parameters()} <= {t.name for t in graph.initializer}


def test_mnist_raw_pixels_in_the_graph_scale_by_1_over_255(tmp_path):
    model, ds, _ = shipped("mnist_mlp", tmp_path)
    path = model.to_onnx(tmp_path / "m.onnx")
    scale = [t for t in checked(path).graph.initializer if t.name == "x_scale"]
    assert onnx.numpy_helper.to_array(scale[0]) == np.float32(1 / 255)
    pixels = ds.X_test[:3]
    assert pixels.max() > 1   # raw 0-255 in
    np.testing.assert_array_equal(run_onnx(path, pixels)["classes"], model.predict_classes(pixels))


# --- each layer type ----------------------------------------------------------------------------

ACTIVATIONS = [a if a not in ("leaky_relu", "elu", "tanh_linear") else
               {"leaky_relu": {"name": "leaky_relu", "alpha": 0.2}, "elu": {"name": "elu", "alpha": 0.7},
                "tanh_linear": {"name": "tanh_linear", "a": 0.3}}[a] for a in mlpjit.activations.names()]


def _rows(n=24, f=4, seed=0):
    """Rows of values up to ±40: the activations' overflow-free forms are exercised."""
    X = np.random.default_rng(seed).normal(0.0, 3.0, (n, f))
    X[0], X[1] = 40.0, -40.0
    return X


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a if isinstance(a, str) else a["name"])
def test_dense_and_activation_layers_with_every_activation(act, tmp_path):
    """Y = f(X·A + b) (dense), then f again as an activation layer, then the logits."""
    model = mlpjit.Sequential([mlpjit.Dense(4, 6, activation=act, seed=1, bias_init=0.1),
                               mlpjit.Activation(act), mlpjit.Dense(6, 3, seed=2)])
    model.metadata = dict(CLASSIFIER, input_shape=[4], class_names=["a", "b", "c"], n_classes=3)
    _, proto = exported(model, _rows(), tmp_path, f"activation {act}")
    assert json.loads(props(proto)["class_names"]) == ["a", "b", "c"]


def test_softmax_and_dropout_layers(tmp_path):
    """Dropout is the identity in prediction; a final softmax layer is part of the outputs."""
    model = mlpjit.Sequential([mlpjit.Dense(4, 8, activation="relu", seed=1), mlpjit.Dropout(0.5, seed=3),
                               mlpjit.Dense(8, 3, seed=2), mlpjit.Softmax()])
    outs, proto = exported(model, _rows(), tmp_path, "softmax, dropout")   # never trained: outputs only
    assert list(outs) == ["outputs"]
    np.testing.assert_allclose(outs["outputs"].sum(1), 1.0, rtol=1e-6)
    assert "Identity" in {n.op_type for n in proto.graph.node if n.name.startswith("1.")}


def test_standardize_takes_raw_features_with_its_stored_mean_and_scale(tmp_path):
    """Y = (X − μ)/σ with μ, σ of the data (a constant feature: σ = 1) inside the graph."""
    rng = np.random.default_rng(1)
    X = rng.normal(50.0, 30.0, (30, 4)) * np.array([1, 100, 0.01, 1])
    X[:, 3] = 7.0
    model = mlpjit.Sequential([mlpjit.Standardize(), mlpjit.Dense(4, 5, activation="tanh", seed=1),
                               mlpjit.Dense(5, 3, seed=2)])
    model.adapt(X)
    model.metadata = dict(CLASSIFIER, input_shape=[4])
    _, proto = exported(model, X, tmp_path, "standardize")
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_allclose(stored["0.mean"], X.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stored["0.std"], np.where(X.std(0) == 0, 1, X.std(0)), rtol=1e-6)


def test_a_standardize_layer_never_adapted_is_refused_in_one_line(tmp_path):
    model = mlpjit.Sequential([mlpjit.Standardize(), mlpjit.Dense(4, 2, seed=1)])
    with pytest.raises(ExportError, match=r"^layer 0 \(Standardize\(\)\) was never adapted"):
        model.to_onnx(tmp_path / "m.onnx", input_shape=(4,))
    assert not list(tmp_path.iterdir())


def _train_batchnorm(model, X, steps=3):
    """A few training passes (the running estimates move), then γ, β, μ_run, σ²_run drawn away
    from (1, 0, 0, 1)."""
    rng = np.random.default_rng(2)
    for _ in range(steps):
        model.forward(X * 2.0 + 3.0, training=True)
    for layer in model.walk():
        if isinstance(layer, mlpjit.BatchNorm):
            C = layer.num_features
            layer.gamma[...] = rng.uniform(0.5, 2.0, C)
            layer.beta[...] = rng.normal(0.0, 0.5, C)
            layer.running_mean[...] += rng.normal(0.0, 1.0, C)
            layer.running_var[...] *= rng.uniform(0.3, 3.0, C)


def test_batchnorm_on_rows_uses_its_running_statistics(tmp_path):
    X = _rows()
    model = mlpjit.Sequential([mlpjit.Dense(4, 6, seed=1), mlpjit.BatchNorm(6, momentum=0.5),
                               mlpjit.Activation("relu"), mlpjit.Dense(6, 3, seed=2)])
    _train_batchnorm(model, X)
    model.metadata = dict(CLASSIFIER, input_shape=[4])
    exported(model, X, tmp_path, "batchnorm rows")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same", "full", 1])
def test_conv2d_with_each_padding_and_stride_then_both_poolings(padding, stride, tmp_path):
    """A 3×2 kernel on 7×8 images (an even kernel width: "same" pads 0 left, 1 right), then
    batchnorm per channel, max pooling and average pooling (2×2, stride 1), flatten, dense."""
    conv = mlpjit.Conv2D(2, 3, (3, 2), stride=stride, padding=padding, activation="relu", seed=1,
                         bias_init=0.05)
    pools = [mlpjit.BatchNorm(3), mlpjit.MaxPool2D(2, stride=1), mlpjit.AvgPool2D(2, stride=1), mlpjit.Flatten()]
    shape = (2, 7, 8)
    width = mlpjit.Sequential([conv, *pools]).output_shape(shape)[0]
    model = mlpjit.Sequential([conv, *pools, mlpjit.Dense(width, 4, seed=2)])
    X = np.random.default_rng(3).normal(0.0, 1.0, (5,) + shape)
    _train_batchnorm(model, X)
    model.metadata = dict(CLASSIFIER, input_shape=list(shape))
    _, proto = exported(model, X, tmp_path, f"conv2d padding={padding} stride={stride}")
    node = next(n for n in proto.graph.node if n.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in node.attribute}
    (pt, pb), (pl, pr) = conv.pads
    assert attrs["pads"] == [pt, pl, pb, pr] and attrs["strides"] == [stride, stride]


def test_pooling_windows_overlapping_and_not(tmp_path):
    """MaxPool 2×2 (its fast path), 3×3 stride 2 (overlapping); AvgPool 2×3 stride (1, 2)."""
    shape = (2, 14, 22)
    layers = [mlpjit.MaxPool2D(2), mlpjit.Conv2D(2, 2, 1, seed=3), mlpjit.MaxPool2D(3, stride=2),
              mlpjit.AvgPool2D((2, 3), stride=(1, 2)), mlpjit.Flatten()]
    width = int(np.prod(mlpjit.Sequential(layers).output_shape(shape)))
    model = mlpjit.Sequential(layers + [mlpjit.Dense(width, 3, seed=4)])
    model.metadata = dict(CLASSIFIER, input_shape=list(shape))
    exported(model, np.random.default_rng(4).normal(0.0, 1.0, (4,) + shape), tmp_path, "pooling")


def test_residual_blocks_add_their_input(tmp_path):
    """y = x + F(x), on rows (F: dense relu, dense) and on images (F: conv same, batchnorm)."""
    rows = mlpjit.Sequential([mlpjit.Dense(4, 6, activation="tanh", seed=1),
                              mlpjit.Residual([mlpjit.Dense(6, 6, activation="relu", seed=2),
                                               mlpjit.Dense(6, 6, seed=3)]),
                              mlpjit.Dense(6, 3, seed=4)])
    rows.metadata = dict(CLASSIFIER, input_shape=[4])
    _, proto = exported(rows, _rows(), tmp_path, "residual rows")
    assert {"1.0.A", "1.1.b"} <= {t.name for t in proto.graph.initializer}
    shape = (2, 6, 6)
    images = mlpjit.Sequential([mlpjit.Residual([mlpjit.Conv2D(2, 2, 3, padding="same", activation="relu", seed=1),
                                                 mlpjit.BatchNorm(2)]),
                                mlpjit.Flatten(), mlpjit.Dense(72, 3, seed=2)])
    X = np.random.default_rng(5).normal(0.0, 1.0, (4,) + shape)
    _train_batchnorm(images, X)
    images.metadata = dict(CLASSIFIER, input_shape=list(shape))
    exported(images, X, tmp_path, "residual images")


# --- what the outputs are, by loss ---------------------------------------------------------------

@pytest.mark.parametrize("loss, k, transform", [("binary_cross_entropy", 1, "Sigmoid"),
                                                ("binary_cross_entropy", 3, "Sigmoid"),
                                                ("soft_f1", 1, "Sigmoid"), ("soft_f1", 3, "Softmax")])
def test_classifier_outputs_follow_the_loss(loss, k, transform, tmp_path):
    model = mlpjit.Sequential([mlpjit.Dense(4, 5, activation="tanh", seed=1, bias_init=0.2),
                               mlpjit.Dense(5, k, seed=2)])
    model.metadata = {"loss": loss, "task": "classification", "input_shape": [4]}
    outs, proto = exported(model, _rows(), tmp_path, f"{loss} k={k}")
    assert list(outs) == ["logits", "probabilities", "classes"]
    assert any(n.op_type == transform and "probabilities" not in n.output for n in proto.graph.node)
    if k == 1:   # the one logit: class 1 when it is positive
        np.testing.assert_array_equal(outs["classes"], (outs["logits"][:, 0] > 0).astype(np.int64))


def test_a_classifier_without_an_output_transform_gives_its_outputs_and_classes(tmp_path):
    """mse on 0/1 classes with one output: the class is output > 0.5."""
    model = mlpjit.Sequential([mlpjit.Dense(4, 1, seed=1, bias_init=0.5)])
    model.metadata = {"loss": "mse", "task": "classification", "input_shape": [4]}
    outs, _ = exported(model, _rows() / 10, tmp_path, "mse classifier")
    assert list(outs) == ["outputs", "classes"] and 0 < outs["classes"].sum() < len(outs["classes"])


def test_a_regressor_gives_values_in_the_targets_units(tmp_path):
    """values = outputs·y_scale + y_mean (a scaled target), outputs = model.logits."""
    model = mlpjit.Sequential([mlpjit.Dense(4, 8, activation="tanh", seed=1), mlpjit.Dense(8, 2, seed=2)])
    model.metadata = {"loss": "mse", "task": "regression", "input_shape": [4], "y_mean": [1000.0, -3.0],
                      "y_scale": [250.0, 0.5], "target_names": ["price", "delta"]}
    outs, proto = exported(model, _rows(), tmp_path, "regressor y_scale")
    np.testing.assert_allclose(outs["values"], outs["outputs"] * [250.0, 0.5] + [1000.0, -3.0], rtol=1e-6)
    meta = props(proto)
    assert json.loads(meta["y_scale"]) == [250.0, 0.5] and json.loads(meta["target_names"]) == ["price", "delta"]
    assert set(json.loads(meta["outputs"])) == {"outputs", "values"}


def test_a_table_model_exports_the_network_on_encoded_features(tmp_path):
    """Text columns are one-hot encoded outside the graph: the file takes the encoded features,
    and its metadata holds the encoding and the features' names."""
    table = tmp_path / "t.csv"
    table.write_text("size,color,weight,kind\n1.0,red,100,apple\n2.0,green,2000,melon\n1.5,red,150,apple\n"
                     "2.5,blue,2500,melon\n1.2,green,120,apple\n3.0,blue,3100,melon\n")
    cfg = {"name": "fruit", "seed": 0, "data": {"name": "csv", "train": str(table), "target": "kind"},
           "model": {"layers": [{"type": "standardize"}, {"type": "dense", "units": 2}]},
           "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "train": {"epochs": 1, "batch_size": 2}}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))     # JSON is YAML
    trainer = Trainer(resolved_dict(load_config(tmp_path / "c.yaml")), tmp_path / "run", log=lambda *a, **k: None,
                      progress=False)
    model = trainer.model
    model.adapt(trainer.data.X_train)
    X = trainer.data.X_train                  # encoded: size, color=red/green/blue one-hot, weight
    _, proto = exported(model, X, tmp_path, "table")
    meta = props(proto)
    assert json.loads(meta["encoding"]) == model.metadata["encoding"]
    features = json.loads(meta["features"])
    assert len(features) == X.shape[1] and {"size", "weight", "color=red", "color=blue"} <= set(features)
    assert json.loads(meta["class_names"]) == ["apple", "melon"]
    raw = {"size": [1.3], "color": ["green"], "weight": [130]}
    encoded = mlpjit.predicting.inputs(model, raw)[0]
    np.testing.assert_allclose(run_onnx(tmp_path / "table.onnx", encoded)["probabilities"], model.predict(raw),
                               rtol=1e-5, atol=1e-6)


# --- dtypes --------------------------------------------------------------------------------------

def test_float64_models_export_float64(tmp_path):
    """A float64 model gives a float64 graph, equal to 1e-12 in onnxruntime where it has the
    kernels; a float64 convolution checks but onnxruntime has no float64 Conv to run it."""
    acts = ["tanh", "relu", "sigmoid", {"name": "elu", "alpha": 0.7}, "softplus", "softsign", "swish",
            {"name": "leaky_relu", "alpha": 0.2}, {"name": "tanh_linear", "a": 0.3}]
    f64 = np.float64
    layers = [mlpjit.Standardize(dtype=f64)]
    for i, act in enumerate(acts):
        layers.append(mlpjit.Dense(4, 4, activation=act, dtype=f64, seed=i, bias_init=0.1))
    layers += [mlpjit.BatchNorm(4, dtype=f64), mlpjit.Residual([mlpjit.Dense(4, 4, dtype=f64, seed=20)]),
               mlpjit.Dense(4, 3, dtype=f64, seed=21)]
    model = mlpjit.Sequential(layers)
    X = _rows()
    model.adapt(X)
    _train_batchnorm(model, X)
    model.metadata = dict(CLASSIFIER, input_shape=[4])
    _, proto = exported(model, X, tmp_path, "float64 dense")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    conv = mlpjit.Sequential([mlpjit.Conv2D(1, 2, 3, dtype=f64, seed=1), mlpjit.AvgPool2D(2), mlpjit.Flatten(),
                              mlpjit.Dense(8, 2, dtype=f64, seed=2)])
    proto = checked(conv.to_onnx(tmp_path / "conv64.onnx", input_shape=(1, 6, 6)))
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.DOUBLE}


# --- what does not export, and the input shape ----------------------------------------------------
# The layers and activations of a user here are not registered: registering one rebuilds the config
# schema, under the feet of the other test modules of this process.

class Scale(mlpjit.Layer):
    """Y = 2·X in NumPy, with no word on ONNX."""

    def forward(self, X, training=False):
        return np.asarray(X) * 2.0


class ExportedScale(Scale):
    def onnx_nodes(self, g, x):
        return g.op("Mul", x, g.const(2.0, "two"), out="Y")


class MisspeltScale(Scale):
    def onnx_nodes(self, g, x):
        return g.op("Mull", x, g.const(2.0, "two"), out="Y")


class SneakyDense(mlpjit.Dense):
    """Changes Dense's forward pass but would inherit its ONNX nodes."""

    def forward(self, X, training=False):
        return super().forward(X, training) * 3.0


class Square(mlpjit.activations.Activation):
    def forward(self, S, Y):
        np.multiply(S, S, out=Y)


def test_a_layer_that_does_not_say_how_it_exports_is_one_line_and_no_file(tmp_path):
    model = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1), Scale()])
    with pytest.raises(ExportError) as e:
        model.to_onnx(tmp_path / "m.onnx")
    assert str(e.value) == ("layer 1 (Scale, from module test_onnx) does not say how it exports to ONNX: give "
                            "Scale an onnx_nodes(g, x) method (see mlpjit.export); nothing was written")
    assert not list(tmp_path.iterdir())        # no file, no temporary file
    with pytest.raises(ExportError, match=r"^the ONNX graph does not pass onnx.checker \(.*Mull.*\); nothing"):
        mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1), MisspeltScale()]).to_onnx(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
    ok = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1), ExportedScale()])
    exported(ok, _rows(f=2), tmp_path, "a layer of ours with onnx_nodes")


def test_a_subclass_that_changes_the_forward_pass_or_an_activation_without_export_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"^layer 0 \(SneakyDense, type 'dense', from module test_onnx\) changes "
                                          r"the forward pass of Dense but inherits its ONNX export"):
        mlpjit.Sequential([SneakyDense(2, 2, seed=1)]).to_onnx(tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"^layer 0: activation 'square' \(Square, from module test_onnx\) "
                                          r"does not say how it exports to ONNX"):
        mlpjit.Sequential([mlpjit.Dense(2, 2, activation=Square(), seed=1)]).to_onnx(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_an_image_model_without_a_recorded_input_shape_needs_one(tmp_path):
    model = mlpjit.Sequential([mlpjit.Conv2D(1, 2, 3, seed=1), mlpjit.Flatten(), mlpjit.Dense(8, 2, seed=2)])
    with pytest.raises(ExportError, match=r"pass input_shape=\(C, H, W\)"):
        model.to_onnx(tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"input shape \(1, 5, 5\) does not fit the model"):
        model.to_onnx(tmp_path / "m.onnx", input_shape=(1, 5, 5))
    proto = checked(model.to_onnx(tmp_path / "m.onnx", input_shape=(1, 4, 4)))
    assert io_shape(proto.graph.input[0]) == ["N", 1, 4, 4]


# --- the command line ---------------------------------------------------------------------------

def test_cli_exports_a_run_folder(tmp_path, mlpjit_main):
    model, ds, _ = shipped("spirals", tmp_path)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    model.save(run / "model.npz")
    r = mlpjit_main("export", run, "--format", "onnx", "-o", tmp_path / "spirals.onnx")
    assert r.code == 0, r.text
    size = (tmp_path / "spirals.onnx").stat().st_size
    assert r.out.strip() == f"wrote {tmp_path / 'spirals.onnx'} ({-(-size // 1024)} KiB, opset 17)"
    checked(tmp_path / "spirals.onnx")
    X = ds.X_test[:5]
    np.testing.assert_allclose(run_onnx(tmp_path / "spirals.onnx", X)["probabilities"], model.predict(X),
                               rtol=1e-5, atol=1e-6)
    r = mlpjit_main("export", run / "model.npz", "-o", tmp_path / "again.onnx")   # a model file; onnx by default
    assert r.code == 0, r.text


def test_cli_export_never_clobbers_the_model_a_folder_or_a_run_file(tmp_path, mlpjit_main):
    model = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1)])
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.npz")
    before = (run / "model.npz").read_bytes()
    (tmp_path / "odd.onnx").write_bytes(before)        # a model file with an .onnx name
    for out, says in [(tmp_path / "odd.onnx", "is an input of this command"),
                      (run / "model.npz", "give a .onnx file"),
                      (run, "give a .onnx file"),
                      (tmp_path / "no" / "m.onnx", "does not exist")]:
        source = tmp_path / "odd.onnx" if out.name == "odd.onnx" else run
        r = mlpjit_main("export", source, "-o", out)
        assert r.code == 2 and says in r.err and r.err.count("\n") == 1, r.text
    assert (run / "model.npz").read_bytes() == before == (tmp_path / "odd.onnx").read_bytes()
    (tmp_path / "empty").mkdir()
    r = mlpjit_main("export", tmp_path / "empty", "-o", tmp_path / "m.onnx")
    assert r.code == 2 and "no model.npz in this folder" in r.err, r.text


def test_cli_without_the_onnx_package_says_how_to_install_it(tmp_path, mlpjit_main, monkeypatch):
    model = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1)])
    model.save(tmp_path / "model.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)       # as if it were not installed
    r = mlpjit_main("export", tmp_path / "model.npz", "-o", tmp_path / "m.onnx")
    assert r.code == 2 and r.err.count("\n") == 1, r.text
    assert 'pip install "mlpjit[onnx]"' in r.err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(mlpjit.MlpjitError, match=r'pip install "mlpjit\[onnx\]"'):
        model.to_onnx(tmp_path / "m.onnx")


USER_LAYERS = """
import numpy as np
import mlpjit

@mlpjit.register_layer("onnx_user_scale")
class UserScale(mlpjit.Layer):
    def forward(self, X, training=False):
        return np.asarray(X) * 2.0
"""


def test_cli_a_user_layer_without_export_is_one_line_and_no_file(tmp_path, mlpjit_proc):
    """In a user's own session (a subprocess: the layer is registered there, not here), then
    ``mlpjit export --trust`` on the model file."""
    import subprocess
    from conftest import proc_env
    (tmp_path / "onnx_user_layers.py").write_text(USER_LAYERS)
    save = ("import mlpjit, onnx_user_layers as u; "
            "mlpjit.Sequential([mlpjit.Dense(2, 2, seed=1), u.UserScale()]).save('model.npz')")
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, env=proc_env(), check=True, timeout=120)
    r = mlpjit_proc("export", "model.npz", "-o", "m.onnx", "--trust", "onnx_user_layers")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert r.err.startswith("error: layer 1 (UserScale, type 'onnx_user_scale', from module onnx_user_layers) "
                            "does not say how it exports to ONNX"), r.err
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".m.onnx*"))   # nor a temporary file
