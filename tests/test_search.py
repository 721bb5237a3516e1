"""``mlpjit sweep --search``: an Optuna study behind a sweep (study.db, trials ranked by the
validation metric, continued by the same command), pruning that stops runs at an epoch's end,
``--show``, and one-line errors.  Real runs on 60 spirals points, no mocks of the training."""

import json
import shutil
import sys

import pytest
import yaml

optuna = pytest.importorskip("optuna")   # the search extra (in the test extra: these tests run)

from mlpjit.search_space import parse_space
from mlpjit.sweep import run_sweep

from test_sweep import invoke, read_csv, run_folders, sweep_once

SPACE = ["--space", "optimizer.lr=loguniform(0.001, 0.5)",
         "--space", "model.layers.0.activation=choice(tanh, relu)"]
TPE = ["--search", "tpe", *SPACE]


@pytest.fixture(scope="module")
def val_file(tmp_path_factory, helpers):
    """Spirals with a validation split: 60 points, 20 of them held out, 3 epochs."""
    return helpers.write_cfg(tmp_path_factory.mktemp("cfg") / "spirals.yaml",
                             helpers.spirals(points=60, test_points=30, validation=20, epochs=3))


@pytest.fixture(scope="module")
def tpe_study(tmp_path_factory, val_file):
    """A 6-trial TPE study, run once for the module; tests copy it to change it."""
    out = tmp_path_factory.mktemp("search") / "tpe"
    return (out, *sweep_once(val_file, *TPE, "--trials", "6", "--out", out))


def copy_of(study, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    return out


def test_a_tpe_study_trains_one_run_per_trial_and_ranks_by_val_loss(tpe_study):
    out, code, text = tpe_study
    assert code == 0, text
    assert (out / "study.db").is_file()
    assert run_folders(out) == [f"trial-{k:04d}" for k in range(6)]
    rows = read_csv(out / "sweep.csv")
    assert [r["trial"] for r in rows] == [str(k) for k in range(6)]
    assert list(rows[0])[:5] == ["trial", "optimizer.lr", "model.layers.0.activation", "seed", "status"]
    for r in rows:
        assert r["status"] == "ok" and r["epochs"] == "3" and r["run_dir"] == f"trial-{int(r['trial']):04d}"
        cfg = yaml.safe_load((out / r["run_dir"] / "config.yaml").read_text())
        assert cfg["optimizer"]["lr"] == float(r["optimizer.lr"]) and 0.001 <= cfg["optimizer"]["lr"] < 0.5
        assert cfg["model"]["layers"][0]["activation"] == r["model.layers.0.activation"]
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert float(r["val_loss"]) == summary["final"]["val_loss"]
    # the study holds the same values, told by val_loss
    study = optuna.load_study(study_name="mlpjit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.value for t in study.trials] == [float(r["val_loss"]) for r in rows]
    # the table: best first by val_loss, the test loss beside it, never choosing
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert f"best by val_loss: trial {best['trial']} (" in text
    assert "test_loss is reported, never used to choose" in text
    table = text[text.index("trials that finished"):].splitlines()[2:8]
    assert [line.split()[0] for line in table] == \
        [r["trial"] for r in sorted(rows, key=lambda r: float(r["val_loss"]))]
    assert "6 trials: 6 ok, 0 pruned, 0 failed; 18 epochs trained in all" in text
    meta = yaml.safe_load((out / "sweep.yaml").read_text())
    assert (meta["search"], meta["trials"], meta["metric"], meta["direction"], meta["prune"]) == \
        ("tpe", 6, "val_loss", "minimize", "none")
    assert meta["space"]["optimizer.lr"] == "loguniform(0.001, 0.5)"
    for png in ("optimization_history.png", "param_importances.png"):   # matplotlib: test extra
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_the_same_command_continues_the_study(tpe_study, val_file, tmp_path, capsys):
    out = copy_of(tpe_study, tmp_path)
    before = read_csv(out / "sweep.csv")
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("model.npz")}
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "8", "--out", out)
    assert code == 0, err
    assert "the study has 6 finished trials; 2 more to train" in text
    assert "[2/2]" in text and "[3/" not in text
    rows = read_csv(out / "sweep.csv")
    assert [r["trial"] for r in rows] == [str(k) for k in range(8)]
    assert [r["val_loss"] for r in rows[:6]] == [r["val_loss"] for r in before]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes   # finished trials not trained again
    # the continued sampler does not draw the first trials again
    assert {r["optimizer.lr"] for r in rows[6:]}.isdisjoint({r["optimizer.lr"] for r in before})
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "8", "--out", out)
    assert code == 0 and "the study has 8 finished trials; nothing to train" in text and "[1/" not in text


def test_a_trial_left_running_by_a_killed_sweep_is_failed_and_retried_in_its_folder(
        tpe_study, val_file, tmp_path, capsys):
    out = copy_of(tpe_study, tmp_path)
    study = optuna.load_study(study_name="mlpjit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    left = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(0.001, 0.5, log=True),
                      "model.layers.0.activation": optuna.distributions.CategoricalDistribution(["tanh", "relu"])})
    left.set_user_attr("run_dir", "trial-0006")   # as the sweep does, then killed (SIGKILL)
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "7", "--out", out)
    assert code == 0, err
    assert f"{out / 'trial-0006'} (trial 7)" in text
    study = optuna.load_study(study_name="mlpjit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    six, seven = study.trials[6], study.trials[7]
    assert six.state.name == "FAIL" and six.user_attrs["interrupted"] is True
    assert seven.state.name == "COMPLETE" and seven.params == left.params
    assert seven.user_attrs["run_dir"] == "trial-0006" and seven.user_attrs["retry_of"] == 6
    rows = read_csv(out / "sweep.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3", "4", "5", "7"]   # not the interrupted one
    assert run_folders(out) == [f"trial-{k:04d}" for k in range(7)]


def test_pruned_trials_stop_at_the_epoch_the_study_says_and_record_it(val_file, tmp_path):
    """A pruner that prunes every trial at its first report (deterministic): each run stops
    after epoch 1 of 3, says so in summary.json, and sweep.csv shows it."""
    out = tmp_path / "pruned"
    rows = run_sweep(val_file, {}, space=dict([parse_space("optimizer.lr=loguniform(0.001, 0.5)")]),
                     search="tpe", trials=3, prune=optuna.pruners.ThresholdPruner(upper=0.0),
                     out=out, log=lambda line: None)
    assert [(r["status"], r["epochs"], r["pruned_at"]) for r in rows] == [("pruned", 1, 1)] * 3
    for r in read_csv(out / "sweep.csv"):
        assert r["status"] == "pruned" and r["epochs"] == "1" and r["pruned_at"] == "1"
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert summary["epochs"] == 1 and summary["plan"] == 3
        assert summary["pruned"] == {"epoch": 1, "metric": "val_loss", "value": summary["final"]["val_loss"]}
        assert len((out / r["run_dir"] / "metrics.jsonl").read_text().splitlines()) == 1
    study = optuna.load_study(study_name="mlpjit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED"] * 3
    assert [list(t.intermediate_values) for t in study.trials] == [[1]] * 3


def test_pruning_reaches_runs_in_worker_processes(val_file, tmp_path):
    """--jobs 2: the runs' reports come back from the worker processes, and a pruned run stops."""
    out = tmp_path / "pruned-jobs"
    # prunes every trial at its first report (a val_loss is above 0)
    rows = run_sweep(val_file, {}, space=dict([parse_space("optimizer.lr=loguniform(0.001, 0.5)")]),
                     search="random", trials=3, jobs=2,
                     prune=optuna.pruners.ThresholdPruner(upper=0.0), out=out, log=lambda line: None)
    assert sorted((r["trial"], r["status"], r["epochs"]) for r in rows) == \
        [(0, "pruned", 1), (1, "pruned", 1), (2, "pruned", 1)]


def test_a_grid_search_visits_every_point_once(val_file, tmp_path, capsys):
    out = tmp_path / "grid"
    code, text, err = invoke(capsys, val_file, "--search", "grid", "--grid", "optimizer.lr=0.01,0.1",
                             "--space", "model.layers.0.activation=choice(tanh, relu)", "--out", out)
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    assert sorted((r["optimizer.lr"], r["model.layers.0.activation"]) for r in rows) == \
        [("0.01", "relu"), ("0.01", "tanh"), ("0.1", "relu"), ("0.1", "tanh")]


def test_show_prints_the_best_trials_the_importances_and_the_plots(tpe_study, tmp_path, capsys):
    out = copy_of(tpe_study, tmp_path)
    for png in out.glob("*.png"):
        png.unlink()
    code, text, err = invoke(capsys, "--show", out)
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert f"study {out / 'study.db'}: val_loss, minimize; 6 finished trials" in text
    assert f"best by val_loss: trial {best['trial']} (" in text and "never used to choose" in text
    assert "parameter importance (fANOVA, over 6 complete trials):" in text
    lines = text.splitlines()
    at = lines.index("parameter importance (fANOVA, over 6 complete trials):")
    shares = {line.split()[0]: float(line.split()[1]) for line in lines[at + 1:at + 3]}
    assert set(shares) == {"optimizer.lr", "model.layers.0.activation"}
    assert abs(sum(shares.values()) - 1) < 0.01
    assert f"plots: {out / 'optimization_history.png'}, {out / 'param_importances.png'}" in text
    assert (out / "param_importances.png").is_file()


def test_show_of_a_small_study_says_it_needs_more_trials(val_file, tmp_path, capsys):
    out = tmp_path / "small"
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "2", "--out", out)
    assert code == 0, err
    code, text, err = invoke(capsys, "--show", out)
    assert code == 0, err
    assert "parameter importance: needs more trials (2 complete; at least 4" in text


def test_without_a_validation_split_train_loss_chooses_when_asked(helpers, tmp_path, capsys):
    path = helpers.write_cfg(tmp_path / "c.yaml", helpers.spirals(points=60, test_points=30, epochs=2))
    code, text, err = invoke(capsys, path, *TPE, "--trials", "2", "--metric", "train_loss",
                             "--out", tmp_path / "s")
    assert code == 0, err
    assert "best by train_loss" in text and "no validation metric: the training figures choose" in text


@pytest.mark.parametrize("args, message", [
    (["--trials", "3", "--metric", "test_loss"],
     "--metric test_loss: the test split only reports, it never chooses; use val_loss (with "
     "data.validation) or train_loss"),
    (["--trials", "3", "--metric", "val_los"],
     "--metric val_los: expected one of val_loss, val_accuracy, train_loss, train_accuracy"),
    (["--trials", "3", "--direction", "maximize"],
     "--direction maximize: val_loss is a loss, lower is better (--direction minimize)"),
    ([], "--search tpe: give the number of trials with --trials N"),
    (["--trials", "3", "--seeds", "2"], "--seeds 2: not used with --search"),
    (["--trials", "3", "--sample", "2"], "--sample 2: with --search, give the number of trials with --trials N"),
])
def test_bad_search_options_are_one_line_exit_2_and_create_nothing(args, message, val_file, tmp_path, capsys):
    code, text, err = invoke(capsys, val_file, *TPE, *args, "--out", tmp_path / "s")
    assert code == 2
    assert err.startswith("error: " + message) and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args, message", [
    (["--search", "annealing", "--trials", "3", *SPACE], "Invalid value for '--search': 'annealing' is not one of"),
    (["--prune", "median", "--grid", "optimizer.lr=0.1,0.2"],
     "--prune median: only used with --search tpe|random|cmaes|grid (an Optuna study)"),
    (["--trials", "3", "--grid", "optimizer.lr=0.1,0.2"], "--trials 3: only used with --search"),
    (["--search", "tpe", "--trials", "3", "--space", "optimizer.lr=loguniform(0.001)"],
     "--space optimizer.lr=loguniform(0.001): loguniform(a, b) takes two numbers (got 1)"),
    (["--search", "tpe", "--trials", "3", "--space", "optimizer.lrr=uniform(0.1, 0.5)"],
     "--space optimizer.lrr=uniform(0.1, 0.5): "),
    (["--search", "tpe", "--trials", "3"], "--search tpe: give the parameters to search with --space"),
    (["--search", "grid", "--space", "optimizer.lr=uniform(0.1, 0.5)"],
     "--space optimizer.lr=uniform(0.1, 0.5): --search grid needs a list of values"),
    (["--search", "grid", "--trials", "5", "--grid", "optimizer.lr=0.1,0.2"], "--trials 5: the grid has 2 points"),
])
def test_bad_search_inputs_are_one_line(args, message, val_file, tmp_path, capsys):
    code, text, err = invoke(capsys, val_file, *args, "--out", tmp_path / "s")
    assert code == 2
    assert err.startswith("error: " + message) and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_a_validation_metric_needs_a_validation_split(helpers, tmp_path, capsys):
    path = helpers.write_cfg(tmp_path / "c.yaml", helpers.spirals(points=60, test_points=30, epochs=2))
    code, text, err = invoke(capsys, path, *TPE, "--trials", "2", "--out", tmp_path / "s")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --search tpe: data 'spirals' has no validation split to choose "
                          "trials by; set data.validation (e.g. --set data.validation=0.2) or choose "
                          "by --metric train_loss")
    code, text, err = invoke(capsys, path, *TPE, "--trials", "2", "--metric", "val_accuracy",
                             "--out", tmp_path / "s")
    assert code == 2 and err.startswith("error: --metric val_accuracy: data 'spirals' has no validation split")
    assert not (tmp_path / "s").exists()


def test_show_mistakes_are_one_line(tpe_study, val_file, tmp_path, capsys):
    code, text, err = invoke(capsys, "--show", tmp_path)
    assert code == 2 and err == f"error: --show {tmp_path}: no study.db there (a sweep folder of --search)\n"
    code, text, err = invoke(capsys, val_file, "--show", tpe_study[0])
    assert code == 2 and err == f"error: --show {tpe_study[0]}: give the sweep folder alone (not with CONFIG)\n"


def test_a_study_folder_and_a_grid_folder_are_not_mixed(tpe_study, val_file, tmp_path, capsys):
    out = copy_of(tpe_study, tmp_path)
    code, text, err = invoke(capsys, val_file, "--grid", "optimizer.lr=0.1,0.2", "--out", out)
    assert code == 2 and err.startswith(f"error: --out {out}: holds an Optuna study (study.db)")
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "6", "--metric", "train_loss", "--out", out)
    assert code == 2 and err.startswith(f"error: --out {out}: its study searched a different metric (val_loss)")


def test_without_optuna_the_search_says_what_to_install(val_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna -> ImportError
    code, text, err = invoke(capsys, val_file, *TPE, "--trials", "2", "--out", tmp_path / "s")
    assert code == 2
    assert err == 'error: --search needs Optuna, which is not installed here; install it with: ' \
                  'pip install "mlpjit[search]"\n'
    assert not (tmp_path / "s").exists()
    code, text, err = invoke(capsys, "--show", tmp_path)
    assert code == 2 and 'pip install "mlpjit[search]"' in err


def test_on_a_dask_cluster_the_runs_report_to_the_study_and_are_pruned(val_file, tmp_path):
    """--backend dask: the client owns the study; the runs' reports come back through Dask
    queues and a pruned run stops on its worker."""
    pytest.importorskip("distributed")
    out = tmp_path / "dask"
    rows = run_sweep(val_file, {}, space=dict([parse_space("optimizer.lr=loguniform(0.001, 0.5)")]),
                     search="tpe", trials=2, backend="dask", workers=1,
                     prune=optuna.pruners.ThresholdPruner(upper=0.0), out=out, log=lambda line: None)
    assert [(r["status"], r["epochs"]) for r in rows] == [("pruned", 1)] * 2
    for r in rows:
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert summary["pruned"]["epoch"] == 1 and summary["epochs"] == 1


class CtrlCInTrial1AtEpoch2(optuna.pruners.BasePruner):
    """Ctrl-C, as if pressed while trial 1 reports its second epoch (the run is in this process)."""

    def prune(self, study, trial):
        if trial.number == 1 and trial.last_step == 2:
            raise KeyboardInterrupt
        return False


def test_an_interrupted_trial_is_failed_kept_out_of_the_csv_and_resumed_by_the_same_command(
        val_file, tmp_path):
    out = tmp_path / "ctrl-c"
    space = dict([parse_space("optimizer.lr=loguniform(0.001, 0.5)")])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(val_file, {}, space=space, search="random", trials=3, prune=CtrlCInTrial1AtEpoch2(),
                  out=out, log=lambda line: None)
    study = optuna.load_study(study_name="mlpjit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert study.trials[1].user_attrs["interrupted"] is True
    assert study.trials[2].system_attrs["fixed_params"] == study.trials[1].params   # enqueued again ...
    assert study.trials[2].user_attrs == {"run_dir": "trial-0001", "retry_of": 1}   # ... in its folder
    assert [r["trial"] for r in read_csv(out / "sweep.csv")] == ["0"]
    lines = []
    rows = run_sweep(val_file, {}, space=space, search="random", trials=3, out=out, log=lines.append)
    assert [(r["trial"], r["status"], r["run_dir"]) for r in rows] == \
        [(0, "ok", "trial-0000"), (2, "ok", "trial-0001"), (3, "ok", "trial-0003")]
    assert any(f"{out / 'trial-0001'} (trial 2)" in line and "resumed" in line for line in lines)
    epochs = [json.loads(line)["epoch"] for line in (out / "trial-0001" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]   # from the checkpoint of epoch 1: epoch 2 trained again, once


def test_cmaes_without_its_package_says_what_to_install(val_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)
    code, text, err = invoke(capsys, val_file, "--search", "cmaes", "--trials", "2", *SPACE[:2],
                             "--out", tmp_path / "s")
    assert code == 2
    assert err == "error: --search cmaes needs the cmaes package, which is not installed here; " \
                  "install it with: pip install cmaes\n"
