"""An experiment with no end gets a warning at its start."""

from __future__ import annotations

import logging

import dasktune as tune


class TwoConfigs(tune.search.Searcher):
    def __init__(self):
        super().__init__()
        self.made = 0

    learns_from_results = False

    def suggest(self, trial_id):
        self.made += 1
        return {"x": self.made} if self.made <= 2 else tune.search.Searcher.FINISHED


def one_report(config):
    tune.report({"x": config["x"]})


def run(client, storage, caplog, **run_kwargs):
    with caplog.at_level(logging.WARNING, logger="dasktune.tuner"):
        tune.Tuner(
            one_report,
            tune_config=tune.TuneConfig(num_samples=-1, search_alg=TwoConfigs()),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, **run_kwargs),
            client=client,
        ).fit()
    return [r.getMessage() for r in caplog.records if "num_samples=-1" in r.getMessage()]


def test_num_samples_minus_one_with_no_end_is_warned_about(client, storage, caplog):
    [warning] = run(client, storage, caplog)
    assert "runs until you stop it" in warning


def test_a_stop_condition_is_an_end(client, storage, caplog):
    assert run(client, storage, caplog, stop={"training_iteration": 1}) == []
