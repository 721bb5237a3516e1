"""The shipped loggers (mlpjit.integrations): TensorBoard event files and MLflow runs that hold
exactly what metrics.jsonl holds, the config and the model; a missing package is one line
before the run folder exists."""

import json
import sys
import time

import numpy as np
import pytest
import yaml

import mlpjit
from mlpjit.integrations import flat_metrics


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _cfg(spirals_cfg):
    return spirals_cfg(points=40, test_points=20, validation=12, epochs=6, dropout=0.1, units=6)


def _xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    return X, np.array([0, 1, 1, 0])


def test_flat_metrics_names_every_number_of_a_row():
    row = {"epoch": 3, "train_loss": 0.5, "lr": 0.1, "grad_norms": {"0.A": 1.0}, "act_mean": {"0": 0.2},
           "early_stop": True, "replanned": {"from": 5, "to": 9}, "note": "x"}
    assert flat_metrics(row) == {"train_loss": 0.5, "lr": 0.1, "grad_norms/0.A": 1.0, "act_mean/0": 0.2}


# --- TensorBoard ---------------------------------------------------------------------------

def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_events_hold_metrics_jsonl_histograms_and_the_config(mlpjit_main, cfg_file, spirals_cfg,
                                                                         tmp_path):
    pytest.importorskip("tensorboardX")
    run = tmp_path / "run"
    r = mlpjit_main("train", cfg_file(_cfg(spirals_cfg)), "--out", run, "--log", "tensorboard", "--stop-after", 3, "-q")
    assert r.code == 75, r.text
    # an epoch logged by a process killed before its checkpoint: the resume redoes it, and
    # TensorBoard must show the redone one only
    from tensorboardX import SummaryWriter
    stale = SummaryWriter(str(run / "tensorboard"), filename_suffix=f".{time.time_ns()}.mlpjit")
    stale.add_scalar("train_loss", 1234.0, global_step=4)
    stale.close()
    r = mlpjit_main("train", "--resume", run, "-q")
    assert r.code == 0, r.text

    rows = _rows(run)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6]
    acc = _events(run / "tensorboard")
    tags = acc.Tags()
    expected = {}
    for row in rows:
        for key, value in flat_metrics(row).items():
            expected.setdefault(key, []).append((row["epoch"], np.float32(value)))
    assert {"val_loss", "test_accuracy", "lr", "grad_norms/0.A", "act_mean/0", "act_std/0"} <= set(expected)
    assert sorted(tags["scalars"]) == sorted(expected)
    for key, points in expected.items():
        got = [(e.step, np.float32(e.value)) for e in acc.Scalars(key)]
        assert got == points, key
    # histograms of every parameter: the initial weights, every 5 epochs and the last
    model = mlpjit.Sequential.load(run / "model.npz")
    names = [name for name, _, _ in model.parameters()]
    assert sorted(tags["histograms"]) == sorted(f"params/{n}" for n in names)
    for name, array, _ in model.parameters():
        events = acc.Histograms(f"params/{name}")
        assert [e.step for e in events] == [0, 5, 6]
        last = events[-1].histogram_value
        assert last.num == array.size and np.isclose(last.sum, float(array.sum(dtype=np.float64)), rtol=1e-5)
    # the resolved config as text, at the step each part started
    texts = acc.Tensors("config/text_summary")
    assert [t.step for t in texts] == [0, 3]
    shown = texts[0].tensor_proto.string_val[0].decode()
    assert yaml.safe_load("\n".join(line[4:] for line in shown.splitlines())) == \
        yaml.safe_load((run / "config.yaml").read_text())


def test_tensorboard_from_code_writes_under_runs(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    monkeypatch.chdir(tmp_path)
    X, y = _xor()
    model = mlpjit.Sequential([mlpjit.Dense(2, 3, activation="tanh", dtype=np.float64, seed=0),
                               mlpjit.Dense(3, 1, dtype=np.float64, seed=1)])
    history = model.fit(X, y, loss="binary_cross_entropy", epochs=2, batch_size="full", progress=False,
                        loggers=["tensorboard"])
    (folder,) = (tmp_path / "runs" / "tensorboard").iterdir()
    assert folder.name.startswith("fit-")
    acc = _events(folder)
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    assert [np.float32(e.value) for e in acc.Scalars("train_loss")] == \
        [np.float32(row["train_loss"]) for row in history.rows]


@pytest.mark.parametrize("logger,module", [("tensorboard", "tensorboardX"), ("mlflow", "mlflow")])
def test_a_missing_package_is_one_line_before_the_run_folder_exists(mlpjit_main, cfg_file, xor_cfg, tmp_path,
                                                                    monkeypatch, logger, module):
    monkeypatch.setitem(sys.modules, module, None)          # import fails as if not installed
    monkeypatch.setitem(sys.modules, f"{module}.tracking", None)
    r = mlpjit_main("train", cfg_file(xor_cfg()), "--out", tmp_path / "run", "--log", logger)
    assert r.code == 2
    assert r.err == f'error: logger {logger}: the {module} package is not installed ' \
                    f'(pip install "mlpjit[{logger}]")\n'
    assert not (tmp_path / "run").exists()


# --- MLflow --------------------------------------------------------------------------------

@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A local file store in tmp_path: (client, uri).  MLflow 3 refuses a file store unless
    MLFLOW_ALLOW_FILE_STORE is set (mlflow-skinny has no sqlite store: no SQLAlchemy)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri), uri


def test_mlflow_run_holds_the_config_metrics_and_files(mlpjit_main, cfg_file, spirals_cfg, tmp_path,
                                                       mlflow_store):
    from mlpjit.integrations.mlflow import flat_params
    client, uri = mlflow_store
    run = tmp_path / "run"
    r = mlpjit_main("train", cfg_file(_cfg(spirals_cfg)), "--out", run, "--log", "mlflow", "--stop-after", 2, "-q")
    assert r.code == 75, r.text
    link = json.loads((run / "mlflow.json").read_text())
    assert link["tracking_uri"] == uri
    assert client.get_run(link["run_id"]).info.status == "KILLED"        # stopped, resumable
    r = mlpjit_main("train", "--resume", run, "-q")
    assert r.code == 0, r.text

    (experiment,) = [e for e in client.search_experiments() if e.name == "spirals_test"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == link["run_id"] and found.info.status == "FINISHED"   # one run, continued
    assert found.info.run_name == "run"
    params = found.data.params
    assert params["optimizer.lr"] == "0.05" and params["model.layers.0.units"] == "6"
    assert params["train.batch_size"] == "8" and params["clip"] == "null"
    assert params == flat_params(yaml.safe_load((run / "config.yaml").read_text()))
    rows = _rows(run)
    for key in flat_metrics(rows[0]):
        history = client.get_metric_history(found.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(row["epoch"], flat_metrics(row)[key]) for row in rows], key
    assert {"grad_norms/0.A", "act_mean/0", "val_accuracy"} <= set(found.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "model.npz", "summary.json"} <= artifacts


def test_mlflow_from_code_and_a_diverged_run(mlpjit_main, cfg_file, sine_cfg, tmp_path, mlflow_store):
    client, _ = mlflow_store
    X, y = _xor()
    model = mlpjit.Sequential([mlpjit.Dense(2, 3, activation="tanh", dtype=np.float64, seed=0),
                               mlpjit.Dense(3, 1, dtype=np.float64, seed=1)])
    model.fit(X, y, loss="binary_cross_entropy", epochs=2, batch_size="full", progress=False, loggers=["mlflow"])
    (run,) = client.search_runs([client.get_experiment_by_name("fit").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics.keys() >= {"train_loss", "grad_norms/0.A"}
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "model.npz"}

    cfg = sine_cfg()
    cfg["optimizer"] = {"type": "sgd", "lr": 1e6}
    r = mlpjit_main("train", cfg_file(cfg), "--out", tmp_path / "bad", "--log", "mlflow", "-q")
    assert r.code == 3, r.text
    (bad,) = client.search_runs([client.get_experiment_by_name("sine_test").experiment_id])
    assert bad.info.status == "FAILED"


def test_mlflow_keys_and_values_keep_its_rules():
    from mlpjit.integrations.mlflow import flat_params, mlflow_key
    assert mlflow_key("a:b?c") == "a:b?c".replace("?", "_").replace(":", "_")
    assert mlflow_key("/x//../y") == "_/x/_/_/y"
    params = flat_params({"model": {"layers": [{"units": 4, "k": [3, 3]}]}, "note": "x" * 600,
                          "clip": None, "empty": {}})
    assert params["model.layers.0.units"] == "4" and params["model.layers.0.k"] == "[3, 3]"
    assert len(params["note"]) == 500 and params["note"].endswith("...")
    assert params["clip"] == "null" and params["empty"] == "{}"


def test_a_resume_that_adds_the_loggers_logs_the_earlier_epochs_too(mlpjit_main, cfg_file, xor_cfg, tmp_path,
                                                                     mlflow_store):
    pytest.importorskip("tensorboardX")
    client, _ = mlflow_store
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(xor_cfg()), "--out", run, "--epochs", 2, "-q").code == 0
    r = mlpjit_main("train", "--resume", run, "--epochs", 3, "--log", "tensorboard", "--log", "mlflow", "-q")
    assert r.code == 0, r.text
    want = [(row["epoch"], row["train_loss"]) for row in _rows(run)]
    assert [e for e, _ in want] == [1, 2, 3]
    assert [(e.step, np.float32(e.value)) for e in _events(run / "tensorboard").Scalars("train_loss")] == \
        [(e, np.float32(v)) for e, v in want]
    run_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == want
