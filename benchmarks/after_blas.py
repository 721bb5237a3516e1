"""A sharded step right after BLAS ran on several threads: the slowdown behind the cost curve's bend.

    python benchmarks/after_blas.py                 # 256-256-256-4 relu, batch 128 (the bend)
    python benchmarks/after_blas.py --units 512 --batch 256 --rounds 3

Trains the width sweep's network of ``benchmarks/cost_curve.py`` (10,000 Gaussian rows of 256
features) with ``train.threads: 2``, so that its step is sharded, then times whole epochs of the
compiled step (``CompiledStep.run``, µs a batch) after each of:

* nothing (one call right after the other);
* a few matrix products through BLAS on its threads (as an evaluation between epochs does);
* the same products with BLAS on one thread;
* the products on its threads, then 0.3 s of sleep.

and then the epochs of the same training through ``Trainer.fit`` as mlpjit runs it (a sharded
run evaluates between epochs with BLAS on one thread) and with the evaluation on BLAS's threads,
as before 2026-12-07 (``--no-fit`` skips these).  Prints a line per case.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

THREADS = 2
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, str(THREADS))

import json  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402
import cost_curve  # noqa: E402
import mlpjit.threads as threads  # noqa: E402
from mlpjit.config import config_from_dict, resolved_dict  # noqa: E402
from mlpjit.trainer import Trainer  # noqa: E402


def config(data, units, batch, epochs):
    layers = [{"type": "dense", "units": units, "activation": "relu"}] * 2 + [{"type": "dense", "units": 4}]
    return resolved_dict(config_from_dict({
        "name": "after_blas", "seed": 0, "dtype": "float32", "data": dict(data.spec),
        "model": {"layers": layers}, "loss": "cross_entropy",
        "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9},
        "train": {"epochs": epochs, "batch_size": batch, "threads": THREADS}}, source="after_blas"))


def fit_epochs(data, units, batch, epochs, eval_on_blas_threads):
    """ms per epoch of Trainer.fit (training only, as metrics.jsonl's epoch_seconds)."""
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(config(data, units, batch, epochs), run, dataset=data.ds,
                          log=lambda *a, **k: None, progress=False)
        if eval_on_blas_threads:   # the rule before 2026-12-07: the run's BLAS threads
            trainer._eval_threads = lambda: trainer.blas or trainer.threads
        trainer.fit(epochs)
        rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()
                if line.strip()]
    return [round(r["epoch_seconds"] * 1e3, 1) for r in rows]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="epochs timed per case")
    p.add_argument("--no-fit", action="store_true", help="only the step, not Trainer.fit")
    args = p.parse_args(argv)
    for name in ("units", "batch", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.batch > 10_000:
        p.error("--batch must be at most 10000 (the table's rows)")
    from mlpjit.core import Interrupted
    from mlpjit.errors import MlpjitError
    try:
        with tempfile.TemporaryDirectory(prefix="after-blas-") as tmp:
            run(args, tmp)
    except (KeyboardInterrupt, Interrupted):
        sys.exit("after_blas.py: interrupted (nothing kept)")
    except MlpjitError as e:   # a network too large for this machine, say
        sys.exit(f"after_blas.py: {e}")


def run(args, tmp):
    data = bench.Data(cost_curve.table(os.path.join(tmp, "table.npz"), 10_000, 256), 0)
    trainer = Trainer(config(data, args.units, args.batch, 1), tmp, dataset=data.ds,
                      log=lambda *a, **k: None, progress=False)
    trainer.fit(1)   # compiles (or loads) the step
    step = trainer.fast
    if not step.plan.sharded:
        sys.exit(f"after_blas.py: {args.units} units at batch {args.batch} keep the serial step; "
                 f"pick a larger network or batch")
    step.threads = THREADS
    nb = 10_000 // args.batch
    perm = np.random.default_rng(0).permutation(10_000)
    a = np.random.default_rng(1).random((1000, 256), dtype=np.float32)
    w = np.random.default_rng(2).random((256, 256), dtype=np.float32)

    def products(n):
        threads.set_blas_threads(n)
        for _ in range(5):
            a @ w

    def epoch():
        acc = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "grad_norm": 0.0, "batches": 0.0,
               "layer_norms": {name: 0.0 for name in step.weight_names}}
        t = time.perf_counter()
        step.run(perm, 0, nb, 0.001, acc)
        return round((time.perf_counter() - t) / nb * 1e6)

    print(f"{args.units}-unit network, batch {args.batch}, {step.shards} shards on "
          f"{threads.set_numba_threads(THREADS)} threads; "
          f"µs a batch over one epoch of the compiled step, {args.rounds} epochs a case:")
    cases = [("right after the last epoch", lambda: None),
             (f"after products with BLAS on {THREADS} threads", lambda: products(THREADS)),
             ("after products with BLAS on 1 thread", lambda: products(1)),
             (f"after BLAS on {THREADS} threads, then 0.3 s", lambda: (products(THREADS), time.sleep(0.3)))]
    for label, before in cases:
        times = []
        for _ in range(args.rounds):
            before()
            times.append(epoch())
        print(f"  {label:44s} {times}", flush=True)
    if not args.no_fit:
        epochs = args.rounds + 1
        print(f"Trainer.fit, {epochs} epochs, ms each (the first loads the step):")
        print(f"  {'as mlpjit runs (evaluation on one thread)':44s} {fit_epochs(data, args.units, args.batch, epochs, False)}")
        print(f"  {'evaluation on BLAS threads (before)':44s} {fit_epochs(data, args.units, args.batch, epochs, True)}")


if __name__ == "__main__":
    main()
