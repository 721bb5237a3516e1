"""``mlpjit sweep``: grids x seeds as ordinary runs, sweep.csv, skipping finished runs,
failed runs, --jobs, and one-line errors for bad --grid items.  Real runs, no mocks."""

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import click
import pytest
import yaml

from mlpjit.errors import MlpjitError
from mlpjit.sweep import parse_grid, run_sweep, summary_table, sweep

GRID = ["--grid", "optimizer.lr=0.01,0.1", "--grid", "model.layers.0.activation=tanh,relu",
        "--seeds", "2"]
NAMES = sorted(f"optimizer.lr={lr},model.layers.0.activation={act},seed={s}"
               for lr in ("0.01", "0.1") for act in ("tanh", "relu") for s in (0, 1))
METRICS = ["train_loss", "train_accuracy", "test_loss", "test_accuracy"]


def invoke(capsys, *args):
    """Run ``mlpjit sweep ARGS`` in-process with the error handling of ``mlpjit.cli.main``;
    returns (exit code, stdout, stderr)."""
    group = click.Group("mlpjit", commands=[sweep])
    capsys.readouterr()
    try:
        group.main(args=["sweep", *[str(a) for a in args]], prog_name="mlpjit", standalone_mode=False)
        code = 0
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        code = e.exit_code
    except MlpjitError as e:
        click.echo(f"error: {e}", err=True)
        code = 2
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_folders(sweep_dir):
    return sorted(p.name for p in Path(sweep_dir).iterdir() if p.is_dir())


def without_timing(rows):
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]


@pytest.fixture(scope="module")
def spirals_file(tmp_path_factory, helpers):
    return helpers.write_cfg(tmp_path_factory.mktemp("cfg") / "spirals.yaml",
                             helpers.spirals(points=60, test_points=30, epochs=2))


@pytest.fixture(scope="module")
def base_sweep(tmp_path_factory, spirals_file):
    """The 2x2 grid with 2 seeds, --jobs 1, run once for the module; tests copy it to change it."""
    out = tmp_path_factory.mktemp("sweeps") / "base"
    return (out, *sweep_once(spirals_file, *GRID, "--out", out))


def sweep_once(*args):
    """(exit code, stdout) of ``mlpjit sweep ARGS`` in-process, for module-scoped fixtures
    (capsys is function-scoped)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ctx = sweep.make_context("sweep", [str(a) for a in args])
        try:
            sweep.invoke(ctx)
            code = 0
        except SystemExit as e:
            code = e.code
    return code, buf.getvalue()


def test_grid_times_seeds_gives_one_run_folder_and_csv_row_each(base_sweep):
    out, code, text = base_sweep
    assert code == 0, text
    assert run_folders(out) == NAMES
    for name in NAMES:
        assert {"config.yaml", "metrics.jsonl", "checkpoint.npz", "model.npz", "summary.json"} <= \
            {p.name for p in (out / name).iterdir()}
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert f"optimizer.lr={cfg['optimizer']['lr']:g}" in name
        assert f"activation={cfg['model']['layers'][0]['activation']}," in name
        assert name.endswith(f"seed={cfg['seed']}")
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == 8
    assert list(rows[0]) == ["optimizer.lr", "model.layers.0.activation", "seed", "status",
                             *METRICS, "epochs", "train_seconds", "run_dir", "error"]
    assert [(r["optimizer.lr"], r["model.layers.0.activation"], r["seed"]) for r in rows] == \
        [(lr, act, s) for lr in ("0.01", "0.1") for act in ("tanh", "relu") for s in ("0", "1")]
    for r in rows:
        assert r["status"] == "ok" and r["error"] == "" and r["epochs"] == "2"
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        for m in METRICS:
            assert float(r[m]) == summary["final"][m]
        assert float(r["train_seconds"]) == summary["train_seconds"]
    # different seeds give different runs
    assert rows[0]["train_loss"] != rows[1]["train_loss"]
    meta = yaml.safe_load((out / "sweep.yaml").read_text())
    assert meta["grids"] == {"optimizer.lr": [0.01, 0.1], "model.layers.0.activation": ["tanh", "relu"]}
    assert meta["seeds"] == 2 and Path(meta["config"]).name == "spirals.yaml"
    # the terminal summary: one line per grid point, mean ± std over the seeds
    table = [line for line in text.splitlines() if line.startswith(("0.01 ", "0.1 "))]
    assert len(table) == 4 and all("2/2" in line and "±" in line and "%" in line for line in table)
    assert "test_accuracy" in text and "8 ok, 0 failed" in text


def test_rerun_skips_finished_runs(base_sweep, spirals_file, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(base_sweep[0], out)
    before = (out / "sweep.csv").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    code, text, err = invoke(capsys, spirals_file, *GRID, "--out", out)
    assert code == 0, err
    assert "skipping 8 finished runs" in text and "[1/" not in text
    assert run_folders(out) == NAMES
    assert (out / "sweep.csv").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} == mtimes


def test_rerun_redoes_only_unfinished_runs(base_sweep, spirals_file, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(base_sweep[0], out)
    before = read_csv(out / "sweep.csv")
    redo = out / NAMES[3]
    (redo / "summary.json").unlink()          # killed before the summary: resumed
    gone = out / NAMES[5]
    shutil.rmtree(gone)                       # never started: trained from scratch
    others = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    code, text, err = invoke(capsys, spirals_file, *GRID, "--out", out)
    assert code == 0, err
    assert "skipping 6 finished runs" in text
    assert "[1/2]" in text and "[2/2]" in text and "[3/" not in text
    assert (redo / "summary.json").is_file() and (gone / "summary.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert without_timing(read_csv(out / "sweep.csv")) == without_timing(before)


def test_changed_config_reruns(base_sweep, spirals_file, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(base_sweep[0], out)
    code, text, err = invoke(capsys, spirals_file, "--grid", "optimizer.lr=0.01", "--seeds", "1",
                             "--set", "train.epochs=1", "--out", out)
    assert code == 0, err
    assert "skipping" not in text
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == 1 and rows[0]["epochs"] == "1"
    cfg = yaml.safe_load((out / "optimizer.lr=0.01,seed=0" / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 1


def test_jobs_2_gives_the_same_numbers_as_jobs_1(base_sweep, spirals_file, tmp_path, capsys):
    out = tmp_path / "parallel"
    code, text, err = invoke(capsys, spirals_file, *GRID, "--jobs", "2", "--out", out)
    assert code == 0, err + text
    assert run_folders(out) == NAMES
    assert without_timing(read_csv(out / "sweep.csv")) == without_timing(read_csv(base_sweep[0] / "sweep.csv"))
    for name in NAMES:
        assert (out / name / "model.npz").read_bytes() == (base_sweep[0] / name / "model.npz").read_bytes()


def test_diverging_run_is_recorded_and_the_others_finish(sine_cfg, cfg_file, tmp_path, capsys):
    cfg = cfg_file(sine_cfg(), "sine.yaml")
    out = tmp_path / "sw"
    code, text, err = invoke(capsys, cfg, "--grid", "optimizer.lr=1e6,0.01,0.02", "--out", out)
    assert code == 1
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"]
    assert "diverged" in rows[0]["error"] and rows[0]["test_loss"] == ""
    assert rows[1]["error"] == "" and float(rows[1]["test_loss"]) > 0
    assert "test_accuracy" not in rows[0]
    failed_lines = [line for line in text.splitlines() if "failed " in line]
    assert len(failed_lines) == 1
    assert str(out / "optimizer.lr=1e6,seed=0") in failed_lines[0] and "diverged" in failed_lines[0]
    assert "test_loss" in text and "2 ok, 1 failed" in text
    # the Python API: same rows; the failed run is tried again, the finished ones skipped
    lines = []
    rows2 = run_sweep(cfg, {"optimizer.lr": ["1e6", 0.01, 0.02]}, None, 1, out, log=lines.append)
    assert [r["status"] for r in rows2] == ["failed", "ok", "ok"]
    assert rows2[0]["optimizer.lr"] == "1e6" and rows2[1]["optimizer.lr"] == 0.01
    assert "diverged" in rows2[0]["error"] and rows2[1]["error"] is None
    assert rows2[1]["test_loss"] == float(rows[1]["test_loss"])
    assert "skipping 2 finished runs" in lines


@pytest.mark.parametrize("item, message", [
    ("optimizer.lrr=0.1,0.2", "--grid optimizer.lrr=0.1,0.2: no such key 'lrr' under 'optimizer'"),
    ("optimizer.lr", "--grid optimizer.lr: expected key.path=value1,value2"),
    ("optimizer.lr=", "--grid optimizer.lr=: no values"),
    ("optimizer.lr=0.1,,0.2", "--grid optimizer.lr=0.1,,0.2: empty value"),
    ("optimizer.lr=0.1,-1", "--grid optimizer.lr=0.1,-1: optimizer.lr: must be > 0 (got -1)"),
    ("model.layers.0.activation=tanh,rleu", "--grid model.layers.0.activation=tanh,rleu: "),
    ("model.layers.1.units=3,4", "--grid point train.epochs=1,model.layers.1.units=4: model.layers.1: the last layer"),
])
def test_bad_grid_is_one_line_exit_2_and_creates_nothing(item, message, spirals_file, tmp_path,
                                                         capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ([], ["--out", "mine"]):    # default sweeps/<name>-<time>, or --out
        code, text, err = invoke(capsys, spirals_file, "--grid", "train.epochs=1,2", "--grid", item,
                                 "--seeds", "2", *out)
        assert code == 2
        assert text == ""
        assert err.count("\n") == 1 and err.startswith("error: " + message), err
        assert list(tmp_path.iterdir()) == []


def test_other_option_mistakes(spirals_file, tmp_path, capsys):
    code, _, err = invoke(capsys, spirals_file, "--grid", "seed=1,2", "--seeds", "2", "--out", tmp_path / "a")
    assert code == 2 and "not both" in err
    code, _, err = invoke(capsys, spirals_file, "--grid", "optimizer.lr=0.1", "--grid", "optimizer.lr=0.2",
                          "--out", tmp_path / "a")
    assert code == 2 and "already swept" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    code, _, err = invoke(capsys, spirals_file, "--out", tmp_path / "busy")
    assert code == 2 and "not a sweep folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_parse_grid_reads_values_like_set():
    assert parse_grid("optimizer.lr=0.01, 0.1,1e-3") == ("optimizer.lr", [0.01, 0.1, "1e-3"])
    assert parse_grid("model.layers.0.activation={name: leaky_relu, alpha: 0.1},tanh") == \
        ("model.layers.0.activation", [{"name": "leaky_relu", "alpha": 0.1}, "tanh"])
    assert parse_grid("train.batch_size=full,8") == ("train.batch_size", ["full", 8])
    assert parse_grid("data.a=[1, 0, 1, 0],'x,y'") == ("data.a", [[1, 0, 1, 0], "x,y"])


def test_seeds_alone_and_value_with_odd_characters(xor_cfg, cfg_file, tmp_path, capsys):
    cfg = xor_cfg()
    cfg["train"]["epochs"] = 3
    path = cfg_file(cfg, "xor.yaml")
    out = tmp_path / "sw"
    code, text, err = invoke(capsys, path, "--grid",
                             "model.layers.0.activation={name: leaky_relu, alpha: 0.1},tanh",
                             "--out", out)
    assert code == 0, err
    names = run_folders(out)
    assert len(names) == 2 and all(" " not in n and "{" not in n and "/" not in n for n in names)
    rows = read_csv(out / "sweep.csv")
    assert rows[0]["model.layers.0.activation"] == "{name: leaky_relu, alpha: 0.1}"
    assert names[0] == "model.layers.0.activation=_name_leaky_relu,_alpha_0.1_,seed=0"
    assert "test_accuracy" in text
    code, text, err = invoke(capsys, path, "--seeds", "3", "--out", tmp_path / "seeds")
    assert code == 0, err
    assert run_folders(tmp_path / "seeds") == ["seed=0", "seed=1", "seed=2"]


def test_help_has_examples(capsys):
    code, text, _ = invoke(capsys, "--help")
    assert code == 0
    assert "Examples:" in text and "--grid optimizer.lr=0.01,0.05,0.1 --seeds 3" in text


SPACE = ["--sample", "4", "--space", "optimizer.lr=loguniform(0.01, 0.5)",
         "--space", "model.layers.0.activation=choice(tanh, relu, {name: leaky_relu, alpha: 0.1})"]


def test_random_search_draws_the_same_trials_every_time(spirals_file, tmp_path, capsys):
    out = tmp_path / "random"
    code, text, err = invoke(capsys, spirals_file, *SPACE, "--seeds", "2", "--out", out)
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    assert list(rows[0])[:4] == ["optimizer.lr", "model.layers.0.activation", "seed", "status"]
    assert len(rows) == 8 and [r["seed"] for r in rows] == ["0", "1"] * 4
    trials = [(r["optimizer.lr"], r["model.layers.0.activation"]) for r in rows[::2]]
    assert len(set(trials)) == 4
    for r in rows:  # folder named from the drawn values, and those are the values trained
        cfg = yaml.safe_load((out / r["run_dir"] / "config.yaml").read_text())
        lr = cfg["optimizer"]["lr"]
        assert 0.01 <= lr < 0.5 and f"{lr:.4g}" == r["optimizer.lr"]
        assert r["run_dir"] == f"optimizer.lr={r['optimizer.lr']},model.layers.0.activation=" \
            + r["model.layers.0.activation"].replace("{", "_").replace("}", "_").replace(": ", "_") \
            .replace(", ", ",_").replace(" ", "_") + f",seed={r['seed']}"
    meta = yaml.safe_load((out / "sweep.yaml").read_text())
    assert meta["sample"] == 4 and meta["space"]["optimizer.lr"] == "loguniform(0.01, 0.5)"
    assert "--sample 4 --space 'optimizer.lr=loguniform(0.01, 0.5)'" in meta["command"]
    # the same command draws the same trials: nothing to do
    code, text, err = invoke(capsys, spirals_file, *SPACE, "--seeds", "2", "--out", out)
    assert code == 0 and "skipping 8 finished runs" in text and "[1/" not in text
    # more trials: the first 4 are the same draws, so only the new ones train
    more = [a if a != "4" else "6" for a in SPACE]
    code, text, err = invoke(capsys, spirals_file, *more, "--seeds", "2", "--out", out)
    assert code == 0, err
    assert "skipping 8 finished runs" in text and "[4/4]" in text and "[5/" not in text
    assert [r["run_dir"] for r in read_csv(out / "sweep.csv")][:8] == [r["run_dir"] for r in rows]


def test_random_search_crossed_with_a_grid(spirals_file, tmp_path, capsys):
    out = tmp_path / "mixed"
    code, text, err = invoke(capsys, spirals_file, "--grid", "train.batch_size=8,full",
                             "--sample", "2", "--space", "optimizer.momentum=uniform(0.5, 0.95)",
                             "--out", out)
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    assert [(r["train.batch_size"], r["seed"]) for r in rows] == [("8", "0")] * 2 + [("full", "0")] * 2
    # the same two draws for every grid point
    assert [r["optimizer.momentum"] for r in rows[:2]] == [r["optimizer.momentum"] for r in rows[2:]]
    assert all(0.5 <= float(r["optimizer.momentum"]) < 0.95 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--sample", "3", "--space", "optimizer.lr=uniform(0.1)"],
     "--space optimizer.lr=uniform(0.1): uniform(a, b) takes two numbers (got 1)"),
    (["--sample", "3", "--space", "optimizer.lr=normal(0, 1)"],
     "--space optimizer.lr=normal(0, 1): unknown distribution 'normal' (valid: uniform, loguniform, randint, choice)"),
    (["--sample", "3", "--space", "optimizer.lr=loguniform(0, 1)"],
     "--space optimizer.lr=loguniform(0, 1): expected 0 < a < b (got a=0)"),
    (["--sample", "3", "--space", "optimizer.lr=uniform(0.5, 0.1)"],
     "--space optimizer.lr=uniform(0.5, 0.1): expected a < b"),
    (["--sample", "3", "--space", "optimizer.lr=0.1"],
     "--space optimizer.lr=0.1: expected key.path=uniform(a,b), loguniform(a,b), randint(a,b) or choice(x,y,...)"),
    (["--sample", "3", "--space", "optimizer.lr=uniform(-1, -0.5)"],
     "--space optimizer.lr=uniform(-1, -0.5) (trial 0 draws -0."),
    (["--sample", "3", "--space", "optimizer.lrr=uniform(0.1, 0.5)"],
     "--space optimizer.lrr=uniform(0.1, 0.5) (trial 0 draws 0."),
    (["--sample", "3", "--space", "model.layers.0.activation=choice(tanh, rleu)"],
     "--space model.layers.0.activation=choice(tanh, rleu) (trial "),
    (["--space", "optimizer.lr=uniform(0.1, 0.5)"],
     "--space optimizer.lr=uniform(0.1, 0.5): give the number of trials to draw with --sample N"),
    (["--sample", "3"], "--sample 3: give the distributions to draw from with --space"),
    (["--grid", "optimizer.lr=0.1,0.2", "--sample", "3", "--space", "optimizer.lr=uniform(0.1, 0.5)"],
     "--space optimizer.lr=uniform(0.1, 0.5): key 'optimizer.lr' is already swept by --grid"),
    (["--seeds", "2", "--sample", "3", "--space", "seed=randint(0, 9)"],
     "--space seed=randint(0, 9): give the seeds either with --space seed=... or with --seeds, not both"),
])
def test_bad_space_is_one_line_exit_2_and_creates_nothing(args, message, spirals_file, tmp_path, capsys):
    code, text, err = invoke(capsys, spirals_file, *args, "--out", tmp_path / "sw")
    assert code == 2
    assert err.startswith("error: " + message) and err.count("\n") == 1, err
    assert not (tmp_path / "sw").exists()


def test_space_draws_stay_below_b_and_huge_bounds_are_errors():
    import numpy as np
    from mlpjit.errors import ConfigError
    from mlpjit.search_space import LogUniform, Uniform, parse_space
    rng = np.random.default_rng(0)
    assert max(Uniform(0, 1).sample(rng) for _ in range(100_000)) < 1      # 4 digits: 0.99995 → 1.0
    assert max(LogUniform(0.1, 1).sample(rng) for _ in range(100_000)) < 1
    for text in ["optimizer.lr=uniform(0, 1" + "0" * 400 + ")", "train.epochs=randint(1, 10000000000000000000000)"]:
        with pytest.raises(ConfigError, match="--space"):
            parse_space(text)


# --- validation chooses, test reports --------------------------------------------------------------

def test_with_a_validation_split_the_summary_ranks_by_it_and_only_reports_test(tmp_path, capsys, helpers):
    """Two learning rates on spirals with a validation split: the summary's choosing column is
    val_accuracy, test_accuracy stands beside it, and the best line names the validation
    winner, whichever the test split would have picked."""
    path = helpers.write_cfg(tmp_path / "c.yaml", helpers.spirals(points=90, test_points=30, validation=30,
                                                                  epochs=3))
    code, text, err = invoke(capsys, path, "--grid", "optimizer.lr=0.01,0.5", "--out", tmp_path / "s")
    assert code == 0, err
    header = next(line for line in text.splitlines() if line.startswith("optimizer.lr"))
    assert header.split()[:4] == ["optimizer.lr", "runs", "ok", "val_accuracy"] and "test_accuracy" in header
    rows = read_csv(tmp_path / "s" / "sweep.csv")
    val = {r["optimizer.lr"]: float(r["val_accuracy"]) for r in rows}
    best = max(val, key=val.get)
    assert f"best by val_accuracy (the mean over seeds): optimizer.lr={best}; test_accuracy is reported, " \
           f"never used to choose" in text


def test_summary_table_by_hand():
    rows = [{"lr": 0.1, "status": "ok", "val_loss": 0.5, "test_loss": 0.1, "train_seconds": 1.0},
            {"lr": 0.2, "status": "ok", "val_loss": 0.3, "test_loss": 0.9, "train_seconds": 1.0}]
    text = summary_table(["lr"], rows)
    assert "best by val_loss (the mean over seeds): lr=0.2" in text   # not lr=0.1, the test's pick
    for r in rows:
        del r["val_loss"]
        r["train_loss"] = r["lr"]
    text = summary_table(["lr"], rows)
    assert "best by train_loss (the mean over seeds): lr=0.1" in text and "no validation split" in text
