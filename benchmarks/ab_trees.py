"""Two source trees of mlpjit, alternated: is the new one slower than the old on small and mid?

    git worktree add /tmp/old 430f2e8          # the tree to compare against
    python benchmarks/ab_trees.py /tmp/old .  [more trees...] [--rounds 3] [--cases small,mid] [--step]
    python benchmarks/ab_trees.py /tmp/old . .@train.threads=2      # a tree with config overrides

For each round and case, ``mlpjit train`` runs in each tree in turn (old, new, old, new, ...;
``PYTHONPATH`` pointing at the tree, the same Python and packages) on the same config: MNIST,
float32, SGD lr 0.05 momentum 0.9, 3 epochs; small is 784-128-10 relu at batch 32, mid
784-256-128-10 relu at batch 64, wide (`--cases wide`) 784-512-512-10 relu at batch 128.  It prints the fastest of epochs 2–3 (``epoch_seconds``:
training only) per run and old/new per round: above 1 the new tree is faster.  With more than two trees, each
after the first is compared with the first, and all of them alternate within a round.  A first run per
tree and case compiles (not counted).  ``--step`` times the compiled call alone instead (µs per
batch over one epoch's batches, four times per run): where the two differ there, the difference
is inside the step, not in the epoch around it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {"small": [128], "mid": [256, 128], "wide": [512, 512]}
BATCH = {"small": 32, "mid": 64, "wide": 128}

_STEP = r"""
import json, sys, tempfile, time
import numpy as np
from mlpjit.config import load_config, resolved_dict
from mlpjit.trainer import Trainer
cfg = resolved_dict(load_config(sys.argv[1], ["train.epochs=1"] + sys.argv[2:]))
with tempfile.TemporaryDirectory() as d:
    t = Trainer(cfg, d, log=lambda *a, **k: None, progress=False)
    t.fit(1)
    n, bs = t.data.n_train, cfg["train"]["batch_size"]
    nb = n // bs
    perm = np.random.default_rng(0).permutation(n)
    acc = t._new_accumulators()
    out = []
    for rep in range(4):
        t0, done = time.perf_counter(), 0
        while done < nb:
            k, _ = t.fast.run(perm, done, min(done + 256, nb), 0.01, acc)
            done += k
        out.append((time.perf_counter() - t0) / nb * 1e6)
print(json.dumps(min(out)))
"""


def config(case, folder):
    layers = "".join(f"    - {{type: dense, units: {u}, activation: relu}}\n" for u in CASES[case])
    path = Path(folder) / f"{case}.yaml"
    path.write_text(f"name: ab_{case}\nseed: 0\ndtype: float32\ndata: {{name: mnist}}\nmodel:\n  layers:\n"
                    f"{layers}    - {{type: dense, units: 10}}\nloss: cross_entropy\n"
                    f"optimizer: {{type: sgd, lr: 0.05, momentum: 0.9}}\n"
                    f"train: {{epochs: 3, batch_size: {BATCH[case]}}}\n")
    return path


def once(tree, cfg, step, epochs=None, sets=()):
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as d:
        if step:
            cmd = [sys.executable, "-c", _STEP, str(cfg), *sets]
        else:
            cmd = [sys.executable, "-m", "mlpjit", "train", str(cfg), "--out", f"{d}/run", "-q"]
            cmd += ["--epochs", str(epochs)] if epochs else []
            for kv in sets:
                cmd += ["--set", kv]
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"{tree}: {' '.join(cmd[:4])} failed: {p.stderr.strip()[-1000:]}")
        if step:
            return json.loads(p.stdout.strip().splitlines()[-1])
        rows = [json.loads(x) for x in Path(f"{d}/run/metrics.jsonl").read_text().splitlines() if x.strip()]
        return min(r["epoch_seconds"] for r in rows[1:]) if len(rows) > 1 else rows[0]["epoch_seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", nargs="+", help="trees, each optionally with config overrides: "
                   "PATH@train.threads=2[@KEY=VALUE...]")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default="small,mid", help="small, mid and/or wide")
    p.add_argument("--step", action="store_true", help="time the compiled call alone (µs a batch)")
    a = p.parse_args()
    cases = [c for c in a.cases.split(",") if c]
    unit = "µs a batch" if a.step else "s an epoch"
    trees = [("old", a.old, [])] + [("new" if len(a.new) == 1 else f"new{i + 1}", Path(t.split("@")[0]),
                                     t.split("@")[1:]) for i, t in enumerate(a.new)]
    for _, tree, sets in trees:
        if not (tree / "mlpjit" / "__init__.py").is_file():
            p.error(f"{tree}: not a tree of mlpjit (no mlpjit/__init__.py there)")
        for kv in sets:
            if "=" not in kv or not kv.split("=")[0]:
                p.error(f"{tree}@{kv}: an override is KEY=VALUE (e.g. train.threads=2)")
    if a.rounds < 1:
        p.error(f"--rounds {a.rounds}: at least 1")
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        p.error(f"--cases {a.cases!r}: choose from {', '.join(CASES)}")
    with tempfile.TemporaryDirectory() as d:
        cfgs = {c: config(c, d) for c in cases}
        for c in cases:        # compile (or load) each tree's step first: not counted
            for _, tree, sets in trees:
                once(tree.resolve(), cfgs[c], False, epochs=1, sets=sets)
        res = {}
        for r in range(a.rounds):
            for c in cases:
                for label, tree, sets in trees:
                    v = once(tree.resolve(), cfgs[c], a.step, sets=sets)
                    res.setdefault((c, label), []).append(v)
                    print(f"round {r} {c:5} {label} {v:.4g} {unit}", flush=True)
    for c in cases:
        o = res[(c, "old")]
        for label, tree, sets in trees[1:]:
            n = res[(c, label)]
            print(f"{c}: old {', '.join(f'{x:.4g}' for x in o)}; {label} ({'@'.join([str(tree), *sets])}) {', '.join(f'{x:.4g}' for x in n)}; "
                  f"old/{label} per round {', '.join(f'{x / y:.2f}' for x, y in zip(o, n))}")


if __name__ == "__main__":
    main()
