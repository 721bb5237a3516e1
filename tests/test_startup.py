"""Instant start: the JIT's cost is paid once per structure, not once per width or idea.

The generated step's text names each layer by its structure (``Dense(tanh)``), never by its
sizes: sizes, batch size and constants are arguments.  So two widths render the same text, hash
to the same file, and the second width loads the step compiled for the first.
"""

import json
import subprocess
import sys

import numpy as np

import mlpjit
from mlpjit.optim import SGD
from mlpjit.step import CompiledStep, step_source


def _mlp(units, p=0.25, act="tanh"):
    return mlpjit.Sequential([mlpjit.Dense(3, units, activation=act, seed=1), mlpjit.Dropout(p, seed=2),
                              mlpjit.Dense(units, 2, seed=3)])


def _source(model, bs=4, clip=None, opt=None, shape=(3,)):
    loss = mlpjit.losses.get("cross_entropy")
    return step_source(model, loss, opt or SGD(model.parameters(), lr=0.1), bs, shape, clip)


def test_the_steps_text_names_structures_not_sizes():
    """Widths, batch sizes, dropout rates and the clipping threshold are arguments."""
    base = _source(_mlp(4))
    assert "# (0) Dense(tanh)" in base and "Dense(3" not in base
    assert _source(_mlp(64, p=0.5), bs=32) == base
    assert _source(_mlp(4), clip={"norm": 1.0}) == _source(_mlp(9), clip={"norm": 5.0}, bs=7)
    assert _source(_mlp(4, act="relu")) != base                   # another structure: another step
    conv = [lambda c: mlpjit.Conv2D(1, c, 3, activation="relu", seed=1), lambda c: mlpjit.MaxPool2D(2),
            lambda c: mlpjit.Flatten(), lambda c: mlpjit.Dense(c * 9, 2, seed=2)]
    a = _source(mlpjit.Sequential([f(2) for f in conv]), shape=(1, 8, 8))
    b = _source(mlpjit.Sequential([f(5) for f in conv]), shape=(1, 8, 8), bs=16)
    assert a == b and "Conv2D(relu)" in a


def _fit(units, bs, n, notes=None):
    model = _mlp(units)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, 3)), np.arange(n) % 2
    step = CompiledStep(model, mlpjit.losses.get("cross_entropy"), SGD(model.parameters(), lr=0.1),
                        X, y, 1.0, "classification", bs, None, notice=notes.append if notes is not None else None)
    acc = {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
           "layer_norms": {"0.A": 0.0, "2.A": 0.0}}
    step.run(np.arange(n), 0, -(-n // bs), 0.1, acc)
    return step, acc


def test_another_width_loads_the_same_step_and_compiles_nothing(tmp_path, monkeypatch):
    import mlpjit.step
    monkeypatch.setenv("MLPJIT_CACHE_DIR", str(tmp_path / "mlpjit"))
    monkeypatch.setattr(mlpjit.step, "_LOADED", {})   # as in a new process (another test loaded it)
    first, _ = _fit(4, 4, 16)
    compiled = (len(first.fn.signatures), sum(first.fn.stats.cache_misses.values()))
    second, acc = _fit(16, 8, 40)
    assert second.fn is first.fn                                   # one module, one dispatcher
    assert (len(second.fn.signatures), sum(second.fn.stats.cache_misses.values())) == compiled
    assert acc["seen"] == 40 and np.isfinite(acc["loss"])
    assert [p.name for p in (tmp_path / "mlpjit" / "steps").glob("step_*.py")] == [first.module.__file__.split("/")[-1]]
    # a new process with a third width finds the step in Numba's cache: it loads, it compiles nothing
    from conftest import REPO, proc_env
    script = (f"import json, sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
              "from test_startup import _fit\n"
              "notes = []\n"
              "step, _ = _fit(32, 16, 64, notes)\n"
              "print(json.dumps([sum(step.fn.stats.cache_hits.values()), "
              "sum(step.fn.stats.cache_misses.values()), notes]))\n")
    env = dict(proc_env(), MLPJIT_CACHE_DIR=str(tmp_path / "mlpjit"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    hits, misses, notes = json.loads(out.stdout.splitlines()[-1])
    assert (hits, misses) == (1, 0) and not any("compil" in n for n in notes)
    assert len(list((tmp_path / "mlpjit" / "steps").glob("step_*.py"))) == 1


def test_a_layer_of_a_scripts_main_is_cached_by_its_source(tmp_path):
    """examples/layer_in_a_script.py: a layer, its kernels and GAIN in the script's __main__.  Its
    step is cached under a hash of those kernels' sources: run again (another width), it loads;
    with GAIN edited, a new step compiles."""
    from conftest import REPO, proc_env
    env = dict(proc_env(), MLPJIT_CACHE_DIR=str(tmp_path / "cache"))
    source = (REPO / "examples" / "layer_in_a_script.py").read_text()
    assert "\nGAIN = 2.0\n" in source

    def run(units, text=source):
        script = tmp_path / "layer_in_a_script.py"
        script.write_text(text)
        out = subprocess.run([sys.executable, str(script), "--units", str(units), "--epochs", "1"],
                             env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "cannot be imported" not in out.stdout
        return next(line for line in out.stdout.splitlines() if line.startswith("training step:"))
    assert run(4).startswith("training step: compiled (compiled in ")
    assert run(5) == "training step: loaded from the cache"       # a restart, another width
    steps = sorted((tmp_path / "cache" / "steps").glob("step_*.py"))
    assert len(steps) == 1
    assert run(4, source.replace("\nGAIN = 2.0\n", "\nGAIN = 3.0\n")).startswith("training step: compiled")
    assert len(list((tmp_path / "cache" / "steps").glob("step_*.py"))) == 2


def test_a_first_compile_says_how_long_it_expects_and_that_it_is_still_going(tmp_path, monkeypatch):
    """The estimate is this machine's median seconds per unit of work (kernel calls in the step,
    KERNEL_WEIGHT per kernel compiled from scratch) times the new step's work."""
    import time
    import mlpjit.step as S
    monkeypatch.setenv("MLPJIT_CACHE_DIR", str(tmp_path))
    assert S.expected_seconds((10, 2)) is None                    # nothing compiled here yet
    S.record_compile((10, 2), 9.0)                                # 10 + 4·2 = 18 units in 9 s
    S.record_compile((30, 0), 30.0)                               # 1 s per unit
    S.record_compile((2, 0), 0.5)
    assert S.expected_seconds((20, 4)) == 36 * 0.5                # the median rate, 0.5 s per unit
    monkeypatch.setattr(S, "COMPILE_TICK", 0.05)
    notes = []
    deadline = time.monotonic() + 30       # a loaded machine may be slow to wake the thread
    with S._Ticker(notes.append, 12.4):
        while len(notes) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(notes) >= 3 and notes[0] == "  still compiling: 0 s of about 12 s expected"
    count = len(notes)
    time.sleep(0.15)
    assert len(notes) == count                                     # it stops with the compile


def test_a_damaged_history_of_compile_times_is_skipped_not_fatal(tmp_path, monkeypatch):
    import mlpjit.step as S
    monkeypatch.setenv("MLPJIT_CACHE_DIR", str(tmp_path))
    path = tmp_path / "compile-times.json"
    for text in ["", "not json", "[]", '{"runs": "abc"}', '{"runs": [[1, 2], "x", [true, 0, 1], [-1, 0, 5]]}',
                 "\xff\xfe"]:
        path.write_text(text, encoding="latin-1")
        assert S.expected_seconds((10, 0)) is None, text
        S.record_compile((10, 0), 5.0)                             # rewritten whole
        assert S.expected_seconds((20, 0)) == 10.0, text
    path.write_text(json.dumps({"runs": [[1, 0, 9.0]] * 1000 + [[4, 0, 1.0]] * 63}))  # huge: the last 64
    assert S.expected_seconds((2, 0)) == 0.5                       # 63 of the last 64 at 0.25 s a unit
    S.record_compile((4, 0), 1.0)
    assert len(json.loads(path.read_text())["runs"]) == S.HISTORY


def test_the_call_count_counts_whole_names():
    """compile_work counts kernel calls by whole name: ``gemm_nn(`` is not a call of ``nn``."""
    from mlpjit.step import compile_work
    model = _mlp(4)
    loss = mlpjit.losses.get("cross_entropy")
    from mlpjit.step.codegen import StepPlan
    plan = StepPlan(model, loss, SGD(model.parameters(), lr=0.1), 4, (3,))
    calls, _ = compile_work(plan)
    body = plan.source[plan.source.index("def train_chunk("):]
    by_hand = sum(1 for line in body.splitlines()
                  if any(line.strip().split("(")[0].split("= ")[-1] == name for _, name in plan.kernels.kernels))
    assert calls == by_hand > 10


def test_kernels_that_cannot_be_imported_make_an_uncached_step_that_says_so():
    from mlpjit.step.codegen import StepPlan

    def make():
        @mlpjit.jit
        def local_forward(X, Y):   # defined inside a function: no name to import it by
            for i in range(X.shape[0]):
                for j in range(X.shape[1]):
                    Y[i, j] = X[i, j]
        return local_forward

    class Local(mlpjit.Layer):
        forward_kernel = make()

    model = mlpjit.Sequential([mlpjit.Dense(3, 4, seed=1), Local(), mlpjit.Dense(4, 2, seed=2)])
    plan = StepPlan(model, mlpjit.losses.get("cross_entropy"), SGD(model.parameters(), lr=0.1), 4, (3,))
    assert not plan.cached and "@jit(cache=False)  # calls kernels that cannot be imported" in plan.source
    script = StepPlan(_mlp(4), mlpjit.losses.get("cross_entropy"), SGD(_mlp(4).parameters(), lr=0.1), 4, (3,))
    assert script.cached and "@jit\n" in script.source
