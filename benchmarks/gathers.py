"""Which compiled kernels read or write through vectors of pointers (gathers, scatters)?

    python benchmarks/gathers.py            # about 2 minutes: everything compiles afresh

A loop whose index Numba cannot prove non-negative gets its wrap-around test (``i < 0: i += n``)
on every access, and LLVM then vectorizes it, if at all, through a vector of pointers
(``llvm.masked.gather``) instead of contiguous loads: several times slower.  This was the
generated step's regression against 430f2e8 (``sparse_pays``, docs/performance.md).  The script
trains the small MLP and the shipped CNN for a few batches with an empty Numba cache (cached code
cannot be inspected), then prints every mlpjit kernel whose LLVM code holds a ``<N x ptr>``
vector, with its signature.  Indexing with ``U(...)`` (``numba.uint64``) removes the test.
The generated steps themselves list their kernels' vectors too (they inline them) and the rows
a batch gathers from the data set, which are gathers by nature.
"""

import atexit
import os
import re
import shutil
import sys
import tempfile

ROOT = tempfile.mkdtemp(prefix="mlpjit-gathers-")   # caches, configs and runs: removed at exit
atexit.register(shutil.rmtree, ROOT, True)           # (also after Ctrl-C)
os.environ["NUMBA_CACHE_DIR"] = os.path.join(ROOT, "numba")
os.environ["MLPJIT_CACHE_DIR"] = os.path.join(ROOT, "mlpjit")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ab_trees import config   # noqa: E402
from mlpjit.config import load_config, resolved_dict   # noqa: E402
from mlpjit.trainer import Trainer   # noqa: E402


def main():
    from numba.core.registry import CPUDispatcher
    runs = [(str(config("small", ROOT)), []),
            ("mnist_cnn", ["data.subset=6000", "train.batch_size=64"])]
    for i, (cfg, extra) in enumerate(runs):
        print(f"training {cfg} for one epoch ...", file=sys.stderr, flush=True)
        cfg = resolved_dict(load_config(cfg, ["train.epochs=1"] + extra))
        run_dir = os.path.join(ROOT, f"run{i}")
        os.makedirs(run_dir)
        Trainer(cfg, run_dir, log=lambda *a, **k: None, progress=False).fit(1)
    seen, found = set(), 0
    for name, module in sorted(sys.modules.items()):
        if not name.startswith("mlpjit"):
            continue
        for attr, obj in sorted(vars(module).items()):
            if not isinstance(obj, CPUDispatcher) or id(obj) in seen:
                continue
            seen.add(id(obj))
            for sig in obj.signatures:
                vectors = len(re.findall(r"<\d+ x ptr>", obj.inspect_llvm(sig)))
                if vectors:
                    found += 1
                    print(f"{name}.{attr}{tuple(str(t) for t in sig)}: {vectors} vectors of pointers")
    print(f"{len(seen)} kernels inspected, {found} signatures with vectors of pointers")


if __name__ == "__main__":
    from mlpjit.core import Interrupted
    try:
        main()
    except (KeyboardInterrupt, Interrupted):
        sys.exit("gathers.py: interrupted (nothing kept)")
