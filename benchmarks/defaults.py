"""Defaults that train: mlpjit's default config against scikit-learn's MLP defaults, on five of
scikit-learn's small data sets (the goal of "the first hour": within 2 points of accuracy, or
0.05 of R², and no slower).

    python benchmarks/defaults.py                          # 5 data sets x 3 seeds x 3 fits (about 40 s on 2 cores)
    python benchmarks/defaults.py --datasets iris,wine --seeds 5
    python benchmarks/defaults.py --batch-size 200         # an alternative default: train.batch_size=200
    python benchmarks/defaults.py --lr 0.003 --set train.probe_rows=0
    python benchmarks/defaults.py --in-memory              # no run folder: what its files cost

Each data set (iris, wine, breast_cancer, digits, diabetes) is split once
(``train_test_split(test_size=0.25, random_state=0)``, stratified for the classifiers).

* scikit-learn: ``make_pipeline(StandardScaler(), MLPClassifier(random_state=s))`` (or
  ``MLPRegressor``) with every other setting at its default (one hidden layer of 100 ReLUs, Adam
  at 1e-3, batch min(200, n), at most 200 epochs, tol 1e-4 for 10 epochs); the time is that of
  ``pipeline.fit`` on the training split, the score the test accuracy or R².
* mlpjit: the config a user writes with nothing else set: the split as an ``npz`` file, the
  layers ``standardize``, ``dense 100 relu``, ``dense k``, the loss (``cross_entropy`` or
  ``mse``) and ``seed: s``; no ``optimizer`` and no ``train`` section (so Adam at 1e-3, batch 32,
  ``epochs: auto``).  It is trained in this process as ``mlpjit train`` does it (``load_config``,
  ``resolved_dict``, ``Trainer(...).fit()``, into a run folder that gets its checkpoints,
  metrics.jsonl, model.npz and summary.json); the time is from reading the config to ``fit``
  returning, the score the summary's test accuracy or test R².  One untimed run per data set
  comes first (Numba's cache as found: the "first run" column, compile or cache load included),
  so the timed runs are steady state.

The two sides alternate (scikit-learn first in every other pair of fits, mlpjit in the others); times are the
median over seeds x ``--repeat``, scores mean ± std over seeds (each run is deterministic).
"Within goal" is: mlpjit's mean score at most 2 points (R² 0.05) below scikit-learn's, and its
median time at most scikit-learn's.  The second table splits mlpjit's time: setting up (config,
data, model), the batches (the summary's train_seconds), the per-epoch evaluation of the test
split and activation probes (eval_seconds), and the rest of the epoch loop (checkpoint,
metrics.jsonl, early stopping, logging).
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes")
ACC_GOAL, R2_GOAL = 0.02, 0.05


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help=f"comma-separated subset of {','.join(DATASETS)} (default: all)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default 3)")
    p.add_argument("--repeat", type=int, default=3, metavar="R",
                   help="timed fits per seed and side (default 3; the scores do not change, each "
                        "run being deterministic)")
    p.add_argument("--batch-size", metavar="B",
                   help="mlpjit: set train.batch_size (an integer or 'full'; default: the config default)")
    p.add_argument("--lr", type=float, help="mlpjit: set optimizer.lr (default: the config default)")
    p.add_argument("--in-memory", action="store_true",
                   help="mlpjit: train without a run folder (no checkpoint, metrics.jsonl or model "
                        "files, as model.fit in code), to see what writing them costs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="mlpjit: any other config key, as mlpjit train --set (repeatable)")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown or not args.datasets:
        p.error(f"--datasets: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(DATASETS)}")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    extra = list(args.overrides)
    if args.batch_size is not None:
        extra.append(f"train.batch_size={args.batch_size}")
    if args.lr is not None:
        extra.append(f"optimizer.lr={args.lr!r}")
    args.extra = extra
    return args


# --- data ----------------------------------------------------------------------------------

def split(name):
    """(X_train, X_test, y_train, y_test, classification) of one data set, split once."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    classification = name != "diabetes"
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if classification else None)
    return X_tr, X_te, y_tr, y_te, classification


# --- scikit-learn --------------------------------------------------------------------------

def sklearn_run(X_tr, X_te, y_tr, y_te, classification, seed):
    """(score, fit seconds, epochs) of scikit-learn's MLP with its defaults behind a scaler."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    mlp = MLPClassifier(random_state=seed) if classification else MLPRegressor(random_state=seed)
    pipe = make_pipeline(StandardScaler(), mlp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        pipe.fit(X_tr, y_tr)
        seconds = time.perf_counter() - t0
    return pipe.score(X_te, y_te), seconds, mlp.n_iter_


# --- mlpjit --------------------------------------------------------------------------------

def write_config(folder, name, n_outputs, classification, seed):
    """The config a user writes, nothing else set (no optimizer, no train section)."""
    cfg = {
        "name": f"defaults-{name}",
        "seed": seed,
        "data": {"name": "npz", "path": str(folder / f"{name}.npz")},
        "model": {"layers": [{"type": "standardize"},
                             {"type": "dense", "units": 100, "activation": "relu"},
                             {"type": "dense", "units": n_outputs}]},
        "loss": "cross_entropy" if classification else "mse",
    }
    path = folder / f"{name}-seed{seed}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def mlpjit_run(config_path, extra, run_dir):
    """Trains one config as ``mlpjit train -q`` does (``run_dir`` None: without a run folder); a
    dict of its score, times and epochs."""
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    notices = []
    t0 = time.perf_counter()
    cfg = resolved_dict(load_config(config_path, extra))
    trainer = Trainer(cfg, run_dir, log=notices.append, progress=False)
    if run_dir is not None:
        run_dir.mkdir(parents=True)
    t1 = time.perf_counter()
    summary = trainer.fit(cfg["train"]["epochs"])
    t2 = time.perf_counter()
    if "test_regression" in summary:
        score = summary["test_regression"]["r2"]
    else:
        score = summary["final"]["test_accuracy"]
    rows = trainer.rows
    eval_s = sum(r.get("eval_seconds", 0.0) for r in rows)
    return {"score": score, "seconds": t2 - t0, "setup": t1 - t0, "fit": t2 - t1,
            "batches": summary["train_seconds"], "eval": eval_s,
            "other": (t2 - t1) - summary["train_seconds"] - eval_s,
            "epochs": summary["epochs"],
            "compiled": any("compiling kernels" in str(n) for n in notices),
            "batch_size": cfg["train"]["batch_size"], "lr": cfg["optimizer"]["lr"],
            "optimizer": cfg["optimizer"]["type"]}


# --- the table -----------------------------------------------------------------------------

def mean_std(values):
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def fmt_score(values, classification):
    m, s = mean_std(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}%" if classification else f"{m:.3f} ± {s:.3f}"


def header(args):
    import numba
    import sklearn
    from mlpjit import __version__
    from mlpjit.core import cpu_model
    from mlpjit.threads import blas_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "\n".join([
        f"CPU: {cpu_model()}; cores: {os.cpu_count()} logical, {cores} usable by this process; "
        f"BLAS threads: {blas_threads()}",
        f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, "
        f"scikit-learn {sklearn.__version__}, mlpjit {__version__}",
        f"seeds 0..{args.seeds - 1}, {args.repeat} timed fit(s) per seed and side; "
        f"mlpjit overrides: {' '.join(args.extra) or '(none: the defaults)'}"
        + ("; no run folder (--in-memory)" if args.in_memory else "; a run folder per run, as mlpjit train"),
    ])


def main(argv=None):
    args = parse_args(argv)
    print(header(args), flush=True)
    work = Path(tempfile.mkdtemp(prefix="mlpjit-defaults-"))
    results = []
    try:
        for name in args.datasets:
            X_tr, X_te, y_tr, y_te, classification = split(name)
            np.savez(work / f"{name}.npz", X=X_tr, y=y_tr, X_test=X_te, y_test=y_te)
            k = len(np.unique(y_tr)) if classification else 1
            runs = 0

            def run_dir():
                nonlocal runs
                runs += 1
                return None if args.in_memory else work / "runs" / f"{name}-{runs}"

            # untimed: the first run (compile or cache load) and scikit-learn's first fit
            first = mlpjit_run(write_config(work, name, k, classification, 0), args.extra, run_dir())
            sklearn_run(X_tr, X_te, y_tr, y_te, classification, 0)
            sk_scores, sk_times, sk_epochs, mj_scores, mj, mj_epochs = [], [], [], [], [], []
            for seed in range(args.seeds):
                cfg_path = write_config(work, name, k, classification, seed)
                for r in range(args.repeat):
                    order = (0, 1) if (seed * args.repeat + r) % 2 == 0 else (1, 0)
                    for side in order:
                        if side == 0:
                            score, seconds, epochs = sklearn_run(X_tr, X_te, y_tr, y_te,
                                                                 classification, seed)
                            sk_times.append(seconds)
                            if r == 0:
                                sk_scores.append(score)
                                sk_epochs.append(epochs)
                        else:
                            out = mlpjit_run(cfg_path, args.extra, run_dir())
                            shutil.rmtree(work / "runs", ignore_errors=True)
                            mj.append(out)
                            if r == 0:
                                mj_scores.append(out["score"])
                                mj_epochs.append(out["epochs"])
            sk_m, mj_m = statistics.fmean(sk_scores), statistics.fmean(mj_scores)
            sk_t = statistics.median(sk_times)
            mj_t = statistics.median(o["seconds"] for o in mj)
            goal = ACC_GOAL if classification else R2_GOAL
            score_ok, time_ok = mj_m >= sk_m - goal, mj_t <= sk_t
            med = {key: statistics.median(o[key] for o in mj)
                   for key in ("setup", "fit", "batches", "eval", "other")}
            results.append(dict(
                name=name, n=len(y_tr), classification=classification, k=k,
                sk=fmt_score(sk_scores, classification), mj=fmt_score(mj_scores, classification),
                diff=mj_m - sk_m, sk_t=sk_t, mj_t=mj_t, score_ok=score_ok, time_ok=time_ok,
                sk_epochs=sk_epochs, mj_epochs=mj_epochs, first=first, med=med,
                batch_size=mj[0]["batch_size"]))
            print(f"  {name}: done", file=sys.stderr, flush=True)
        sys.stderr.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def epochs(values):
        return "/".join(str(v) for v in values)

    print()
    print("| dataset | n train | sklearn score | mlpjit score | diff | sklearn fit s | mlpjit train s "
          "| mlpjit/sklearn time | sklearn epochs | mlpjit epochs | within goal? |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        diff = f"{100 * r['diff']:+.2f} pt" if r["classification"] else f"{r['diff']:+.3f} R²"
        verdict = ("yes" if r["score_ok"] and r["time_ok"] else
                   "no: " + ", ".join(w for w, ok in (("score", r["score_ok"]), ("slower", r["time_ok"]))
                                      if not ok))
        print(f"| {r['name']} | {r['n']} | {r['sk']} | {r['mj']} | {diff} | {r['sk_t']:.3f} "
              f"| {r['mj_t']:.3f} | {r['mj_t'] / r['sk_t']:.2f} | {epochs(r['sk_epochs'])} "
              f"| {epochs(r['mj_epochs'])} | {verdict} |")
    print()
    print("mlpjit's time, median seconds: set-up (config, data, model), batches, per-epoch evaluation "
          "(test split, probes), the rest of the epoch loop (checkpoint, metrics, early stopping); "
          "the untimed first run (seed 0, Numba's cache as found)")
    print()
    print("| dataset | batch size | set-up s | batches s | eval s | rest s | ms/epoch (all) "
          "| ms/epoch (batches) | first run s | first run compiled? |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, ep = r["med"], statistics.median(r["mj_epochs"])
        print(f"| {r['name']} | {r['batch_size']} | {m['setup']:.3f} | {m['batches']:.3f} "
              f"| {m['eval']:.3f} | {m['other']:.3f} | {1000 * m['fit'] / ep:.2f} "
              f"| {1000 * m['batches'] / ep:.2f} | {r['first']['seconds']:.2f} "
              f"| {'yes' if r['first']['compiled'] else 'no (cache loaded)'} |")
    met = sum(r["score_ok"] and r["time_ok"] for r in results)
    print()
    print(f"goal met on {met} of {len(results)} data sets "
          f"(score: mlpjit's mean at most {100 * ACC_GOAL:.0f} points / R² {R2_GOAL} below "
          f"scikit-learn's; time: mlpjit's median at most scikit-learn's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
