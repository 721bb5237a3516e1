"""Your own layer: a 4-parameter sinusoid y = a2·sin(a0·x + a1) + a3 with a hand-derived backward.

The layer subclasses :class:`mlpjit.Layer` (``forward``, ``backward``, ``parameters``).  With
z = a0·x + a1 and an incoming dY (= ∂E/∂y), the chain rule gives, summed over the batch:

    d a0 = Σ dy·a2·cos(z)·x      d a1 = Σ dy·a2·cos(z)
    d a2 = Σ dy·sin(z)           d a3 = Σ dy
    dx   = dy·a2·a0·cos(z)

``mlpjit.gradcheck`` compares this with central differences; then the layer is fitted to the
``sine`` data with an explicit loop (forward, mse loss, backward, θ ← θ − η·g).  Fitting a
sinusoid is non-convex in the frequency a0 (many local minima), so the loop starts from a few
frequencies and keeps the fit with the lowest training loss.  For comparison, a 1-32-32-1 tanh
MLP is trained on the same data by the trainer.  Run:  python examples/sine_layer.py [--quick]
"""

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import mlpjit
except ImportError:                      # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mlpjit

from mlpjit.data import load_dataset

TRUE_A = [2.0, 0.5, 1.5, 0.3]            # the data of configs/sine.yaml
DATA = {"name": "sine", "points": 1000, "test_points": 200, "a": TRUE_A, "noise": 0.1}
STARTS = (0.5, 1.0, 1.5, 2.5, 3.0)       # initial frequencies a0 tried by fit_layer


class SineLayer(mlpjit.Layer):
    """y = a2·sin(a0·x + a1) + a3 on inputs of shape (batch, 1); parameters ``a`` = [a0..a3]."""

    type_name = "sine"

    def __init__(self, a=(1.0, 0.0, 1.0, 0.0)):
        self.a = np.array(a, dtype=np.float64)      # float64: gradcheck needs it
        self.da = np.zeros(4)
        self._X = None

    def forward(self, X, training=False):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 1:
            raise ValueError(f"SineLayer expects input of shape (batch, 1), got {X.shape}")
        a0, a1, a2, a3 = self.a
        z = a0 * X + a1
        self._X, self._sin, self._cos = X, np.sin(z), np.cos(z)
        return a2 * self._sin + a3

    def backward(self, dY, need_dX=True):
        self._need_forward()
        dY = np.asarray(dY, dtype=np.float64).reshape(self._X.shape)
        a0, _, a2, _ = self.a
        dz = dY * a2 * self._cos                     # ∂E/∂z
        self.da[0] = np.sum(dz * self._X)            # z = a0·x + a1
        self.da[1] = np.sum(dz)
        self.da[2] = np.sum(dY * self._sin)
        self.da[3] = np.sum(dY)
        return dz * a0 if need_dX else None

    def parameters(self):
        return [("a", self.a, self.da)]

    def get_config(self):
        return {"type": "sine", "a": self.a.tolist()}

    def __repr__(self):
        return "SineLayer(a=[" + ", ".join(f"{v:.4g}" for v in self.a) + "])"


def check_gradients(seed=0):
    """Worst relative errors of the hand-derived backward against central differences."""
    rng = np.random.default_rng(seed)
    layer = SineLayer(rng.normal(size=4) + np.array([1.5, 0.0, 1.0, 0.0]))
    X = rng.uniform(-3, 3, size=(16, 1))
    y = rng.normal(size=(16, 1))
    return mlpjit.gradcheck(mlpjit.Sequential([layer]), "mse", X, y)


def canonical(a):
    """The same function with a0 ≥ 0, a2 ≥ 0 and a1 in (−π, π] (sin is odd and 2π-periodic)."""
    a0, a1, a2, a3 = (float(v) for v in a)
    if a0 < 0:                                   # a2·sin(a0x + a1) = −a2·sin(−a0x − a1)
        a0, a1, a2 = -a0, -a1, -a2
    if a2 < 0:                                   # −a2·sin(z) = a2·sin(z + π)
        a2, a1 = -a2, a1 + math.pi
    a1 = math.pi - (math.pi - a1) % (2 * math.pi)
    return [a0, a1, a2, a3]


def fit_layer(data, starts=STARTS, steps=3000, lr=0.05):
    """Full-batch gradient descent from each start frequency; returns (layer, train_mse, tried)."""
    loss = mlpjit.losses.get("mse")
    X, y = data.X_train, data.y_train
    best, tried = None, []
    for a0 in starts:
        layer = SineLayer([a0, 0.0, float(np.std(y) * math.sqrt(2)), float(np.mean(y))])
        for _ in range(steps):                   # the training loop, written out
            loss.forward(layer.forward(X, training=True), y)
            layer.backward(loss.backward(), need_dX=False)
            for _, param, grad in layer.parameters():
                param -= lr * grad
        value = loss.forward(layer.forward(X), y)
        tried.append((a0, value))
        if best is None or value < best[1]:
            best = (layer, value)
    return best[0], best[1], tried


def fit_mlp(data_spec, epochs, run_dir, seed=0):
    """A 1-32-32-1 tanh MLP trained on the same data by the trainer; returns (model, test_mse)."""
    from mlpjit.config import config_from_dict, resolved_dict
    from mlpjit.trainer import Trainer
    cfg = resolved_dict(config_from_dict({
        "name": "sine_mlp", "seed": seed, "data": dict(data_spec),
        "model": {"layers": [{"type": "dense", "units": 32, "activation": "tanh"},
                             {"type": "dense", "units": 32, "activation": "tanh"},
                             {"type": "dense", "units": 1}]},
        "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"type": "cosine"}, "train": {"epochs": epochs, "batch_size": 32}}))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    summary = Trainer(cfg, run_dir, log=lambda *a: None, progress=False).fit()
    return mlpjit.Sequential.load(Path(run_dir) / "model.npz"), summary["final"]["test_loss"]


def test_mse(model, data):
    return float(np.mean((np.asarray(model.forward(data.X_test)).reshape(-1) - data.y_test.reshape(-1)) ** 2))


def main(argv):
    quick = "--quick" in argv
    errors = check_gradients()
    print("gradcheck (worst relative error):", ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-6, errors

    data = load_dataset(dict(DATA), 0)
    t0 = time.perf_counter()
    layer, train_mse, tried = fit_layer(data, steps=800 if quick else 3000)
    print("starts (a0 → train mse):", ", ".join(f"{a0:g} → {v:.4f}" for a0, v in tried))
    a = canonical(layer.a)
    print("recovered a0..a3:", " ".join(f"{v:.4f}" for v in a), " truth:", " ".join(f"{v:g}" for v in TRUE_A),
          f"({time.perf_counter() - t0:.1f}s)")
    layer_mse = test_mse(mlpjit.Sequential([layer]), data)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, mlp_mse = fit_mlp(DATA, 20 if quick else 150, Path(tmp) / "mlp")
        print(f"MLP 1-32-32-1 tanh trained ({time.perf_counter() - t0:.1f}s)")
    print(f"test MSE: sine layer {layer_mse:.4f} (4 parameters), MLP {mlp_mse:.4f} (1153 parameters); "
          f"noise variance {DATA['noise'] ** 2:.4f}")
    print(f"RESULT layer_mse={layer_mse:.6f} mlp_mse={mlp_mse:.6f} a=" + ",".join(f"{v:.4f}" for v in a))


if __name__ == "__main__":
    main(sys.argv[1:])
