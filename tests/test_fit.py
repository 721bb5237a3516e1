"""Training from code: ``model.fit`` runs the CLI's training core (mlpjit.core.TrainingCore).

The proof that there is one core: a config run by ``mlpjit train`` and the same run from code
(the same model, data, seed and settings) give the same weights, byte for byte, and the same
epochs' figures.
"""

import os
import signal
import threading

import numpy as np
import pytest

import mlpjit
from mlpjit.config import config_from_dict, resolved_dict
from mlpjit.data import load_dataset
from mlpjit.trainer import build_model

from conftest import read_metrics, without_timing  # noqa: E402


def _xor_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.int64)


def _mlp(hidden=8, out=2, act="tanh"):
    return mlpjit.Sequential([mlpjit.Dense(2, hidden, activation=act, seed=0), mlpjit.Dense(hidden, out, seed=1)])


def test_a_config_run_and_the_same_run_from_code_give_the_same_weights(spirals_cfg, cfg_file, mlpjit_main,
                                                                       tmp_path):
    cfg = spirals_cfg(points=90, validation=30, epochs=4, batch_size=8, dropout=0.2, seed=3,
                      schedule={"type": "cosine"}, clip={"norm": 1.0})
    cfg["train"]["early_stopping"] = {"patience": 2, "metric": "val_loss"}
    run = tmp_path / "run"
    assert mlpjit_main("train", cfg_file(cfg), "--out", run, "-q").code == 0

    c = resolved_dict(config_from_dict(cfg))
    data = load_dataset(c["data"], c["seed"])
    model, _ = build_model(c, data.n_features, data.n_outputs, data.task)   # the same initial weights
    history = model.fit(data.X_train, data.y_train, loss=c["loss"], optimizer=c["optimizer"],
                        schedule=c["schedule"], clip=c["clip"], epochs=4, batch_size=8,
                        validation_data=(data.X_val, data.y_val),
                        early_stopping={"patience": 2, "metric": "val_loss"}, seed=3, progress=False)
    assert history.compiled and history.why_not is None

    saved = np.load(run / "model.npz")
    ours = model.to_arrays()
    assert sorted(saved.files) == sorted(ours)
    for name in saved.files:
        if name != "__metadata__":   # which data and file it came from
            assert saved[name].tobytes() == np.asarray(ours[name]).tobytes(), name
    # the same epochs, the same figures (the CLI's run also measures its test split and probes)
    cli_rows = without_timing(read_metrics(run))
    code_rows = without_timing(history.rows)
    assert [r["epoch"] for r in code_rows] == [r["epoch"] for r in cli_rows]
    for a, b in zip(code_rows, cli_rows):
        assert a == {k: b[k] for k in a}
    assert history.history["val_loss"] == [r["val_loss"] for r in cli_rows]
    assert history.history["accuracy"] == [r["train_accuracy"] for r in cli_rows]


def test_fit_from_code_like_keras(tmp_path, mlpjit_main):
    X, y = _xor_data(300)
    model = _mlp(16)
    notes = []
    history = model.fit(X, y, loss="cross_entropy", optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9},
                        schedule={"type": "cosine"}, clip={"norm": 5.0}, epochs=6, batch_size=16,
                        validation_split=0.2, seed=0, log=notes.append)
    assert history.compiled
    assert history.epoch == [1, 2, 3, 4, 5, 6]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert len(history.history["val_accuracy"]) == 6
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert [n for n in notes if n.startswith("epoch ")][-1].startswith("epoch 6/6")
    assert history.params["steps"] == 15                      # 240 training rows (Keras: the last 20% validate)
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.8
    assert model.predict_classes(X).shape == (300,)
    p = model.predict_proba(X[:4])
    assert p.shape == (4, 2) and np.allclose(p.sum(axis=1), 1)
    # a second fit continues from the weights, with the loss and optimizer kept
    before = model.layers[0].A.copy()
    again = model.fit(X, y, epochs=1, progress=False)
    assert again.epoch == [1] and not np.array_equal(before, model.layers[0].A)
    # saved, it loads into the CLI
    model.save(tmp_path / "model.npz")
    np.save(tmp_path / "x.npy", X[:3])
    res = mlpjit_main("predict", tmp_path / "model.npz", tmp_path / "x.npy")
    assert res.code == 0, res.err
    assert len(res.out.strip().splitlines()) >= 3


def test_early_stopping_ends_the_fit_and_says_so():
    X, y = _xor_data(200)
    model = _mlp(8)
    history = model.fit(X, y, loss="cross_entropy", optimizer={"type": "sgd", "lr": 1e-6}, epochs=30,
                        validation_split=0.25, early_stopping={"patience": 1, "metric": "val_accuracy",
                                                               "min_delta": 0.5}, progress=False)
    assert history.epoch == [1, 2]
    assert history.stopped.startswith("early stopping after epoch 2")


def test_a_layer_that_cannot_compile_trains_layer_by_layer_and_says_why():
    X, y = _xor_data(64)
    model = _mlp(4)
    notes = []
    history = model.fit(X, y, loss="cross_entropy", epochs=2, compiled=False, log=notes.append, progress=False)
    assert not history.compiled and "train.compiled is false" in history.why_not
    assert history.epoch == [1, 2]


def test_the_compiled_fit_and_the_layer_path_agree():
    X, y = _xor_data(96)
    a, b = _mlp(6), _mlp(6)
    settings = dict(loss="cross_entropy", optimizer={"type": "sgd", "lr": 0.2, "momentum": 0.5}, epochs=3,
                    batch_size=12, threads=1, progress=False, seed=1)
    ha = a.fit(X, y, **settings)
    hb = b.fit(X, y, compiled=False, **settings)
    assert ha.compiled and not hb.compiled
    np.testing.assert_allclose(a.layers[1].A, b.layers[1].A, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda m, X, y: m.fit(X[:10], y), "fit: y has 200 rows but X has 10 rows"),
    (lambda m, X, y: m.fit(X[:, :1], y), "fit: X has 1 features per row, but the model's first layer takes 2"),
    (lambda m, X, y: m.fit(np.where(X > 1.5, np.inf, X), y), "fit: X has NaN or inf values (the first in row"),
    (lambda m, X, y: m.fit(X, y + 2), "fit: y holds label 2, but the model's last layer gives 2 outputs: "
                                      "class ids 0 to 1"),
    (lambda m, X, y: m.fit(X, y - 1), "fit: y holds label -1"),
    (lambda m, X, y: m.fit(X, y + 0.5), "fit: y holds 0.5, not a class id (0 to 1)"),
    (lambda m, X, y: m.fit(X, np.ones((200, 3)), loss="mse"),
     "fit: model layer 1: the last layer gives 2 outputs but y has 3 target columns"),
    (lambda m, X, y: m.fit(X, y, loss="mse2"), "fit: loss: unknown loss 'mse2'"),
    (lambda m, X, y: m.fit(X, y, optimizer={"type": "sgd", "lr": -1}), "fit: optimizer.lr: must be > 0"),
    (lambda m, X, y: m.fit(X, y, optimizer={"type": "sgd", "lr": 0.1, "momentm": 0.9}), "fit: optimizer: "),
    (lambda m, X, y: m.fit(X, y, batch_size=0), "fit: train.batch_size: must be >= 1"),
    (lambda m, X, y: m.fit(X, y, early_stopping={"metric": "val_loss"}), "fit: early_stopping.metric: "
                                                                         "'val_loss' needs a validation part"),
    (lambda m, X, y: m.fit(X, y, validation_split=1.5), "fit: validation_split must be a fraction"),
    (lambda m, X, y: mlpjit.Sequential([mlpjit.Dense(2, 2, seed=0), mlpjit.Softmax()]).fit(X, y, loss="cross_entropy"),
     "fit: model layer 1: 'cross_entropy' works on logits"),
])
def test_bad_input_from_code_is_one_line_naming_the_argument(call, message):
    X, y = _xor_data(200)
    model = _mlp(4)
    model._fit_state = {"loss": "cross_entropy"}   # as after a first fit (the loss is kept)
    with pytest.raises(mlpjit.MlpjitError) as e:
        call(model, X, y)
    text = str(e.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_the_first_fit_needs_a_loss():
    X, y = _xor_data(20)
    with pytest.raises(mlpjit.ConfigError, match="fit: loss is required on the first fit"):
        _mlp(4).fit(X, y)


def test_ctrl_c_stops_after_the_batch_keeps_the_weights_and_returns_the_history():
    X, y = _xor_data(4000)
    model = _mlp(32)
    notes = []
    seen = []

    def interrupt_in_epoch_2(trainer, row):   # after epoch 1's row: Ctrl-C comes in epoch 2
        seen.append(row["epoch"])
        if row["epoch"] == 1:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()

    history = model.fit(X, y, loss="cross_entropy", epochs=50, batch_size=1, threads=1, log=notes.append,
                        progress=False, callbacks=[interrupt_in_epoch_2])
    assert history.stopped is not None and history.stopped.startswith("interrupted (SIGINT)")
    assert "checkpoint" not in history.stopped                      # no run folder: nothing written
    assert 1 <= len(history.epoch) < 50 and history.epoch == seen
    assert any(n.endswith("the weights so far are kept") for n in notes)
    assert np.isfinite(model.layers[0].A).all()
    # the model trains on afterwards
    assert model.fit(X[:100], y[:100], epochs=1, progress=False).epoch == [1]


def test_a_run_folder_from_code(tmp_path, mlpjit_main):
    X, y = _xor_data(100)
    model = _mlp(4)
    model.fit(X, y, loss="cross_entropy", epochs=2, run_dir=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "checkpoint.npz", "model.npz",
                                               "summary.json"}
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    loaded = mlpjit.Sequential.load(run / "model.npz")
    assert np.array_equal(loaded.layers[0].A, model.layers[0].A)


def test_html_of_a_model_and_a_history():
    X, y = _xor_data(60)
    model = _mlp(4)
    html = model._repr_html_()
    assert "Dense" in html and "<table>" in html and "parameters" in html and "= " in html
    history = model.fit(X, y, loss="cross_entropy", epochs=3, validation_split=0.2, progress=False)
    html = history._repr_html_()
    assert html.count("<svg") == 2 and "val_loss" in html and "3 epochs" in html


def test_the_readmes_code_from_code_runs(tmp_path, monkeypatch, capsys):
    """The README's examples of training from code (its python blocks but the scikit-learn one)."""
    import re

    from conftest import REPO
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    ours = [b for b in blocks if "sklearn" not in b]
    assert any("model.fit(" in b for b in ours)
    monkeypatch.chdir(tmp_path)
    ns = {}
    for block in ours:
        exec(compile(block, "README.md", "exec"), ns)
    assert ns["history"].compiled and (tmp_path / "model.npz").exists()


def test_explain_and_trace_from_code_print_text_and_show_html():
    X, y = _xor_data(8)
    model = _mlp(3)
    e = model.explain(batch_size=4, loss="cross_entropy")
    text = str(e)
    assert "M = X·A          (4×2)·(2×3) → (4×3)" in text and "dA = Xᵀ·dS" in text and "Loss: cross_entropy" in text
    html = e._repr_html_()
    assert "<table>" in html and html.count("<tr>") == 3 and "dA = Xᵀ·dS" in html
    from mlpjit.trace import trace
    t = trace(model, X, y, loss="cross_entropy", start=2, n=2, precision=4)
    assert str(t).startswith("trace of training examples 2..3 (float64, 4 significant digits)")
    assert "CHECK" not in str(t) and str(t).count(" OK") == 5      # 0.A 0.b 1.A 1.b input
    assert t._repr_html_().startswith("<pre") and "dS" in t._repr_html_()
    with pytest.raises(mlpjit.ConfigError, match="trace: examples 7..8 are not in X's 8 rows"):
        trace(model, X, y, loss="cross_entropy", start=7, n=2)
