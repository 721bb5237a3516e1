"""Start-up: what a user waits for before the first batch, measured row by row.

Every row runs in fresh processes with caches in a temporary folder (``MLPJIT_CACHE_DIR`` and
``NUMBA_CACHE_DIR``), so "fresh install" means: nothing of mlpjit's compiled code on disk.

    python benchmarks/startup.py                 # the table (about 3 minutes on 2 cores)
    python benchmarks/startup.py --rows xor,width --repeat 5
    python benchmarks/startup.py --suite         # and the README's test command, cold (minutes)

Rows (the goals of issue #25):

* ``width``: another width, batch size and data size of a structure already compiled: the
  seconds spent compiling (0 when the step loads) and the whole command;
* ``structure``: a new structure whose kernels are cached: seconds from the model being built to
  its first batch done (in one process: build the model, bind the step, train one batch);
* ``mnist_mlp`` / ``mnist_cnn``: a fresh install, ``mlpjit train NAME``: seconds from the command
  starting to its first batch done (the cnn on its first 2,000 images, as the issue measured);
* ``xor``: warm caches, ``mlpjit train xor``: the whole command;
* ``script``: ``examples/layer_in_a_script.py`` (a layer in the script's ``__main__``), run
  twice: command → first batch, and whether the step compiled (the second run loads it);
* beside them, when installed: JAX (``jax.jit``: trace, compile and run the first step) and
  PyTorch (eager: the first step) on the same networks.

The first batch is timed by running the command with a one-batch first call of the compiled
step (``mlpjit.step.CHUNK_EXAMPLES``) and taking the moment that call returns.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in this process, noting when the compiled step's first call returned (seconds
# after the parent started the process: argv[1]) and how long compiling took.
WRAP = r"""
import sys, time, json
t_start, marks_path = float(sys.argv[1]), sys.argv[2]
import mlpjit.step as S
S.CHUNK_EXAMPLES = 1      # the first call trains one batch
marks = {}
run = S.CompiledStep.run
def timed(self, *a, **k):
    marks.setdefault("compiled", bool(self.compiling))
    out = run(self, *a, **k)
    marks.setdefault("first_batch", time.time() - t_start)
    return out
S.CompiledStep.run = timed
try:
    if sys.argv[3] == "--script":        # a script of the user's, its layers in its __main__
        import runpy
        sys.argv = sys.argv[4:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from mlpjit.cli import main
        main(sys.argv[3:])
except SystemExit as e:
    if e.code not in (0, None):
        raise
marks["whole"] = time.time() - t_start
with open(marks_path, "w") as f:
    json.dump(marks, f)
"""

STRUCTURE = r"""
import sys, time, json
import numpy as np
import mlpjit
from mlpjit.optim import SGD
from mlpjit.step import CompiledStep
units, first, second = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
model = mlpjit.Sequential([mlpjit.Dense(2, units, activation=first, seed=1),
                           mlpjit.Dense(units, units, activation=second, seed=2),
                           mlpjit.Dense(units, 3, seed=3)])
built = time.perf_counter()
X = np.random.default_rng(0).standard_normal((64, 2)); y = np.arange(64) % 3
step = CompiledStep(model, mlpjit.losses.get("cross_entropy"), SGD(model.parameters(), lr=0.1),
                    X, y, 1.0, "classification", 8, None)
acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
       "layer_norms": {"0.A": 0.0, "1.A": 0.0, "2.A": 0.0}}
step.run(np.arange(64), 0, 1, 0.1, acc)
print(json.dumps({"first_batch": time.perf_counter() - built}))
"""

class Caches:
    """A temporary folder holding mlpjit's and Numba's caches (empty when made)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mlpjit-startup-"))
        self.env = dict(os.environ, MLPJIT_CACHE_DIR=str(self.root / "mlpjit"),
                        NUMBA_CACHE_DIR=str(self.root / "numba"), PYTHONPATH=str(REPO))

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def cli(caches, *args):
    """(marks of the WRAP run, wall seconds) of ``mlpjit ARGS`` (or ``--script PATH ARGS``) in a
    new process."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "marks.json"
        t = time.time()
        tail = () if args[0] == "--script" else ("--out", str(Path(work) / "run"), "-q")
        subprocess.run([sys.executable, "-c", WRAP, repr(t), str(out), *args, *tail],
                       env=caches.env, check=True, cwd=work, stdout=subprocess.DEVNULL)
        wall = time.time() - t
        return json.loads(out.read_text()), wall


def python(caches, source, *args, cwd=None):
    out = subprocess.run([sys.executable, "-c", source, *map(str, args)], env=caches.env, check=True,
                         capture_output=True, text=True, cwd=cwd)
    return json.loads(out.stdout.splitlines()[-1])


def row_width(repeat):
    """Compile xor once, then other widths / batch sizes: seconds of the whole command each."""
    caches = Caches()
    try:
        cli(caches, "train", "xor")                                 # compiles xor's structure
        out = []
        for units, bs in [(16, "full"), (64, 2), (128, 4)][:max(1, repeat)]:
            marks, wall = cli(caches, "train", "xor", "--set", f"model.layers.0.units={units}",
                              "--set", f"train.batch_size={bs}")
            steps = list((caches.root / "mlpjit" / "steps").glob("step_*.py"))
            out.append((units, bs, wall, len(steps), marks["compiled"]))
        return out
    finally:
        caches.close()


def row_structure(repeat):
    """A structure new to mlpjit's step cache, its kernels in Numba's cache."""
    caches = Caches()
    try:
        acts = ["tanh", "relu", "sigmoid", "elu"]
        pairs = [(a, b) for a in acts for b in acts if a != b]
        for a, b in zip(acts, acts):                                # every kernel, cached
            python(caches, STRUCTURE, 8, a, b)
        # each structure new: two activations never paired before
        return [python(caches, STRUCTURE, 8, a, b)["first_batch"] for a, b in pairs[:repeat]]
    finally:
        caches.close()


def row_fresh(name, repeat, extra=()):
    times = []
    for _ in range(repeat):
        caches = Caches()
        try:
            marks, wall = cli(caches, "train", name, "--epochs", "1", *extra)
            times.append(marks["first_batch"])
        finally:
            caches.close()
    return times


def row_xor(repeat):
    caches = Caches()
    try:
        cli(caches, "train", "xor")
        walls = []
        for _ in range(repeat):
            t = time.time()
            with tempfile.TemporaryDirectory() as work:
                subprocess.run([sys.executable, "-m", "mlpjit", "train", "xor", "-q", "--out",
                                str(Path(work) / "run")], env=caches.env, check=True, cwd=work,
                               stdout=subprocess.DEVNULL)
            walls.append(time.time() - t)
        return walls
    finally:
        caches.close()


def row_script():
    """examples/layer_in_a_script.py twice (another width the second time): the command →
    first batch, and whether the step compiled."""
    caches = Caches()
    try:
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "layer_in_a_script.py"   # its own __pycache__, not the checkout's
            path.write_text((REPO / "examples" / "layer_in_a_script.py").read_text())
            return [cli(caches, "--script", str(path), "--units", str(units), "--epochs", "1")[0]
                    for units in (8, 16)]
    finally:
        caches.close()


JAX = r"""
import json, sys, time
t0 = time.perf_counter()
import jax, jax.numpy as jnp
import numpy as np
sizes = [int(s) for s in sys.argv[1].split("-")]
bs = int(sys.argv[2])
imported = time.perf_counter()
key = jax.random.PRNGKey(0)
params = []
for a, b in zip(sizes[:-1], sizes[1:]):
    key, k = jax.random.split(key)
    params.append((jax.random.normal(k, (a, b)) * 0.1, jnp.zeros(b)))
def loss(params, x, y):
    for i, (A, b) in enumerate(params):
        x = x @ A + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    return -jnp.mean(jax.nn.log_softmax(x)[jnp.arange(x.shape[0]), y])
@jax.jit
def step(params, x, y):
    g = jax.grad(loss)(params, x, y)
    return jax.tree_util.tree_map(lambda p, d: p - 0.1 * d, params, g)
x = jnp.asarray(np.random.default_rng(0).standard_normal((bs, sizes[0])), jnp.float32)
y = jnp.asarray(np.arange(bs) % sizes[-1])
t = time.perf_counter()
jax.block_until_ready(step(params, x, y))
print(json.dumps({"import": imported - t0, "first_step": time.perf_counter() - t}))
"""

TORCH = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import numpy as np
sizes = [int(s) for s in sys.argv[1].split("-")]
bs = int(sys.argv[2])
imported = time.perf_counter()
torch.manual_seed(0)
layers = []
for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(torch.nn.Linear(a, b))
    if i < len(sizes) - 2:
        layers.append(torch.nn.Tanh())
net = torch.nn.Sequential(*layers)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x = torch.randn(bs, sizes[0]); y = torch.arange(bs) % sizes[-1]
t = time.perf_counter()
opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
print(json.dumps({"import": imported - t0, "first_step": time.perf_counter() - t}))
"""


def reference(kind, sizes, bs):
    import importlib.util
    if importlib.util.find_spec(kind) is None:
        return None
    out = subprocess.run([sys.executable, "-c", JAX if kind == "jax" else TORCH, sizes, str(bs)],
                         capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1]) if out.returncode == 0 else None


def suite():
    caches = Caches()
    try:
        t = time.time()
        subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=REPO, env=caches.env,
                       stdout=subprocess.DEVNULL)
        return time.time() - t
    finally:
        caches.close()


def fmt(xs):
    return f"{statistics.median(xs):.2f} s" + (f" (min {min(xs):.2f}, max {max(xs):.2f})" if len(xs) > 1 else "")


ROWS = ("width", "structure", "mnist_mlp", "mnist_cnn", "xor", "script", "refs")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ",".join(ROWS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--suite", action="store_true", help="also the README's test command, cold")
    args = ap.parse_args(argv)
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        ap.error(f"--rows: unknown {', '.join(unknown)} (valid: {', '.join(ROWS)})")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    print("| case | goal | mlpjit | beside it |")
    print("|---|---|---|---|")
    if "width" in rows:
        for units, bs, wall, files, compiled in row_width(args.repeat):
            print(f"| xor, another width ({units} units, batch {bs}) after the first | 0 s compiling "
                  f"| {'compiled' if compiled else 'loaded'}: {wall:.2f} s the whole command, "
                  f"{files} step file{'s' * (files != 1)} | |")
    if "structure" in rows:
        refs = ""
        if "refs" in rows:
            j = reference("jax", "2-8-8-3", 8)
            refs = f"JAX jit: {j['first_step']:.2f} s" if j else ""
        print(f"| a new structure (2-8-8-3, a new pair of activations), kernels cached: model built → first batch | ≤ 0.5 s "
              f"| {fmt(row_structure(args.repeat))} | {refs} |")
    if "mnist_mlp" in rows:
        refs = []
        if "refs" in rows:
            for kind in ("jax", "torch"):
                r = reference(kind, "784-256-128-10", 128)
                if r:
                    refs.append(f"{kind}: import {r['import']:.2f} s + first step {r['first_step']:.2f} s")
        print(f"| fresh install, `mlpjit train mnist_mlp`: command → first batch | ≤ 5 s "
              f"| {fmt(row_fresh('mnist_mlp', max(1, args.repeat // 2)))} | {'; '.join(refs)} |")
    if "mnist_cnn" in rows:
        print(f"| fresh install, `mlpjit train mnist_cnn` (2,000 images): command → first batch | ≤ 8 s "
              f"| {fmt(row_fresh('mnist_cnn', 1, ('--set', 'data.subset=2000', '--set', 'data.validation=200')))} | |")
    if "xor" in rows:
        print(f"| warm caches, `mlpjit train xor`, the whole command | ≤ 1.0 s | {fmt(row_xor(args.repeat))} | |")
    if "script" in rows:
        first, second = row_script()
        said = lambda m: "compiled" if m["compiled"] else "loaded"   # noqa: E731
        print(f"| examples/layer_in_a_script.py (a layer in `__main__`): first run / after a restart at "
              f"another width, command → first batch | loads after a restart | {first['first_batch']:.2f} s "
              f"({said(first)}) / {second['first_batch']:.2f} s ({said(second)}) | |")
    if args.suite:
        print(f"| the README's test command, cold caches | ≤ 240 s | {suite():.0f} s | |")


if __name__ == "__main__":
    main()
