"""Compile a generated training step in a process of its own: ``python -m
mlpjit.step.compile_child FILE`` where FILE is a pickle of (path, name, signature).

Numba keeps most of what it allocates while compiling, and the first run of a model would carry
that beside its data for the whole run; compiled here, the step is written to Numba's on-disk
cache, and the training process loads it from there (see :meth:`CompiledStep.run`).
"""

import importlib.util
import pickle
import sys


def main(argv):
    with open(argv[0], "rb") as f:
        path, name, signature = pickle.load(f)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.train_chunk.compile(signature)


if __name__ == "__main__":
    main(sys.argv[1:])
