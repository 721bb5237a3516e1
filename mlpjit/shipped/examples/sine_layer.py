"""Your own layer, compiled: y = a2·sin(a0·x + a1) + a3 (the layer is examples/sine.py).

The layer lives in its own module, ``sine.py``: its formulas, its parameter ``a``, the array it
keeps for backward (``Z``), its two ``@mlpjit.jit`` kernels and ``@mlpjit.register_layer("sine")``.
This script

1. checks the hand-derived backward against float64 central differences (``mlpjit.gradcheck``);
2. fits the layer to the ``sine`` data with the trainer, which runs it in the compiled training
   step (fitting a sinusoid is non-convex in the frequency a0, so it starts from a few
   frequencies and keeps the fit with the lowest training loss);
3. trains it again from the config ``sine_layer.yaml`` (``imports: [sine]``), as
   ``mlpjit train examples/sine_layer.yaml`` does;
4. times an epoch in the compiled step against the layer-by-layer (Python) path;
5. trains a 1-32-32-1 tanh MLP on the same data for comparison.

Run:  python examples/sine_layer.py [--quick]
"""

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))            # the layer's module, sine.py
try:
    import mlpjit
except ImportError:                      # run from a checkout without installing the package
    sys.path.insert(0, str(HERE.parent))
    import mlpjit

from mlpjit.config import config_from_dict, load_config, resolved_dict  # noqa: E402
from mlpjit.data import load_dataset  # noqa: E402
from mlpjit.trainer import Trainer, read_metrics  # noqa: E402
from sine import SineLayer  # noqa: E402  (registers the layer type "sine")

TRUE_A = [2.0, 0.5, 1.5, 0.3]            # the data of configs/sine.yaml
DATA = {"name": "sine", "points": 1000, "test_points": 200, "a": TRUE_A, "noise": 0.1}
STARTS = (0.5, 1.0, 1.5, 2.5, 3.0)       # initial frequencies a0 tried by fit_layer


def check_gradients(seed=0):
    """Worst relative errors of the hand-derived backward against central differences."""
    rng = np.random.default_rng(seed)
    layer = SineLayer(rng.normal(size=4) + np.array([1.5, 0.0, 1.0, 0.0]), dtype=np.float64)
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


def layer_config(a, epochs, compiled=True):
    """A run config with the sine layer as the whole model (what sine_layer.yaml says)."""
    return resolved_dict(config_from_dict({
        "name": "sine_layer", "imports": ["sine"], "seed": 0, "dtype": "float64", "data": dict(DATA),
        "model": {"layers": [{"type": "sine", "a": [float(v) for v in a]}]},
        "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.05},
        "train": {"epochs": epochs, "batch_size": 32, "compiled": compiled}}))


def train(cfg, data, run_dir):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, dataset=data, log=lambda *a: None, progress=False)
    summary = trainer.fit()
    return trainer, summary


def fit_layer(data, starts=STARTS, epochs=150, workdir=None):
    """Mini-batch SGD from each start frequency; returns (layer, train_mse, tried)."""
    y = data.y_train
    best, tried = None, []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for i, a0 in enumerate(starts):
            a = [a0, 0.0, float(np.std(y) * math.sqrt(2)), float(np.mean(y))]
            trainer, summary = train(layer_config(a, epochs), data, Path(tmp) / f"start{i}")
            value = summary["final"]["train_loss"]
            tried.append((a0, value))
            if best is None or value < best[1]:
                best = (trainer.model.layers[0], value)
    return best[0], best[1], tried


def epoch_times(data, epochs=6):
    """Median training seconds per epoch (after the first) in the compiled step and on the
    layer-by-layer path, same config."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for compiled in (True, False):
            trainer, _ = train(layer_config([1.9, 0.4, 1.4, 0.3], epochs, compiled), data,
                               Path(tmp) / str(compiled))
            seconds = [r["epoch_seconds"] for r in read_metrics(trainer.run_dir)][1:]
            out[compiled] = float(np.median(seconds))
    return out[True], out[False]


def fit_mlp(data, epochs, run_dir, seed=0):
    """A 1-32-32-1 tanh MLP trained on the same data by the trainer; returns (model, test_mse)."""
    cfg = resolved_dict(config_from_dict({
        "name": "sine_mlp", "seed": seed, "data": dict(DATA),
        "model": {"layers": [{"type": "dense", "units": 32, "activation": "tanh"},
                             {"type": "dense", "units": 32, "activation": "tanh"},
                             {"type": "dense", "units": 1}]},
        "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"type": "cosine"}, "train": {"epochs": epochs, "batch_size": 32}}))
    trainer, summary = train(cfg, data, run_dir)
    return trainer.model, summary["final"]["test_loss"]


def test_mse(model, data):
    return float(np.mean((np.asarray(model.forward(data.X_test)).reshape(-1) - data.y_test.reshape(-1)) ** 2))


def main(argv):
    quick = "--quick" in argv
    errors = check_gradients()
    print("gradcheck (worst relative error):", ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-6, errors

    data = load_dataset(dict(DATA), 0)
    t0 = time.perf_counter()
    layer, train_mse, tried = fit_layer(data, epochs=60 if quick else 150)
    print("starts (a0 → train mse):", ", ".join(f"{a0:g} → {v:.4f}" for a0, v in tried))
    a = canonical(layer.a)
    print("recovered a0..a3:", " ".join(f"{v:.4f}" for v in a), " truth:", " ".join(f"{v:g}" for v in TRUE_A),
          f"({time.perf_counter() - t0:.1f}s, compiled)")
    layer_mse = test_mse(mlpjit.Sequential([layer]), data)

    cfg = resolved_dict(load_config(HERE / "sine_layer.yaml", ["train.epochs=100" if quick else "train.epochs=300"]))
    with tempfile.TemporaryDirectory() as tmp:
        trainer, summary = train(cfg, data, Path(tmp) / "from_config")
        print(f"from sine_layer.yaml ({cfg['train']['epochs']} epochs, full batch): test MSE "
              f"{summary['final']['test_loss']:.4f}, a = "
              + " ".join(f"{v:.3f}" for v in canonical(trainer.model.layers[0].a)))

    compiled_s, python_s = epoch_times(data)
    print(f"seconds per epoch (1000 examples, batch 32): compiled step {compiled_s * 1e3:.3f} ms, "
          f"layer-by-layer path {python_s * 1e3:.3f} ms ({python_s / compiled_s:.1f}× faster compiled)")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, mlp_mse = fit_mlp(data, 20 if quick else 150, Path(tmp) / "mlp")
        print(f"MLP 1-32-32-1 tanh trained ({time.perf_counter() - t0:.1f}s)")
    print(f"test MSE: sine layer {layer_mse:.4f} (4 parameters), MLP {mlp_mse:.4f} (1153 parameters); "
          f"noise variance {DATA['noise'] ** 2:.4f}")
    print(f"RESULT layer_mse={layer_mse:.6f} mlp_mse={mlp_mse:.6f} a=" + ",".join(f"{v:.4f}" for v in a)
          + f" speedup={python_s / compiled_s:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
