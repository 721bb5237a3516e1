"""BatchNorm: a hand-worked example, gradient checks, a NumPy twin of PyTorch's BatchNorm1d/2d
(and PyTorch itself when it is installed), the compiled step against the layer path, configs,
model files and an exact resume."""

import json

import numpy as np
import pytest

import mlpjit
from mlpjit.gradcheck import gradcheck
from mlpjit.optim import SGD


def test_hand_worked_three_values():
    """One feature, x = (0, 1, 5), γ = 2, β = 0, ε ≈ 0:
    μ = 2, σ² = (4 + 1 + 9)/3 = 14/3, σ̃ = 2.16024689947, x̂ = (−2, −1, 3)/σ̃.
    With g = dY = (1, 0, 0): dβ = 1, dγ = x̂₀ = −0.92582009977,
    dx = (γ/(3σ̃))·(3g − dβ − x̂·dγ) = 0.30860669993·(1.14285714, −1.42857143, 0.28571429)
       = (0.35269337134, −0.44086671418, 0.08817334284)   (sums to 0).
    Running estimates (m₀ = 0.1): μ_run = 0.1·2 = 0.2, σ²_run = 0.9·1 + 0.1·(14/3)·(3/2) = 1.6."""
    bn = mlpjit.BatchNorm(1, eps=1e-12, dtype=np.float64)
    bn.gamma[...] = 2.0
    X = np.array([[0.0], [1.0], [5.0]])
    Y = bn.forward(X, training=True)
    np.testing.assert_allclose(Y[:, 0], 2 * np.array([-0.9258200997724522, -0.4629100498862261,
                                                      1.3887301496586784]), rtol=1e-12)
    dX = bn.backward(np.array([[1.0], [0.0], [0.0]]))
    np.testing.assert_allclose(bn.dbeta, [1.0], rtol=1e-12)
    np.testing.assert_allclose(bn.dgamma, [-0.9258200997724522], rtol=1e-12)
    np.testing.assert_allclose(dX[:, 0], [0.3526933713419433, -0.44086671417732987,
                                          0.08817334283538657], rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean, [0.2], rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, [1.6], rtol=1e-12)
    # prediction uses the running estimates: x̂ = (x − 0.2)/√(1.6 + ε)
    np.testing.assert_allclose(bn.forward(X)[:, 0], 2 * (X[:, 0] - 0.2) / np.sqrt(1.6), rtol=1e-10)


class TorchBatchNorm:
    """What torch.nn.BatchNorm1d/2d computes, in NumPy (float64): batch mean and biased
    variance in training, the running estimates (unbiased variance) updated with momentum."""

    def __init__(self, C, momentum=0.1, eps=1e-5):
        self.gamma, self.beta = np.ones(C), np.zeros(C)
        self.mean, self.var = np.zeros(C), np.ones(C)
        self.momentum, self.eps = momentum, eps

    def forward(self, X, training):
        axes = (0,) if X.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if X.ndim == 2 else (1, -1, 1, 1)
        if training:
            mu, var = X.mean(axis=axes), X.var(axis=axes)
            m = X.size // X.shape[1]
            self.mean = (1 - self.momentum) * self.mean + self.momentum * mu
            self.var = (1 - self.momentum) * self.var + self.momentum * var * m / (m - 1)
        else:
            mu, var = self.mean, self.var
        xhat = (X - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + self.eps)
        return self.gamma.reshape(shape) * xhat + self.beta.reshape(shape)


@pytest.mark.parametrize("shape", [(16, 5), (6, 3, 4, 5)])
def test_matches_the_pytorch_convention_over_several_steps(shape):
    rng = np.random.default_rng(0)
    bn = mlpjit.BatchNorm(shape[1], momentum=0.3, dtype=np.float64)
    twin = TorchBatchNorm(shape[1], momentum=0.3)
    bn.gamma[...] = twin.gamma[...] = rng.uniform(0.5, 2, shape[1])
    bn.beta[...] = twin.beta[...] = rng.normal(size=shape[1])
    for step in range(3):
        X = rng.normal(2.0, 3.0, shape)
        np.testing.assert_allclose(bn.forward(X, training=True), twin.forward(X, True), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean, twin.mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, twin.var, rtol=1e-12)
    X = rng.normal(size=shape)
    np.testing.assert_allclose(bn.forward(X), twin.forward(X, False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 4), (4, 3, 3, 2)])
def test_matches_torch_when_installed(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    C = shape[1]
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(C).double()
    bn = mlpjit.BatchNorm(C, dtype=np.float64)
    gamma, beta = rng.uniform(0.5, 2, C), rng.normal(size=C)
    with torch.no_grad():
        ref.weight[...] = torch.from_numpy(gamma)
        ref.bias[...] = torch.from_numpy(beta)
    bn.gamma[...], bn.beta[...] = gamma, beta
    X, G = rng.normal(1, 2, shape), rng.normal(size=shape)
    Xt = torch.from_numpy(X).requires_grad_(True)
    Yt = ref.train()(Xt)
    Yt.backward(torch.from_numpy(G))
    Y = bn.forward(X, training=True)
    dX = bn.backward(G)
    np.testing.assert_allclose(Y, Yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bn.dgamma, ref.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.dbeta, ref.bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean, ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, ref.running_var.numpy(), rtol=1e-12)
    X2 = rng.normal(size=shape)
    np.testing.assert_allclose(bn.forward(X2), ref.eval()(torch.from_numpy(X2)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layers,shape", [
    (lambda: [mlpjit.Dense(5, 4, activation="tanh", dtype=np.float64, seed=1),
              mlpjit.BatchNorm(4, dtype=np.float64), mlpjit.Dense(4, 3, dtype=np.float64, seed=2)], (5,)),
    (lambda: [mlpjit.Conv2D(2, 3, 3, padding="same", activation="tanh", dtype=np.float64, seed=1),
              mlpjit.BatchNorm(3, dtype=np.float64), mlpjit.Flatten(),
              mlpjit.Dense(3 * 4 * 4, 2, dtype=np.float64, seed=2)], (2, 4, 4)),
])
def test_gradient_check(layers, shape, training):
    rng = np.random.default_rng(2)
    model = mlpjit.Sequential(layers())
    bn = model.layers[1]
    bn.gamma[...] = rng.uniform(0.5, 2, bn.num_features)
    bn.beta[...] = rng.normal(size=bn.num_features)
    bn.running_mean[...] = rng.normal(size=bn.num_features)
    bn.running_var[...] = rng.uniform(0.5, 2, bn.num_features)
    X = rng.normal(size=(6,) + shape)
    y = rng.integers(0, model.layers[-1].units, 6)
    state = (bn.running_mean.copy(), bn.running_var.copy())
    errors = gradcheck(model, "cross_entropy", X, y, training=training)
    assert max(errors.values()) < 1e-6, errors
    assert {"1.gamma", "1.beta"} <= set(errors)
    if not training:  # prediction mode reads the running estimates and leaves them alone
        np.testing.assert_array_equal(bn.running_mean, state[0])


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("images", [False, True])
def test_compiled_step_matches_the_layer_path(dtype, rtol, images):
    from test_step import _layer_path
    from mlpjit.step import CompiledStep
    rng = np.random.default_rng(3)
    if images:
        shape = (2, 5, 5)

        def build():
            return mlpjit.Sequential([mlpjit.Conv2D(2, 3, 3, dtype=dtype, seed=1), mlpjit.BatchNorm(3, dtype=dtype),
                                      mlpjit.Activation("relu"), mlpjit.Flatten(),
                                      mlpjit.Dense(27, 3, dtype=dtype, seed=2)])
    else:
        shape = (6,)

        def build():
            return mlpjit.Sequential([mlpjit.Dense(6, 8, dtype=dtype, seed=1), mlpjit.BatchNorm(8, dtype=dtype),
                                      mlpjit.Activation("relu"), mlpjit.Dense(8, 3, dtype=dtype, seed=2)])
    n, bs = 29, 8                   # a last batch of 5
    X = rng.normal(size=(n,) + shape)
    y = rng.integers(0, 3, n)
    perm = rng.permutation(n)
    m1, m2 = build(), build()
    l1, l2 = mlpjit.losses.get("cross_entropy"), mlpjit.losses.get("cross_entropy")
    o1, o2 = SGD(m1.parameters(), lr=0.1, momentum=0.9), SGD(m2.parameters(), lr=0.1, momentum=0.9)
    _layer_path(m1, l1, o1, X, y, perm, bs, 0.1, {})
    step = CompiledStep(m2, l2, o2, X.reshape(n, -1), y, 1.0, "classification", bs, None, input_shape=shape)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {nm: 0.0 for nm in step.weight_names}}
    assert step.run(perm, 0, 4, 0.1, acc) == (4, None)
    assert "batchnorm_forward(" in step.source
    for (name, a), (_, b) in zip(m1.state_arrays().items(), m2.state_arrays().items()):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * max(1.0, np.abs(a).max()), err_msg=name)
    assert set(m2.state_arrays()) >= {"1.running_mean", "1.running_var", "1.gamma", "1.beta"}


def _spirals_bn(tmp_path, epochs=4):
    return {"name": "bn", "seed": 0,
            "data": {"name": "spirals", "classes": 3, "points": 120, "test_points": 30},
            "model": {"layers": [{"type": "dense", "units": 16}, {"type": "batchnorm"},
                                 {"type": "activation", "activation": "relu"},
                                 {"type": "dropout", "p": 0.1}, {"type": "dense", "units": 3}]},
            "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "schedule": {"type": "step", "every": 1, "gamma": 0.7}, "train": {"epochs": epochs, "batch_size": 16}}


def test_config_model_file_and_exact_resume(tmp_path, cfg_file, mlpjit_main):
    from mlpjit.config import config_from_dict, dump_yaml
    cfg = _spirals_bn(tmp_path)  # noqa
    resolved = dump_yaml(config_from_dict(cfg))
    assert "type: batchnorm\n" in resolved and "momentum: 0.1" in resolved and "num_features" not in resolved
    path = cfg_file(cfg)
    r = mlpjit_main("train", path, "--out", tmp_path / "run", "--quiet")
    assert r.code == 0, r.err
    model = mlpjit.Sequential.load(tmp_path / "run" / "model.npz")
    bn = model.layers[1]
    assert isinstance(bn, mlpjit.BatchNorm) and bn.num_features == 16
    assert not np.allclose(bn.running_var, 1.0)   # the running estimates were saved
    r = mlpjit_main("evaluate", tmp_path / "run")
    assert r.code == 0 and "test_accuracy" in r.out, r.err
    # prediction mode uses the running estimates: one example alone gives its batch's answer
    X = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_allclose(model.predict(X)[:1], model.predict(X[:1]), rtol=1e-6)


def test_resume_reproduces_the_running_estimates(tmp_path, cfg_file, mlpjit_main):
    cfg = _spirals_bn(tmp_path, epochs=2)
    path = cfg_file(cfg)
    assert mlpjit_main("train", path, "--out", tmp_path / "a", "--epochs", "4", "--quiet").code == 0
    assert mlpjit_main("train", path, "--out", tmp_path / "b", "--quiet").code == 0
    assert mlpjit_main("train", "--resume", tmp_path / "b", "--epochs", "4", "--quiet").code == 0
    a = np.load(tmp_path / "a" / "model.npz")
    b = np.load(tmp_path / "b" / "model.npz")
    assert set(a.files) == set(b.files)
    for key in a.files:
        if not key.startswith("__"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    metrics = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]


@pytest.mark.parametrize("layers,message", [
    ([{"type": "batchnorm", "num_features": 7}], "model.layers.0.num_features: 7, but its input has 2 features"),
    ([{"type": "batchnorm", "momentum": 0}], "model.layers.0.momentum: must be > 0 (got 0)"),
    ([{"type": "batchnorm", "eps": -1}], "model.layers.0.eps: must be > 0 (got -1)"),
])
def test_bad_configs_are_one_line(layers, message, cfg_file, mlpjit_main, tmp_path):
    cfg = {"name": "bad", "data": {"name": "spirals", "points": 30, "test_points": 10},
           "model": {"layers": layers + [{"type": "dense", "units": 3}]}, "loss": "cross_entropy"}
    r = mlpjit_main("config", "check", cfg_file(cfg))
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r.err


def test_batchnorm_of_a_wrong_shape_names_the_layer():
    with pytest.raises(ValueError, match=r"BatchNorm\(4\) expects 4 features but gets 3"):
        mlpjit.Sequential([mlpjit.BatchNorm(4)]).output_shape((3,))
    with pytest.raises(ValueError, match="normalizes rows of features"):
        mlpjit.BatchNorm(4).output_shape((4, 2))
