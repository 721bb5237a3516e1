"""A layer of your own, written right in your script (or a notebook cell), trained compiled.

    Y = GAIN · (X ∘ w)        one weight per feature, times a fixed gain
    dw = GAIN · Σ_rows dY ∘ X,  dX = GAIN · dY ∘ w

The layer, its two ``@mlpjit.jit`` kernels and ``GAIN`` live in this script's ``__main__``. The
compiled training step that calls them is cached under a hash of the kernels' own sources (and
of the plain globals they read, such as ``GAIN``), not of the whole script: run the script
twice and the second run loads its step instead of compiling it, at any ``--units``.  Edit a
kernel or ``GAIN`` and the next run compiles a new step.

Run:  python examples/layer_in_a_script.py [--units N] [--epochs N]
"""

import argparse
import tempfile
import time

import numpy as np

try:
    import mlpjit
except ImportError:                      # run from a checkout without installing the package
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    import mlpjit

GAIN = 2.0


@mlpjit.jit
def gain_forward(X, w, Y):
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i, j] = GAIN * w[j] * X[i, j]


@mlpjit.jit
def gain_backward(X, w, dY, dw, dX):
    for j in range(X.shape[1]):
        dw[j] = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            dw[j] += GAIN * dY[i, j] * X[i, j]
            dX[i, j] = GAIN * dY[i, j] * w[j]


@mlpjit.register_layer("gain")
class Gain(mlpjit.Layer):
    """Y = GAIN · (X ∘ w); kept for backward: X (the step's own)."""
    params = ("w",)
    inferred = {"width": 0}
    row_separable = True
    forward_kernel = gain_forward
    backward_kernel = gain_backward

    def __init__(self, width: int, dtype=np.float32):
        self.width, self.dtype = width, np.dtype(dtype)
        self.w = np.linspace(0.5, 1.5, width).astype(self.dtype)
        self.dw = np.zeros_like(self.w)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    check = mlpjit.Sequential([Gain(3, dtype=np.float64)])
    worst = max(mlpjit.gradcheck(check, "mse", rng.standard_normal((5, 3)), rng.standard_normal((5, 3))).values())
    print(f"gradient check (float64 central differences): worst relative error {worst:.1e}")

    from mlpjit.config import config_from_dict, resolved_dict
    from mlpjit.trainer import Trainer
    cfg = resolved_dict(config_from_dict({
        "name": "gain", "data": {"name": "spirals", "points": 600, "test_points": 200},
        "model": {"layers": [{"type": "dense", "units": args.units, "activation": "tanh"},
                             {"type": "gain"}, {"type": "dense", "units": 3}]},
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": args.epochs, "batch_size": 16}}))
    notes = []
    with tempfile.TemporaryDirectory() as run:
        t = time.perf_counter()
        trainer = Trainer(cfg, run, log=notes.append, progress=False)
        summary = trainer.fit()
        seconds = time.perf_counter() - t
    compiled = [n for n in notes if n.startswith("compiled in")]
    print(f"training step: {'compiled (' + compiled[0] + ')' if compiled else 'loaded from the cache'}")
    print(f"{args.epochs} epochs, {seconds:.2f} s in all: test accuracy "
          f"{100 * summary['final']['test_accuracy']:.1f}%")


if __name__ == "__main__":
    main()
