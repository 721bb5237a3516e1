"""Training-speed benchmark: mlpjit against PyTorch (eager) and scikit-learn's MLPClassifier.

    python benchmarks/bench.py [--cases tiny,small,mid,wide] [--epochs N] [--threads N]
    python benchmarks/bench.py --cases concurrent,memory      # the machine-sharing and memory rows
    python benchmarks/bench.py --jax                          # also a JAX column (pip install "jax[cpu]")

Every case trains the same float32 architecture on the same data with the same batch size and
hyperparameters (plain SGD, lr 0.05, momentum 0.9, no weight decay, shuffled every epoch) in
all three libraries, from the same start: PyTorch and scikit-learn are given mlpjit's initial
weights and see the examples in mlpjit's order (the same permutation each epoch), so the three
compute the same updates up to float32 rounding and their accuracies are comparable.  It reports
the median seconds per epoch over epochs 2..N (epoch 1 includes Numba compilation / cache loading
and PyTorch's warm-up; the tiny network runs at least TINY_EPOCHS epochs in all three libraries,
as one of its epochs takes about a millisecond and a median of three moved by 40% between runs),
the test accuracy after epoch N (also for the tiny network: from the same start the three stay
within float32 rounding of each other for a few epochs, while after 20 epochs at this learning
rate single runs of any of them move by points between seeds), mlpjit's achieved GFLOP/s ((6 * multiply-adds − 2 * the first layer's) per example * examples / second:
forward 2, dA 2 and dX 2 per multiply-add, the first layer computing no dX; for an
MLP the multiply-adds are the parameters) and that figure as
a share of a NumPy float32 sgemm measured in the same run.

``--threads`` caps every thread pool (OpenBLAS / MKL / OpenMP / Numba through environment
variables set before NumPy is imported, threadpoolctl when installed, and
``torch.set_num_threads``), and is mlpjit's ``train.threads``: a number given, so a serial step
uses that many BLAS threads as PyTorch does (left at ``auto``, mlpjit keeps one BLAS thread for a
batch too small to split, for the sake of a second run on the machine).  ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are left as found
and printed in the header.  PyTorch and scikit-learn are optional: a missing one prints
"not installed" in its columns.

``--jax`` adds JAX: the same network, initial weights, order and SGD with momentum, the whole
step (forward, cross-entropy, ``jax.grad``, the update) under one ``jax.jit``, its arrays on the
CPU device; its compile time (the first step, traced and compiled) is reported apart from the
steady state, and JAX stays out of every dependency list (``pip install "jax[cpu]"``).
"""

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="tiny,small,mid,wide,cnn,concurrent,memory,tabular",
                   help="comma-separated subset of tiny,small,mid,wide,cnn,concurrent,memory,tabular "
                        "(default: all)")
    p.add_argument("--concurrent", type=int, default=2, metavar="N",
                   help="runs started at once in the 'concurrent' case (default 2)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per library and case (default 3)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for BLAS, Numba and PyTorch (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jax", action="store_true",
                   help="also time jax.jit of the whole SGD step (pip install \"jax[cpu]\")")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before NumPy / Numba / torch are imported, so every pool starts at this size.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import copy  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numba  # noqa: E402

from mlpjit.config import config_from_dict, resolved_dict  # noqa: E402
from mlpjit.data import load_dataset  # noqa: E402
from mlpjit.trainer import Trainer, cpu_model  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover
    torch = None

try:
    import sklearn
    from sklearn.neural_network import MLPClassifier
except ImportError:  # pragma: no cover
    sklearn = None

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

LR, MOMENTUM = 0.05, 0.9
TINY_EPOCHS = 20
NOT_INSTALLED = "not installed"

SPIRALS_SPEC = {"name": "spirals", "classes": 3, "points": 3000, "test_points": 1000, "noise": 0.2}
MNIST_SPEC = {"name": "mnist", "path": str(REPO / "data" / "mnist")}

# name -> (data spec, hidden widths or CNN, activation, batch size)
CNN = "cnn"  # conv 1→32 3×3, maxpool 2, conv 32→64 3×3, maxpool 2, dense 128, dense 10 (relu)
CASES = {
    "tiny": (SPIRALS_SPEC, (16, 16), "tanh", 8),
    "small": (MNIST_SPEC, (128,), "relu", 32),
    "mid": (MNIST_SPEC, (256, 128), "relu", 64),
    "wide": (MNIST_SPEC, (512, 512), "relu", 128),
    "cnn": (MNIST_SPEC, CNN, "relu", 64),
}
CNN_LAYERS = [
    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 128, "activation": "relu"},
    {"type": "dense", "units": 10},
]


def steady_median(seconds):
    """Median over epochs 2..N (epoch 1 only when it is the only one)."""
    seconds = list(seconds)
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


# --- machine -----------------------------------------------------------------------------

def sgemm_peak(sizes=(1024, 2048, 3072), repeats=10):
    """The machine's float32 matmul peak: the best GFLOP/s of a NumPy n x n matmul over the
    ``sizes`` and ``repeats`` (a single size and a few repeats read low: the wide network's
    step once measured 104% of a best-of-5 2048² figure)."""
    rng = np.random.default_rng(0)
    best = 0.0
    for n in sizes:
        A = rng.standard_normal((n, n), dtype=np.float32)
        B = rng.standard_normal((n, n), dtype=np.float32)
        C = A @ B  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(A, B, out=C)
            best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def header(threads, peak):
    lines = [
        f"CPU: {cpu_model()}",
        f"cores: {os.cpu_count()} logical (affinity: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}); "
        f"threads used: {threads}",
        f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, "
        f"torch {torch.__version__ if torch is not None else NOT_INSTALLED}, "
        f"scikit-learn {sklearn.__version__ if sklearn is not None else NOT_INSTALLED}",
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}",
        f"NumPy float32 sgemm peak (best of 10 at n = 1024, 2048, 3072): {peak:.1f} GFLOP/s",
    ]
    return "\n".join(lines)


# --- data --------------------------------------------------------------------------------

class Data:
    """One data set in the three forms: mlpjit's Dataset, and float32 arrays for the others."""

    def __init__(self, spec, seed):
        self.spec = spec
        self.ds = load_dataset(dict(spec), seed)
        # the values mlpjit's gather makes (x · scale in float64, then rounded to float32)
        self.X_train = (self.ds.X_train * self.ds.x_scale).astype(np.float32)
        self.X_test = (self.ds.X_test * self.ds.x_scale).astype(np.float32)
        self.y_train = self.ds.y_train.astype(np.int64)
        self.y_test = self.ds.y_test.astype(np.int64)
        self.n_features = self.ds.n_features
        self.n_classes = self.ds.n_outputs
        self.n_train = self.ds.n_train


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def cnn_macs():
    """Multiply-adds per example of the CNN's forward pass (conv: O·C·KH·KW·OH·OW)."""
    return 32 * 1 * 9 * 26 * 26 + 64 * 32 * 9 * 11 * 11 + 1600 * 128 + 128 * 10


# --- mlpjit ------------------------------------------------------------------------------

class Start:
    """mlpjit's initial weights, as (A, b) per layer with parameters (Dense A: (in, out); Conv2D
    A: (O, C, KH, KW)), and the permutation of the training examples for each epoch."""

    def __init__(self, trainer, epochs):
        named = {name: p.copy() for name, p, _ in trainer.model.parameters()}
        self.weights = [(named[nm], named[nm[:-1] + "b"]) for nm in named if nm.endswith(".A")]
        rng = copy.deepcopy(trainer.shuffle_rng)  # the trainer draws one permutation per epoch
        self.perms = [rng.permutation(trainer.data.n_train) for _ in range(epochs)]


def run_mlpjit(data, hidden, activation, batch, epochs, seed, acc_epoch, compiled=True, threads="auto"):
    """(median s/epoch, test accuracy after epoch ``acc_epoch``, Start).  ``threads``: the
    config's ``train.threads`` (the bench passes ``--threads``, as PyTorch gets it)."""
    if hidden == CNN:
        layers = CNN_LAYERS
    else:
        layers = [{"type": "dense", "units": h, "activation": activation} for h in hidden]
        layers.append({"type": "dense", "units": data.n_classes})
    cfg = resolved_dict(config_from_dict({
        "name": "bench",
        "seed": seed,
        "dtype": "float32",
        "data": dict(data.spec),
        "model": {"layers": layers},
        "loss": "cross_entropy",
        "optimizer": {"type": "sgd", "lr": LR, "momentum": MOMENTUM, "nesterov": False,
                      "weight_decay": 0.0},
        "schedule": {"type": "constant"},
        "train": {"epochs": epochs, "batch_size": batch, "shuffle": True, "compiled": compiled,
                  "threads": threads},
    }, source="bench"))
    with tempfile.TemporaryDirectory(prefix="mlpjit-bench-") as run_dir:
        trainer = Trainer(cfg, run_dir, dataset=data.ds, log=lambda *a, **k: None, progress=False)
        if compiled and trainer.fast_reason is not None:
            raise RuntimeError(f"mlpjit would not use the compiled loop: {trainer.fast_reason}")
        start = Start(trainer, epochs)
        trainer.fit(epochs)
        rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
                if line.strip()]
    seconds = [r["epoch_seconds"] for r in rows]
    return steady_median(seconds), rows[acc_epoch - 1].get("test_accuracy"), start


# --- PyTorch -----------------------------------------------------------------------------

def run_torch(data, hidden, activation, batch, start, threads, acc_epoch):
    torch.set_num_threads(threads)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    if hidden == CNN:
        mods = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)]
        shape = (1, 28, 28)
    else:
        mods, width = [], data.n_features
        for h in hidden:
            mods += [nn.Linear(width, h), act()]
            width = h
        mods.append(nn.Linear(width, data.n_classes))
        shape = (data.n_features,)
    model = nn.Sequential(*mods)  # float32 parameters by default
    with torch.no_grad():  # mlpjit's initial weights (Linear keeps A transposed: (out, in))
        layers = [m for m in mods if isinstance(m, (nn.Linear, nn.Conv2d))]
        for m, (A, b) in zip(layers, start.weights, strict=True):
            m.weight.copy_(torch.from_numpy(A.T if isinstance(m, nn.Linear) else A))
            m.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=0.0)
    X = torch.from_numpy(data.X_train.reshape((-1,) + shape))
    y = torch.from_numpy(data.y_train)
    n = X.shape[0]
    seconds = []
    model.train()
    acc = None
    for epoch, order in enumerate(start.perms, 1):
        t0 = time.perf_counter()
        perm = torch.from_numpy(order)
        for lo in range(0, n, batch):
            idx = perm[lo:lo + batch]
            xb, yb = X[idx], y[idx]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
        if epoch == acc_epoch:
            model.eval()
            with torch.no_grad():
                pred = model(torch.from_numpy(data.X_test.reshape((-1,) + shape))).argmax(1)
                acc = (pred == torch.from_numpy(data.y_test)).double().mean().item()
            model.train()
    return steady_median(seconds), acc


# --- JAX ---------------------------------------------------------------------------------

def run_jax(data, hidden, activation, batch, start, acc_epoch):
    """(median s/epoch, test accuracy after epoch ``acc_epoch``, compile seconds): the same
    network and SGD with momentum as the others (v ← μv + g; θ ← θ − ηv, as torch.optim.SGD),
    the whole step under one jax.jit (the last, smaller batch is a second compiled shape)."""
    import jax
    import jax.numpy as jnp

    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[activation]
    weights = [(jnp.asarray(A), jnp.asarray(b)) for A, b in start.weights]
    if hidden == CNN:
        shape = (1, 28, 28)

        def forward(params, x):
            (c1, b1), (c2, b2), (d1, e1), (d2, e2) = params
            dn = ("NCHW", "OIHW", "NCHW")
            h = jax.lax.conv_general_dilated(x, c1, (1, 1), "VALID", dimension_numbers=dn) + b1[None, :, None, None]
            h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            h = jax.lax.conv_general_dilated(h, c2, (1, 1), "VALID", dimension_numbers=dn) + b2[None, :, None, None]
            h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            h = jax.nn.relu(h.reshape(h.shape[0], -1) @ d1 + e1)
            return h @ d2 + e2
    else:
        shape = (data.n_features,)

        def forward(params, x):
            for A, b in params[:-1]:
                x = act(x @ A + b)
            A, b = params[-1]
            return x @ A + b

    def loss_fn(params, x, y):
        logits = forward(params, x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])

    @jax.jit
    def step(params, velocity, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        velocity = jax.tree_util.tree_map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - LR * v, params, velocity)
        return params, velocity

    predict = jax.jit(lambda params, x: jnp.argmax(forward(params, x), axis=1))
    X = jnp.asarray(data.X_train.reshape((-1,) + shape))
    y = jnp.asarray(data.y_train.astype(np.int32))
    velocity = jax.tree_util.tree_map(jnp.zeros_like, weights)
    params = weights
    n = X.shape[0]
    t0 = time.perf_counter()                       # compile: the first step of each batch shape
    for size in sorted({batch, n % batch} - {0}):
        jax.block_until_ready(step(params, velocity, X[:size], y[:size]))
    compile_s = time.perf_counter() - t0
    seconds, acc = [], None
    for epoch, order in enumerate(start.perms, 1):
        t0 = time.perf_counter()
        perm = np.asarray(order)
        for lo in range(0, n, batch):
            idx = perm[lo:lo + batch]
            params, velocity = step(params, velocity, X[idx], y[idx])
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - t0)
        if epoch == acc_epoch:
            pred = np.asarray(predict(params, jnp.asarray(data.X_test.reshape((-1,) + shape))))
            acc = float((pred == data.y_test).mean())
    return steady_median(seconds), acc, compile_s


# --- scikit-learn ------------------------------------------------------------------------

class _GivenStart(MLPClassifier if sklearn is not None else object):
    """MLPClassifier starting from given weights: scikit-learn draws each layer's initial
    (coef, intercept) in ``_init_coef`` (a private method, present from 0.18 to 1.9 at least)."""

    def _init_coef(self, fan_in, fan_out, dtype):
        A, b = self.given.pop(0)
        if A.shape != (fan_in, fan_out):
            raise RuntimeError(f"scikit-learn asked for a {fan_in}x{fan_out} layer, mlpjit has {A.shape}")
        return A.astype(dtype, copy=True), b.astype(dtype, copy=True)


def run_sklearn(data, hidden, activation, batch, start, acc_epoch):
    clf = _GivenStart(hidden_layer_sizes=tuple(hidden), activation=activation, solver="sgd",
                      learning_rate="constant", learning_rate_init=LR, momentum=MOMENTUM,
                      nesterovs_momentum=False, batch_size=batch, alpha=0.0, shuffle=False)
    clf.given = list(start.weights)
    classes = np.arange(data.n_classes)
    seconds = []
    acc = None
    for epoch, order in enumerate(start.perms, 1):
        t0 = time.perf_counter()
        # mlpjit's order; partial_fit (unlike fit) keeps the momentum from one epoch to the next
        clf.partial_fit(data.X_train[order], data.y_train[order], classes=classes)
        seconds.append(time.perf_counter() - t0)
        if epoch == acc_epoch:
            acc = float((clf.predict(data.X_test) == data.y_test).mean())
    if clf.given:
        raise RuntimeError("scikit-learn did not take mlpjit's initial weights (_init_coef unused)")
    return steady_median(seconds), acc


# --- table -------------------------------------------------------------------------------

COLUMNS = ["case", "network", "batch", "mlpjit s/epoch", "mlpjit layers s/epoch", "PyTorch s/epoch",
           "sklearn s/epoch", "PyTorch/mlpjit", "sklearn/mlpjit", "mlpjit GFLOP/s", "% of sgemm peak",
           "test acc mlpjit / torch / sklearn"]


def fmt_s(x):
    if isinstance(x, str):
        return x
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}"  # the tiny network's epochs take ~1 ms


def fmt_ratio(other, mine):
    return other if isinstance(other, str) else f"{other / mine:.2f}x"


def fmt_acc(a):
    if isinstance(a, str):
        return a
    return "-" if a is None else f"{100 * a:.2f}%"


def markdown(rows):
    columns = COLUMNS + [c for c in ("JAX s/epoch", "JAX/mlpjit", "JAX compile s", "test acc JAX")
                         if any(c in r for r in rows)]
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)


# --- tables: mlpjit.sklearn against scikit-learn's MLPClassifier ----------------------------------

TABULAR_FITS = 5


def run_tabular(threads):
    """Fit seconds and test accuracy of mlpjit.sklearn.MLPClassifier and scikit-learn's, with the
    same parameters (scikit-learn's defaults but hidden_layer_sizes, random_state 0), on two of
    scikit-learn's bundled tables, standardized, 75/25 split; data in float64 (both train in
    float64) and float32 (both train in float32).  The median of TABULAR_FITS fits after one
    warm-up fit each; mlpjit's first fit in the process (which loads or compiles its step) is
    reported apart."""
    import warnings
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.preprocessing import StandardScaler
    from mlpjit.sklearn import MLPClassifier as MjMLP
    rows = []
    for name, loader, hidden in (("digits", load_digits, (100,)), ("breast_cancer", load_breast_cancer, (100,))):
        X, y = loader(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
        sc = StandardScaler().fit(Xtr)
        for dt in (np.float64, np.float32):
            a, b = sc.transform(Xtr).astype(dt), sc.transform(Xte).astype(dt)
            out = {}
            for label, cls in (("mlpjit", MjMLP), ("sklearn", SkMLP)):
                times, first = [], None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for i in range(TABULAR_FITS + 1):
                        clf = cls(hidden_layer_sizes=hidden, random_state=0)
                        t0 = time.perf_counter()
                        clf.fit(a, ytr)
                        times.append(time.perf_counter() - t0)
                first = times[0]
                out[label] = (statistics.median(times[1:]), first, clf.score(b, yte), clf.n_iter_)
            (m_s, m_first, m_acc, m_it), (s_s, _, s_acc, s_it) = out["mlpjit"], out["sklearn"]
            rows.append({"table": f"{name} {X.shape[0]}×{X.shape[1]}, {len(set(y))} classes",
                         "dtype": np.dtype(dt).name, "hidden": str(hidden),
                         "mlpjit fit s": f"{m_s:.3f}", "mlpjit first fit s": f"{m_first:.2f}",
                         "sklearn fit s": f"{s_s:.3f}", "sklearn/mlpjit": f"{s_s / m_s:.2f}x",
                         "epochs mlpjit / sklearn": f"{m_it} / {s_it}",
                         "test acc mlpjit / sklearn": f"{100 * m_acc:.2f}% / {100 * s_acc:.2f}%"})
            print(f"  [tabular] {rows[-1]['table']} {rows[-1]['dtype']}: mlpjit {m_s:.3f} s, sklearn "
                  f"{s_s:.3f} s", file=sys.stderr, flush=True)
    return rows


def tabular_markdown(rows):
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


# --- sharing a machine, and memory ----------------------------------------------------------

MID_CONFIG = {
    "name": "bench_mid", "seed": 0,
    "data": {"name": "mnist", "path": str(REPO / "data" / "mnist"), "validation": 0},
    "model": {"layers": [{"type": "dense", "units": 256, "activation": "relu"},
                         {"type": "dense", "units": 128, "activation": "relu"},
                         {"type": "dense", "units": 10}]},
    "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": LR, "momentum": MOMENTUM},
    "train": {"epochs": 4, "batch_size": 64},
}


def _train_cmd(cfg, out, epochs):
    return [sys.executable, "-m", "mlpjit", "train", str(cfg), "--epochs", str(epochs), "--out", str(out), "-q"]


def _steady(out):
    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return steady_median(r["epoch_seconds"] for r in rows)


def _start_all(cmds, env):
    import subprocess
    procs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"{' '.join(p.args)} failed: {err.strip()}")


def run_concurrent(n, epochs):
    """Each of two configs (configs/mnist_mlp.yaml, the 'mid' network) trained ``n`` times one
    after the other, then ``n`` at once, with mlpjit sizing its threads to the runs it finds
    (as shipped) and with that turned off (MLPJIT_SHARE=0, every run taking every core).
    Throughput of the runs at once as a share of one after the other:
    n × (s/epoch alone) / (mean s/epoch together), epochs 2..N."""
    import yaml
    rows = []
    env0 = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory(prefix="mlpjit-bench-conc-") as tmp:
        tmp = Path(tmp)
        mid = tmp / "mid.yaml"
        mid.write_text(yaml.safe_dump(MID_CONFIG))
        for label, cfg in (("mnist_mlp", REPO / "configs" / "mnist_mlp.yaml"), ("mid", mid)):
            _start_all([_train_cmd(cfg, tmp / f"warm-{label}", 1)], env0)   # the cache, not timed
            alone = []
            for i in range(n):
                _start_all([_train_cmd(cfg, tmp / f"{label}-alone{i}", epochs)], env0)
                alone.append(_steady(tmp / f"{label}-alone{i}"))
            a = statistics.mean(alone)
            for share in ("1", "0"):
                env = dict(env0, MLPJIT_SHARE=share)
                outs = [tmp / f"{label}-together{share}-{i}" for i in range(n)]
                _start_all([_train_cmd(cfg, o, epochs) for o in outs], env)
                t = statistics.mean(_steady(o) for o in outs)
                rows.append({"config": label, "runs": n, "sharing": "on" if share == "1" else "off (MLPJIT_SHARE=0)",
                             "alone s/epoch": f"{a:.3f}", "together s/epoch (each)": f"{t:.3f}",
                             "throughput together / one after the other": f"{100 * n * a / t:.0f}%"})
                print(f"  [concurrent] {label} sharing {share}: alone {a:.3f}, together {t:.3f} s/epoch",
                      file=sys.stderr, flush=True)
    return rows


_MAXRSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(r.returncode)")


def run_memory():
    """Peak resident memory of the README's first command (mnist_mlp, one epoch), with an empty
    cache (NUMBA_CACHE_DIR and MLPJIT_CACHE_DIR pointing at a new folder), then again with the
    cache it left.  The command runs under a small launcher that reports its child's ru_maxrss:
    a child forked straight from this process would count this process's pages (torch, the
    data sets) as its own."""
    import subprocess
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlpjit-bench-mem-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=f"{tmp}/numba", MLPJIT_CACHE_DIR=f"{tmp}/mlpjit",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for label in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", _MAXRSS,
                   *_train_cmd(REPO / "configs" / "mnist_mlp.yaml", f"{tmp}/run-{label[:4]}", 1)]
            p = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
            wall = time.perf_counter() - t0
            if p.returncode:
                raise RuntimeError(f"mlpjit train failed: {p.stderr.strip()}")
            kib = int(p.stderr.strip().splitlines()[-1])
            mb = kib * 1024 / 1e6 if sys.platform != "darwin" else kib / 1e6   # bytes on macOS
            rows.append({"command": "mlpjit train configs/mnist_mlp.yaml --epochs 1", "cache": label,
                         "peak RSS MB": f"{mb:.0f}", "wall s": f"{wall:.1f}"})
            print(f"  [memory] {label}: {mb:.0f} MB, {wall:.1f} s", file=sys.stderr, flush=True)
    return rows


def main(args):
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    tabular = "tabular" in names
    concurrent = "concurrent" in names
    memory = "memory" in names
    names = [n for n in names if n not in ("tabular", "concurrent", "memory")]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        sys.exit(f"unknown case(s): {', '.join(unknown)} (valid: {', '.join(CASES)})")
    if threadpool_limits is not None:
        threadpool_limits(args.threads)  # also caps pools loaded later (scipy's OpenBLAS)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(args.threads)

    peak = sgemm_peak()
    print(header(args.threads, peak), flush=True)

    cache = {}
    rows = []
    for name in names:
        spec, hidden, activation, batch = CASES[name]
        key = json.dumps(spec, sort_keys=True)
        if key not in cache:
            cache[key] = Data(spec, args.seed)
        data = cache[key]
        if hidden == CNN:
            net = "conv32-pool-conv64-pool-128-10 relu"
            macs = cnn_macs()
            first = 32 * 1 * 9 * 26 * 26          # the first layer computes no dX
        else:
            sizes = [data.n_features, *hidden, data.n_classes]
            net = "-".join(map(str, sizes)) + f" {activation}"
            macs = n_params(sizes)
            first = sizes[0] * sizes[1]
        epochs = max(args.epochs, TINY_EPOCHS) if name == "tiny" else args.epochs
        print(f"[{name}] {net}, batch {batch}, {data.n_train} training examples, "
              f"{epochs} epochs", file=sys.stderr, flush=True)

        if threadpool_limits is not None:
            threadpool_limits(args.threads)
        m_s, m_acc, start = run_mlpjit(data, hidden, activation, batch, epochs, args.seed, args.epochs,
                                       threads=args.threads)
        print(f"  mlpjit compiled {m_s:.3f} s/epoch", file=sys.stderr, flush=True)
        l_s, _, _ = run_mlpjit(data, hidden, activation, batch, epochs, args.seed, args.epochs,
                               compiled=False, threads=args.threads)
        print(f"  mlpjit layers   {l_s:.3f} s/epoch", file=sys.stderr, flush=True)
        if torch is not None:
            t_s, t_acc = run_torch(data, hidden, activation, batch, start, args.threads, args.epochs)
            print(f"  PyTorch         {t_s:.3f} s/epoch", file=sys.stderr, flush=True)
        else:
            t_s = t_acc = NOT_INSTALLED
        if hidden == CNN:
            s_s = s_acc = "n/a (no conv)"
        elif sklearn is not None:
            s_s, s_acc = run_sklearn(data, hidden, activation, batch, start, args.epochs)
            print(f"  sklearn         {s_s:.3f} s/epoch", file=sys.stderr, flush=True)
        else:
            s_s = s_acc = NOT_INSTALLED

        if args.jax:
            j_s, j_acc, j_compile = run_jax(data, hidden, activation, batch, start, args.epochs)
            print(f"  JAX (jit)       {j_s:.3f} s/epoch (compile {j_compile:.2f} s)", file=sys.stderr,
                  flush=True)
        gflops = (6.0 * macs - 2.0 * first) * data.n_train / m_s / 1e9
        rows.append({
            "case": name, "network": net, "batch": batch,
            "mlpjit s/epoch": fmt_s(m_s), "mlpjit layers s/epoch": fmt_s(l_s),
            "PyTorch s/epoch": fmt_s(t_s), "sklearn s/epoch": fmt_s(s_s),
            "PyTorch/mlpjit": fmt_ratio(t_s, m_s), "sklearn/mlpjit": fmt_ratio(s_s, m_s),
            "mlpjit GFLOP/s": f"{gflops:.2f}", "% of sgemm peak": f"{100 * gflops / peak:.1f}%",
            "test acc mlpjit / torch / sklearn": " / ".join(fmt_acc(a) for a in (m_acc, t_acc, s_acc)),
        })
        if args.jax:
            rows[-1].update({"JAX s/epoch": fmt_s(j_s), "JAX/mlpjit": fmt_ratio(j_s, m_s),
                             "JAX compile s": f"{j_compile:.2f}", "test acc JAX": fmt_acc(j_acc)})

    if rows:
        print()
        print(f"Median s/epoch over epochs 2..{args.epochs} (2..{max(args.epochs, TINY_EPOCHS)} for tiny; "
              f"training only), float32, SGD lr {LR} momentum {MOMENTUM}, test accuracy after epoch "
              f"{args.epochs}; ratios > 1 mean mlpjit is faster.")
        print()
        print(markdown(rows))
    if concurrent:
        crows = run_concurrent(args.concurrent, max(args.epochs, 3))
        print()
        print(f"Sharing a machine: {args.concurrent} runs started at once against the same runs one "
              f"after the other (median s/epoch over epochs 2..{max(args.epochs, 3)}); 100% means the "
              f"runs at once do as much work per second as the machine does with one at a time.")
        print()
        print(tabular_markdown(crows))
    if memory:
        mrows = run_memory()
        print()
        print("Memory: peak resident set of the largest process of the command (ru_maxrss).")
        print()
        print(tabular_markdown(mrows))
    if tabular:
        if sklearn is None:
            print("\ntabular: scikit-learn is not installed")
            return
        trows = run_tabular(args.threads)
        print()
        print(f"Tables: fit seconds (median of {TABULAR_FITS} after a warm-up fit), "
              f"mlpjit.sklearn.MLPClassifier against sklearn.neural_network.MLPClassifier, the same "
              f"parameters (scikit-learn's defaults: adam, lr 0.001, batch min(200, n), up to 200 "
              f"epochs with its stopping rule), standardized features, 75/25 split.")
        print()
        print(tabular_markdown(trows))


if __name__ == "__main__":
    main(ARGS)
