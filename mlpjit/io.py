"""Atomic file writes and checked ``.npz`` reads.

Every file mlpjit writes goes to a temporary file in the same folder first and is then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a process killed
at any instant leaves either the old file or the new one, never half of one.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import FileWriteError, ModelFileError


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write, durable=True):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename alone makes the write atomic for readers and against a killed process;
    ``durable`` also fsyncs the data first, against a power loss (the per-epoch files skip it:
    an fsync per epoch dominates runs of tiny epochs).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise FileWriteError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, FileWriteError):
            kept = " (its previous version is kept)" if path.exists() else ""
            raise FileWriteError(f"{path}: cannot write ({e.strerror or e}){kept}") from None
        raise


def append_text(path, text):
    """Append ``text`` to ``path`` (a line of metrics.jsonl); a FileWriteError naming the file
    when the disk is full or the folder read-only (a torn last line is dropped when read)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise FileWriteError(f"{path}: cannot write ({e.strerror or e})") from None


def atomic_write_text(path, text, durable=True):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), durable)


def _write_npz(f, arrays):
    # Like np.savez, but every member gets the same fixed timestamp, so that equal arrays
    # give byte-identical files (np.savez stamps the current time).
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def atomic_write_npz(path, arrays, durable=True):
    """Write ``arrays`` (a dict) as an ``.npz`` file at ``path``, atomically and reproducibly."""
    atomic_write(path, lambda f: _write_npz(f, arrays), durable)


def json_array(obj):
    """A JSON document as a 0-d unicode array (loadable with ``allow_pickle=False``)."""
    return np.array(json.dumps(obj))


def npz_headers(path, kind="mlpjit model"):
    """{name: (shape, dtype)} of every array of an ``.npz`` file, read from the headers alone
    (nothing is decompressed), or a ModelFileError naming the file."""
    path = Path(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise ModelFileError(f"{path}: not an {kind} (it holds {info.filename!r}, not an array)")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise ValueError(f"unknown .npy version {version}")
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(f))
                if dtype.hasobject:
                    raise ModelFileError(f"{path}: array {info.filename[:-4]!r} holds Python objects; "
                                         f"an {kind} holds numbers and text only")
                out[info.filename[:-4]] = (tuple(shape), dtype)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, SyntaxError, TypeError,
            RuntimeError) as e:   # a header that is not an .npy header, a zip torn apart
        raise ModelFileError(f"{path}: not a readable {kind} (truncated or corrupted .npz: "
                             f"{' '.join(str(e).split())[:200]})") from None
    return out


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in a word or two (from ``os.stat``'s mode)."""
    import stat
    for test, word in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return word
    return "special file"


def regular_file(path, error=ModelFileError, hint=""):
    """``path`` (a Path) when it is an existing regular file; else one ``error`` line saying
    what it is instead (no such file, a folder, a FIFO, a device), with ``hint`` after it."""
    import stat
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a {file_kind(st.st_mode)}){hint}")
    return path


def read_npz(path, kind="mlpjit model"):
    """All arrays of an ``.npz`` file as a dict, or a ModelFileError naming the file.  The arrays'
    headers are read first: arrays that would not fit in the memory this process may use are
    refused before anything is decompressed (a small compressed file can hold a huge array)."""
    path = regular_file(path, ModelFileError)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            bare = f.read(6) == b"\x93NUMPY"
        raise ModelFileError(f"{path}: not an {kind} (a single .npy array, not an .npz archive)" if bare
                             else f"{path}: not a readable {kind} (truncated or corrupted .npz: not a zip archive)")
    headers = npz_headers(path, kind)
    need = 0
    for shape, dtype in headers.values():
        if any(int(d) < 0 for d in shape):
            raise ModelFileError(f"{path}: not a readable {kind} (an array of shape {shape})")
        need += int(np.prod(shape, dtype=object)) * dtype.itemsize
    from .resources import HEADROOM, available, fmt_bytes
    have, _ = available()
    if have is not None and need > HEADROOM * have:
        raise ModelFileError(f"{path}: its arrays need {fmt_bytes(need)}, more than the "
                             f"{fmt_bytes(have)} of memory available; not loaded")
    try:
        z = np.load(path, allow_pickle=False)
        with z:
            return {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ModelFileError(f"{path}: not a readable {kind} (truncated or corrupted .npz: "
                             f"{' '.join(str(e).split())[:200]})") from None


def read_json_array(arrays, key, path, kind="mlpjit model"):
    if key not in arrays:
        raise ModelFileError(f"{path}: not an {kind} (no '{key}' entry)")
    try:
        return json.loads(str(arrays[key]))
    except (json.JSONDecodeError, TypeError) as e:
        raise ModelFileError(f"{path}: corrupted '{key}' entry ({e})") from None


def timestamped_dir(parent, name):
    """``parent/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``… if taken); not created."""
    import datetime as _dt
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(parent) / f"{name}-{stamp}"
    k = 2
    while path.exists():
        path = Path(parent) / f"{name}-{stamp}-{k}"
        k += 1
    return path


# the files mlpjit keeps in a run or sweep folder: an --out never replaces one of them
RUN_FILES = ("config.yaml", "metrics.jsonl", "probes.jsonl", "checkpoint.npz", "model.npz",
             "summary.json", "sweep.yaml", "sweep.csv", ".lock")


def check_out(out, suffixes, inputs=(), option="--out"):
    """Refuse, in one ConfigError line, an output path that would clobber what it must not: a
    directory, a device, a FIFO or a socket; one of the command's ``inputs``; a file mlpjit keeps
    in a run folder (:data:`RUN_FILES`); a name without one of ``suffixes``.  A new path, or an
    existing regular file of the right kind, is fine (it is replaced atomically)."""
    import stat
    from .errors import ConfigError
    out = Path(out)
    if suffixes and out.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {out}: give a {' or '.join(suffixes)} file")
    try:
        st = out.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ConfigError(f"{option} {out}: cannot use it ({e.strerror or e})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{option} {out}: is a folder; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{option} {out}: is not a regular file (a device, FIFO or socket); "
                              f"give a new file name")
        for src in inputs:
            try:
                if src is not None and Path(src).exists() and os.path.samefile(out, src):
                    raise ConfigError(f"{option} {out}: is an input of this command; give a new file name")
            except OSError:
                pass
        if out.name in RUN_FILES:
            raise ConfigError(f"{option} {out}: would replace the {out.name} that mlpjit keeps in a run "
                              f"folder; give another file name")
    if not out.parent.is_dir():
        raise ConfigError(f"{option} {out}: folder {out.parent} does not exist")
    return out


class FolderLock:
    """An exclusive lock on a run (or sweep) folder, held while one process writes it: a second
    writer (another ``train --out`` of the same folder, a ``--resume`` of a running run, a second
    sweep) is refused in one line naming the holder's pid.  ``fcntl.flock`` on ``<folder>/.lock``:
    the kernel drops it when the holder exits, however it exits, so a stale file locks nothing."""

    def __init__(self, folder, what="run folder"):
        self.folder, self.what = Path(folder), what
        self.fd = None

    def __enter__(self):
        from .errors import ConfigError
        try:
            import fcntl
        except ImportError:   # pragma: no cover - not POSIX: no lock
            return self
        self.path = path = self.folder / ".lock"
        for _ in range(5):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ConfigError(f"{self.folder}: cannot lock the {self.what} ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                finally:
                    os.close(fd)
                raise ConfigError(f"{self.folder}: another mlpjit process (pid {holder}) is writing this "
                                  f"{self.what}; wait for it to end, or use another folder") from None
            try:   # the holder before us may have removed the file: lock the one that is there
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:   # pragma: no cover - five races in a row
            raise ConfigError(f"{self.folder}: cannot lock the {self.what} (it keeps changing)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        for tmp in self.folder.glob(".*.tmp"):   # left by a writer killed mid-write (SIGKILL):
            try:                                   # no one else writes here now
                tmp.unlink()
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                os.unlink(self.path)   # while still held: a waiting process then locks a new file
            except OSError:
                pass
            os.close(self.fd)   # closing drops the lock
            self.fd = None
        return False
