"""What a sweep records and shows, shared by grid sweeps (:mod:`mlpjit.sweep.plan`) and
searches (:mod:`mlpjit.sweep.search`): a run's point and folder, its state, ``sweep.csv``, the
progress lines, the sweep folder, SIGTERM handled as Ctrl-C."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import ConfigError
from ..io import timestamped_dir

SWEEP_FORMAT = "mlpjit-sweep/1"

METRIC_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                  "test_loss", "test_accuracy")

def _override_text(value: Any) -> str:
    """A value as YAML text that ``yaml.safe_load`` reads back as the same value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 9)
        return text.strip().removesuffix("...").strip()
    return yaml.safe_dump(value, default_flow_style=True, width=10 ** 9, sort_keys=False).strip()

def _display(value: Any) -> str:
    """A value as shown in run folder names, sweep.csv and the summary table."""
    return value if isinstance(value, str) else _override_text(value)

def _replace_prefix(err: ConfigError, old: str, new: str) -> ConfigError:
    text = str(err)
    if text.startswith(old):
        return ConfigError(new + text[len(old):])
    return ConfigError(f"{new}: {text}")

class _Point:
    """One run of the sweep: its grid values, seed, resolved config and folder name."""

    def __init__(self, index, values, seed, cfg_obj, name):
        from ..config import dump_yaml, resolved_dict
        self.index = index
        self.values = values            # {key: value} of the grid point
        self.cfg_obj = cfg_obj
        self.cfg = resolved_dict(cfg_obj)
        self.config_text = dump_yaml(cfg_obj)
        self.seed = self.cfg["seed"] if seed is None else seed
        self.name = name
        self.group = tuple(_display(v) for v in values.values())

def _default_out(name: str) -> Path:
    return timestamped_dir("sweeps", name)

def _state(point: _Point, run_dir: Path) -> str:
    """'done' (finished with this config), 'resume' (same config, checkpoint, no summary) or 'new'."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return "new"
    try:
        same = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) == point.cfg
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        same = False
    if not same:
        return "new"
    summary = run_dir / "summary.json"
    if summary.is_file() and (run_dir / "model.npz").is_file():
        try:
            json.loads(summary.read_text(encoding="utf-8"))["final"]
            return "done"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if (run_dir / "checkpoint.npz").is_file():
        return "resume"
    return "new"

def _columns(keys: list[str], rows: list[dict]) -> list[str]:
    present = {k for r in rows for k in r}
    metrics = [m for m in METRIC_COLUMNS if m in present]
    fixed = set(keys) | {"seed", "status", "epochs", "train_seconds", "run_dir", "error"}
    others = sorted(present - fixed - set(METRIC_COLUMNS))
    return keys + ([] if "seed" in keys else ["seed"]) + ["status"] + metrics + others + \
        ["epochs", "train_seconds", "run_dir", "error"]

def _write_csv(path: Path, keys: list[str], rows: list[dict], durable=False) -> None:
    from ..io import atomic_write_text
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = _columns(keys, rows)
    w.writerow(cols)
    for r in rows:
        out = []
        for c in cols:
            v = r.get(c)
            if v is None:
                out.append("")
            elif c in keys:
                out.append(_display(v))
            elif isinstance(v, float):
                out.append(repr(v))
            else:
                out.append(str(v))
        w.writerow(out)
    atomic_write_text(path, buf.getvalue(), durable=durable)

def _prepare_out(out, name) -> Path:
    if out is None:
        return _default_out(name)
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / "sweep.yaml").is_file():
            raise ConfigError(f"--out {out}: already exists, is not empty and is not a sweep "
                              f"folder (no sweep.yaml); choose another --out")
    return out

class _Progress:
    """Counts of the runs to do (ok / failed / running) and, when ``enabled`` and stderr is a
    terminal, a bar over them on stderr; :meth:`log` prints a line above the bar."""

    def __init__(self, total: int, log: Callable[[str], Any], enabled: bool = False):
        self.total, self._log = total, log
        self.ok = self.failed = self.running = 0
        self.bar = None
        if enabled and total:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="run", desc="sweep", file=sys.stderr, disable=None,
                       dynamic_ncols=True)
            self.bar = None if bar.disable else bar
            self._show()

    @property
    def done(self) -> int:
        """Runs finished so far, ok or failed."""
        return self.ok + self.failed

    def _show(self, refresh: bool = True) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.ok} ok, {self.failed} failed, {self.running} running",
                                     refresh=refresh)

    def log(self, line: str) -> None:
        if self.bar is None:
            self._log(line)
        else:
            with self.bar.external_write_mode():
                self._log(line)

    def set_running(self, n: int) -> None:
        if n != self.running:
            self.running = n
            self._show()

    def finished(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if self.bar is not None:
            self._show(refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM to the sweep is handled like Ctrl-C (sweep.csv written, runs checkpointed)."""
    import signal
    from ..trainer import Terminated

    def handle(signum, frame):
        raise Terminated()
    try:
        old = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
