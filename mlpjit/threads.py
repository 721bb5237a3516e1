"""Threads: the cores this process may use, the thread pools that share them, and the other
mlpjit runs on the machine.

One pool owns the cores at a time.  A sharded training step (:mod:`mlpjit.step`) runs its
shards on Numba's pool with BLAS single-threaded inside each shard; everything else (a serial
step, evaluation, NumPy) uses BLAS's own threads.  :func:`pools` switches between the two, and
sizes both to :func:`share`: the cores this process may use (:func:`cores`: CPU affinity, a
cgroup's CPU quota) divided among the mlpjit runs that are training on the machine right now
(:class:`Presence`, a file per run in mlpjit's cache directory).  Two runs started at once then
use a core each instead of both fighting over both.

BLAS is controlled through the libraries' own ``*openblas_set_num_threads`` /
``MKL_Set_Num_Threads`` functions, found among the libraries this process has loaded (Linux's
``/proc/self/maps``; elsewhere through threadpoolctl when it is installed).  Where no BLAS can
be controlled, :func:`blas_control` says so, and a sharded step is not used (its shards would
each start BLAS's threads).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import time
from pathlib import Path

__all__ = ["cores", "share", "blas_threads", "set_blas_threads", "blas_control", "pools",
           "Presence", "resolve_threads"]


# --- the cores this process may use --------------------------------------------------------

def _cgroup_quota():
    """CPUs the cgroup's quota allows (a float), or None without a quota."""
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota, period in µs)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def cores():
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota
    (rounded up: a quota of 1.5 CPUs gives 2 threads)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def resolve_threads(threads):
    """``train.threads`` (None/"auto" or a number) → the number of shards a run computes with:
    the cores this process may use when not given."""
    if threads in (None, "auto"):
        return cores()
    return max(1, int(threads))


# --- BLAS -------------------------------------------------------------------------------------

_OPENBLAS = [(f"{prefix}openblas_set_num_threads{suffix}", f"{prefix}openblas_get_num_threads{suffix}")
             for prefix in ("scipy_", "") for suffix in ("", "64_", "_64")]
_FUNCTIONS = _OPENBLAS + [("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
                          ("bli_thread_set_num_threads", "bli_thread_get_num_threads")]
_BLAS = None   # [(path, setter, getter)] once found


def _loaded_libraries():
    """Paths of the shared libraries this process has loaded that look like a BLAS."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[-1].startswith("/"):
                    name = os.path.basename(parts[-1]).lower()
                    if ("openblas" in name or "mkl_rt" in name or "blis" in name) and ".so" in name:
                        if parts[-1] not in paths:
                            paths.append(parts[-1])
    except OSError:
        try:  # not Linux: threadpoolctl knows where the libraries are, when it is installed
            import threadpoolctl
            paths = [i["filepath"] for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        except Exception:   # noqa: BLE001 (threadpoolctl missing or failing: no control)
            paths = []
    return paths


def _find_blas():
    global _BLAS
    if _BLAS is not None:
        return _BLAS
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's kernels call)
    except ImportError:
        pass
    found = []
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _FUNCTIONS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is None:
                continue
            setter.argtypes, setter.restype = [ctypes.c_int], None
            if getter is not None:
                getter.argtypes, getter.restype = [], ctypes.c_int
            found.append((path, setter, getter))
            break
    _BLAS = found
    return found


def blas_control():
    """The BLAS libraries whose threads can be set (their paths); empty if none."""
    return [path for path, _, _ in _find_blas()]


def blas_threads():
    """BLAS's thread count now (the largest among the libraries), or None if unknown."""
    counts = [getter() for _, _, getter in _find_blas() if getter is not None]
    return max(counts) if counts else None


def set_blas_threads(n):
    """Set every controllable BLAS to ``n`` threads; returns whether any could be set."""
    libs = _find_blas()
    for _, setter, _ in libs:
        setter(int(n))
    return bool(libs)


def set_numba_threads(n):
    import numba
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


class pools:
    """``with pools(threads, sharded):`` run the code inside with ``threads`` threads: on
    Numba's pool with BLAS single-threaded when ``sharded``, else on BLAS's pool; restores
    BLAS's previous count on exit."""

    def __init__(self, threads, sharded):
        self.threads, self.sharded = int(threads), bool(sharded)

    def __enter__(self):
        self.before = blas_threads()
        apply(self.threads, self.sharded)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            set_blas_threads(self.before)
        return False


def apply(threads, sharded):
    """Size the pools for ``threads`` threads (see :class:`pools`)."""
    if sharded:
        set_blas_threads(1)
        set_numba_threads(threads)
    else:
        set_blas_threads(threads)
        set_numba_threads(1)


# --- other runs on this machine -------------------------------------------------------------

def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class Presence:
    """This run's file among the running runs (``<cache>/running/<pid>.json``) while training;
    :meth:`share` is this run's part of the cores.  Files of runs that are gone are removed
    when found.  ``MLPJIT_SHARE=0`` turns the sharing off (every run takes all its cores)."""

    CHECK_SECONDS = 0.2   # how often share() looks again

    def __init__(self, folder=None):
        if folder is None:
            from .cache import cache_dir
            folder = cache_dir() / "running"
        self.folder = Path(folder)
        self.path = self.folder / f"{os.getpid()}.json"
        self.started = time.time()
        self.enabled = os.environ.get("MLPJIT_SHARE", "1") != "0"
        self._last = (0.0, None)

    def __enter__(self):
        if self.enabled:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"pid": os.getpid(), "started": self.started}))
                os.replace(tmp, self.path)
            except OSError:
                self.enabled = False
        return self

    def __exit__(self, *exc):
        try:
            self.path.unlink()
        except OSError:
            pass
        return False

    def runs(self):
        """[(started, pid)] of the runs training now, this one included, oldest first."""
        found = [(self.started, os.getpid())]
        if not self.enabled:
            return found
        try:
            entries = list(self.folder.glob("*.json"))
        except OSError:
            return found
        for entry in entries:
            try:
                pid = int(entry.stem)
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            if not _alive(pid):
                try:
                    entry.unlink()
                except OSError:
                    pass
                continue
            try:
                started = float(json.loads(entry.read_text())["started"])
            except (OSError, ValueError, KeyError, TypeError):
                started = 0.0
            found.append((started, pid))
        return sorted(found)

    def share(self, wanted):
        """Threads for this run now: its cores divided among the runs training on the machine
        (the oldest runs get the remainder), at most ``wanted``; looked up at most every
        CHECK_SECONDS."""
        now = time.monotonic()
        last, value = self._last
        if value is not None and now - last < self.CHECK_SECONDS:
            return min(value, wanted)
        value = share(self.runs())
        self._last = (now, value)
        return min(value, wanted)


def share(runs, total=None):
    """This process's part of ``total`` cores (default: :func:`cores`) among ``runs``
    ([(started, pid)], oldest first): an equal part, the remainder to the oldest."""
    total = cores() if total is None else total
    n = max(1, len(runs))
    rank = next((i for i, (_, pid) in enumerate(runs) if pid == os.getpid()), 0)
    return max(1, total // n + (1 if rank < total % n else 0))
