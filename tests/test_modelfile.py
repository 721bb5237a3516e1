"""A model file is data: loading one written by someone else runs no code and allocates only what
its arrays hold (mlpjit/modelfile.py).  The fuzz test mutates real model files and checkpoints of
every shipped layer type and loads each: it loads and predicts, or it is one ModelFileError line;
never a traceback, a hang, a module imported, or memory it cannot account for."""

import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import mlpjit
from mlpjit.errors import ModelFileError

from conftest import proc_cmd, proc_env  # noqa: E402

EVIL = '''
import pathlib
import numpy as np
import mlpjit
pathlib.Path("{marker}").write_text("the module ran")


@mlpjit.register_layer("{name}")
class Twice(mlpjit.Layer):
    """Y = 2X."""
    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def forward(self, X, training=False):
        return 2 * X

    def backward(self, dY, need_dX=True):
        return 2 * dY
'''


def _save(tmp_path, name, code):
    script = tmp_path / f"make_{name}.py"
    script.write_text(code)
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=proc_env(), check=True,
                   capture_output=True, text=True)


def test_a_module_beside_the_model_is_not_imported_unless_trusted(tmp_path):
    marker = tmp_path / "ran.txt"
    (tmp_path / "helpers_evil.py").write_text(EVIL.format(marker=marker, name="twice_evil"))
    _save(tmp_path, "model", "import numpy as np, mlpjit, helpers_evil\n"
          "m = mlpjit.Sequential([mlpjit.Dense(2, 3, seed=0), helpers_evil.Twice()])\n"
          "m.metadata = {'loss': 'mse', 'task': 'regression', 'x_scale': 1.0, 'input_shape': [2]}\n"
          "m.save('model.npz')\n")
    marker.unlink()
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    before = list(sys.path)
    with pytest.raises(ModelFileError) as e:
        mlpjit.Sequential.load(tmp_path / "model.npz")
    assert "uses layers from module 'helpers_evil', which is not imported" in str(e.value)
    assert "--trust helpers_evil" in str(e.value) and "\n" not in str(e.value)
    assert sys.path == before and "helpers_evil" not in sys.modules and not marker.exists()
    # the CLI, from the folder that holds the module: one line, exit 2, nothing ran, under a second
    t = time.perf_counter()
    r = subprocess.run(proc_cmd("predict", "model.npz", "x.npy"), cwd=tmp_path, env=proc_env(),
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "helpers_evil" in r.stderr, r.stderr
    assert not marker.exists()
    # trusted: it is imported (from sys.path as it is: here the current folder) and predicts
    r = subprocess.run(proc_cmd("predict", "model.npz", "x.npy", "--trust", "helpers_evil"), cwd=tmp_path,
                       env=dict(proc_env(), PYTHONPATH=str(tmp_path)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert marker.exists() and len(r.stdout.strip().splitlines()) >= 4
    assert time.perf_counter() - t < 30


def test_a_config_enlarged_a_billion_times_is_refused_before_it_allocates(tmp_path):
    model = mlpjit.Sequential([mlpjit.Dense(2, 3, activation="tanh", seed=0), mlpjit.Dense(3, 2, seed=1)])
    arrays = model.to_arrays()
    config = json.loads(str(arrays["__config__"]))
    config["layers"][0]["units"] = 3 * 10 ** 9
    arrays["__config__"] = np.array(json.dumps(config))
    path = tmp_path / "big.npz"
    np.savez(path, **arrays)
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"big\.npz: layer 0\.units is 3000000000, but the file stores 9 values"):
        mlpjit.Sequential.load(path)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 50 * 2 ** 20


def test_a_small_file_holding_a_huge_compressed_array_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setattr("mlpjit.resources.available", lambda: (2 * 2 ** 30, "test"))
    path = tmp_path / "zeros.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:   # says 4 GiB (zeros would deflate to 4 MB)
        with z.open("0.A.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (2 ** 30,)})
            f.write(bytes(2 ** 16))
    assert path.stat().st_size < 2 ** 20
    with pytest.raises(ModelFileError, match="its arrays need 4.0 GiB, more than the 2.0 GiB of memory available"):
        mlpjit.Sequential.load(path)


def test_a_newer_format_says_which_version_wrote_it(tmp_path):
    arrays = mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0)]).to_arrays()
    arrays["__format__"], arrays["__version__"] = np.array("mlpjit-model/2"), np.array("9.1.0")
    np.savez(tmp_path / "new.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"format 'mlpjit-model/2' \(written by mlpjit 9\.1\.0\); "
                                             r"this mlpjit \(.*\) reads 'mlpjit-model/1'"):
        mlpjit.Sequential.load(tmp_path / "new.npz")


# --- the fuzz test ------------------------------------------------------------------------------

def _models():
    """Real models with every shipped layer type, and an input batch for each."""
    images = mlpjit.Sequential([
        mlpjit.Conv2D(1, 2, 3, activation="relu", seed=1), mlpjit.MaxPool2D(2), mlpjit.AvgPool2D(1),
        mlpjit.Flatten(), mlpjit.Dense(18, 4, activation="leaky_relu", seed=2), mlpjit.Dropout(0.1, seed=3),
        mlpjit.Dense(4, 3, seed=4), mlpjit.Softmax()])
    images.metadata = {"loss": "mse", "task": "classification", "x_scale": 1.0, "n_classes": 3,
                       "class_names": ["a", "b", "c"], "input_shape": [1, 8, 8], "seed": 0, "data": "npz"}
    rows = mlpjit.Sequential([
        mlpjit.Standardize(4), mlpjit.Dense(4, 6, activation="tanh", seed=5), mlpjit.BatchNorm(6),
        mlpjit.Residual([mlpjit.Dense(6, 6, activation="relu", seed=6)]), mlpjit.Activation("tanh"),
        mlpjit.Dense(6, 2, seed=7)])
    rows.metadata = {"loss": "cross_entropy", "task": "classification", "x_scale": 0.5, "n_classes": 2,
                     "input_shape": [4], "seed": 3, "data": "spirals"}
    rng = np.random.default_rng(0)
    return [(images, rng.standard_normal((5, 1, 8, 8))), (rows, rng.standard_normal((5, 4)))]


def _mutate_json(doc, rng):
    """One change somewhere in a JSON document: a value changed, retyped, enlarged or removed, or
    a key added."""
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])
    walk(doc, [])
    path = paths[rng.integers(len(paths))]
    if not path:
        return rng.choice([None, [], "x", 7]).item() if False else [None, [], "x", 7][rng.integers(4)]
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    key, value = path[-1], parent[path[-1]]
    kind = rng.integers(9)
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(parent, dict):
        parent["extra_" + str(rng.integers(100))] = 3
    elif kind == 2 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = value * 10 ** 9
    elif kind == 3 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = -value - 1
    else:
        parent[key] = [None, "x", -1, 0, 2 ** 40, 1.5, float("nan"), [], {}, True, "dense", [3, 3]][rng.integers(12)]
    return doc


def _mutations(arrays, rng, n):
    """n mutated copies of a model's (or checkpoint's) arrays, as .npz bytes."""
    names = sorted(arrays)
    json_keys = [k for k in names if str(arrays[k].dtype).startswith("<U")]
    numeric = [k for k in names if arrays[k].dtype.kind == "f"]
    for _ in range(n):
        a = {k: np.array(v) for k, v in arrays.items()}
        kind = rng.integers(8)
        if kind <= 2 and json_keys:
            key = json_keys[rng.integers(len(json_keys))]
            try:
                doc = json.loads(str(a[key]))
            except ValueError:
                doc = str(a[key])
            a[key] = np.array(json.dumps(_mutate_json(doc, rng)))
        elif kind == 3 and numeric:
            key = numeric[rng.integers(len(numeric))]
            a[key] = [a[key].reshape(-1), a[key].T, a[key][..., None], a[key].reshape(-1)[:1]][rng.integers(4)]
        elif kind == 4 and numeric:
            key = numeric[rng.integers(len(numeric))]
            a[key] = a[key].astype([np.int8, np.complex64, np.bool_, np.float16, "U3", np.uint64][rng.integers(6)])
        elif kind == 5:
            del a[names[rng.integers(len(names))]]
        elif kind == 6:
            a[["9.A", "0.extra", "x", "__config__", "0.A"][rng.integers(5)]] = rng.standard_normal((3, 2))
        buf = io.BytesIO()
        np.savez(buf, **a)
        data = buf.getvalue()
        if kind == 7:   # the zip torn apart: truncated, or a few bytes flipped
            data = bytearray(data)
            if rng.integers(2):
                data = data[:rng.integers(len(data))]
            else:
                for i in rng.integers(0, len(data), size=rng.integers(1, 8)):
                    data[i] ^= 0xFF
            data = bytes(data)
        yield data


def _load_and_predict(path, X, out_width):
    try:
        model = mlpjit.Sequential.load(path)
    except ModelFileError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path)), str(e)
        return "refused"
    try:
        out = model.predict(X)
    except ValueError as e:     # a model that loads but cannot take this batch: one line, named
        assert "\n" not in str(e), str(e)
        return "loads, other input"
    assert out.shape[0] == len(X)
    return "loads"


def test_fuzzed_model_files_load_and_predict_or_are_one_line(tmp_path, mlpjit_main):
    rng = np.random.default_rng(2026)
    modules = set(sys.modules)
    path_before = list(sys.path)
    outcomes = {}
    n_each = 220
    worst_seconds, worst_peak = 0.0, 0
    for m, (model, X) in enumerate(_models()):
        out_width = model.predict(X).shape[1]
        np.save(tmp_path / f"x{m}.npy", X.reshape(len(X), -1) if X.ndim == 2 else X)
        for i, data in enumerate(_mutations(model.to_arrays(), rng, n_each)):
            path = tmp_path / f"m{m}_{i}.npz"
            path.write_bytes(data)
            tracemalloc.start()
            t = time.perf_counter()
            outcome = _load_and_predict(path, X, out_width)
            worst_seconds = max(worst_seconds, time.perf_counter() - t)
            worst_peak = max(worst_peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if i % 10 == 0 and X.ndim == 2:   # the CLI: exit 0, or one line and exit 2
                r = mlpjit_main("predict", path, tmp_path / f"x{m}.npy")
                assert r.code in (0, 2) and "Traceback" not in r.err, r.err
                assert r.code == 0 or r.err.count("\n") == 1, r.err
            path.unlink()
    print("fuzzed model files:", outcomes)
    assert sum(outcomes.values()) == 2 * n_each and outcomes.get("refused", 0) > 100, outcomes
    assert worst_seconds < 2.0 and worst_peak < 500 * 2 ** 20, (worst_seconds, worst_peak)
    new = set(sys.modules) - modules   # Numba's and SciPy's own, as predicting needs them; none named by a file
    assert not {"x", "dense", "extra_3"} & new
    assert not [m for m in new if str(getattr(sys.modules[m], "__file__", "")).startswith(str(tmp_path))]
    assert sys.path == path_before


def test_fuzzed_checkpoints_resume_or_are_one_line(tmp_path, spirals_cfg, cfg_file, mlpjit_main):
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    cfg = spirals_cfg(points=60, epochs=2, batch_size=8, dropout=0.2)
    cfg["model"]["layers"].insert(1, {"type": "batchnorm"})
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q", "--stop-after", "1").code == 75
    good = dict(np.load(run / "checkpoint.npz"))
    resolved = resolved_dict(load_config(run / "config.yaml"))
    rng = np.random.default_rng(7)
    refused = 0
    for data in _mutations(good, rng, 150):
        (run / "checkpoint.npz").write_bytes(data)
        trainer = Trainer(resolved, run, log=lambda *a: None, progress=False)
        try:
            trainer.load_checkpoint()
        except mlpjit.MlpjitError as e:   # ModelFileError; ConfigError when its config differs
            assert "\n" not in str(e)
            refused += 1
            continue
        assert 0 <= trainer.batch < trainer._n_batches()
    assert refused > 50
    # the real one still resumes
    np.savez(run / "checkpoint.npz", **good)
    assert mlpjit_main("train", "--resume", run, "-q").code == 0
    assert os.path.exists(run / "model.npz")
