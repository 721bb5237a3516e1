"""The ``mlpjit`` command line: every command, help texts, user errors (one line, no traceback,
no run folder), evaluate / predict / gradcheck / config, and real subprocess runs."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import mlpjit
from mlpjit.cli import cli
from mlpjit.config import config_from_dict, load_config, resolved_dict

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MNIST_DIR = REPO / "data" / "mnist"


def invoke(*args):
    """Run the click group in-process (a success path); returns click's Result."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(res, *needles, out_dir=None, code=2):
    """One clear line naming the problem, non-zero exit, no traceback, no run folder."""
    assert res.code == code, (res.code, res.text)
    assert "Traceback" not in res.text
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if out_dir is not None:
        assert not Path(out_dir).exists()
    return lines[0]


def assert_usage_error(res, *needles, out_dir=None):
    """A click usage error (a bad option value): the same one-line rule as every user error."""
    return assert_user_error(res, *needles, out_dir=out_dir)


# --- help and version ------------------------------------------------------------------------

COMMANDS = [[], ["train"], ["evaluate"], ["predict"], ["gradcheck"], ["config"],
            ["config", "show"], ["config", "check"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "mlpjit")
def test_help_on_every_command_has_examples(cmd):
    res = invoke(*cmd, "--help")
    assert res.exit_code == 0
    assert "Usage: " in res.output
    assert "Example" in res.output, f"mlpjit {' '.join(cmd)} --help shows no example"
    assert "mlpjit " + " ".join(cmd) in res.output.split("Example", 1)[1]


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0
    assert mlpjit.__version__ in res.output and "mlpjit" in res.output


def test_python_dash_m_and_console_script(mlpjit_proc, tmp_path):
    res = mlpjit_proc("--version")
    assert res.code == 0 and mlpjit.__version__ in res.out
    script = Path(sys.executable).parent / "mlpjit"
    if not script.exists():
        script = shutil.which("mlpjit")
    if script is None:
        pytest.skip("no mlpjit console script installed")
    p = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0 and "train" in p.stdout and "evaluate" in p.stdout


# --- train: the shipped xor config, through a real subprocess ---------------------------------

def test_shipped_xor_config_reaches_100_percent(mlpjit_proc, tmp_path):
    out = tmp_path / "xor"
    res = mlpjit_proc("train", CONFIGS / "xor.yaml", "--out", out, "--quiet")
    assert res.code == 0, res.text
    assert "Traceback" not in res.text
    for name in ("config.yaml", "metrics.jsonl", "model.npz", "checkpoint.npz", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["test_accuracy"] == 1.0
    assert summary["epochs"] == 300
    assert "test_accuracy 100.00%" in res.out
    # --quiet prints only the final summary: no per-epoch lines
    assert "epoch 1/" not in res.out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 301))
    model = mlpjit.Sequential.load(out / "model.npz")
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    assert (model.logits(X)[:, 0] > 0).astype(int).tolist() == [0, 1, 1, 0]
    assert (model.predict(X)[:, 0] > 0.5).astype(int).tolist() == [0, 1, 1, 0]   # probabilities
    assert model.predict_classes(X).tolist() == [0, 1, 1, 0]


def test_train_prints_epoch_lines_and_run_folder(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    out = tmp_path / "run"
    res = mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", 3)
    assert res.code == 0, res.text
    assert f"run folder: {out}" in res.out
    assert "epoch 1/3" in res.out and "epoch 3/3" in res.out
    assert res.out.rstrip().endswith(f"run folder: {out}")
    assert "done: 3 epochs" in res.out


def test_train_without_config_or_resume(mlpjit_main, tmp_path):
    assert_user_error(mlpjit_main("train", "--out", tmp_path / "r"), "CONFIG", "--resume",
                      out_dir=tmp_path / "r")


def test_resume_with_other_options_is_refused(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    out = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", 1).code == 0
    assert_user_error(mlpjit_main("train", "--resume", out, "--seed", 3), "--resume")
    assert_user_error(mlpjit_main("train", "--resume", out, "--set", "optimizer.lr=1"), "--resume")


# --- bad inputs: one line, exit 2, no traceback, no run folder -------------------------------------

def _bad(mutate):
    def make(spirals_cfg):
        cfg = spirals_cfg()
        mutate(cfg)
        return cfg
    return make


def _set(path, value):
    def mutate(cfg):
        node = cfg
        *parents, last = path
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


def _del(path):
    def mutate(cfg):
        node = cfg
        *parents, last = path
        for key in parents:
            node = node[key]
        del node[last]
    return mutate


BAD_CONFIGS = {
    # id: (mutation of the small spirals config, [substrings of the one error line])
    "unknown_top_key": (lambda c: c.update(optimizr=c.pop("optimizer")),
                        ["unknown key 'optimizr'", "did you mean 'optimizer'"]),
    "unknown_nested_key": (_set(["train", "epoch"], 3), ["train", "'epoch'", "did you mean 'epochs'"]),
    "wrong_type": (_set(["train", "epochs"], "ten"), ["train.epochs", "must be an integer", "'ten'"]),
    "float_for_int": (_set(["model", "layers", 0, "units"], 8.5), ["model.layers.0.units", "8.5"]),
    "lr_zero": (_set(["optimizer", "lr"], 0), ["optimizer.lr", "> 0"]),
    "lr_negative": (_set(["optimizer", "lr"], -0.1), ["optimizer.lr", "-0.1"]),
    "dropout_p_1": (lambda c: c["model"]["layers"].insert(1, {"type": "dropout", "p": 1.0}),
                    ["model.layers.1.p", "1.0"]),
    "batch_size_0": (_set(["train", "batch_size"], 0), ["train.batch_size", "0"]),
    "batch_size_word": (_set(["train", "batch_size"], "all"), ["train.batch_size", "'all'"]),
    "epochs_0": (_set(["train", "epochs"], 0), ["train.epochs", ">= 1", "0"]),
    "unknown_layer_type": (_set(["model", "layers", 0, "type"], "dens"),
                           ["model.layers.0.type", "unknown layer type 'dens'", "'dense'"]),
    "unknown_activation": (_set(["model", "layers", 0, "activation"], "rleu"),
                           ["model.layers.0.activation", "'rleu'", "did you mean 'relu'"]),
    "unknown_loss": (_set(["loss"], "cross_entropi"), ["loss", "'cross_entropi'", "'cross_entropy'"]),
    "unknown_optimizer": (_set(["optimizer", "type"], "adamw"), ["optimizer", "'adamw'"]),
    "unknown_schedule": (_set(["schedule", "type"], "one_cycle"), ["schedule", "'one_cycle'"]),
    "unknown_data_source": (_set(["data", "name"], "cifar"), ["data", "'cifar'"]),
    "missing_loss": (_del(["loss"]), ["missing required key 'loss'"]),
    "last_layer_width": (_set(["model", "layers", 1, "units"], 4),
                         ["model.layers.1", "4 outputs", "3 classes"]),
    "regression_loss_on_classes": (_set(["loss"], "smape"), ["loss", "smape"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_values(case, mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    mutate, needles = BAD_CONFIGS[case]
    cfg = spirals_cfg()
    mutate(cfg)
    path = cfg_file(cfg)
    out = tmp_path / "run"
    line = assert_user_error(mlpjit_main("train", path, "--out", out), *needles, out_dir=out)
    if case not in ("last_layer_width", "regression_loss_on_classes"):
        assert str(path) in line          # names the file
    # config check fails the same way
    assert_user_error(mlpjit_main("config", "check", path), *needles)


def test_cross_entropy_on_one_unit_output(mlpjit_main, cfg_file, xor_cfg, sine_cfg, tmp_path):
    cfg = xor_cfg()
    cfg["loss"] = "cross_entropy"
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(cfg), "--out", out),
                      "model.layers.1", "1 outputs", "2 classes", out_dir=out)
    cfg = sine_cfg()
    cfg["loss"] = "cross_entropy"
    assert_user_error(mlpjit_main("train", cfg_file(cfg, "s.yaml"), "--out", out),
                      "loss", "cross_entropy", out_dir=out)


BAD_FILES = {
    "empty": ("", ["file is empty"]),
    "only_comments": ("# nothing\n", ["empty"]),
    "invalid_yaml": ("data: {name: xor\nmodel: [\n", ["invalid YAML", "line"]),
    "python_tag": ("!!python/object/apply:os.system ['echo pwned']\n",
                   ["YAML tag", "python/object/apply:os.system", "not allowed"]),
    "python_tag_nested": ("data: !!python/name:os.system {}\n", ["YAML tag", "not allowed"]),
    "top_level_list": ("- 1\n- 2\n", ["top level must be a mapping"]),
    "duplicate_key": ("loss: mse\nloss: cross_entropy\n", ["loss", "twice"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_config_files(case, mlpjit_main, cfg_file, tmp_path):
    text, needles = BAD_FILES[case]
    path = cfg_file(text)
    out = tmp_path / "run"
    line = assert_user_error(mlpjit_main("train", path, "--out", out), *needles, out_dir=out)
    assert str(path) in line
    assert not (tmp_path / "pwned").exists()


def test_missing_config_file(mlpjit_main, tmp_path):
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", tmp_path / "nope.yaml", "--out", out),
                      "nope.yaml", "no such file", out_dir=out)


def test_epochs_option_zero(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    out = tmp_path / "run"
    assert_usage_error(mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", 0),
                       "--epochs", "0", out_dir=out)
    assert_usage_error(mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", "x"),
                       "--epochs", "'x'", out_dir=out)


def test_set_path_that_does_not_exist(mlpjit_main, cfg_file, spirals_cfg, tmp_path):
    out = tmp_path / "run"
    path = cfg_file(spirals_cfg())
    assert_user_error(mlpjit_main("train", path, "--out", out, "--set", "optimizer.lrr=0.1"),
                      "--set optimizer.lrr=0.1", "no such key 'lrr'", "did you mean 'lr'",
                      out_dir=out)
    assert_user_error(mlpjit_main("train", path, "--out", out, "--set", "model.layers.7.units=3"),
                      "model.layers.7.units=3", "out of range", out_dir=out)
    assert_user_error(mlpjit_main("train", path, "--out", out, "--set", "optimizer.lr=-1"),
                      "--set optimizer.lr=-1", "optimizer.lr", "> 0", out_dir=out)
    assert_user_error(mlpjit_main("train", path, "--out", out, "--set", "nokey"),
                      "--set nokey", out_dir=out)


def test_out_pointing_to_non_empty_directory(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_user_error(mlpjit_main("train", cfg_file(xor_cfg()), "--out", out),
                      str(out), "not empty")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


def test_out_pointing_to_empty_directory_is_fine(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", 1).code == 0
    assert (out / "model.npz").is_file()


def test_resume_without_checkpoint(mlpjit_main, tmp_path, cfg_file, xor_cfg):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(mlpjit_main("train", "--resume", empty), str(empty), "no config.yaml")
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(cfg_file(xor_cfg()), half / "config.yaml")
    assert_user_error(mlpjit_main("train", "--resume", half), str(half), "no checkpoint.npz")
    assert sorted(p.name for p in half.iterdir()) == ["config.yaml"]
    assert_user_error(mlpjit_main("train", "--resume", tmp_path / "missing"), "missing")


def test_resume_of_corrupted_checkpoint(mlpjit_main, tmp_path, cfg_file, xor_cfg):
    out = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(xor_cfg()), "--out", out, "--epochs", 2).code == 0
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert_user_error(mlpjit_main("train", "--resume", out, "--epochs", 3), "checkpoint.npz")


# --- data files --------------------------------------------------------------------------------

def mnist_cfg(path, **data):
    return {"name": "mnist_tiny", "seed": 0,
            "data": {"name": "mnist", "path": str(path), **data},
            "model": {"layers": [{"type": "dense", "units": 16, "activation": "relu",
                                  "init": "he_normal"},
                                 {"type": "dense", "units": 10}]},
            "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "train": {"epochs": 2, "batch_size": 50}}


def test_mnist_path_to_empty_dir(mlpjit_main, cfg_file, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(mnist_cfg(empty)), "--out", out),
                      str(empty), "MNIST file not found", out_dir=out)
    assert_user_error(mlpjit_main("train", cfg_file(mnist_cfg(tmp_path / "absent")), "--out", out),
                      "absent", "not found", out_dir=out)


def test_mnist_truncated_gzip(mlpjit_main, cfg_file, mini_mnist, tmp_path):
    data_dir = mini_mnist()
    target = data_dir / "train-images-idx3-ubyte.gz"
    source = MNIST_DIR / "train-images-idx3-ubyte.gz"
    if source.is_file():   # a truncated copy of the real file
        with open(source, "rb") as f:
            target.write_bytes(f.read(200_000))
    else:
        raw = target.read_bytes()
        target.write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(mnist_cfg(data_dir)), "--out", out),
                      "train-images-idx3-ubyte.gz", "truncated", out_dir=out)


def test_mnist_not_gzip(mlpjit_main, cfg_file, mini_mnist, tmp_path):
    data_dir = mini_mnist()
    (data_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip data at all")
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(mnist_cfg(data_dir)), "--out", out),
                      "t10k-labels-idx1-ubyte.gz", "gzip", out_dir=out)


def test_mnist_labels_count_differs_from_images(mlpjit_main, cfg_file, mini_mnist, tmp_path):
    data_dir = mini_mnist(n_train=100, n_train_labels=99)
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(mnist_cfg(data_dir)), "--out", out),
                      "99 labels", "100 images", out_dir=out)


def test_mnist_subset_trains(mlpjit_main, cfg_file, mini_mnist, tmp_path, run_files):
    data_dir = mini_mnist(n_train=600, n_test=250)
    out = tmp_path / "run"
    cfg = mnist_cfg(data_dir, subset=500, test_subset=200, validation=100)
    res = mlpjit_main("train", cfg_file(cfg), "--out", out, "--quiet")
    assert res.code == 0, res.text
    rows = run_files.read_metrics(out)
    assert len(rows) == 2
    assert {"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(rows[-1])
    state, _ = run_files.checkpoint_state(out)
    assert state["acc"]["seen"] == 400                 # 500 - 100 validation
    assert rows[-1]["test_accuracy"] > 0.5             # the synthetic digits are learnable
    res = mlpjit_main("evaluate", out)
    assert "(200 examples)" in res.out and "(100 examples)" in res.out


def test_csv_with_nan(mlpjit_main, cfg_file, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("x1,x2,target\n0.1,0.2,a\n0.3,nan,b\n0.5,0.6,a\n")
    cfg = {"data": {"name": "csv", "train": str(csv), "target": "target"},
           "model": {"layers": [{"type": "dense", "units": 2}]}, "loss": "cross_entropy"}
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(cfg), "--out", out),
                      "train.csv", "x2", out_dir=out)


def test_csv_missing_file(mlpjit_main, cfg_file, tmp_path):
    cfg = {"data": {"name": "csv", "train": str(tmp_path / "gone.csv"), "target": "target"},
           "model": {"layers": [{"type": "dense", "units": 2}]}, "loss": "cross_entropy"}
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(cfg), "--out", out), "gone.csv", out_dir=out)


def test_csv_trains(mlpjit_main, cfg_file, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    csv = tmp_path / "train.csv"
    csv.write_text("x1,x2,target\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, labels)))
    cfg = {"data": {"name": "csv", "train": str(csv), "target": "target"},
           "model": {"layers": [{"type": "dense", "units": 2}]}, "loss": "cross_entropy",
           "optimizer": {"type": "sgd", "lr": 0.5}, "train": {"epochs": 20, "batch_size": 8}}
    out = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", out, "-q").code == 0
    res = mlpjit_main("predict", out / "model.npz",
                      _csv(tmp_path / "in.csv", [[3.0, 3.0], [-3.0, -3.0]]))
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert lines[0] == "class,p_neg,p_pos"
    assert lines[1].startswith("pos,") and lines[2].startswith("neg,")


def _csv(path, rows, header=None):
    text = (",".join(header) + "\n" if header else "") + "".join(
        ",".join(str(v) for v in r) + "\n" for r in rows)
    Path(path).write_text(text)
    return path


# --- evaluate / predict ----------------------------------------------------------------------

@pytest.fixture
def spirals_run(tmp_path, cfg_file, spirals_cfg, mlpjit_main):
    cfg = spirals_cfg(points=90, test_points=45, validation=15, epochs=4, dropout=0.1)
    path = cfg_file(cfg, "spirals.yaml")
    out = tmp_path / "spirals_run"
    res = mlpjit_main("train", path, "--out", out, "--quiet")
    assert res.code == 0, res.text
    return out, path


def test_evaluate_run_folder_matches_last_metrics(spirals_run, mlpjit_main, run_files):
    out, cfg_path = spirals_run
    last = run_files.read_metrics(out)[-1]
    res = mlpjit_main("evaluate", out)
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert (f"val_loss {last['val_loss']:.4f}  val_accuracy {100 * last['val_accuracy']:.2f}%"
            f"  (15 examples)") in lines
    assert (f"test_loss {last['test_loss']:.4f}  test_accuracy {100 * last['test_accuracy']:.2f}%"
            f"  (45 examples)") in lines
    # the model file with --data CONFIG gives the same figures
    res2 = mlpjit_main("evaluate", out / "model.npz", "--data", cfg_path)
    assert res2.code == 0 and res2.out == res.out


def test_evaluate_values_equal_recomputed(spirals_run):
    """The printed test loss is the mean loss of the saved model over the test set."""
    from mlpjit import losses
    from mlpjit.data import load_dataset
    out, cfg_path = spirals_run
    cfg = resolved_dict(load_config(out / "config.yaml"))
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    model = mlpjit.Sequential.load(out / "model.npz")
    loss = losses.get("cross_entropy")
    value = loss.forward(model.logits(ds.X_test), ds.y_test)   # raw inputs: the model scales them
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert value == pytest.approx(metrics[-1]["test_loss"], rel=1e-5)


def test_evaluate_model_file_without_data(spirals_run, mlpjit_main):
    out, _ = spirals_run
    assert_user_error(mlpjit_main("evaluate", out / "model.npz"), "model.npz", "--data")


def test_evaluate_missing_targets(mlpjit_main, tmp_path):
    assert_user_error(mlpjit_main("evaluate", tmp_path / "nothing.npz", "--data", "xor"),
                      "nothing.npz")
    (tmp_path / "emptyrun").mkdir()
    assert_user_error(mlpjit_main("evaluate", tmp_path / "emptyrun"), "emptyrun", "model.npz")


def test_evaluate_data_spec_of_wrong_width(spirals_run, mlpjit_main):
    out, _ = spirals_run
    res = mlpjit_main("evaluate", out / "model.npz", "--data", "sine")
    assert res.code != 0 and "Traceback" not in res.text
    assert res.err.startswith("error: ")


def test_predict_npy_and_csv(spirals_run, mlpjit_main, tmp_path):
    out, _ = spirals_run
    model = mlpjit.Sequential.load(out / "model.npz")
    X = np.array([[0.1, 0.2], [-0.5, 0.3], [0.7, -0.7], [0.0, 0.0]])
    np.save(tmp_path / "x.npy", X)
    _csv(tmp_path / "x.csv", X.tolist())
    _csv(tmp_path / "xh.csv", X.tolist(), header=["a", "b"])
    logits = model.logits(X.astype(np.float32))
    expected_p = np.exp(logits - logits.max(1, keepdims=True))
    expected_p /= expected_p.sum(1, keepdims=True)
    # Python and the CLI predict alike: probabilities, on the same raw inputs
    np.testing.assert_allclose(model.predict(X), expected_p, atol=1e-6)
    assert model.predict_classes(X).tolist() == logits.argmax(1).tolist()

    # stdout, from .npy
    res = mlpjit_main("predict", out / "model.npz", tmp_path / "x.npy")
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert lines[0] == "class,p_0,p_1,p_2"
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert table.shape == (4, 4)
    np.testing.assert_allclose(table[:, 1:].sum(1), 1.0, atol=1e-5)
    assert table[:, 0].astype(int).tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(table[:, 1:], expected_p, atol=1e-5)

    # --out FILE.csv from .csv (with and without a header row) gives the same
    for src in ("x.csv", "xh.csv"):
        dest = tmp_path / f"pred_{src}"
        res = mlpjit_main("predict", out / "model.npz", tmp_path / src, "--out", dest)
        assert res.code == 0, res.text
        assert dest.read_text() == "\n".join(lines) + "\n"

    # --out FILE.npy: class then probabilities
    res = mlpjit_main("predict", out / "model.npz", tmp_path / "x.csv", "--out", tmp_path / "p.npy")
    assert res.code == 0, res.text
    arr = np.load(tmp_path / "p.npy")
    assert arr.shape == (4, 4)
    np.testing.assert_allclose(arr[:, 1:].sum(1), 1.0, atol=1e-6)
    assert arr[:, 0].astype(int).tolist() == logits.argmax(1).tolist()


def test_predict_binary_model_gives_two_probabilities(mlpjit_main, cfg_file, tmp_path):
    out = tmp_path / "xor"
    assert mlpjit_main("train", CONFIGS / "xor.yaml", "--out", out, "-q").code == 0
    x = _csv(tmp_path / "x.csv", [[0, 0], [0, 1], [1, 0], [1, 1]])
    res = mlpjit_main("predict", out / "model.npz", x)
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert lines[0] == "class,p_0,p_1"
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert table[:, 0].tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(table[:, 1:].sum(1), 1.0, atol=1e-5)


def test_predict_errors(spirals_run, mlpjit_main, tmp_path):
    out, _ = spirals_run
    model = out / "model.npz"
    assert_user_error(mlpjit_main("predict", model, tmp_path / "missing.npy"),
                      "missing.npy", "no such file")
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    assert_user_error(mlpjit_main("predict", model, tmp_path / "wide.npy"),
                      "wide.npy", "5 values", "takes 2")
    _csv(tmp_path / "wide.csv", [[1, 2, 3]])
    assert_user_error(mlpjit_main("predict", model, tmp_path / "wide.csv"), "wide.csv", "3 values")
    _csv(tmp_path / "nan.csv", [[1, 2], [float("nan"), 1]])
    assert_user_error(mlpjit_main("predict", model, tmp_path / "nan.csv"), "nan.csv", "NaN")
    (tmp_path / "x.txt").write_text("1,2\n")
    assert_user_error(mlpjit_main("predict", model, tmp_path / "x.txt"), "x.txt", ".npy or .csv")
    assert_user_error(mlpjit_main("predict", tmp_path / "nomodel.npz", tmp_path / "wide.csv"),
                      "nomodel.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert_user_error(mlpjit_main("predict", tmp_path / "junk.npz", tmp_path / "wide.csv"),
                      "junk.npz")


# --- gradcheck -----------------------------------------------------------------------------------

def test_gradcheck_config(mlpjit_main, cfg_file, spirals_cfg):
    cfg = spirals_cfg(dropout=0.2)
    res = mlpjit_main("gradcheck", cfg_file(cfg))
    assert res.code == 0, res.text
    errors = dict(re.findall(r"^\s*(\S+)\s+([0-9.e+-]+)\s*$", res.out, flags=re.M))
    assert {"0.A", "0.b", "2.A", "2.b"} <= set(errors), res.out
    assert max(float(v) for v in errors.values()) <= 1e-5
    m = re.search(r"worst relative error ([0-9.e+-]+) \(OK", res.out)
    assert m and float(m.group(1)) <= 1e-5


def test_gradcheck_shipped_configs(mlpjit_main):
    for name in ("xor.yaml", "sine.yaml", "mnist_cnn.yaml"):
        res = mlpjit_main("gradcheck", CONFIGS / name)
        assert res.code == 0, res.text
        assert "OK" in res.out


def test_gradcheck_on_raw_mnist_meets_relu_kinks(mlpjit_main):
    # blank borders: conv pre-activations equal the bias, 0 at init, exactly the ReLU kink, and
    # max-pool windows tie; the one-sided derivatives there fail a central difference
    res = mlpjit_main("gradcheck", CONFIGS / "mnist_cnn.yaml", "--jitter", "0")
    assert res.code == 1 and "FAILED" in res.out
    assert re.search(r"^\s+0\.A\s+\S+\s*$", res.out, flags=re.M)   # the weights still agree


def test_gradcheck_bad_config(mlpjit_main, cfg_file):
    assert_user_error(mlpjit_main("gradcheck", cfg_file("loss: [\n")), "invalid YAML")


# --- config show / check -------------------------------------------------------------------------

SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_config_show_round_trips(name, mlpjit_main):
    res = mlpjit_main("config", "show", CONFIGS / name)
    assert res.code == 0, res.text
    shown = yaml.safe_load(res.out)
    resolved = resolved_dict(load_config(CONFIGS / name))
    assert shown == resolved
    assert resolved_dict(config_from_dict(shown)) == resolved


def test_config_show_with_set(mlpjit_main, cfg_file, spirals_cfg):
    res = mlpjit_main("config", "show", cfg_file(spirals_cfg()), "--set", "optimizer.lr=0.25",
                      "--set", "clip.norm=2")
    assert res.code == 0, res.text
    shown = yaml.safe_load(res.out)
    assert shown["optimizer"]["lr"] == 0.25 and shown["clip"] == {"norm": 2.0}
    assert shown["train"]["eval_batch_size"] == 1000      # a default, filled in


@pytest.mark.parametrize("name", SHIPPED)
def test_config_check_shipped(name, mlpjit_main):
    text = (CONFIGS / name).read_text()
    if "mnist" in text and not MNIST_DIR.is_dir():
        pytest.skip("MNIST files not present")
    res = mlpjit_main("config", "check", CONFIGS / name)
    assert res.code == 0, res.text
    assert res.out.startswith(f"{CONFIGS / name}: OK")


def test_config_check_bad(mlpjit_main, cfg_file, spirals_cfg):
    cfg = spirals_cfg()
    cfg["optimizer"]["momentum"] = 1.5
    path = cfg_file(cfg)
    assert_user_error(mlpjit_main("config", "check", path), str(path), "optimizer.momentum", "1.5")
    assert_user_error(mlpjit_main("config", "show", path), "optimizer.momentum")


# --- user errors in a real process -----------------------------------------------------------------

def test_user_error_in_subprocess(mlpjit_proc, cfg_file, spirals_cfg, tmp_path):
    cfg = spirals_cfg()
    cfg["optimizer"]["lr"] = -1
    out = tmp_path / "run"
    res = mlpjit_proc("train", cfg_file(cfg), "--out", out)
    assert_user_error(res, "optimizer.lr", out_dir=out)
    assert res.out == ""
    empty = tmp_path / "nodata"
    empty.mkdir()
    res = mlpjit_proc("train", cfg_file(mnist_cfg(empty), "m.yaml"), "--out", out)
    assert_user_error(res, "MNIST file not found", out_dir=out)


# --- more bad paths and the default run folder -------------------------------------------------

def test_out_below_a_file(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert_user_error(mlpjit_main("train", cfg_file(xor_cfg()), "--out", blocker / "sub"),
                      "--out", "file.txt", out_dir=blocker / "sub")
    assert_usage_error(mlpjit_main("train", cfg_file(xor_cfg()), "--out", blocker),
                       "--out", "file.txt", "is a file")
    assert blocker.read_text() == "x"


def test_predict_out_into_missing_folder(spirals_run, mlpjit_main, tmp_path):
    out, _ = spirals_run
    x = _csv(tmp_path / "x.csv", [[0.1, 0.2]])
    assert_user_error(mlpjit_main("predict", out / "model.npz", x, "--out",
                                  tmp_path / "nodir" / "p.csv"), "nodir", "--out")
    assert not (tmp_path / "nodir").exists()


def test_default_run_folder_is_under_runs_in_cwd(mlpjit_main, cfg_file, xor_cfg, tmp_path,
                                                  monkeypatch):
    path = cfg_file(xor_cfg())
    monkeypatch.chdir(tmp_path)
    ok1 = mlpjit_main("train", path, "--epochs", 1, "-q")
    ok2 = mlpjit_main("train", path, "--epochs", 1, "-q")
    assert ok1.code == 0 and ok2.code == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(re.fullmatch(r"xor_test-\d{8}-\d{6}(-\d+)?", r) for r in runs)
    assert f"run folder: runs/{runs[0]}" in ok1.out + ok2.out


def test_early_stopping_on_accuracy_of_a_regression(mlpjit_main, cfg_file, sine_cfg, tmp_path):
    cfg = sine_cfg()
    cfg["train"]["early_stopping"] = {"metric": "test_accuracy"}
    out = tmp_path / "run"
    assert_user_error(mlpjit_main("train", cfg_file(cfg), "--out", out),
                      "train.early_stopping.metric", "test_accuracy", out_dir=out)


# --- evaluate --data specs, regression models ---------------------------------------------------

def test_evaluate_with_a_data_spec(spirals_run, mlpjit_main, run_files):
    out, _ = spirals_run
    last = run_files.read_metrics(out)[-1]
    res = mlpjit_main("evaluate", out / "model.npz", "--data",
                      "spirals,points=90,test_points=45,validation=15")
    assert res.code == 0, res.text
    assert f"test_loss {last['test_loss']:.4f}" in res.out
    assert_user_error(mlpjit_main("evaluate", out / "model.npz", "--data", "spirals,points"),
                      "--data")


def test_evaluate_and_predict_regression(mlpjit_main, cfg_file, sine_cfg, tmp_path, run_files):
    out = tmp_path / "sine"
    assert mlpjit_main("train", cfg_file(sine_cfg()), "--out", out, "-q").code == 0
    last = run_files.read_metrics(out)[-1]
    res = mlpjit_main("evaluate", out)
    assert res.code == 0, res.text
    assert res.out.splitlines()[0] == f"test_loss {last['test_loss']:.4f}  (20 examples)"
    assert "on the test split: MAE" in res.out
    np.save(tmp_path / "x.npy", np.array([[0.0], [1.0], [-2.0]]))
    res = mlpjit_main("predict", out / "model.npz", tmp_path / "x.npy")
    assert res.code == 0, res.text
    lines = res.out.splitlines()
    assert lines[0] == "y0" and len(lines) == 4
    model = mlpjit.Sequential.load(out / "model.npz")
    expected = model.predict(np.array([[0.0], [1.0], [-2.0]], np.float32))[:, 0]
    np.testing.assert_allclose([float(v) for v in lines[1:]], expected, rtol=1e-5)


def test_evaluate_a_model_on_data_with_another_number_of_classes(mlpjit_main, cfg_file, helpers, tmp_path):
    path = cfg_file(helpers.spirals(epochs=1))                           # three classes
    assert mlpjit_main("train", path, "--out", tmp_path / "r", "-q").code == 0
    cfg = helpers.spirals(epochs=1)
    cfg["data"]["classes"] = 2
    two = cfg_file(cfg, "two.yaml")
    assert_user_error(mlpjit_main("evaluate", tmp_path / "r" / "model.npz", "--data", two),
                      "the model has 3 outputs but the data (--data", "has 2 classes")


def test_a_metrics_file_that_is_not_text_is_one_line(mlpjit_main, cfg_file, helpers, tmp_path):
    assert mlpjit_main("train", cfg_file(helpers.spirals(epochs=1)), "--out", tmp_path / "r", "-q").code == 0
    (tmp_path / "r" / "metrics.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    pytest.importorskip("matplotlib")
    assert_user_error(mlpjit_main("report", tmp_path / "r"), "metrics.jsonl: cannot read")


def test_test_figures_print_at_the_end_and_never_choose(mlpjit_main, cfg_file, helpers, tmp_path):
    cfg = helpers.spirals(epochs=2, validation=10)
    r = mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "a")
    epoch_lines = [line for line in r.out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("val_loss" in x and "test_" not in x for x in epoch_lines)
    assert "test_accuracy" in r.out.splitlines()[-2]                    # the final line
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all("test_loss" in row for row in rows)                       # kept every epoch
    r = mlpjit_main("train", cfg_file(cfg), "--set", "train.print_test=every_epoch", "--out", tmp_path / "b")
    assert all("test_loss" in x for x in r.out.splitlines() if x.startswith("epoch "))
    cfg["train"]["early_stopping"] = {"metric": "test_loss"}
    assert_user_error(mlpjit_main("train", cfg_file(cfg, "es.yaml"), "--out", tmp_path / "c"),
                      "train.early_stopping.metric: 'test_loss' would choose when to stop by the test split",
                      "use val_loss", out_dir=tmp_path / "c")


def test_the_first_hours_small_things(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    import inspect
    # help() shows plain types, the validators stay behind the constructor
    assert str(inspect.signature(mlpjit.optim.SGD)) == \
        "(params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, " \
        "weight_decay: float = 0.0, max_norm: Optional[float] = None, dampening: float = 0.0)"
    with pytest.raises(ValueError, match=r"SGD: lr must be > 0 \(got -1\)"):
        mlpjit.optim.SGD([], lr=-1)
    # `mlpjit config` alone: its help, exit 0, no "error:"
    r = mlpjit_main("config")
    assert r.code == 0 and r.out.startswith("Usage: mlpjit config") and "error" not in r.err
    # one epoch, not "1 epochs"
    r = mlpjit_main("train", cfg_file(xor_cfg()), "--epochs", 1, "--out", tmp_path / "one")
    assert "done: 1 epoch in" in r.out, r.out
    # explain shows plain text, not reST's double backticks
    r = mlpjit_main("explain", cfg_file(xor_cfg()))
    assert r.code == 0 and "``" not in r.out and ":class:" not in r.out
