"""Shared helpers for the trainer / CLI / optimizer tests.

Helpers are exposed as fixtures (``cfg_file``, ``mlpjit_main``, ``mlpjit_proc``, ``mini_mnist``,
``spirals_cfg``, ...) so that test modules need not import this file.
"""

import copy
import gzip
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MNIST_DIR = REPO / "data" / "mnist"
TIMING_KEYS = ("epoch_seconds", "eval_seconds")


# --- config builders ---------------------------------------------------------------------

def _spirals(points=60, test_points=30, validation=0, epochs=3, batch_size=8, dropout=None,
             units=8, optimizer=None, schedule=None, seed=0, **extra):
    layers = [{"type": "dense", "units": units, "activation": "tanh"}]
    if dropout is not None:
        layers.append({"type": "dropout", "p": dropout})
    layers.append({"type": "dense", "units": 3})
    cfg = {
        "name": "spirals_test",
        "seed": seed,
        "data": {"name": "spirals", "classes": 3, "points": points, "test_points": test_points,
                 "noise": 0.2, "validation": validation},
        "model": {"layers": layers},
        "loss": "cross_entropy",
        "optimizer": optimizer or {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": schedule or {"type": "constant"},
        "train": {"epochs": epochs, "batch_size": batch_size},
    }
    cfg.update(extra)
    return cfg


XOR = {
    "name": "xor_test",
    "seed": 0,
    "data": {"name": "xor", "function": "xor"},
    "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"},
                         {"type": "dense", "units": 1}]},
    "loss": "binary_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.9},
    "train": {"epochs": 20, "batch_size": "full", "shuffle": False},
}

SINE = {
    "name": "sine_test",
    "seed": 0,
    "data": {"name": "sine", "points": 100, "test_points": 20},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                         {"type": "dense", "units": 1}]},
    "loss": "mse",
    "optimizer": {"type": "sgd", "lr": 0.05},
    "train": {"epochs": 3, "batch_size": 10},
}


@pytest.fixture(scope="session")
def helpers():
    """Plain helper functions for fixtures of any scope: spirals(**kw), write_cfg(path, cfg),
    proc_cmd(*args) (a ``python -m mlpjit.cli`` command line), proc_env()."""
    class NS:
        pass
    ns = NS()
    ns.spirals = staticmethod(_spirals)
    ns.write_cfg = staticmethod(write_cfg)
    ns.proc_cmd = staticmethod(proc_cmd)
    ns.proc_env = staticmethod(proc_env)
    return ns


@pytest.fixture
def spirals_cfg():
    """``spirals_cfg(**kw)`` -> a small spirals config dict (see ``_spirals`` for the knobs)."""
    return _spirals


@pytest.fixture
def xor_cfg():
    return lambda: copy.deepcopy(XOR)


@pytest.fixture
def sine_cfg():
    return lambda: copy.deepcopy(SINE)


def write_cfg(path, cfg):
    """Write a config dict (or raw YAML text) to ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def cfg_file(tmp_path):
    """``cfg_file(cfg, name="cfg.yaml")`` writes a config dict or YAML text under tmp_path."""
    def make(cfg, name="cfg.yaml"):
        return write_cfg(tmp_path / name, cfg)
    return make


# --- running the CLI -------------------------------------------------------------------------

@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self):
        return self.out + self.err


def _exit_code(e):
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


@pytest.fixture
def mlpjit_main(capsys):
    """Run ``mlpjit.cli.main(args)`` in-process (with its error handling); returns a Result."""
    from mlpjit.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


def proc_cmd(*args):
    return [sys.executable, "-m", "mlpjit", *[str(a) for a in args]]


def proc_env():
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def mlpjit_proc(tmp_path):
    """Run ``python -m mlpjit ARGS`` as a real subprocess (cwd tmp_path); returns a Result."""
    def run(*args, cwd=None, timeout=120):
        p = subprocess.run(proc_cmd(*args), capture_output=True, text=True, timeout=timeout,
                           cwd=cwd or tmp_path, env=proc_env())
        return Result(p.returncode, p.stdout, p.stderr)
    return run


@pytest.fixture(autouse=True)
def no_runs_folder_in_repo():
    """No test may write a run folder into the checkout's ``runs/``: a command run in-process without
    ``--out`` writes ``./runs/NAME-TIME``, and the cwd of an in-process test is the checkout.
    The folder's names are in the message, since another worker's test may be the one that made
    it: the run's name says which config (and so which test) it was."""
    def folders():
        runs = REPO / "runs"
        return {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    before = folders()
    yield
    made = sorted(folders() - before)
    if made:
        pytest.fail(f"a test wrote into runs/ in the repository (this one, or one running beside "
                    f"it on another worker): {made}", pytrace=False)


# --- run folders ---------------------------------------------------------------------------

def quick_context(tmp, seeds=1):
    """An experiments Context at the smoke-test scale (``--quick``), writing under ``tmp``."""
    from mlpjit.experiments import Context
    (tmp / "fig").mkdir(exist_ok=True)
    return Context(runs=tmp / "runs", figures=tmp / "fig", seeds=seeds, quick=True, log=lambda *a: None)


def read_metrics(run_dir, name="metrics.jsonl"):
    return [json.loads(line) for line in (Path(run_dir) / name).read_text().splitlines()
            if line.strip()]


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def checkpoint_state(run_dir):
    from mlpjit.io import read_json_array, read_npz
    path = Path(run_dir) / "checkpoint.npz"
    arrays = read_npz(path, kind="mlpjit checkpoint")
    return read_json_array(arrays, "__state__", path), arrays


@pytest.fixture
def run_files():
    """Namespace of run-folder readers: read_metrics, without_timing, checkpoint_state."""
    class NS:
        pass
    ns = NS()
    ns.read_metrics = staticmethod(read_metrics)
    ns.without_timing = staticmethod(without_timing)
    ns.checkpoint_state = staticmethod(checkpoint_state)
    return ns


# --- a tiny synthetic MNIST folder ---------------------------------------------------------

def write_idx_images(path, images):
    n, rows, cols = images.shape
    raw = struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()
    Path(path).write_bytes(gzip.compress(raw, compresslevel=1))


def write_idx_labels(path, labels):
    raw = struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes()
    Path(path).write_bytes(gzip.compress(raw, compresslevel=1))


def make_mini_mnist(directory, n_train=600, n_test=200, n_train_labels=None, seed=0):
    """Four IDX .gz files with the MNIST names: 28x28 images whose mean brightness of one
    row band encodes the label (so a small network can learn something)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def draw(n):
        y = rng.integers(0, 10, n)
        X = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(y):
            X[i, 2 * label:2 * label + 3, :] += 180
        return np.clip(X, 0, 255).astype(np.uint8), y

    X, y = draw(n_train)
    Xt, yt = draw(n_test)
    write_idx_images(directory / "train-images-idx3-ubyte.gz", X)
    write_idx_labels(directory / "train-labels-idx1-ubyte.gz",
                     y if n_train_labels is None else y[:n_train_labels])
    write_idx_images(directory / "t10k-images-idx3-ubyte.gz", Xt)
    write_idx_labels(directory / "t10k-labels-idx1-ubyte.gz", yt)
    return directory


@pytest.fixture
def mini_mnist(tmp_path):
    """``mini_mnist(name="mnist", **kw)`` -> a folder with four small IDX .gz files."""
    def make(name="mnist", **kw):
        return make_mini_mnist(tmp_path / name, **kw)
    return make
