"""Loggers (mlpjit.loggers): told of the run's start, each epoch and its end, registered like a
layer; one that raises costs one line, never the run."""

import json

import numpy as np

import mlpjit
from mlpjit.loggers import Logger, register_logger

CALLS = []


@register_logger("recording")
class Recording(Logger):
    def start(self, core):
        CALLS.append(("start", core.epoch))

    def epoch(self, core, row):
        CALLS.append(("epoch", row["epoch"], row["train_loss"]))

    def end(self, core, summary):
        CALLS.append(("end", None if summary is None else summary["epochs"]))

    def close(self):
        CALLS.append(("close",))


@register_logger("broken")
class Broken(Logger):
    def epoch(self, core, row):
        if row["epoch"] == 2:
            raise RuntimeError("disk on fire")


def test_a_registered_logger_hears_start_epochs_and_end(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    CALLS.clear()
    cfg = xor_cfg()
    cfg["train"]["log"] = ["recording"]
    r = mlpjit_main("train", cfg_file(cfg), "--epochs", 3, "--out", tmp_path / "run", "-q")
    assert r.code == 0, r.text
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert CALLS == [("start", 0)] + [("epoch", row["epoch"], row["train_loss"]) for row in rows] + \
        [("end", 3), ("close",)]
    # a resume may add a logger (train.log is not part of what a resume compares)
    CALLS.clear()
    r = mlpjit_main("train", "--resume", tmp_path / "run", "--epochs", 4, "--log", "broken", "-q")
    assert r.code == 0, r.text
    assert CALLS[0] == ("start", 3) and CALLS[-2:] == [("end", 4), ("close",)]


def test_a_logger_that_raises_is_one_line_and_training_goes_on(mlpjit_main, cfg_file, xor_cfg, tmp_path):
    CALLS.clear()
    r = mlpjit_main("train", cfg_file(xor_cfg()), "--epochs", 4, "--log", "broken", "--log", "recording",
                    "--out", tmp_path / "run")
    assert r.code == 0, r.text
    lines = [x for x in r.out.splitlines() if x.startswith("logger")]
    assert lines == ["logger Broken failed in epoch() and is turned off; training goes on "
                     "(RuntimeError: disk on fire)"]
    assert [c[1] for c in CALLS if c[0] == "epoch"] == [1, 2, 3, 4]      # the others carry on
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 4


def test_fit_from_code_takes_logger_objects():
    seen = []

    class Mine(Logger):
        def epoch(self, core, row):
            seen.append(row["epoch"])

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    model = mlpjit.Sequential([mlpjit.Dense(2, 1, dtype=np.float64, seed=0)])
    model.fit(X, [0, 1, 1, 0], loss="binary_cross_entropy", epochs=3, batch_size="full", progress=False,
              loggers=[Mine()])
    assert seen == [1, 2, 3]
