"""The compiled training step: one generated function per model structure, trained in chunks.

:class:`CompiledStep` renders the model's step (:mod:`mlpjit.step.codegen`), writes it into
mlpjit's cache directory as ``steps/step_<hash>.py`` — the hash covers the text, the sources of
the modules whose kernels it calls, and the Numba and mlpjit versions — imports it and lets
Numba compile it with ``cache=True``: the same structure loads from disk on the next start, and
an edited kernel gives a new file.  Kernels defined in a script or a notebook cell
(``__main__``) count by their own sources (:func:`mlpjit.step.codegen.script_key`), so after a
restart the step loads; kernels that cannot be imported by name at all (defined inside a
function) make a step that compiles uncached, with a one-line notice.

Between chunks (``CHUNK_EXAMPLES`` examples) Python updates the progress bar and checks for
Ctrl-C; inside a chunk no Python runs.  The layers' own kernels do the work, so this path
computes what the layer-by-layer path computes (tested to agree).

``step_source(model, loss, optimizer, ...)`` returns the text without compiling anything
(``mlpjit explain --step``).
"""

import hashlib
import importlib.util
import os
import sys

import numpy as np

from .. import __version__, _memory
from ..cache import cache_dir
from ..kernels import misc as KM
from .codegen import ACC_SIZE, Alloc, Draws, StepPlan, in_script, module_key, script_key

__all__ = ["CompiledStep", "StepPlan", "step_source", "cache_dir", "unsupported_reason"]

CHUNK_EXAMPLES = 16384  # examples per compiled call: Ctrl-C and the progress bar react within one
SHARD_WORK = 2 ** 21    # multiply-adds of a batch per shard below which one thread is faster
SHARD_ROWS = 8          # rows per shard at least
SHARD_PER_PARAM = 128   # multiply-adds per parameter and shard below which the shards' gradients
                        # cost more to sum than the threads save (measured: docs/performance.md)
CHILD_COMPILE_BYTES = 16 * 2 ** 20   # training data from which a new step compiles in a child process
CHILD_TIMEOUT = 1800                 # seconds after which the child is given up (then compiled here)
DRAW_BUDGET = 32 * 2 ** 20  # bytes of dropout draws made ahead of one call (float64 each)


def unsupported_reason(model, loss, optimizer):
    """None if the compiled step can train this model, else why not (a layer written in Python
    without kernels, an optimizer without an update kernel)."""
    for layer in model.walk():
        if not layer.compiled:
            return f"layer {layer!r} has no kernels (its forward/backward run in Python)"
    if getattr(type(optimizer), "update_kernel", None) is None:
        return f"optimizer {type(optimizer).__name__} has no update kernel"
    if not hasattr(loss, "forward_calls"):
        return f"loss {loss!r} has no kernels"
    return None


def _source_hash(plan):
    h = hashlib.sha256()
    h.update(plan.source.encode())
    import numba
    h.update(f"numba {numba.__version__} mlpjit {__version__} python {sys.version_info[:2]}".encode())
    for module in plan.kernels.modules():
        if module == "__main__":   # a script's or notebook's kernels: their own sources only
            script_key([k for k, _ in plan.kernels.kernels if in_script(k)], h)
            continue
        h.update(module_key(module))
    return h.hexdigest()[:20]


_LOADED = {}

COMPILE_TICK = 5.0      # seconds between the progress lines of a long compile
KERNEL_WEIGHT = 4       # a kernel compiled from scratch costs about as much as 4 calls of a step
HISTORY = 64            # compiles remembered for the estimate


def compile_work(plan):
    """(kernel calls in the step, kernels it calls that Numba's cache does not hold yet): what a
    first compile's duration grows with (measured: docs/performance.md, "Start-up")."""
    import re
    calls = len(re.findall(r"(?<![\w.])(?:" + "|".join(re.escape(n) for _, n in plan.kernels.kernels)
                           + r")\(", plan.source)) if plan.kernels.kernels else 0
    fresh = sum(not in_cache(k) for k, _ in plan.kernels.kernels)
    return calls, fresh


def _history_path():
    return cache_dir() / "compile-times.json"


def _history():
    """The remembered compiles [(calls, fresh kernels, seconds)]; entries that are not three
    non-negative numbers (a file damaged or written by hand) are skipped, an unreadable file
    is empty."""
    import json
    try:
        runs = json.loads(_history_path().read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return []
    out = []
    for run in runs if isinstance(runs, list) else []:
        if (isinstance(run, list) and len(run) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e9 for v in run)):
            out.append(tuple(run))
    return out[-HISTORY:]


def expected_seconds(work):
    """The seconds a compile of ``work`` is expected to take on this machine, from the compiles
    it has done before (their median seconds per unit of work); None before the first."""
    rates = sorted(sec / (c + KERNEL_WEIGHT * f) for c, f, sec in _history() if c + KERNEL_WEIGHT * f > 0)
    if not rates:
        return None
    return rates[len(rates) // 2] * (work[0] + KERNEL_WEIGHT * work[1])


def record_compile(work, seconds):
    """Remember a compile's work and seconds (the last HISTORY of them) for the next estimate."""
    import json
    path = _history_path()
    runs = [list(r) for r in _history()]
    runs = (runs + [[int(work[0]), int(work[1]), round(float(seconds), 3)]])[-HISTORY:]
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runs": runs}))
        os.replace(tmp, path)
    except OSError:
        pass   # an estimate is a nicety: a cache that cannot be written only loses it


class _Ticker:
    """While a compile runs: a line every COMPILE_TICK seconds saying how long it has taken (and
    how long it was expected to), so that a long first run never looks hung."""

    def __init__(self, notice, expect):
        import threading
        self.notice, self.expect = notice, expect
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True, name="mlpjit-compile-ticker")

    def _tick(self):
        import time
        t0 = time.perf_counter()
        while not self.stop.wait(COMPILE_TICK):
            of = f" of about {self.expect:.0f} s expected" if self.expect else ""
            self.notice(f"  still compiling: {time.perf_counter() - t0:.0f} s{of}")

    def __enter__(self):
        if self.notice is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def in_cache(dispatcher):
    """Whether Numba's on-disk cache holds compiled code of ``dispatcher`` (its index file
    exists); True when that cannot be told."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:
        return True


def load_step(plan, notice=None):
    """The module of a plan's source (written once into the cache directory, imported once per
    process)."""
    key = _source_hash(plan)
    if key in _LOADED:
        return _LOADED[key]
    name = f"mlpjit_step_{key}"
    folder = cache_dir() / "steps"
    path = folder / f"step_{key}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != plan.source:
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        tmp.write_text(plan.source, encoding="utf-8")
        os.replace(tmp, path)
    if not plan.cached and notice is not None:
        notice("note: the model uses kernels that cannot be imported by name (defined inside a "
               "function?); its training step compiles without caching (define them at the top of "
               "a module, a script or a notebook cell to cache it)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[key] = module
    return module


def step_source(model, loss, optimizer, batch_size, input_shape, clip=None, task="classification",
                threads=1):
    """The generated source of a model's training step (nothing is compiled)."""
    k = int(np.prod(model.output_shape(tuple(input_shape))))
    kind = loss.target_kind(k) if task == "classification" else "T"
    shards = plan_shards(model, loss, optimizer, batch_size, input_shape, threads)
    return StepPlan(model, loss, optimizer, batch_size, input_shape, clip, kind, shards=shards).source


def batch_work(model, batch_size, input_shape):
    """Multiply-adds of one training batch (forward and backward), from the layers' explain()."""
    shape, total = tuple(input_shape), 0
    for layer in model.layers:
        for node in layer.nodes():
            try:
                f, b = node.explain(shape, batch_size)["macs"]
                total += int(f) + int(b)
            except Exception:   # noqa: BLE001  (a layer that cannot say: count nothing)
                pass
            shape = tuple(node.output_shape(shape))
    return total


def plan_shards(model, loss, optimizer, batch_size, input_shape, threads):
    """How many shards a batch is split into: 1 (a serial step) for one thread, a model whose
    layers or loss cannot be split by rows (BatchNorm, soft F1), no BLAS whose threads can be
    set, or a batch too small to pay for the threads (SHARD_WORK multiply-adds and SHARD_ROWS
    rows per shard, SHARD_PER_PARAM multiply-adds per parameter and shard: each shard writes a
    whole gradient, and the shards' gradients are summed); else up to ``threads``."""
    return _plan(model, loss, batch_size, input_shape, threads)[0]


def _plan(model, loss, batch_size, input_shape, threads):
    """(shards, why a single shard: None, "one thread", "rows" (BatchNorm, soft F1), "blas" or
    "work")."""
    from ..threads import blas_control
    from .codegen import shardable
    if threads <= 1:
        return 1, "one thread"
    nodes = [node for layer in model.layers for node in layer.nodes()]
    if not shardable(nodes, loss):
        return 1, "rows"
    if not blas_control():
        return 1, "blas"
    work = batch_work(model, batch_size, input_shape)
    params = max(1, sum(arr.size for _, arr, _ in model.parameters()))
    shards = int(max(1, min(threads, work // SHARD_WORK, int(batch_size) // SHARD_ROWS,
                            work // (SHARD_PER_PARAM * params))))
    return shards, ("work" if shards == 1 else None)


def _compile_in_child(module, fn, args):
    """Compile ``fn`` (a generated step) for ``args``' types in a child process, into Numba's
    on-disk cache, so that this process loads the machine code instead of holding the
    compiler's memory beside its data (the first run's peak: docs/performance.md).  Returns
    whether it worked; if not, the caller's call compiles here as usual."""
    import pickle
    import subprocess
    import tempfile
    from numba import typeof
    try:
        signature = tuple(typeof(a) for a in args)
        with tempfile.NamedTemporaryFile("wb", suffix=".pkl", delete=False) as f:
            pickle.dump((module.__file__, module.__name__, signature), f)
    except Exception:   # noqa: BLE001  (a type that cannot travel: compile here)
        return False
    try:
        done = subprocess.run([sys.executable, "-m", "mlpjit.step.compile_child", f.name],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=_child_env(), timeout=CHILD_TIMEOUT)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.unlink(f.name)


def _child_env():
    """This process's environment, with its import path (the child must import the same mlpjit
    and the same kernels)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class CompiledStep:
    """The generated step of a model, its arrays allocated once and bound in order.

    ``X`` is (N, d): image data comes as rows of C·H·W values, and ``input_shape`` gives the
    shape of one example, e.g. (1, 28, 28).  ``run(perm, b_start, b_stop, lr, acc, values)`` trains
    batches [b_start, b_stop) of ``perm``."""

    def __init__(self, model, loss, optimizer, X, y, x_scale, task, batch_size, clip,
                 input_shape=None, notice=None, threads=1, shards=None, blas_threads=None,
                 auto_threads=True):
        dtype = np.dtype(model.dtype)
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.X, self.x_scale, self.bs = X, float(x_scale), int(batch_size)
        shape = tuple(input_shape) if input_shape is not None else (X.shape[1],)
        k = int(np.prod(model.output_shape(shape)))
        n = X.shape[0]
        kind = loss.target_kind(k) if task == "classification" else "T"
        pred = loss.pred_rule(k) if task == "classification" else KM.PRED_NONE
        planned, why = _plan(model, loss, self.bs, shape, threads)
        if shards is None:
            shards = planned
        self.shards = int(shards)
        # a serial step's BLAS threads, fixed for a run (BLAS's sums depend on them): with
        # threads chosen automatically, one for a batch too small to split (measured,
        # docs/performance.md: mid alone took 536 µs a batch on two, 572-596 on one, but two
        # cost a run 38-47% when a second started beside it, and two runs at once with
        # MLPJIT_SHARE=0 kept 49% of their throughput);
        # else the run's (train.threads given as a number is taken at its word)
        run = int(threads if blas_threads is None else blas_threads)
        self.run_threads = 1 if why == "work" and auto_threads else run
        self.threads = int(threads)       # threads for the shards now (lowered to share the cores)
        self.plan = plan = StepPlan(model, loss, optimizer, self.bs, shape, clip, kind, pred,
                                    shards=self.shards)
        self.shards = plan.shards   # 1 when the model cannot be split by rows
        self.source = plan.source
        self.constants = {name: float(optimizer.constants()[name]) for name in plan.hyper_names}
        self._lrs, self._hyper = np.empty(0), np.empty((0, len(self.constants)))
        # targets: class ids for cross-entropy and accuracy, float rows for the other losses
        if task == "classification":
            self.labels = np.ascontiguousarray(y, dtype=np.int64)
        else:
            self.labels = np.zeros(n, np.int64)
        if kind == "labels":
            self.targets = np.zeros((n, 0), dtype)
        elif task == "classification":
            if k > 1:
                self.targets = np.zeros((n, k), dtype)
                self.targets[np.arange(n), self.labels] = 1
            else:
                self.targets = self.labels.reshape(n, 1).astype(dtype)
        else:
            self.targets = np.ascontiguousarray(np.asarray(y).reshape(n, -1), dtype=dtype)
        self.pred = pred
        self.Xbuf = _memory.zeros((self.bs, X.shape[1]), dtype)
        self.lbuf = np.zeros(self.bs, np.int64)
        self.tbuf = np.zeros((self.bs, self.targets.shape[1]), dtype)
        self.dOut = _memory.zeros((self.bs, k), dtype)
        self.acc = np.zeros(ACC_SIZE)
        self.weight_names = plan.weight_names
        self.layer_norms = np.zeros(len(self.weight_names))
        # a call's dropout draws are made ahead (see run): wide feature maps shorten the chunk
        draws = [(name, value) for name, value in plan.args if isinstance(value, Draws)]
        per_example = sum(value.per_example for _, value in draws)
        self.chunk_batches = max(1, CHUNK_EXAMPLES // self.bs)
        if per_example:
            self.chunk_batches = max(1, min(self.chunk_batches,
                                            DRAW_BUDGET // (8 * self.bs * per_example)))
        self.draws = []
        values = []
        for name, value in plan.args:
            if isinstance(value, Alloc):
                value = _memory.zeros(value.shape, value.dtype)
            elif isinstance(value, Draws):
                arr = np.zeros(self.chunk_batches * self.bs * value.per_example, np.float64)
                self.draws.append((plan.nodes[value.index], value.per_example, arr))
                value = arr
            values.append(value)
        self.static_args = tuple(values)
        self.module = load_step(plan, notice)
        self.fn = self.module.train_chunk
        self.notice = notice
        self.compiling = not in_cache(self.fn)   # the first call compiles: say so, and how long

    def array(self, name):
        """The array bound to the step's argument ``name`` (``l0_A``, ``l2_S``, ...)."""
        for (arg, _), value in zip(self.plan.args, self.static_args):
            if arg == name:
                return value
        raise KeyError(name)

    def set_constants(self, values):
        """Set the optimizer's hyperparameters ``values`` ({"momentum": 0.7}) for the next calls:
        each batch reads them from the call's ``hyper`` argument, so nothing recompiles."""
        for name, value in values.items():
            if name not in self.constants:
                raise KeyError(f"the compiled step has no optimizer constant {name!r}")
            self.constants[name] = float(value)

    def _batch_values(self, nb, lr, values):
        """The call's ``lrs`` (nb,) and ``hyper`` (nb, k), both C-contiguous whatever nb (one
        compiled signature): a number repeats, an array (a schedule by update) gives each batch
        its own."""
        if self._lrs.shape[0] < nb:
            self._lrs = np.empty(nb)
            self._hyper = np.empty((nb, len(self.constants)))
        lrs, hyper = self._lrs[:nb], self._hyper[:nb]
        lrs[:] = lr
        for k, name in enumerate(self.constants):
            hyper[:, k] = values[name] if values and name in values else self.constants[name]
        return lrs, hyper

    def run(self, perm, b_start, b_stop, lr, acc, values=None):
        """Train batches [b_start, b_stop) of ``perm``; update the trainer's ``acc`` dict.
        ``lr`` is a number or one per batch; ``values`` ({"momentum": array}) gives optimizer
        constants per batch (a schedule by update); the others are those of set_constants.

        Returns (batches done, None) or, on a NaN/Inf, (batches done, (batch, loss, norm))."""
        n = perm.shape[0]
        for node, per_example, arr in self.draws:  # the same draws the layer would make
            total = (min(b_stop * self.bs, n) - b_start * self.bs) * per_example
            node.rng.random(out=arr[:total])
        from ..threads import apply
        # sharded: the shards on up to self.threads of Numba's threads (BLAS single-threaded);
        # serial: BLAS's threads, as many as the run has (fixed: BLAS's sums depend on them)
        apply(min(self.threads, self.shards) if self.plan.sharded else self.run_threads, self.plan.sharded)
        a = self.acc
        a[:] = 0.0
        a[0], a[1], a[2], a[3], a[4] = acc["loss"], acc["correct"], acc["seen"], acc["grad_norm"], acc["batches"]
        self.layer_norms[:] = [acc["layer_norms"][nm] for nm in self.weight_names]
        lrs, hyper = self._batch_values(b_stop - b_start, lr, values)
        head = (self.X, self.x_scale, self.labels, self.targets, perm, self.bs, b_start, b_stop, lrs,
                hyper, self.optimizer.t, self.pred, a, self.layer_norms, self.Xbuf, self.lbuf, self.tbuf,
                self.dOut) + ((self.shards,) if self.plan.sharded else ())
        if self.compiling:
            import time
            work = compile_work(self.plan)
            expect = expected_seconds(work)
            if self.notice is not None:
                about = f" (about {expect:.0f} s)" if expect is not None else ""
                self.notice(f"compiling kernels for this model (first run only){about}…")
            t = time.perf_counter()
            with _Ticker(self.notice, expect):
                if self.plan.portable and self.X.nbytes >= CHILD_COMPILE_BYTES:
                    # beside a large data set, the compiler's memory would add to the run's peak
                    _compile_in_child(self.module, self.fn, head + self.static_args)
                done = self.fn(*head, *self.static_args)   # loads what the child compiled
            seconds = time.perf_counter() - t
            record_compile(work, seconds)
            if self.notice is not None:
                self.notice(f"compiled in {seconds:.1f} s (the next runs load it from {cache_dir()})")
            self.compiling = False
        else:
            done = self.fn(*head, *self.static_args)
        self.optimizer.t += done
        acc["loss"], acc["correct"], acc["seen"] = float(a[0]), int(a[1]), int(a[2])
        acc["grad_norm"], acc["batches"] = float(a[3]), int(a[4])
        for nm, v in zip(self.weight_names, self.layer_norms):
            acc["layer_norms"][nm] = float(v)
        bad = (int(a[5]), float(a[6]), float(a[7])) if a[5] > 0 else None
        return done, bad
