"""Ray-style logger callbacks in real experiments: what they see, what they write, and that
dasktune's own record in each trial directory stays whole beside them."""

from __future__ import annotations

import csv
import json
import os

import pandas as pd

import dasktune as tune
from dasktune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback


def steps(config):
    for i in range(1, 4):
        if config["fail"] and i == 2:
            raise RuntimeError("boom")
        tune.report({"loss": config["x"] / i, "nested": {"a": i}})


class TrialLog(LoggerCallback):
    """A logger as Ray users write them: it overrides the log_* methods only."""

    def __init__(self):
        self.events = []
        self.ended = False

    def log_trial_start(self, trial):
        self.events.append(("start", trial.config["x"]))

    def log_trial_result(self, iteration, trial, result):
        self.events.append(("result", trial.config["x"], result["training_iteration"]))

    def log_trial_end(self, trial, failed=False):
        self.events.append(("end", trial.config["x"], failed))

    def on_experiment_end(self, trials, **info):
        self.ended = len(trials)


def test_loggers_see_every_trial_and_write_beside_dasktune_s_record(client, storage):
    trial_log = TrialLog()
    grid = tune.Tuner(
        steps,
        param_space={
            "x": tune.grid_search([1.0, 2.0, 3.0]),
            "fail": tune.sample_from(lambda spec: spec.config.x == 3.0),
        },
        run_config=tune.RunConfig(
            name="loggers",
            storage_path=storage,
            verbose=0,
            callbacks=[trial_log, CSVLoggerCallback(), JsonLoggerCallback()],
        ),
        client=client,
    ).fit()
    assert trial_log.ended == 3
    for x, reports, failed in ((1.0, 3, False), (2.0, 3, False), (3.0, 1, True)):
        mine = [e for e in trial_log.events if e[1] == x]
        assert mine == (
            [("start", x)]
            + [("result", x, i) for i in range(1, reports + 1)]
            + [("end", x, failed)]
        ), mine

    for result in grid:
        path, x = result.path, result.config["x"]
        reports = 1 if result.config["fail"] else 3
        # dasktune's own record, unchanged by the loggers.
        with open(os.path.join(path, "params.json")) as f:
            assert json.load(f) == result.config
        with open(os.path.join(path, "result.json")) as f:
            own = [json.loads(line) for line in f]
        assert [row["loss"] for row in own] == [x / i for i in range(1, reports + 1)]
        # Every result carries the trial's config, as Ray Tune's result.json does.
        assert all(row["config"] == result.config for row in own)
        progress = pd.read_csv(os.path.join(path, "progress.csv"))
        assert list(progress["nested/a"]) == list(range(1, reports + 1))
        # The loggers' files, in Ray's formats.
        with open(os.path.join(path, "logger_result.json")) as f:
            logged = [json.loads(line) for line in f]
        assert [row["loss"] for row in logged] == [row["loss"] for row in own]
        assert all(row["config"] == result.config for row in logged)
        with open(os.path.join(path, "logger_params.json")) as f:
            assert json.load(f) == result.config
        with open(os.path.join(path, "logger_progress.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert [float(row["loss"]) for row in rows] == [row["loss"] for row in own]
        assert [int(row["nested/a"]) for row in rows] == list(range(1, reports + 1))
