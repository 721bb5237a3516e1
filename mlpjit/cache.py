"""mlpjit's cache folder: the generated steps, the compile-time history and the running runs'
files (Numba's own cache of compiled kernels is beside the code, or under ``NUMBA_CACHE_DIR``).
The step and the thread planning both use it, so it sits below both."""

import os
import tempfile
from pathlib import Path


def cache_dir():
    """mlpjit's cache directory: ``$MLPJIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlpjit`` or
    ``~/.cache/mlpjit``; a temporary folder when none of them can be written."""
    env = os.environ.get("MLPJIT_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "mlpjit" if xdg else Path.home() / ".cache" / "mlpjit"
    try:
        (base / "steps").mkdir(parents=True, exist_ok=True)
        probe = base / "steps" / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return base
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"mlpjit-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        (fallback / "steps").mkdir(parents=True, exist_ok=True)
        return fallback
