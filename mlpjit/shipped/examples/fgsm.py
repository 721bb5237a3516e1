"""Input gradients: the fast gradient sign attack (FGSM, math.md §5) on an MNIST MLP.

The backward pass does not stop at the first layer's weights: with ``need_dX=True`` it also
returns dX = ∂E/∂X, the derivative of the loss with respect to the pixels.  Moving every pixel
by ε in the direction that increases the loss,

    x_adv = clip(x + ε·sign(dX), 0, 1)      (dX of cross_entropy w.r.t. the true labels)

changes each pixel by at most ε yet flips many predictions.  For comparison, the same amount of
random ±ε noise barely matters.  Run:

    python examples/fgsm.py [MODEL.npz] [--quick]

Without a model it first trains a small one (configs/mnist_mlp.yaml for 2 epochs, or on a 5,000
image subset for 1 epoch with --quick) into a temporary folder; it prints the accuracy table.
"""

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

REPO = Path(__file__).resolve().parents[1]
EPSILONS = (0.0, 0.05, 0.1, 0.2)


def fgsm(model, X, y, eps, loss="cross_entropy", batch_size=1000):
    """x_adv = clip(X + eps·sign(dX), 0, 1), dX = ∂loss(model(X), y)/∂X, computed in batches."""
    loss = mlpjit.losses.get(loss)
    X = np.asarray(X, dtype=np.float64)
    out = np.empty_like(X)
    for start in range(0, X.shape[0], batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        loss.forward(model.forward(xb, training=False), yb)        # forward in prediction mode
        dX = model.backward(loss.backward(), need_dX=True)          # ∂E/∂X of the first layer
        out[start:start + batch_size] = np.clip(xb + eps * np.sign(dX), 0.0, 1.0)
    return out


def accuracy(model, X, y):
    # X is already scaled as the layers take it (the attack works there): the layers' forward,
    # not model.predict, which takes raw pixels and applies the model's x_scale itself
    return float(np.mean(np.argmax(model.forward(X, training=False), axis=1) == y))


def attack_table(model, X, y, epsilons=EPSILONS, seed=0):
    """Rows {eps, accuracy (FGSM), random_sign_accuracy (random ±eps noise, clipped)}."""
    rng = np.random.default_rng(seed)
    rows = []
    for eps in epsilons:
        noise = np.clip(X + eps * rng.choice([-1.0, 1.0], size=X.shape), 0.0, 1.0)
        rows.append({"eps": eps, "accuracy": accuracy(model, fgsm(model, X, y, eps), y),
                     "random_sign_accuracy": accuracy(model, noise, y)})
    return rows


def test_set(model, test_subset=None):
    """MNIST test images scaled as the model was trained (metadata x_scale), and labels."""
    from mlpjit.data import load_dataset
    spec = {"name": "mnist"}
    if test_subset:
        spec["test_subset"] = test_subset
    data = load_dataset(spec, 0)
    scale = float(model.metadata.get("x_scale", data.x_scale))
    return data.X_test.astype(np.float64) * scale, data.y_test


def train_quick_model(run_dir, quick=True):
    """Train configs/mnist_mlp.yaml briefly; returns the path of model.npz."""
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    overrides = ["train.epochs=1", "data.subset=5000", "data.validation=500"] if quick else ["train.epochs=2"]
    cfg = resolved_dict(load_config(REPO / "configs" / "mnist_mlp.yaml", overrides))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    Trainer(cfg, run_dir, log=lambda *a: None, progress=False).fit()
    return Path(run_dir) / "model.npz"


def main(argv):
    quick = "--quick" in argv
    paths = [a for a in argv if not a.startswith("--")]
    with tempfile.TemporaryDirectory() as tmp:
        if paths:
            model_path = Path(paths[0])
        else:
            t0 = time.perf_counter()
            model_path = train_quick_model(Path(tmp) / "mnist", quick)
            print(f"trained {'a quick ' if quick else ''}MNIST model ({time.perf_counter() - t0:.1f}s)")
        model = mlpjit.Sequential.load(model_path)
    X, y = test_set(model, 1000 if quick else None)
    print(f"{len(y)} test images; accuracy under attack (each pixel moved by at most eps)")
    print(f"{'eps':>6}  {'FGSM':>8}  {'random ±eps':>11}")
    rows = attack_table(model, X, y)
    for row in rows:
        print(f"{row['eps']:>6.2f}  {100 * row['accuracy']:>7.2f}%  {100 * row['random_sign_accuracy']:>10.2f}%")
    print("RESULT " + " ".join(f"acc@{r['eps']:g}={r['accuracy']:.4f}" for r in rows))


if __name__ == "__main__":
    main(sys.argv[1:])
