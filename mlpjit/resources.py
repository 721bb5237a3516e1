"""Memory is checked before it is spent: what a config needs against what the process may use.

:func:`available` is the smallest of the memory the system has available (``MemAvailable``),
the cgroup's limit less its usage (a container's or a batch job's) and the address-space limit
(``ulimit -v``).  :func:`check_data` estimates what a data source needs before it is generated
or read; :func:`check_layer` the parameters of a layer before they are allocated (with their
gradients and optimizer state); :func:`mlpjit.explain.check_run` the whole run once the model is
built (data, parameters, gradients, optimizer state and the step's buffers — the arithmetic of
``mlpjit explain``, which it lives beside).  Each refuses with one :class:`~mlpjit.errors.ResourceError` line saying what needs
how much and what is available.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import ResourceError

__all__ = ["available", "check_data", "check_layer", "fmt_bytes", "refuse"]

HEADROOM = 0.9   # share of the available memory a run may plan to use


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _read_int(path):
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value < 1 << 60 else None


def available():
    """(bytes, where from) of the memory this process may still use, or (None, "") if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "available memory"))
    except (OSError, ValueError, IndexError):
        pass
    limit = _read_int("/sys/fs/cgroup/memory.max")
    if limit is not None:
        used = _read_int("/sys/fs/cgroup/memory.current") or 0
        found.append((max(limit - used, 0), "the cgroup's memory limit"))
    limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if limit is not None:
        used = _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes") or 0
        found.append((max(limit - used, 0), "the cgroup's memory limit"))
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append((soft, "the address-space limit (ulimit -v)"))
    except (ImportError, ValueError, OSError):
        pass
    if os.environ.get("MLPJIT_MEMORY_LIMIT"):  # for tests, and for a limit of your own
        try:
            found.append((int(float(os.environ["MLPJIT_MEMORY_LIMIT"])), "MLPJIT_MEMORY_LIMIT"))
        except ValueError:
            pass
    if not found:
        return None, ""
    return min(found)


def refuse(what, need, parts):
    """Raise ResourceError when ``need`` bytes (made of ``parts``: [(name, bytes)]) cannot fit."""
    have, where = available()
    if have is None or need <= HEADROOM * have:
        return
    detail = ", ".join(f"{name} {fmt_bytes(b)}" for name, b in parts if b)
    raise ResourceError(f"{what} needs about {fmt_bytes(need)}" + (f" ({detail})" if detail else "")
                        + f", but only {fmt_bytes(have)} are available ({where})")


def data_bytes(spec):
    """An estimate of the bytes loading data ``spec`` (a ``data:`` dict) takes, with the
    temporaries of generating or reading it."""
    name = spec.get("name")
    f8 = 8

    def num(key, default=0):
        v = spec.get(key, default)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else default
    if name == "spirals":
        n = num("points", 3000) + num("test_points", 1000)
        return int(n * (2 * f8 + f8) * 3)            # X, y and the generator's temporaries
    if name == "sine":
        n = num("points", 1000) + num("test_points", 200)
        return int(n * (f8 + f8) * 3)
    if name == "csv":
        total = 0
        for key in ("train", "test"):
            p = spec.get(key)
            if isinstance(p, str):
                try:
                    total += os.path.getsize(p)
                except OSError:
                    pass
        return total * 12                              # cells as Python strings while reading
    if name == "npz":
        p = spec.get("path")
        try:
            return os.path.getsize(p) * 3 if isinstance(p, str) else 0
        except OSError:
            return 0
    if name == "mnist":
        return 70000 * 784 * 2
    return 0


def check_data(spec):
    """Refuse, before loading, a data source that cannot fit (one line naming its size keys)."""
    need = data_bytes(spec)
    keys = [k for k in ("points", "test_points") if k in spec]
    what = f"data '{spec.get('name')}'" + (" (" + ", ".join(f"{k}: {spec[k]:,}" for k in keys
                                                              if isinstance(spec[k], int)) + ")" if keys else "")
    refuse(what, need, [])


def check_layer(where, n_params, itemsize, slots=2, already=0):
    """Refuse, before allocating, a layer whose parameters (with gradients and ``slots`` arrays
    of optimizer state, and ``already`` bytes of the model so far) cannot fit."""
    need = n_params * itemsize * (2 + slots)
    refuse(f"{where} ({n_params:,} parameters)", need + already,
            [("its parameters, gradients and optimizer state", need), ("the layers before it", already)])


def _count(x):
    return math.prod(x) if isinstance(x, (tuple, list)) else int(x)
