"""A model file is data: what is checked before a ``model.npz`` (or a checkpoint's model) is used.

A model file (``Sequential.save``) is an ``.npz`` archive without pickles: ``__format__``,
``__version__``, ``__config__`` (the layers, as JSON), ``__metadata__`` (how it was trained, as
JSON) and one array per parameter or running estimate (``"0.A"``, ``"2.0.b"``, ...).  Loading one
written by someone else must neither run code nor exhaust memory, so before anything is built:

* the arrays' headers are read first and arrays that cannot fit are refused
  (:func:`mlpjit.io.read_npz`);
* the format marker says the file is an mlpjit model of a format this version reads;
* the config is a list of layers of known types, and every integer in a layer's config (a
  width, a kernel size, a channel count) lies between 0 and the number of values the file
  stores for that layer (for a layer without arrays: in the whole file): the arrays decide the
  sizes, so a config enlarged a billion times is refused before it allocates anything;
* the modules a config names are imported already or trusted (:func:`check_modules`);
* after the layers are built: every stored array belongs to a parameter or running estimate, of
  the right shape, and of numbers; the metadata's fields have their types and sizes.

Each failure is one :class:`~mlpjit.errors.ModelFileError` line naming the file and the part.
"""

import math
import re
import sys

import numpy as np

from .errors import ModelFileError
from .io import read_json_array

FORMAT = "mlpjit-model/1"
_DTYPES = ("float32", "float64")
_NAME = re.compile(r"^\d+(\.[A-Za-z_0-9]+)+$")


def check_model_arrays(arrays, source, trust=()):
    """(config, metadata) of a model's arrays, checked as the module docstring says; the modules
    its layers come from must be imported already or named in ``trust`` (:func:`check_modules`)."""
    from . import __version__
    fmt = str(arrays.get("__format__", ""))
    if fmt != FORMAT:
        version = str(arrays.get("__version__", "?"))[:40]
        if fmt.startswith("mlpjit-model/"):
            raise ModelFileError(f"{source}: a model file of format {fmt[:40]!r} (written by mlpjit "
                                 f"{version}); this mlpjit ({__version__}) reads {FORMAT!r}")
        raise ModelFileError(f"{source}: not an mlpjit model (no '{FORMAT}' marker)")
    config = read_json_array(arrays, "__config__", source)
    metadata = read_json_array(arrays, "__metadata__", source) if "__metadata__" in arrays else {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{source}: __metadata__ must be a JSON object")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list) or not config["layers"]:
        raise ModelFileError(f"{source}: __config__ must be an object with a non-empty 'layers' list")
    if config.get("dtype", "float32") not in _DTYPES:
        raise ModelFileError(f"{source}: __config__ dtype must be one of {', '.join(_DTYPES)} "
                             f"(got {str(config.get('dtype'))[:40]!r})")
    check_modules(config.get("imports") or [], trust, source)
    stored = {}
    for name, a in arrays.items():
        if name.startswith("__"):
            continue
        if not _NAME.match(name):
            raise ModelFileError(f"{source}: array {name[:60]!r} belongs to no layer")
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiub":
            raise ModelFileError(f"{source}: array '{name}' holds {getattr(a, 'dtype', type(a).__name__)} "
                                 f"values, not numbers")
        stored.setdefault(int(name.split(".")[0]), 0)
        stored[int(name.split(".")[0])] += int(a.size)
    n = len(config["layers"])
    beyond = [i for i in stored if i >= n]
    if beyond:
        raise ModelFileError(f"{source}: arrays of layer {beyond[0]}, but the config has {n} layers")
    total = sum(stored.values())
    shape = metadata.get("input_shape")
    if isinstance(shape, list) and all(_is_int(d) and 0 < d for d in shape):
        total = max(total, math.prod(shape))
    for i, spec in enumerate(config["layers"]):
        _check_layer(spec, f"layer {i}", stored.get(i, total) or total, source)
    return config, metadata


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_layer(spec, where, bound, source):
    from .registry import layers
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFileError(f"{source}: {where}: a layer must be an object with a 'type'")
    if spec["type"] not in layers.names():
        raise ModelFileError(f"{source}: {where}: unknown layer type {spec['type'][:40]!r} (known: "
                             f"{', '.join(layers.names())}; a layer of your own module needs that "
                             f"module imported or trusted)")
    for key, value in spec.items():
        if key == "layers" and isinstance(value, list):     # a container's own layers
            for j, inner in enumerate(value):
                _check_layer(inner, f"{where}.layers.{j}", bound, source)
            continue
        _check_sizes(value, f"{where}.{key}", bound, source)


def _check_sizes(value, where, bound, source, depth=0):
    if depth > 8:
        raise ModelFileError(f"{source}: {where}: nested too deeply")
    if _is_int(value):
        if not 0 <= value <= bound:
            raise ModelFileError(f"{source}: {where} is {value}, but the file stores {bound:,} values "
                                 f"for it: the config does not match its arrays")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ModelFileError(f"{source}: {where} is {value}, not a finite number")
    elif isinstance(value, list):
        if len(value) > bound + 8:
            raise ModelFileError(f"{source}: {where}: a list of {len(value):,} items")
        for v in value:
            _check_sizes(v, where, bound, source, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_sizes(v, f"{where}.{k}", bound, source, depth + 1)
    elif isinstance(value, str) and len(value) > 200:
        raise ModelFileError(f"{source}: {where}: a text of {len(value):,} characters")


def check_metadata(model, source):
    """The metadata of a loaded model: each field that is there has its type and its size, and
    the arrays are exactly the model's parameters and running estimates."""
    from . import losses as _losses
    m = model.metadata

    def bad(key, what):
        return ModelFileError(f"{source}: __metadata__ {key} must be {what} (got {str(m.get(key))[:60]!r})")

    if "loss" in m and (not isinstance(m["loss"], str) or m["loss"] not in _losses.names()):
        raise bad("loss", f"one of {', '.join(_losses.names())}")
    if "task" in m and m["task"] not in ("classification", "regression"):
        raise bad("task", "'classification' or 'regression'")
    if "x_scale" in m and (isinstance(m["x_scale"], bool) or not isinstance(m["x_scale"], (int, float))
                           or not math.isfinite(m["x_scale"]) or m["x_scale"] <= 0):
        raise bad("x_scale", "a positive finite number")
    width = None
    if "input_shape" in m:
        shape = m["input_shape"]
        if not isinstance(shape, list) or not shape or not all(_is_int(d) and d > 0 for d in shape):
            raise bad("input_shape", "a list of positive integers")
        try:
            width = int(np.prod(model.output_shape(tuple(shape))))
        except ValueError as e:
            raise ModelFileError(f"{source}: __metadata__ input_shape {shape} does not fit the model ({e})") from None
    k = m.get("n_classes")
    if k is not None and (not _is_int(k) or k < 1 or (width is not None and k > max(width, 2))):
        raise bad("n_classes", "a positive integer no larger than the model's outputs")
    names = m.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(c, (str, int, float)) and not isinstance(c, bool)
                                                  for c in names):
            raise bad("class_names", "a list of names")
        if k is not None and len(names) != k:
            raise ModelFileError(f"{source}: __metadata__ class_names has {len(names)} names for {k} classes")
    if m.get("encoding") is not None:
        from .tables import TableEncoding
        try:
            TableEncoding.from_json(m["encoding"])
        except Exception as e:   # any malformed part of it: one line
            raise ModelFileError(f"{source}: __metadata__ encoding is malformed ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:120]})") from None
    if m.get("y_scale") is not None or m.get("y_mean") is not None:
        for key in ("y_mean", "y_scale"):
            v = m.get(key)
            if not isinstance(v, list) or not v or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v) \
                    or (width is not None and len(v) != width):
                raise bad(key, "a list of finite numbers, one per output")
        if len(m["y_mean"]) != len(m["y_scale"]) or min(m["y_scale"]) <= 0:
            raise bad("y_scale", "positive numbers, as many as y_mean")
    names = m.get("target_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(c, str) for c in names)):
        raise bad("target_names", "a list of names")
    for key in ("seed",):
        if key in m and m[key] is not None and not _is_int(m[key]):
            raise bad(key, "an integer")


def check_modules(modules, trust=(), what="the model"):
    """Each module of ``modules`` (where a model's own layers are defined) must be imported
    already (``__main__`` counts: a script's own layers), or named in ``trust``, which imports
    it from ``sys.path`` as it is.  Anything else is a one-line ModelFileError saying how to
    allow it: a file never imports code by itself, and never changes ``sys.path``."""
    import importlib
    if isinstance(trust, str):
        trust = [trust]
    if not isinstance(modules, (list, tuple)):
        raise ModelFileError(f"{what}'s imports must be a list of module names")
    for module in modules:
        if not isinstance(module, str) or not module.replace(".", "").replace("_", "").isalnum() \
                or module[0].isdigit():
            raise ModelFileError(f"{what} names {str(module)[:80]!r} as a module, which is not a module name")
        if module == "__main__" or module in sys.modules:
            continue
        if module not in trust:
            raise ModelFileError(f"{what} uses layers from module '{module}', which is not imported; "
                                 f"a model file or run folder never imports code by itself: import {module} first, or "
                                 f"allow it (Sequential.load(path, trust=['{module}']), or --trust {module})")
        try:
            importlib.import_module(module)
        except Exception as e:   # ImportError, or the module failing: one line
            raise ModelFileError(f"{what} uses layers from module '{module}' (trusted), which cannot be "
                                 f"imported ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                                 f"run from its folder or add it to PYTHONPATH") from None
