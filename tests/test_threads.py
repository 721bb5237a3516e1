"""Every core: the sharded step (a batch split into shards run on Numba's threads, BLAS
single-threaded inside each, the shards' gradients summed in shard order), the cores a process
may use, BLAS's threads, and the runs that share a machine (mlpjit/threads.py).

The sharded step computes the same sums as the layer-by-layer path, the batch's rows taken in
two parts: they agree to rounding.  Its result depends on the number of shards, never on the
number of threads that run them: that is tested bit for bit.
"""

import json
import os

import numpy as np
import pytest

import mlpjit
from mlpjit import threads as T
from mlpjit.step import CompiledStep, plan_shards
from mlpjit.optim import Adam, SGD

from test_step import _layer_path, _model, assert_matches_layer_path

pytestmark = pytest.mark.skipif(not T.blas_control(), reason="no BLAS whose threads can be set")


def _acc(model):
    return {"loss": 0.0, "correct": 0, "seen": 0, "grad_norm": 0.0, "batches": 0,
            "layer_norms": {n: 0.0 for n, _, _ in model.parameters() if n.endswith(".A")}}


def _opt(name, model):
    if name == "sgd":
        return SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    return Adam(model.parameters(), lr=0.01, weight_decay=1e-3)


# the three kinds of loss, both optimizers, the three clipping modes (a sharded step takes
# ~15 s to compile: the serial step's tests cover every case of test_step.CASES)
SHARDED = [(np.float32, "cross_entropy", 3, "classification", "sgd", {}),
           (np.float64, "binary_cross_entropy", 1, "classification", "adam", {"value": 0.05}),
           (np.float64, "mse", 2, "regression", "sgd", {"norm": 1.0})]


@pytest.mark.parametrize("dtype,loss_name,k,task,opt_name,clip", SHARDED)
def test_the_sharded_step_matches_the_layer_path(dtype, loss_name, k, task, opt_name, clip):
    rng = np.random.default_rng(0)
    n, bs = 53, 8                      # a last partial batch of 5: shards of 2 and 3 rows
    X = rng.standard_normal((n, 6))
    y = rng.integers(0, max(k, 2), n) if task == "classification" else rng.standard_normal((n, k))
    perm = rng.permutation(n)
    models = [_model(dtype, k) for _ in range(2)]
    losses = [mlpjit.losses.get(loss_name) for _ in range(2)]
    opts = [_opt(opt_name, m) for m in models]
    ref = _layer_path(models[0], losses[0], opts[0], X, y, perm, bs, 0.05, clip)
    step = CompiledStep(models[1], losses[1], opts[1], X, y, 1.0, task, bs, clip, threads=2, shards=2)
    assert step.plan.sharded and "prange" in step.source
    acc = _acc(models[1])
    assert step.run(perm, 0, 4, 0.05, acc) == (4, None)
    assert step.run(perm, 4, 7, 0.05, acc) == (3, None)
    assert acc["seen"] == n and acc["batches"] == 7
    assert_matches_layer_path(acc, ref, models, 1e-10 if dtype == np.float64 else 2e-5)


def test_a_hand_worked_two_shard_batch():
    """One batch of 4 rows, two shards of 2, a 2-1 linear layer under MSE: each shard's dA is
    Xₛᵀ·dSₛ with dSₛ = 2(Ŷₛ − Yₛ)/4 (the batch's 4, not the shard's 2), summed shard 0 then 1."""
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    model = mlpjit.Sequential([mlpjit.Dense(2, 1, dtype=np.float64, init={"name": "zeros"})])
    opt = SGD(model.parameters(), lr=0.5)
    step = CompiledStep(model, mlpjit.losses.get("mse"), opt, X, y, 1.0, "regression", 4, None,
                        threads=2, shards=2)
    acc = _acc(model)
    step.run(np.arange(4), 0, 1, 0.5, acc)
    # Ŷ = 0: dS = 2(0 − y)/4 = [-0.5, 0, -0.5, 0]; dA = Xᵀ·dS = [[-0.5 - 0.5], [-0.5]] = [[-1], [-0.5]]
    # db = -1; after SGD with lr 0.5: A = [[0.5], [0.25]], b = 0.5;  E = (1 + 0 + 1 + 0)/4 = 0.5
    np.testing.assert_array_equal(model.layers[0].A, [[0.5], [0.25]])
    np.testing.assert_array_equal(model.layers[0].b, [0.5])
    assert acc["loss"] == 0.5 * 4


def _conv_model(dtype=np.float32):
    return mlpjit.Sequential([
        mlpjit.Conv2D(1, 3, 3, activation="relu", dtype=dtype, seed=1),
        mlpjit.MaxPool2D(2), mlpjit.Flatten(), mlpjit.Dropout(0.25, seed=3),
        mlpjit.Dense(27, 4, dtype=dtype, seed=2)])


def _sharded_cnn_against_the_layer_path(seed, lr, clip, **opt):
    """A CNN trained 4 batches by a 3-shard step and by the layer path; returns the models."""
    rng = np.random.default_rng(seed)
    n, bs = 37, 12
    X = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, n)
    perm = rng.permutation(n)
    models = [_conv_model() for _ in range(2)]
    loss = [mlpjit.losses.get("cross_entropy") for _ in range(2)]
    opts = [SGD(m, lr=lr, momentum=0.9, **opt) for m in models]
    ref = _layer_path(models[0], loss[0], opts[0], X, y, perm, bs, lr, clip or {})
    step = CompiledStep(models[1], loss[1], opts[1], X.reshape(n, -1), y, 1.0, "classification", bs,
                        clip, input_shape=(1, 8, 8), threads=2, shards=3)
    assert step.plan.sharded
    acc = _acc(models[1])
    assert step.run(perm, 0, 4, lr, acc) == (4, None)
    assert_matches_layer_path(acc, ref, models, 2e-5)
    return models, step


def test_a_sharded_cnn_matches_the_layer_path():
    _sharded_cnn_against_the_layer_path(1, 0.05, {"norm": 1.0})


def test_a_sharded_step_with_max_norm_matches_the_layer_path():
    """Max-norm after the blocks' parallel update, on a convolution's channels (rows of A) and
    the dense layer's units (columns of A)."""
    models, step = _sharded_cnn_against_the_layer_path(2, 0.2, None, max_norm=0.6)
    assert "max_norm_rows" in step.source and "max_norm_columns" in step.source
    conv, dense = models[1].layers[0].A, models[1].layers[-1].A
    assert np.linalg.norm(conv.reshape(len(conv), -1), axis=1).max() <= 0.6 * (1 + 1e-6)
    assert np.linalg.norm(dense, axis=0).max() <= 0.6 * (1 + 1e-6)


def _train(threads, shards, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 20)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    model = mlpjit.Sequential([mlpjit.Dense(20, 64, activation="tanh", seed=1), mlpjit.Dropout(0.2, seed=2),
                               mlpjit.Dense(64, 5, seed=3)])
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = CompiledStep(model, mlpjit.losses.get("cross_entropy"), opt, X, y, 1.0, "classification",
                        32, {"norm": 1.0}, threads=threads, shards=shards)
    acc = _acc(model)
    step.run(rng.permutation(300), 0, 10, 0.05, acc)
    return model.to_arrays(), acc


def test_the_result_depends_on_the_shards_not_on_the_threads():
    a, acc_a = _train(threads=1, shards=2)     # two shards, run one after the other
    b, acc_b = _train(threads=2, shards=2)     # two shards on two threads
    assert acc_a == acc_b
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c, _ = _train(threads=2, shards=2)         # and again: run to run
    for k in a:
        np.testing.assert_array_equal(a[k], c[k], err_msg=k)


def test_models_that_cannot_be_split_by_rows_keep_a_serial_step():
    bn = mlpjit.Sequential([mlpjit.Dense(6, 32, seed=1), mlpjit.BatchNorm(32), mlpjit.Dense(32, 3, seed=2)])
    opt = SGD(bn.parameters(), lr=0.1)
    ce = mlpjit.losses.get("cross_entropy")
    assert plan_shards(bn, ce, opt, 512, (6,), 4) == 1            # BatchNorm couples the rows
    mlp = _model(np.float32, 3)
    f1 = mlpjit.losses.get("soft_f1")
    assert plan_shards(mlp, f1, SGD(mlp.parameters(), lr=0.1), 4096, (6,), 4) == 1   # so does soft F1
    assert plan_shards(mlp, ce, SGD(mlp.parameters(), lr=0.1), 8, (6,), 4) == 1      # too little work
    # a dense layer's work per parameter and row of the batch: 1 multiply-add forward, 1 for dA,
    # 1 for dX (none in the first layer): 128 rows give about 256 per parameter, enough for
    # 256 // SHARD_PER_PARAM = 2 shards; 64 rows for 1
    wide = mlpjit.Sequential([mlpjit.Dense(784, 512, seed=1), mlpjit.Dense(512, 10, seed=2)])
    assert plan_shards(wide, ce, SGD(wide.parameters(), lr=0.1), 128, (784,), 4) == 2
    assert plan_shards(wide, ce, SGD(wide.parameters(), lr=0.1), 128, (784,), 2) == 2
    assert plan_shards(wide, ce, SGD(wide.parameters(), lr=0.1), 64, (784,), 4) == 1
    assert plan_shards(wide, ce, SGD(wide.parameters(), lr=0.1), 128, (784,), 1) == 1
    cnn = mlpjit.Sequential([mlpjit.Conv2D(1, 32, 3, seed=1), mlpjit.MaxPool2D(2), mlpjit.Flatten(),
                             mlpjit.Dense(5408, 10, seed=2)])   # convolutions: much work per weight
    assert plan_shards(cnn, ce, SGD(cnn.parameters(), lr=0.1), 64, (1, 28, 28), 4) == 4


def test_a_sharded_run_resumes_exactly(mlpjit_main, cfg_file, helpers, tmp_path):
    cfg = helpers.spirals(points=600, epochs=3, batch_size=64, units=256, dropout=0.2,
                          schedule={"type": "cosine"})
    cfg["train"]["threads"] = 2
    path = cfg_file(cfg)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert mlpjit_main("train", path, "--out", straight, "-q").code == 0
    assert mlpjit_main("train", path, "--out", split, "--stop-after", 1, "-q").code == 75
    assert mlpjit_main("train", "--resume", split, "-q").code == 0
    assert (straight / "model.npz").read_bytes() == (split / "model.npz").read_bytes()


# --- the machine ------------------------------------------------------------------------------

def test_cores_follow_affinity_and_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(T, "_cgroup_quota", lambda: None)
    assert T.cores() == 6
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 2.5)     # "250000 100000" in cpu.max
    assert T.cores() == 3
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 0.5)
    assert T.cores() == 1
    assert T.resolve_threads("auto") == 1 and T.resolve_threads(4) == 4


def test_the_cores_are_shared_among_the_runs():
    me = os.getpid()
    assert T.share([(0.0, me)], total=8) == 8
    assert T.share([(0.0, 1), (1.0, me)], total=2) == 1
    assert T.share([(0.0, me), (1.0, 2)], total=3) == 2       # the oldest gets the remainder
    assert T.share([(0.0, 1), (1.0, me)], total=3) == 1
    assert T.share([(0.0, 1), (1.0, 2), (2.0, me)], total=2) == 1  # never less than one


def test_presence_sees_live_runs_and_forgets_dead_ones(tmp_path):
    (tmp_path / f"{os.getppid()}.json").write_text(json.dumps({"pid": os.getppid(), "started": 1.0}))
    (tmp_path / "999999999.json").write_text(json.dumps({"pid": 999999999, "started": 2.0}))
    with T.Presence(tmp_path) as p:
        assert (tmp_path / f"{os.getpid()}.json").exists()
        pids = [pid for _, pid in p.runs()]
        assert pids == [os.getppid(), os.getpid()]       # the parent is older, the dead one gone
        assert not (tmp_path / "999999999.json").exists()
        assert p.share(16) == max(1, T.cores() // 2)
    assert not (tmp_path / f"{os.getpid()}.json").exists()


def test_blas_threads_can_be_set_and_restored():
    before = T.blas_threads()
    with T.pools(1, sharded=True):
        assert T.blas_threads() == 1
    assert T.blas_threads() == before


def test_a_sharded_run_evaluates_on_one_blas_thread(monkeypatch, tmp_path, cfg_file, helpers):
    """Between epochs a sharded run evaluates with BLAS on one thread (OpenBLAS's pool threads,
    woken by a call on several, spin for 0.1-0.3 s and took the next epoch's cores); a serial run
    evaluates on its BLAS threads, here the two it was given."""
    import mlpjit.core
    import mlpjit.step
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    if T.blas_threads() is None:
        pytest.skip("no BLAS whose threads can be read")
    seen = []
    real = mlpjit.core.evaluate

    def evaluate(*args, **kwargs):
        seen.append(T.blas_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(mlpjit.core, "evaluate", evaluate)
    monkeypatch.setattr(T, "cores", lambda: 2)
    monkeypatch.setenv("MLPJIT_SHARE", "0")
    cfg = resolved_dict(load_config(cfg_file(helpers.spirals(points=256, batch_size=16, epochs=2))))
    cfg["train"]["threads"] = 2
    for sharded in (True, False):
        # the small network shards when the rule asks for no work at all
        monkeypatch.setattr(mlpjit.step, "SHARD_WORK", 1 if sharded else 2 ** 21)
        monkeypatch.setattr(mlpjit.step, "SHARD_PER_PARAM", 1 if sharded else 128)
        seen.clear()
        (tmp_path / str(sharded)).mkdir()
        trainer = Trainer(cfg, tmp_path / str(sharded), log=lambda *a, **k: None, progress=False)
        trainer.fit()
        assert trainer.fast.plan.sharded == sharded
        assert seen == [1 if sharded else 2] * 2, seen       # the test split, after each epoch


def test_a_run_started_beside_another_takes_its_share_of_blas_threads(monkeypatch, tmp_path, cfg_file, helpers):
    """Outside a sharded step BLAS's threads change its sums, so a run fixes them when it starts:
    its share of the cores among the runs then training (here: this test's parent process)."""
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    running = tmp_path / "cache" / "running"
    running.mkdir(parents=True)
    (running / f"{os.getppid()}.json").write_text(json.dumps({"pid": os.getppid(), "started": 1.0}))
    monkeypatch.setenv("MLPJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(T, "cores", lambda: 2)
    cfg = resolved_dict(load_config(cfg_file(helpers.spirals(points=200, epochs=1))))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    beside = Trainer(cfg, tmp_path / "a", log=lambda *a, **k: None, progress=False)
    beside.fit()
    assert beside.threads == 2 and beside.blas == 1      # two runs, two cores: one each
    cfg["train"]["threads"] = 2                         # a number given is taken as it is
    fixed = Trainer(cfg, tmp_path / "b", log=lambda *a, **k: None, progress=False)
    fixed.fit()
    assert fixed.blas == 2


def test_a_serial_step_keeps_one_blas_thread_unless_threads_are_given(monkeypatch, tmp_path, cfg_file, helpers):
    """A batch too small to split runs serially.  With threads chosen automatically its BLAS
    keeps one thread (a second run started beside it would otherwise lose its core); with
    train.threads given, the run uses the threads it was given."""
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.trainer import Trainer
    if not T.blas_control():
        pytest.skip("no BLAS whose threads can be set")
    monkeypatch.setenv("MLPJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLPJIT_SHARE", "0")
    monkeypatch.setattr(T, "cores", lambda: 2)
    cfg = resolved_dict(load_config(cfg_file(helpers.spirals(points=200, epochs=1))))
    runs = {}
    for threads in ("auto", 2):
        cfg["train"]["threads"] = threads
        (tmp_path / str(threads)).mkdir()
        t = Trainer(cfg, tmp_path / str(threads), log=lambda *a, **k: None, progress=False)
        t.fit()
        runs[threads] = t
    for t in runs.values():
        assert t.fast.shards == 1 and t.blas == 2        # serial: too little work to split
    assert runs["auto"].fast.run_threads == 1
    assert runs[2].fast.run_threads == 2


def test_threads_on_the_command_line(mlpjit_main, cfg_file, helpers, tmp_path):
    path = cfg_file(helpers.spirals(points=200, epochs=1))
    bad = mlpjit_main("train", path, "--threads", "0", "-q")
    assert bad.code == 2 and "--threads 0: must be an integer >= 1 or 'auto'" in bad.err
    assert mlpjit_main("train", path, "--threads", "1", "--out", tmp_path / "r", "-q").code == 0
    assert "threads: 1" in (tmp_path / "r" / "config.yaml").read_text()


def test_a_new_step_compiles_in_a_child_and_the_run_loads_it(tmp_path):
    """With an empty cache the step is compiled by a child process (the compiler's memory never
    sits beside the data); the training process then finds it in Numba's cache."""
    import subprocess
    import sys
    from conftest import proc_env
    script = (
        "import numpy as np, mlpjit\n"
        "import mlpjit.step\n"
        "from mlpjit.step import CompiledStep\n"
        "mlpjit.step.CHILD_COMPILE_BYTES = 0   # as for a data set of 16 MiB or more\n"
        "from mlpjit.optim import SGD\n"
        "m = mlpjit.Sequential([mlpjit.Dense(3, 4, activation='tanh', seed=1), mlpjit.Dense(4, 2, seed=2)])\n"
        "X = np.random.default_rng(0).standard_normal((16, 3)); y = np.arange(16) % 2\n"
        "notes = []\n"
        "st = CompiledStep(m, mlpjit.losses.get('cross_entropy'), SGD(m.parameters(), lr=0.1), X, y, 1.0,\n"
        "                  'classification', 4, None, notice=notes.append)\n"
        "acc = {'loss': 0.0, 'correct': 0, 'seen': 0, 'grad_norm': 0.0, 'batches': 0,\n"
        "       'layer_norms': {'0.A': 0.0, '1.A': 0.0}}\n"
        "st.run(np.arange(16), 0, 4, 0.1, acc)\n"
        "import json\n"
        "print(json.dumps([sum(st.fn.stats.cache_hits.values()), sum(st.fn.stats.cache_misses.values()), notes]))\n")
    env = dict(proc_env(), NUMBA_CACHE_DIR=str(tmp_path / "numba"), MLPJIT_CACHE_DIR=str(tmp_path / "mlpjit"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    hits, misses, notes = json.loads(out.splitlines()[-1])
    notes = [n for n in notes if not n.startswith("  still compiling")]   # a slow machine's ticks
    assert hits == 1 and misses == 0                     # this process loaded it, compiled nothing
    assert notes[0] == "compiling kernels for this model (first run only)…"
    assert notes[1].startswith("compiled in ") and "the next runs load it from" in notes[1]
