"""Logger callbacks' pure hook logic: driven by hand with Trial records, no cluster."""

from __future__ import annotations

import csv
import json
import os
import pickle

import numpy as np
import pytest

import dasktune as tune
from dasktune.callback import Callback
from dasktune.logger import (
    CSV_FILE,
    JSON_PARAMS_FILE,
    JSON_RESULT_FILE,
    PARAMS_PICKLE_FILE,
    CSVLoggerCallback,
    JsonLoggerCallback,
    LoggerCallback,
    pretty_print,
)
from dasktune.storage.layout import PARAMS_FILE, PROGRESS_FILE, RESULT_FILE
from dasktune.trial import Trial


@pytest.fixture
def trial(tmp_path) -> Trial:
    return Trial(
        "t1",
        {"lr": 0.1, "opt": {"name": "sgd"}},
        trial_name="train_00000",
        local_path=str(tmp_path / "train_00000"),
    )


def result(i: int, **metrics) -> dict:
    return {"training_iteration": i, "trial_id": "t1", **metrics}


class Recorder(LoggerCallback):
    def __init__(self):
        self.calls = []

    def log_trial_start(self, trial):
        self.calls.append(("start", trial.trial_id))

    def log_trial_result(self, iteration, trial, result):
        self.calls.append(("result", iteration, trial.trial_id, result["training_iteration"]))

    def log_trial_end(self, trial, failed=False):
        self.calls.append(("end", trial.trial_id, failed))


def test_the_callback_hooks_map_onto_the_log_methods(trial) -> None:
    recorder = Recorder()
    assert isinstance(recorder, Callback)
    recorder.on_trial_start(1, [trial], trial)
    recorder.on_trial_result(2, [trial], trial, result(1))
    recorder.on_trial_complete(3, [trial], trial)
    recorder.on_trial_error(4, [trial], trial)
    assert recorder.calls == [
        ("start", "t1"),
        ("result", 2, "t1", 1),
        ("end", "t1", False),
        ("end", "t1", True),
    ]


def test_the_file_loggers_never_use_the_names_of_dasktune_s_record() -> None:
    ours = {CSV_FILE, JSON_RESULT_FILE, JSON_PARAMS_FILE, PARAMS_PICKLE_FILE}
    assert not ours & {PARAMS_FILE, RESULT_FILE, PROGRESS_FILE}
    assert len(ours) == 4


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_flattens_and_keeps_the_first_result_s_columns(trial) -> None:
    logger = CSVLoggerCallback()
    logger.on_trial_start(1, [trial], trial)
    logger.on_trial_result(
        1, [trial], trial, result(1, loss=0.5, eval={"acc": 0.7}, config={"lr": 0.1})
    )
    logger.on_trial_result(2, [trial], trial, result(2, loss=0.25, eval={"acc": 0.8}, late=1))
    logger.on_trial_complete(3, [trial], trial)
    rows = read_csv(os.path.join(trial.local_path, CSV_FILE))
    assert list(rows[0]) == ["training_iteration", "trial_id", "loss", "eval/acc"]
    assert [(r["loss"], r["eval/acc"]) for r in rows] == [("0.5", "0.7"), ("0.25", "0.8")]


def test_csv_logger_continues_a_paused_trial_s_file_under_one_header(trial) -> None:
    logger = CSVLoggerCallback()
    logger.on_trial_result(1, [trial], trial, result(1, loss=0.5))  # opens the file itself
    logger.on_experiment_end([trial])  # paused: closed at the end of the first experiment
    resumed = CSVLoggerCallback()
    resumed.on_trial_start(5, [trial], trial)
    resumed.on_trial_result(6, [trial], trial, result(2, extra=3, loss=0.4))
    resumed.on_trial_complete(7, [trial], trial)
    with open(os.path.join(trial.local_path, CSV_FILE)) as f:
        lines = f.read().splitlines()
    assert lines == ["training_iteration,trial_id,loss", "1,t1,0.5", "2,t1,0.4"]


def test_json_logger_writes_ray_s_rows_with_the_config(trial) -> None:
    logger = JsonLoggerCallback()
    logger.on_trial_start(1, [trial], trial)
    logger.on_trial_result(1, [trial], trial, result(1, loss=np.float32(0.5)))
    trial.config = {"lr": 0.2, "opt": {"name": "sgd"}}  # as PBT changes it before a resume
    logger.on_trial_start(2, [trial], trial)
    logger.on_trial_result(2, [trial], trial, result(2, loss=0.25, arr=np.arange(2)))
    logger.on_trial_error(3, [trial], trial)
    with open(os.path.join(trial.local_path, JSON_RESULT_FILE)) as f:
        rows = [json.loads(line) for line in f]
    assert rows == [
        {
            "training_iteration": 1,
            "trial_id": "t1",
            "loss": 0.5,
            "config": {"lr": 0.1, "opt": {"name": "sgd"}},
        },
        {
            "training_iteration": 2,
            "trial_id": "t1",
            "loss": 0.25,
            "arr": [0, 1],
            "config": {"lr": 0.2, "opt": {"name": "sgd"}},
        },
    ]
    with open(os.path.join(trial.local_path, JSON_PARAMS_FILE)) as f:
        text = f.read()
    assert json.loads(text) == {"lr": 0.2, "opt": {"name": "sgd"}} and "\n  " in text
    with open(os.path.join(trial.local_path, PARAMS_PICKLE_FILE), "rb") as f:
        assert pickle.load(f) == {"lr": 0.2, "opt": {"name": "sgd"}}


def test_loggers_close_what_is_open_when_the_experiment_ends(trial) -> None:
    loggers = [CSVLoggerCallback(), JsonLoggerCallback()]
    for logger in loggers:
        logger.on_trial_result(1, [trial], trial, result(1, loss=1.0))
        handle = logger._files[trial.trial_id]
        logger.on_experiment_end([trial])
        assert handle.closed and not logger._files


def test_pretty_print_drops_config_and_empty_values() -> None:
    text = pretty_print(
        {
            "loss": np.float64(0.5),
            "config": {"lr": 1},
            "hist_stats": [1],
            "note": None,
            "eval": {"acc": 0.9},
            "pid": 7,
        },
        exclude={"pid"},
    )
    assert text == "eval:\n  acc: 0.9\nloss: 0.5\n"


# -- results.csv: one table of every result ----------------------------------------------------


def late_metric(config):
    for step in range(1, 4):
        metrics = {"loss": config["lr"] / step}
        if step == 3:
            metrics["late"] = step  # a metric that appears only at the end
        tune.report(metrics)


def test_results_csv_holds_every_result_with_a_stable_header(client, storage):
    import pandas as pd

    from dasktune.logger import RESULTS_TABLE_FILE

    grid = tune.Tuner(
        late_metric,
        param_space={"lr": tune.grid_search([1.0, 2.0])},
        run_config=tune.RunConfig(name="table", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    path = os.path.join(grid.experiment_path, RESULTS_TABLE_FILE)
    table = pd.read_csv(path)
    assert len(table) == 6  # every report of every trial
    assert list(table.columns[:4]) == ["trial_id", "trial", "training_iteration", "loss"]
    assert {"time_total_s", "timestamp", "config/lr", "other"} <= set(table.columns)
    assert "late" not in table.columns  # the header was fixed by the first result
    late = table[table["training_iteration"] == 3]["other"].map(json.loads)
    assert [row["late"] for row in late] == [3, 3]
    assert sorted(table.groupby("config/lr")["loss"].min()) == pytest.approx([1 / 3, 2 / 3])
