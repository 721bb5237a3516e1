"""``mlpjit plot`` and the plotting API (mlpjit.plot): learning curves, gradient norms, errors.

The figures need matplotlib (the optional extra ``mlpjit[plot]``); tests that draw skip without
it.  Three tiny runs are trained once per module: two spirals runs (classification, with a
validation split) and one sine run (regression: no accuracy).
"""

import json
import struct
import sys
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG file, from its IHDR chunk; asserts the file is a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:-4] == b"\x00\x00\x00\x00IEND", f"{path}: truncated PNG (no IEND chunk)"
    return width, height


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


@pytest.fixture(scope="module", autouse=True)
def plot_command():
    """Make sure the group has the ``plot`` command (cli.py registers it; idempotent)."""
    from mlpjit.cli import cli
    from mlpjit.plot import plot
    if "plot" not in cli.commands:
        cli.add_command(plot)
    yield


def _train(cfg_path, out):
    from mlpjit.cli import main
    try:
        main(["train", str(cfg_path), "--out", str(out), "-q"])
    except SystemExit as e:
        assert not e.code, f"training {cfg_path} failed with exit code {e.code}"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, helpers):
    """Run folders: spirals_a, spirals_b (classification), sine (regression)."""
    base = tmp_path_factory.mktemp("plot_runs")
    sine = {
        "name": "sine_test", "seed": 0,
        "data": {"name": "sine", "points": 60, "test_points": 20},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                             {"type": "dense", "units": 1}]},
        "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 10},
    }
    cfgs = {
        "spirals_a": helpers.spirals(validation=15, epochs=4),
        "spirals_b": helpers.spirals(validation=15, epochs=3, seed=1,
                                     optimizer={"type": "adam", "lr": 0.01}),
        "sine": sine,
    }
    out = {}
    for name, cfg in cfgs.items():
        path = helpers.write_cfg(base / f"{name}.yaml", cfg)
        out[name] = _train(path, base / name)
    return out


def _one_line_error(result, *fragments):
    assert result.code == 2, result.text
    assert result.out == ""
    err = result.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.text
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- figures -----------------------------------------------------------------------------

def test_plot_two_runs_default_out(mpl, runs, mlpjit_main):
    a, b = runs["spirals_a"], runs["spirals_b"]
    r = mlpjit_main("plot", a, b)
    assert r.code == 0, r.text
    out = a / "plot.png"
    assert str(out) in r.out
    assert png_size(out) == (1000, 450)
    # written atomically: no temporary file left beside it
    assert not [p for p in a.iterdir() if p.name.endswith(".tmp")]


def test_plot_metric_seconds_size(mpl, runs, mlpjit_main, tmp_path):
    out = tmp_path / "acc.png"
    r = mlpjit_main("plot", runs["spirals_a"], runs["spirals_b"], "--metric", "test_accuracy",
                    "--x", "seconds", "--out", out, "--size", "333x257", "--title", "accuracy")
    assert r.code == 0, r.text
    assert png_size(out) == (333, 257)


def test_plot_regression_width_height_dpi(mpl, runs, mlpjit_main, tmp_path):
    out = tmp_path / "sine.png"
    r = mlpjit_main("plot", runs["sine"], "--out", out, "--width", "640", "--height", "480",
                    "--dpi", "150")
    assert r.code == 0, r.text
    assert png_size(out) == (640, 480)


def test_plot_grad_norms(mpl, runs, mlpjit_main, tmp_path):
    run = runs["spirals_a"]
    r = mlpjit_main("plot", "--grad-norms", run)
    assert r.code == 0, r.text
    assert png_size(run / "grad_norms.png") == (1000, 450)
    out = tmp_path / "g.png"
    r = mlpjit_main("plot", "--grad-norms", run, "--out", out, "--size", "500x300",
                    "--x", "seconds")
    assert r.code == 0, r.text
    assert png_size(out) == (500, 300)


def test_python_api(mpl, runs, tmp_path):
    from mlpjit.plot import available_metrics, plot_grad_norms, plot_lines, plot_runs
    from mlpjit.trainer import read_metrics

    p = plot_runs([runs["spirals_a"], runs["sine"]], tmp_path / "mixed.png", x="seconds",
                  size=(800, 400))
    assert p == tmp_path / "mixed.png" and png_size(p) == (800, 400)
    p = plot_grad_norms(runs["sine"], tmp_path / "g.png", title="sine")
    assert png_size(p) == (1000, 450)
    p = plot_lines({"batch 1": ([1, 2, 3], [0.9, 0.5, 0.2]), "batch 64": ([1, 2, 3], [1, 0.8, 0.7])},
                   tmp_path / "lines.png", "epoch", "loss", logy=True, title="t", size=(400, 300))
    assert png_size(p) == (400, 300)
    names = available_metrics(read_metrics(runs["spirals_a"]))
    assert {"train_loss", "val_accuracy", "test_accuracy", "lr", "grad_norm"} <= set(names)
    assert "epoch" not in names and "grad_norms" not in names


# --- errors --------------------------------------------------------------------------------

def test_not_a_run_folder(runs, mlpjit_main, tmp_path):
    _one_line_error(mlpjit_main("plot", tmp_path), "not a run folder", "metrics.jsonl")
    _one_line_error(mlpjit_main("plot", tmp_path / "missing"), "missing")


def test_empty_metrics(runs, mlpjit_main, tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    _one_line_error(mlpjit_main("plot", runs["spirals_a"], tmp_path), "empty metrics")


def test_unknown_metric_lists_available(runs, mlpjit_main):
    err = _one_line_error(mlpjit_main("plot", runs["spirals_a"], "--metric", "accuracy"),
                          "unknown metric 'accuracy'", "available:", "test_accuracy", "val_loss")
    available = err.split("available: ")[1].rstrip(")").split(", ")
    assert "grad_norm" in available and "grad_norms" not in available and "epoch" not in available
    # a regression run has no accuracy
    _one_line_error(mlpjit_main("plot", runs["spirals_a"], runs["sine"], "--metric",
                                "test_accuracy"), "unknown metric", "test_loss")


def test_grad_norms_errors(runs, mlpjit_main, tmp_path):
    _one_line_error(mlpjit_main("plot", "--grad-norms", runs["spirals_a"], runs["spirals_b"]),
                    "exactly one run folder")
    _one_line_error(mlpjit_main("plot", "--grad-norms", runs["sine"], "--metric", "lr"),
                    "--metric")
    rows = [json.loads(line) for line in (runs["sine"] / "metrics.jsonl").read_text().splitlines()]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "grad_norms"}) + "\n" for r in rows))
    _one_line_error(mlpjit_main("plot", "--grad-norms", tmp_path), "grad_norms")


def test_option_errors(runs, mlpjit_main, tmp_path):
    run = runs["spirals_a"]
    _one_line_error(mlpjit_main("plot", run, "--size", "big"), "--size", "WIDTHxHEIGHT")
    _one_line_error(mlpjit_main("plot", run, "--size", "10x10"), "width 10")
    _one_line_error(mlpjit_main("plot", run, "--size", "500x400", "--width", "600"), "not both")
    _one_line_error(mlpjit_main("plot", run, "--out", tmp_path / "x.pdf"), ".png")
    _one_line_error(mlpjit_main("plot", run, "--out", tmp_path / "no" / "x.png"), "does not exist")
    _one_line_error(mlpjit_main("plot", run, "--x", "minutes"), "--x")
    _one_line_error(mlpjit_main("plot"), "RUN_DIR")


def test_seconds_without_epoch_seconds(runs, mlpjit_main, tmp_path):
    rows = [json.loads(line) for line in (runs["sine"] / "metrics.jsonl").read_text().splitlines()]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "epoch_seconds"}) + "\n"
                for r in rows))
    _one_line_error(mlpjit_main("plot", tmp_path, "--x", "seconds"), "epoch_seconds")


def test_matplotlib_missing(runs, mlpjit_main, tmp_path, monkeypatch):
    # a None entry in sys.modules makes the import fail as if the package were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "p.png"
    _one_line_error(mlpjit_main("plot", runs["sine"], "--out", out),
                    "matplotlib", 'pip install "mlpjit[plot]"')
    assert not out.exists()
