"""Dense (BLAS) against sparse-input products for a dense layer fed with MNIST batches.

    python benchmarks/sparse.py [--batches 32,64,128] [--widths 128,256,512] [--dtype float32]

For each batch size and layer width it times, on real shuffled MNIST batches (81% zero pixels),
the two products a first layer computes with its input — ``S = X·A + b`` and ``dA = Xᵀ·dS``
(with db) — once through BLAS (``dense_forward`` + ``dense_backward_params``) and once through
the sparse path (``sparse_rows`` + ``sparse_dense_forward`` + ``sparse_cols`` +
``sparse_dense_backward_params``), best of 5 runs of 500 batches each, in µs per batch.  The
input is then thinned or thickened to other nonzero fractions (pixels dropped or noise added)
to show where the two meet; ``SPARSE`` in ``mlpjit/kernels/linear.py`` sits below that point.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlpjit._jit import jit  # noqa: E402
from mlpjit.data import load_dataset  # noqa: E402
from mlpjit.layers import dense as KL  # noqa: E402


@jit
def _dense(Xs, A, b, S, dS, dA, db, reps):
    for r in range(reps):
        X = Xs[r % Xs.shape[0]]
        KL.dense_forward(X, A, b, S)
        KL.dense_backward_params(X, dS, dA, db)


@jit
def _sparse(Xs, A, b, S, dS, dA, db, idx, val, cnt, ptr, rows, vals, reps):
    for r in range(reps):
        X = Xs[r % Xs.shape[0]]
        KL.sparse_rows(X, idx, val, cnt)
        KL.sparse_dense_forward(idx, val, cnt, A, b, S)
        KL.sparse_cols(idx, val, cnt, ptr, rows, vals)
        KL.sparse_dense_backward_params(ptr, rows, vals, dS, dA, db)


def best_us(fn, *args, reps=500):
    fn(*args, 2)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(*args, reps)
        best = min(best, time.perf_counter() - t0)
    return best / reps * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="32,64,128")
    p.add_argument("--widths", default="128,256,512")
    p.add_argument("--fractions", default="0.1,0.19,0.25,0.35",
                   help="nonzero fractions to test (0.19 is MNIST as it is)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args()
    dt = np.dtype(args.dtype)
    ds = load_dataset({"name": "mnist", "path": str(REPO / "data" / "mnist")}, 0)
    rng = np.random.default_rng(0)
    base = (ds.X_train[rng.permutation(ds.X_train.shape[0])[:8192]] * ds.x_scale).astype(dt)
    print(f"SPARSE = {KL.SPARSE}; µs per batch for S = X·A + b and dA = Xᵀ·dS (+ db), {args.dtype}")
    print("| batch | width | nonzero | BLAS µs | sparse µs | BLAS/sparse |")
    print("|---|---|---|---|---|---|")
    for frac in [float(f) for f in args.fractions.split(",")]:
        X = base.copy()
        now = np.count_nonzero(X) / X.size
        if frac < now:  # drop nonzero pixels at random
            X[rng.random(X.shape) < 1 - frac / now] = 0
        elif frac > now:  # switch on zero pixels at random
            add = (X == 0) & (rng.random(X.shape) < (frac - now) / (1 - now))
            X[add] = rng.random(np.count_nonzero(add)).astype(dt)
        actual = np.count_nonzero(X) / X.size
        for bs in [int(v) for v in args.batches.split(",")]:
            Xs = np.ascontiguousarray(X[: (X.shape[0] // bs) * bs].reshape(-1, bs, X.shape[1])[:64])
            k = X.shape[1]
            for w in [int(v) for v in args.widths.split(",")]:
                A = (rng.standard_normal((k, w)) * 0.05).astype(dt)
                b = np.zeros(w, dt)
                S = np.zeros((bs, w), dt)
                dS = rng.standard_normal((bs, w)).astype(dt)
                dA = np.zeros_like(A)
                db = np.zeros_like(b)
                idx = np.zeros((bs, k), np.int32)
                val = np.zeros((bs, k), dt)
                cnt = np.zeros(bs, np.int32)
                ptr = np.zeros(k + 1, np.int32)
                rows = np.zeros(bs * k, np.int32)
                vals = np.zeros(bs * k, dt)
                t_d = best_us(_dense, Xs, A, b, S, dS, dA, db)
                t_s = best_us(_sparse, Xs, A, b, S, dS, dA, db, idx, val, cnt, ptr, rows, vals)
                print(f"| {bs} | {w} | {actual:.2f} | {t_d:.1f} | {t_s:.1f} | {t_d / t_s:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
