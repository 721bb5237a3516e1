"""The one place that sets Numba's options for the whole package.

* ``FASTMATH``: an explicit flag set, not ``fastmath=True``.  ``True`` would include the
  ``nnan``/``ninf`` flags, and with them ``np.isnan`` on a NaN sum returns False; the
  trainer must stop on NaN, so those two flags stay off.  ``reassoc`` lets sums be reordered,
  so compiled sums can differ from NumPy in the last bits (tests compare with a tolerance).
* ``cache=True``: compiled code is kept on disk next to the sources, or (when the package
  is installed read-only) in Numba's user-wide cache directory; ``NUMBA_CACHE_DIR`` overrides.
* ``parallel``: only kernels created with ``jit(parallel=True)`` use Numba's thread pool.
  BLAS has its own threads, so element-wise work between BLAS calls stays serial unless a
  kernel is measured to gain from ``prange``.
"""

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# parallel="prange": Numba's threads for the explicit ``prange`` loops only (the generated steps
# say where their threads go; Numba's other parallel transforms — array expressions, reductions,
# fusion — found nothing to do there and cost about 12% of a sharded step's compile:
# docs/performance.md, "Start-up").  parallel=True keeps all of them, for kernels of your own.
PRANGE_ONLY = {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
               "setitem": False, "numpy": False, "stencil": False, "fusion": False}
CACHE = True


def jit(fn=None, *, parallel=False, cache=CACHE):
    """``numba.njit`` with the package's options; use as ``@jit``, ``@jit(parallel=True)`` or
    ``@jit(parallel="prange")`` (threads for ``prange`` loops only)
    (``cache=False`` for code that cannot be cached: a generated step calling kernels defined
    in a script's ``__main__``).  Your own kernels use it too: ``from mlpjit import jit``."""
    if parallel == "prange":
        parallel = dict(PRANGE_ONLY)
    options = dict(fastmath=set(FASTMATH), cache=cache, nogil=True, parallel=parallel,
                   error_model="numpy")
    if fn is None:
        return numba.njit(**options)
    return numba.njit(**options)(fn)
