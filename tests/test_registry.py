"""The registries and user modules: one definition per name, config keys from constructors,
layers of the user's own trained compiled from a config and from a script, and one-line
errors for the mistakes a user can make writing one."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mlpjit
from mlpjit import registry
from mlpjit.registry import RegistryError

REPO = Path(__file__).resolve().parents[1]

GOOD_LAYER = '''
import numpy as np
import mlpjit
from mlpjit.schema import Float


@mlpjit.jit
def shift_forward(X, c, Y):
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i, j] = X[i, j] + c[j]


@mlpjit.jit
def shift_backward(dY, dc, dX):
    for j in range(dY.shape[1]):
        dc[j] = 0.0
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dc[j] += dY[i, j]
            dX[i, j] = dY[i, j]


@mlpjit.register_layer("{name}")
class Shift(mlpjit.Layer):
    """Y = X + c (c per feature): dc = Σ dY, dX = dY."""
    params = ("c",)
    inferred = {{"width": 0}}
    forward_kernel = shift_forward
    backward_kernel = shift_backward

    def __init__(self, width: int, start: Float = 0.5, dtype=np.float32):
        self.width, self.start = width, start
        self.dtype = np.dtype(dtype)
        self.c = np.full(width, start, self.dtype)
        self.dc = np.zeros_like(self.c)
'''


def _module(tmp_path, name, text):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return name


def _cfg(imports, layer, **extra):
    cfg = {"name": "user", "imports": imports,
           "data": {"name": "spirals", "points": 60, "test_points": 20},
           "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}, layer,
                                {"type": "dense", "units": 3}]},
           "loss": "cross_entropy", "train": {"epochs": 2, "batch_size": 8}}
    cfg.update(extra)
    return cfg


def test_each_built_in_name_is_registered_once_where_it_is_defined():
    for reg, module in ((registry.layers, "mlpjit.layers."), (registry.activations, "mlpjit.activations"),
                        (registry.losses, "mlpjit.losses"), (registry.initializers, "mlpjit.initializers"),
                        (registry.optimizers, "mlpjit.optim"), (registry.schedules, "mlpjit.schedules")):
        builtin = [n for n, obj in reg.items() if obj.__module__.startswith("mlpjit")]
        assert builtin and len(builtin) == len(set(builtin))
        assert all(reg.get(n).__module__.startswith(module) for n in builtin), reg
    # a layer type is its file: dense in layers/dense.py, batchnorm in layers/batchnorm.py, ...
    for name, cls in registry.layers.items():
        if cls.__module__.startswith("mlpjit."):
            assert cls.__module__ == f"mlpjit.layers.{name}", (name, cls.__module__)


def test_a_name_held_by_another_class_is_refused_in_one_line():
    class Dense(mlpjit.Layer):
        pass
    with pytest.raises(RegistryError, match=r"^layer type 'dense' is already registered by "
                                            r"mlpjit\.layers\.dense\.Dense; register .*Dense under another name$"):
        registry.register_layer("dense", Dense)
    with pytest.raises(RegistryError, match="must be an identifier"):
        registry.register_activation("my-act", object())
    # the same class again (a module imported twice) just replaces the entry
    assert registry.register_layer("dense", mlpjit.Dense) is mlpjit.Dense


def test_config_keys_come_from_the_constructor(tmp_path):
    from mlpjit.config import config_from_dict, schema
    _module(tmp_path, "shift_keys", GOOD_LAYER.format(name="shift_keys"))
    cfg = _cfg(["shift_keys"], {"type": "shift_keys", "start": 2})
    c = config_from_dict(dict(cfg, import_path=[str(tmp_path)]))
    model = schema().layers["shift_keys"]
    assert list(model.model_fields) == ["type", "width", "start"]
    layer = c.model.layers[1]
    assert layer.start == 2.0 and layer.width is None
    with pytest.raises(mlpjit.ConfigError, match=r"model\.layers\.1\.start: must be a number \(got 'x'\)"):
        config_from_dict(dict(cfg, import_path=[str(tmp_path)], model={"layers": [
            {"type": "dense", "units": 4}, {"type": "shift_keys", "start": "x"}, {"type": "dense", "units": 3}]}))


def test_a_user_layer_trains_compiled_from_a_config_and_matches_the_layer_path(tmp_path, cfg_file, mlpjit_main):
    _module(tmp_path, "shift_cfg", GOOD_LAYER.format(name="shift_cfg"))
    runs = {}
    for compiled in (True, False):
        cfg = _cfg(["shift_cfg"], {"type": "shift_cfg"}, train={"epochs": 2, "batch_size": 8, "compiled": compiled})
        path = cfg_file(cfg, f"c{compiled}.yaml")
        r = mlpjit_main("train", path, "--out", tmp_path / str(compiled), "--quiet")
        assert r.code == 0, r.err
        runs[compiled] = np.load(tmp_path / str(compiled) / "model.npz")
    np.testing.assert_allclose(runs[True]["1.c"], runs[False]["1.c"], rtol=1e-5)
    assert not np.allclose(runs[True]["1.c"], 0.5)           # it was trained
    r = mlpjit_main("explain", tmp_path / "True", "--step")
    assert r.code == 0 and "from shift_cfg import shift_backward, shift_forward" in r.out
    assert "shift_forward(X1, l1_c, Y1)" in r.out
    r = mlpjit_main("evaluate", tmp_path / "True")             # the run folder finds the module
    assert r.code == 0 and "test_accuracy" in r.out, r.err


@pytest.mark.parametrize("body,message", [
    ('''
@mlpjit.jit
def f(X, Q, Y):
    pass

@mlpjit.register_layer("broken_names")
class Broken(mlpjit.Layer):
    forward_kernel = f
    backward_kernel = f
''', r"model\.layers\.1: Broken.*: kernel f takes 'Q', which the layer does not provide \(it provides: .*X.*Y"),
    ('''
@mlpjit.jit
def f(X, Y):
    for i in range(X.shape[0]):
        Y[i, 0] = "text"

@mlpjit.register_layer("broken_types")
class Broken(mlpjit.Layer):
    forward_kernel = f
    backward_kernel = f
''', r"model\.layers\.1: .*its kernels do not compile for float32 examples of shape \(4,\): "),
    ('''
@mlpjit.register_layer("dense")
class Dense(mlpjit.Layer):
    pass
''', r"imports: bad_\d: layer type 'dense' is already registered by mlpjit\.layers\.dense\.Dense"),
    ('''
raise RuntimeError("boom")
''', r"imports: importing 'bad_\d' failed: RuntimeError: boom"),
])
def test_mistakes_in_a_user_module_are_one_line_at_config_check(body, message, tmp_path, cfg_file,
                                                                 mlpjit_main, request):
    name = f"bad_{request.node.callspec.indices['body']}"
    _module(tmp_path, name, "import numpy as np\nimport mlpjit\n" + body)
    layer_type = "broken_names" if "broken_names" in body else "broken_types" if "broken_types" in body else "dense"
    cfg = _cfg([name], {"type": layer_type} if layer_type != "dense" else {"type": "dense", "units": 4})
    r = mlpjit_main("config", "check", cfg_file(cfg))
    assert r.code == 2, r.out + r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    import re
    assert re.search(message, r.err), r.err


def test_an_unknown_module_is_one_line(cfg_file, mlpjit_main):
    r = mlpjit_main("config", "check", cfg_file(_cfg(["no_such_module_xyz"], {"type": "dense", "units": 2})))
    assert r.code == 2 and "imports: cannot import 'no_such_module_xyz'" in r.err and r.err.count("\n") == 1


def test_help_lists_the_registered_names(mlpjit_main):
    r = mlpjit_main("train", "--help")
    assert r.code == 0 and "batchnorm" in r.out and "tanh_linear" in r.out and "soft_f1" in r.out


def test_a_layer_defined_in_a_script_runs_compiled_and_cached(tmp_path):
    """(Cached under a hash of its kernels' sources: tests/test_startup.py.)"""
    script = tmp_path / "script.py"
    script.write_text(GOOD_LAYER.format(name="shift_main") + textwrap.dedent('''
        from pathlib import Path
        from mlpjit.config import config_from_dict, resolved_dict
        from mlpjit.trainer import Trainer
        cfg = resolved_dict(config_from_dict({
            "name": "m", "data": {"name": "spirals", "points": 40, "test_points": 10},
            "model": {"layers": [{"type": "dense", "units": 4}, {"type": "shift_main"}, {"type": "dense", "units": 3}]},
            "loss": "cross_entropy", "train": {"epochs": 1, "batch_size": 8}}))
        run = Path(__file__).parent / "run"
        run.mkdir()
        t = Trainer(cfg, run, progress=False)
        t.fit()
        print("compiled" if t.fast is not None else "layer by layer")
        '''))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "without caching" not in proc.stdout
    assert proc.stdout.strip().endswith("compiled")
