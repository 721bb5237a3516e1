"""A table as people bring it, three ways: a raw CSV through the CLI, and scikit-learn's estimator.

scikit-learn's breast-cancer table (569 tumours, 30 measurements from 0.001 to 4,000) gets a
text column (``color``) and string labels (``benign``/``malignant``) and is written to
``train.csv`` / ``test.csv`` as a user would have it.  Then:

1. ``mlpjit train`` on a config whose first layer is ``{type: standardize}``: the text column
   becomes one-hot features, the numbers are standardized with the training split's statistics,
   both stored in ``model.npz``;
2. ``mlpjit predict model.npz test_raw.csv``: the raw CSV, without the label column, encoded the
   same way; the predictions are the original label names;
3. ``mlpjit.sklearn.MLPClassifier`` in a scikit-learn ``Pipeline`` beside
   ``sklearn.neural_network.MLPClassifier``: same parameters, same split.

Run:  python examples/tabular.py [--quick]      (needs scikit-learn: pip install "mlpjit[sklearn]")
"""

import csv
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

try:
    import mlpjit  # noqa: F401
except ImportError:                      # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.compose import make_column_transformer  # noqa: E402

from mlpjit.sklearn import MLPClassifier  # noqa: E402

CONFIG = """name: cancer
seed: 0
data: {{name: csv, train: {train}, test: {test}, target: diagnosis}}
model:
  layers:
    - {{type: standardize}}                          # fitted to the training split
    - {{type: dense, units: 16, activation: relu}}
    - {{type: dense, units: 2}}
loss: cross_entropy
optimizer: {{type: sgd, lr: 0.05, momentum: 0.9}}
train: {{epochs: {epochs}, batch_size: 32}}
"""


def write_tables(folder):
    d = load_breast_cancer()
    rng = np.random.default_rng(0)
    color = rng.choice(["red", "green", "blue"], len(d.target))
    label = np.where(d.target == 1, "benign", "malignant")
    tr, te = train_test_split(np.arange(len(label)), test_size=0.25, random_state=0, stratify=label)
    cols = [n.replace(" ", "_") for n in d.feature_names] + ["color", "diagnosis"]

    def save(name, rows, target=True):
        with open(folder / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols if target else cols[:-1])
            for i in rows:
                w.writerow([repr(float(v)) for v in d.data[i]] + [color[i]] + ([label[i]] if target else []))
        return folder / name
    paths = save("train.csv", tr), save("test.csv", te), save("test_raw.csv", te, target=False)
    X = np.column_stack([d.data, color])
    return paths, (X[tr], label[tr], X[te], label[te])


def mlpjit_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlpjit", *map(str, args)], capture_output=True,
                          text=True, check=False)


def main(argv):
    quick = "--quick" in argv
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (train, test, raw), (Xtr, ytr, Xte, yte) = write_tables(folder)
        print(f"wrote {train.name} ({len(ytr)} rows) and {test.name} ({len(yte)} rows): "
              f"30 numeric columns from {Xtr[:, :30].astype(float).min():.4g} to "
              f"{Xtr[:, :30].astype(float).max():.4g}, a text column 'color', labels benign/malignant")

        cfg = folder / "cancer.yaml"
        cfg.write_text(CONFIG.format(train=train, test=test, epochs=10 if quick else 30))
        proc = mlpjit_cli("train", cfg, "--out", folder / "run", "--quiet")
        print("1. mlpjit train cancer.yaml:", proc.stdout.strip().splitlines()[0] if proc.returncode == 0 else proc.stderr)
        proc = mlpjit_cli("predict", folder / "run" / "model.npz", test, "--out", folder / "p.csv")
        print("2. mlpjit predict on test.csv:", proc.stderr.strip())
        proc = mlpjit_cli("predict", folder / "run" / "model.npz", raw)
        lines = proc.stdout.strip().splitlines()
        print(f"   and on test_raw.csv (no label column): {lines[0]} / {lines[1]} / ...")
        cli_acc = np.mean([line.split(",")[0] == t for line, t in zip(lines[1:], yte)])

        numbers = list(range(30))
        prep = make_column_transformer((StandardScaler(), numbers), (OneHotEncoder(), [30]))
        results = {}
        for name, cls in (("mlpjit.sklearn", MLPClassifier), ("sklearn.neural_network", SkMLPClassifier)):
            pipe = make_pipeline(prep, cls(hidden_layer_sizes=(16,), max_iter=50 if quick else 300,
                                           random_state=0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.fit(Xtr, ytr)                        # the first fit also loads the step
                t0 = time.perf_counter()
                pipe.fit(Xtr, ytr)
                seconds = time.perf_counter() - t0
            results[name] = (pipe.score(Xte, yte), seconds)
        for name, (acc, seconds) in results.items():
            print(f"3. {name:24} Pipeline: test accuracy {100 * acc:.2f}%, fit {seconds:.3f} s")
        ratio = results["sklearn.neural_network"][1] / results["mlpjit.sklearn"][1]
        print(f"RESULT cli_accuracy={cli_acc:.4f} mlpjit_sklearn_accuracy={results['mlpjit.sklearn'][0]:.4f} "
              f"sklearn_accuracy={results['sklearn.neural_network'][0]:.4f} fit_ratio={ratio:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
