"""The cost curve: how an epoch's time grows with the work, for mlpjit, PyTorch (eager) and JAX.

    python benchmarks/cost_curve.py                  # all three curves and the memory check
    python benchmarks/cost_curve.py --only rows      # one of rows, width, batch, memory
    python benchmarks/cost_curve.py --quick          # tiny sizes: checks the script runs

Three sweeps on a synthetic table (Gaussian features, classes from a fixed random teacher
network), each library training the same float32 network from the same weights in the same
order with plain SGD and momentum (the functions of ``benchmarks/bench.py``):

* rows: 1,000 to 600,000 rows of 32 features, network 32-64-64-4 (tanh), batch 64;
* width: two hidden layers of 64 to 4,096 units (relu) on 10,000 rows of 256 features, batch 128;
* batch: batch sizes 1 to 1,024 on 20,000 rows of the rows-sweep network.

Each point is the median seconds per epoch over epochs 2..3 (training only; the first epoch
holds compilation and warm-up).  ``memory`` trains mlpjit alone in a fresh process per row count
and records its resident memory after loading the data, after the first and after the last
epoch, and the process's peak: epoch time must grow linearly with the rows, and memory must stay
within the data, the model and one batch's buffers (no copy of the data per epoch).

Writes ``docs/cost_curve.json`` and ``docs/cost_curve.png`` (``--out`` to put them elsewhere) and
prints a markdown table per sweep.  PyTorch and JAX are optional: a missing one is left out of
the curves (``pip install torch "jax[cpu]"``).
"""

import argparse
import os
import sys

THREADS = 2
if __name__ == "__main__":
    # before NumPy / Numba / torch are imported, so every pool starts at this size (as bench.py)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, str(THREADS))

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import bench  # noqa: E402  (benchmarks/bench.py: the same runs, weights and order)

ROWS = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 600_000)
WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
BATCHES = (1, 4, 16, 64, 256, 1024)
MEMORY_ROWS = (10_000, 100_000, 300_000, 600_000)
QUICK = {"rows": (500, 2_000), "widths": (16, 32), "batches": (8, 32), "memory_rows": (1_000, 4_000)}
EPOCHS = 3
TEST_ROWS = 1_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="rows,width,batch,memory",
                   help="comma-separated subset of rows,width,batch,memory (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "docs", help="where cost_curve.json/.png go")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not figures)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    return p.parse_args(argv)


# --- data --------------------------------------------------------------------------------

def table(path, rows, features, classes=4, seed=0):
    """``rows`` + TEST_ROWS Gaussian rows whose class is the argmax of a fixed random tanh
    teacher, written as an .npz (X, y, X_test, y_test) at ``path``."""
    rng = np.random.default_rng(seed)
    n = rows + TEST_ROWS
    X = rng.standard_normal((n, features), dtype=np.float32)
    W1 = rng.standard_normal((features, 32)).astype(np.float32) / np.sqrt(features)
    W2 = rng.standard_normal((32, classes)).astype(np.float32)
    y = np.argmax(np.tanh(X @ W1) @ W2, axis=1).astype(np.int64)
    np.savez(path, X=X[:rows], y=y[:rows], X_test=X[rows:], y_test=y[rows:])
    return {"name": "npz", "path": str(path)}


def point(spec, hidden, activation, batch, libs):
    """{library: median s/epoch} for one network, data set and batch size."""
    data = bench.Data(spec, 0)
    out = {}
    m_s, _, start = bench.run_mlpjit(data, hidden, activation, batch, EPOCHS, 0, EPOCHS)
    out["mlpjit"] = m_s
    if "PyTorch" in libs:
        out["PyTorch"], _ = bench.run_torch(data, hidden, activation, batch, start, THREADS, EPOCHS)
    if "JAX" in libs:
        out["JAX"], _, _ = bench.run_jax(data, hidden, activation, batch, start, EPOCHS)
    return out


def sweep(name, xs, make, libs, tmp):
    results = []
    for x in xs:
        spec, hidden, activation, batch, examples = make(x, tmp)
        t0 = time.perf_counter()
        s = point(spec, hidden, activation, batch, libs)
        results.append({"x": x, "examples": examples, "seconds": s})
        print(f"  [{name}] {x:>7}: " + ", ".join(f"{k} {v:.4f} s" for k, v in s.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return results


# --- memory ------------------------------------------------------------------------------

_CHILD = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[2])
from mlpjit.config import config_from_dict, resolved_dict
from mlpjit.data import load_dataset
from mlpjit.trainer import Trainer

def status(key):   # MB of /proc/self/status's VmRSS (resident now) or VmHWM (the peak so far)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6

def rss():
    return status("VmRSS")

spec = {"name": "npz", "path": sys.argv[1]}
before = rss()
ds = load_dataset(dict(spec), 0)
cfg = resolved_dict(config_from_dict({"name": "mem", "seed": 0, "dtype": "float32", "data": spec,
    "model": {"layers": [{"type": "dense", "units": 64, "activation": "tanh"},
                         {"type": "dense", "units": 64, "activation": "tanh"}, {"type": "dense", "units": 4}]},
    "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 64}}, source="cost_curve"))
seen = {}
with tempfile.TemporaryDirectory() as run:
    t = Trainer(cfg, run, dataset=ds, log=lambda *a, **k: None, progress=False)
    seen["loaded"] = rss()
    t.fit(1)
    seen["epoch 1"] = rss()
    t.fit(3)
    seen["epoch 3"] = rss()
data_mb = (ds.X_train.nbytes + ds.y_train.nbytes + ds.X_test.nbytes + ds.y_test.nbytes) / 1e6
peak = status("VmHWM")   # not ru_maxrss: Linux carries the parent's across fork and exec
print(json.dumps({"start": before, **seen, "peak": peak, "data": data_mb,
                  "x_dtype": str(ds.X_train.dtype)}))
"""


def memory(rows_list, tmp):
    """Resident MB of a fresh mlpjit process per row count (see _CHILD)."""
    out = []
    for rows in rows_list:
        path = Path(tmp) / f"mem_{rows}.npz"
        table(path, rows, 32)
        p = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(REPO)], capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        if p.returncode:
            raise RuntimeError(f"memory child failed: {p.stderr.strip()[-2000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["rows"] = rows
        out.append(r)
        print(f"  [memory] {rows:>7}: data {r['data']:.1f} MB, loaded {r['loaded']:.0f} MB, epoch 1 "
              f"{r['epoch 1']:.0f} MB, epoch 3 {r['epoch 3']:.0f} MB, peak {r['peak']:.0f} MB",
              file=sys.stderr, flush=True)
    return out


# --- report ------------------------------------------------------------------------------

def slope(xs, ys):
    """Least-squares b of y = a + b·x."""
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def markdown(title, xname, results, libs):
    lines = [f"{title}", "", f"| {xname} | " + " | ".join(f"{lib} s/epoch" for lib in libs)
             + " | " + " | ".join(f"{lib}/mlpjit" for lib in libs if lib != "mlpjit") + " |",
             "|" + "---|" * (1 + 2 * len(libs) - 1)]
    for r in results:
        s = r["seconds"]
        lines.append(f"| {r['x']:,} | " + " | ".join(f"{s[lib]:.4g}" if lib in s else "—" for lib in libs)
                     + " | " + " | ".join(f"{s[lib] / s['mlpjit']:.2f}×" if lib in s else "—"
                                          for lib in libs if lib != "mlpjit") + " |")
    return "\n".join(lines)


def draw(result, path):
    try:
        import matplotlib
    except ImportError:
        sys.exit("the plot needs matplotlib: pip install -e '.[plot]' (or pass --no-plot)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [k for k in ("rows", "width", "batch", "memory") if k in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    labels = {"rows": ("rows (batch 64, 32-64-64-4)", "s per epoch"),
              "width": ("units per hidden layer (2 layers, 10k rows, batch 128)", "s per epoch"),
              "batch": ("batch size (20k rows, 32-64-64-4)", "s per epoch")}
    for ax, key in zip(axes[0], panels):
        if key == "memory":
            m = result["memory"]
            rows = [r["rows"] for r in m]
            for k, style in (("peak", "-o"), ("epoch 3", "--s"), ("loaded", ":^")):
                ax.plot(rows, [r[k] for r in m], style, label=f"RSS: {k}")
            ax.plot(rows, [m[0]["loaded"] - m[0]["data"] + r["data"] for r in m], "k-", lw=0.8,
                    label="first point + data")
            ax.set_xlabel("rows (mlpjit, a fresh process each)")
            ax.set_ylabel("resident MB")
            ax.legend(fontsize="small")
            ax.grid(True, alpha=0.3)
            continue
        for lib in ("mlpjit", "PyTorch", "JAX"):
            pts = [(r["x"], r["seconds"][lib]) for r in result[key] if lib in r["seconds"]]
            if pts:
                ax.plot(*zip(*pts), "-o", markersize=3, label=lib)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(labels[key][0])
        ax.set_ylabel(labels[key][1])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args):
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    bad = only - {"rows", "width", "batch", "memory"}
    if bad:
        sys.exit(f"--only: unknown {', '.join(sorted(bad))} (valid: rows, width, batch, memory)")
    libs = ["mlpjit"] + (["PyTorch"] if bench.torch is not None else [])
    try:
        import jax  # noqa: F401
        libs.append("JAX")
    except ImportError:
        pass
    if bench.threadpool_limits is not None:
        bench.threadpool_limits(THREADS)
    if bench.torch is not None:
        bench.torch.set_num_threads(THREADS)
    rows = QUICK["rows"] if args.quick else ROWS
    widths = QUICK["widths"] if args.quick else WIDTHS
    batches = QUICK["batches"] if args.quick else BATCHES
    print(bench.header(THREADS, bench.sgemm_peak(sizes=(256,), repeats=2) if args.quick else bench.sgemm_peak()),
          flush=True)
    result = {"libraries": libs, "threads": THREADS, "cpu": bench.cpu_model(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="mlpjit-cost-") as tmp:
        if "rows" in only:
            result["rows"] = sweep("rows", rows, lambda n, d: (
                table(Path(d) / f"rows_{n}.npz", n, 32), (64, 64), "tanh", 64, n), libs, tmp)
        if "width" in only:
            n = 2_000 if args.quick else 10_000
            spec = table(Path(tmp) / "width.npz", n, 256)
            result["width"] = sweep("width", widths, lambda w, d: (spec, (w, w), "relu", 128, n), libs, tmp)
        if "batch" in only:
            n = 2_000 if args.quick else 20_000
            spec = table(Path(tmp) / "batch.npz", n, 32)
            result["batch"] = sweep("batch", batches, lambda b, d: (spec, (64, 64), "tanh", b, n), libs, tmp)
        if "memory" in only:
            result["memory"] = memory(QUICK["memory_rows"] if args.quick else MEMORY_ROWS, tmp)
    if "rows" in result:
        r = result["rows"]
        big = [p for p in r if p["x"] >= 10_000] or r
        result["rows_fit"] = {lib: {"seconds per 100k rows": 1e5 * slope([p["x"] for p in big],
                                                                          [p["seconds"][lib] for p in big]),
                                    "largest/smallest per row": (big[-1]["seconds"][lib] / big[-1]["x"])
                                    / (big[0]["seconds"][lib] / big[0]["x"])}
                              for lib in libs}
    if "memory" in result:
        m = result["memory"]
        result["memory_fit"] = {
            "resident MB per data MB (loaded)": slope([r["data"] for r in m], [r["loaded"] for r in m]),
            "resident MB per data MB (epoch 3)": slope([r["data"] for r in m], [r["epoch 3"] for r in m]),
            "peak MB per data MB": slope([r["data"] for r in m], [r["peak"] for r in m]),
            "largest growth from epoch 1 to epoch 3, MB": max(r["epoch 3"] - r["epoch 1"] for r in m),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost_curve.json").write_text(json.dumps(result, indent=1) + "\n")
    print()
    for key, title, xname in (("rows", "Epoch time against rows (32-64-64-4 tanh, batch 64)", "rows"),
                              ("width", "Epoch time against width (256-W-W-4 relu, 10,000 rows, batch 128)",
                               "W"),
                              ("batch", "Epoch time against batch size (32-64-64-4 tanh, 20,000 rows)",
                               "batch")):
        if key in result:
            print(markdown(title, xname, result[key], libs))
            print()
    if "rows_fit" in result:
        print("Linear in rows (from 10,000 rows on): " + "; ".join(
            f"{lib} {f['seconds per 100k rows']:.3f} s per 100k rows, time per row at the largest / "
            f"smallest {f['largest/smallest per row']:.2f}" for lib, f in result["rows_fit"].items()))
    if "memory" in result:
        print("\nmlpjit's resident memory (MB), a fresh process per row count:\n")
        print("| rows | data | after loading | after epoch 1 | after epoch 3 | peak |")
        print("|---|---|---|---|---|---|")
        for r in result["memory"]:
            print(f"| {r['rows']:,} | {r['data']:.1f} | {r['loaded']:.0f} | {r['epoch 1']:.0f} | "
                  f"{r['epoch 3']:.0f} | {r['peak']:.0f} |")
        print("\n" + "; ".join(f"{k}: {v:.2f}" for k, v in result["memory_fit"].items()))
    if not args.no_plot:
        draw(result, args.out / "cost_curve.png")
        print(f"\nwrote {args.out / 'cost_curve.json'} and {args.out / 'cost_curve.png'}")


if __name__ == "__main__":
    main(parse_args())
