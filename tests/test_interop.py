"""Weights to and from PyTorch (mlpjit.interop): the torch module computes what the model
computes, and the round trip keeps every weight exactly."""

import pickle
import sys

import numpy as np
import pytest

import mlpjit
from mlpjit.interop import from_torch, to_torch

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {np.float32: 1e-5, np.float64: 1e-12}
RNG = np.random.default_rng(0)


def _flat(f, dtype, units=5, k=4):
    return [mlpjit.Dense(k, units, activation=f, dtype=dtype, seed=1)]


def _images(dtype, *layers):
    return [mlpjit.Conv2D(2, 3, 3, padding=1, activation="tanh", dtype=dtype, seed=2), *layers]


ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid", {"name": "leaky_relu", "alpha": 0.2},
               {"name": "elu", "alpha": 0.5}, "softplus", "gelu", "swish", "softsign"]

# name -> (layers for a dtype, one example's input shape)
CASES = {
    **{f"dense_{a if isinstance(a, str) else a['name']}": (lambda d, a=a: _flat(a, d), (4,))
       for a in ACTIVATIONS},
    "activation_layer": (lambda d: _flat("identity", d) + [mlpjit.Activation("elu", alpha=0.3)], (4,)),
    "softmax": (lambda d: _flat("identity", d) + [mlpjit.Softmax()], (4,)),
    "dropout": (lambda d: _flat("relu", d) + [mlpjit.Dropout(0.5, seed=0),
                                              mlpjit.Dense(5, 2, dtype=d, seed=3)], (4,)),
    "batchnorm": (lambda d: _flat("identity", d) + [mlpjit.BatchNorm(5, momentum=0.3, eps=1e-3, dtype=d)], (4,)),
    "standardize": (lambda d: [mlpjit.Standardize(dtype=d)] + _flat("tanh", d), (4,)),
    "residual": (lambda d: _flat("identity", d) + [mlpjit.Residual([
        mlpjit.Dense(5, 5, activation="tanh", dtype=d, seed=4), mlpjit.Dense(5, 5, dtype=d, seed=5)])], (4,)),
    "conv_valid_stride2": (lambda d: [mlpjit.Conv2D(2, 3, (3, 2), stride=2, dtype=d, seed=2)], (2, 7, 8)),
    "conv_pad1": (lambda d: _images(d), (2, 6, 6)),
    "conv_same_odd": (lambda d: [mlpjit.Conv2D(2, 3, 3, padding="same", activation="relu", dtype=d, seed=2)],
                      (2, 5, 6)),
    "conv_same_even": (lambda d: [mlpjit.Conv2D(2, 3, 2, padding="same", dtype=d, seed=2)], (2, 5, 6)),
    "conv_same_even_stride2": (lambda d: [mlpjit.Conv2D(2, 3, 4, stride=2, padding="same", dtype=d, seed=2)],
                               (2, 7, 6)),
    "conv_full": (lambda d: [mlpjit.Conv2D(2, 3, 3, padding="full", dtype=d, seed=2)], (2, 4, 4)),
    "maxpool": (lambda d: _images(d, mlpjit.MaxPool2D(2)), (2, 6, 7)),
    "maxpool_stride": (lambda d: _images(d, mlpjit.MaxPool2D(3, stride=2)), (2, 7, 7)),
    "avgpool": (lambda d: _images(d, mlpjit.AvgPool2D((2, 3), stride=1)), (2, 5, 6)),
    "batchnorm_images": (lambda d: _images(d, mlpjit.BatchNorm(3, dtype=d)), (2, 4, 4)),
    "flatten": (lambda d: _images(d, mlpjit.Flatten(), mlpjit.Dense(3 * 4 * 4, 2, dtype=d, seed=3)), (2, 4, 4)),
    # whole models
    "mlp": (lambda d: [mlpjit.Standardize(dtype=d), mlpjit.Dense(4, 16, activation="relu", dtype=d, seed=1),
                       mlpjit.BatchNorm(16, dtype=d), mlpjit.Dropout(0.2, seed=0),
                       mlpjit.Dense(16, 8, activation="tanh", dtype=d, seed=2),
                       mlpjit.Dense(8, 3, dtype=d, seed=3)], (4,)),
    "cnn": (lambda d: [mlpjit.Conv2D(1, 4, 3, padding="same", activation="relu", dtype=d, seed=1),
                       mlpjit.MaxPool2D(2),
                       mlpjit.Conv2D(4, 6, 3, activation="relu", dtype=d, seed=2), mlpjit.MaxPool2D(2),
                       mlpjit.Flatten(), mlpjit.Dense(6 * 2 * 2, 8, activation="relu", dtype=d, seed=3),
                       mlpjit.Dropout(0.25, seed=0), mlpjit.Dense(8, 10, dtype=d, seed=4)], (1, 12, 12)),
}


def _model(name, dtype):
    make, shape = CASES[name]
    model = mlpjit.Sequential(make(dtype))
    X = RNG.standard_normal((6,) + shape).astype(dtype)
    if hasattr(model.layers[0], "adapt"):
        model.adapt(X * 3 + 1)
    for _ in range(3):   # batch norm's running estimates move away from 0 and 1
        model.forward(X * 2 + 0.5, training=True)
    # biases away from zero: a transposed or misplaced bias shows
    for name_, p, _ in model.parameters():
        if name_.endswith(".b"):
            p[...] = RNG.standard_normal(p.shape)
    return model, X


def _torch_out(module, X):
    with torch.no_grad():
        return module(torch.from_numpy(X)).numpy()


def _arrays(model):
    return [p for _, p, _ in model.parameters()] + [a for _, a in model.state_items()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_to_torch_computes_the_same_and_from_torch_gives_the_weights_back(name, dtype):
    model, X = _model(name, dtype)
    module = to_torch(model)
    assert not module.training
    assert all(p.dtype == (torch.float32 if dtype is np.float32 else torch.float64) for p in module.parameters())
    want = np.array(model.forward(X))
    got = _torch_out(module, X)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])

    back = from_torch(module)
    assert back.dtype == dtype
    before, after = _arrays(model), _arrays(back)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(back.forward(X), want)


def test_to_torch_outputs_are_the_models_logits():
    model, X = _model("mlp", np.float32)
    np.testing.assert_allclose(_torch_out(to_torch(model), X), model.logits(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("double", [False, True], ids=["float32", "float64"])
def test_a_torch_model_built_directly(double):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Dropout(0.1),
                        nn.Sequential(nn.Linear(8, 6, bias=False), nn.BatchNorm1d(6), nn.GELU()),
                        nn.Identity(), nn.Linear(6, 3), nn.Softmax(dim=-1))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2), nn.BatchNorm2d(4),
                        nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(4, 4, 2, stride=2), nn.LeakyReLU(0.1),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 2))
    for module, shape in ((mlp, (4,)), (cnn, (1, 8, 8))):
        for bn in (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        module = (module.double() if double else module).eval()
        dtype = np.float64 if double else np.float32
        X = RNG.standard_normal((5,) + shape).astype(dtype)
        model = from_torch(module)
        assert model.dtype == dtype
        np.testing.assert_allclose(model.forward(X), _torch_out(module, X), rtol=TOL[dtype], atol=TOL[dtype])
    assert [type(layer).__name__ for layer in from_torch(cnn).layers] == \
        ["Conv2D", "MaxPool2D", "BatchNorm", "Conv2D", "AvgPool2D", "Flatten", "Dense"]
    assert from_torch(cnn).layers[3].padding == "same"    # ZeroPad2d bottom/right + stride 2


def _one_line(excinfo, *words):
    text = str(excinfo.value)
    assert "\n" not in text and all(w in text for w in words), text


def test_what_is_not_shared_is_one_line_naming_it():
    with pytest.raises(ValueError) as e:
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.LSTM(4, 4)))
    _one_line(e, "module 1", "LSTM")
    with pytest.raises(ValueError) as e:
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh")))
    _one_line(e, "module 1", "GELU", "tanh")
    with pytest.raises(ValueError) as e:
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)))
    _one_line(e, "module 0", "Conv2d", "dilation")
    with pytest.raises(ValueError) as e:
        from_torch(nn.Sequential(nn.Linear(3, 4).half()))
    _one_line(e, "float16")
    with pytest.raises(ValueError) as e:
        from_torch(nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)))
    _one_line(e, "do not fit")
    with pytest.raises(ValueError) as e:
        to_torch(mlpjit.Sequential([mlpjit.Dense(2, 3, activation="arctan", seed=0)]))
    _one_line(e, "layer 0", "arctan")
    with pytest.raises(ValueError) as e:
        to_torch(mlpjit.Sequential([mlpjit.Standardize(), mlpjit.Dense(2, 3, seed=0)]))
    _one_line(e, "layer 0", "adapt")


def test_the_modules_of_our_own_pickle():
    model, X = _model("standardize", np.float64)
    module = pickle.loads(pickle.dumps(to_torch(model)))
    np.testing.assert_allclose(_torch_out(module, X), model.forward(X), rtol=1e-12, atol=1e-12)


def test_without_torch_it_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError) as e:
        to_torch(mlpjit.Sequential([mlpjit.Dense(2, 3, seed=0)]))
    _one_line(e, "pip install torch", "https://download.pytorch.org/whl/cpu")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_torchs_padding_same_is_mlpjits():
    module = nn.Sequential(nn.Conv2d(2, 3, (2, 4), padding="same"), nn.Softplus()).eval()
    (layer,) = from_torch(module).layers
    assert layer.padding == "same" and layer.activation.name == "softplus"
    X = RNG.standard_normal((3, 2, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(X), _torch_out(module, X), rtol=1e-5, atol=1e-5)
