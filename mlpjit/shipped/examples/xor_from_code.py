"""XOR from code: two layers can fit it, one linear unit cannot (math.md §7).

Builds Dense(2, 4, tanh) → Dense(4, 1) with ``binary_cross_entropy`` on the logit, trains it
with an explicit full-batch gradient-descent loop (forward, loss, backward, θ ← θ − η·g), then
trains a single Dense(2, 1) unit the same way.  The loop is written out to teach it: it runs
layer by layer from Python.  To train, use ``model.fit`` (the last part): the same updates in
the compiled step, with validation, early stopping and a history.
Run:  python examples/xor_from_code.py
"""

import sys
import time
from pathlib import Path

import numpy as np

try:
    import mlpjit
except ImportError:                      # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mlpjit

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y = np.array([0, 1, 1, 0])                # XOR


def train(model, steps, lr, report_every=None):
    """Full-batch gradient descent on the 4 points; returns the final loss and accuracy."""
    loss = mlpjit.losses.get("binary_cross_entropy")
    for step in range(1, steps + 1):
        logits = model.forward(X, training=True)       # forward
        value = loss.forward(logits, y)                 # E
        model.backward(loss.backward(), need_dX=False)  # backward: fills every dA, db
        for _, param, grad in model.parameters():       # SGD: θ ← θ − η·g
            param -= lr * grad
        if report_every and step % report_every == 0:
            print(f"  step {step:5d}  loss {value:.6f}")
    logits = model.logits(X)   # the raw outputs; model.predict gives probabilities once fitted
    accuracy = float(np.mean(loss.predict_classes(logits) == y))
    return loss.forward(logits, y), accuracy


def main():
    two_layer = mlpjit.Sequential([mlpjit.Dense(2, 4, activation="tanh", dtype=np.float64, seed=0),
                                   mlpjit.Dense(4, 1, dtype=np.float64, seed=1)])
    print(two_layer)
    train(mlpjit.Sequential([mlpjit.Dense(2, 4, activation="tanh", dtype=np.float64, seed=0),
                             mlpjit.Dense(4, 1, dtype=np.float64, seed=1)]), 2, 0.5)   # compile first
    start = time.perf_counter()
    loss2, acc2 = train(two_layer, steps=3000, lr=0.5, report_every=500)
    seconds = time.perf_counter() - start
    print(f"two layers: loss {loss2:.6f}, accuracy {acc2:.0%} ({seconds:.2f} s for 3000 steps)")
    print("  probabilities:", np.round(mlpjit.losses.get("binary_cross_entropy").transform(two_layer.logits(X))[:, 0], 3))

    one_unit = mlpjit.Sequential([mlpjit.Dense(2, 1, dtype=np.float64, seed=0)])
    loss1, acc1 = train(one_unit, steps=3000, lr=0.5, report_every=1000)
    print(f"one linear unit: loss {loss1:.6f}, accuracy {acc1:.0%}")

    # the way to train: model.fit, the CLI's training core and compiled step (full batch, plain SGD)
    fitted = mlpjit.Sequential([mlpjit.Dense(2, 4, activation="tanh", dtype=np.float64, seed=0),
                                mlpjit.Dense(4, 1, dtype=np.float64, seed=1)])
    start = time.perf_counter()
    history = fitted.fit(X, y, loss="binary_cross_entropy", optimizer={"type": "sgd", "lr": 0.5},
                         epochs=3000, batch_size="full", shuffle=False, progress=False)
    fit_acc = fitted.evaluate(X, y)["accuracy"]
    print(f"model.fit: loss {history.history['loss'][-1]:.6f}, accuracy {fit_acc:.0%} "
          f"({time.perf_counter() - start:.2f} s for 3000 epochs, compiled: {history.compiled})")

    print(f"RESULT two_layer_accuracy={acc2:.2f} one_unit_accuracy={acc1:.2f} fit_accuracy={fit_acc:.2f}")
    assert acc2 == 1.0, "the two-layer network should fit XOR"
    assert acc1 <= 0.75, "one linear unit cannot fit XOR"
    assert seconds < 2.0, f"3000 steps took {seconds:.2f} s"
    return 0


if __name__ == "__main__":
    sys.exit(main())
