"""A Ray-style custom ``tune.Stopper`` subclass, end to end on a real cluster."""

from __future__ import annotations

import time

import dasktune as tune

MAX_STEPS = 400


def climbing(config):
    for step in range(1, MAX_STEPS + 1):
        time.sleep(0.01)
        tune.report({"mean_accuracy": min(1.0, step * config["rate"])})


class CustomStopper(tune.Stopper):
    """As in Ray Tune's guide: once any trial reaches 0.8, stop every trial."""

    def __init__(self):
        self.should_stop = False
        self.seen: set[str] = set()

    def __call__(self, trial_id, result):
        self.seen.add(trial_id)
        if not self.should_stop and result["mean_accuracy"] >= 0.8:
            self.should_stop = True
        return self.should_stop

    def stop_all(self):
        return self.should_stop


def test_stop_all_ends_the_experiment_early(client, storage):
    stopper = CustomStopper()
    grid = tune.Tuner(
        climbing,
        param_space={"rate": 0.05},
        tune_config=tune.TuneConfig(metric="mean_accuracy", mode="max", num_samples=6),
        run_config=tune.RunConfig(name="stopper", storage_path=storage, stop=stopper, verbose=0),
        client=client,
    ).fit()
    assert stopper.should_stop
    # Whichever trial ran first reached the goal at step 16 and stopped the experiment: no
    # trial ran past it (400 steps each otherwise), and the last ones never started.
    # (Read from the recorded rows: when two trials reach step 16 together, the second one's
    # Result.metrics can lag one result behind its rows, see the branch's report.)
    frames = [r.metrics_dataframe for r in grid]
    last_rows = [frame.iloc[-1] for frame in frames if not frame.empty]
    assert any(row["mean_accuracy"] >= 0.8 and row["done"] for row in last_rows), last_rows
    iterations = [int(row["training_iteration"]) for row in last_rows]
    assert max(iterations) == 16, iterations
    assert len(grid) - len(last_rows) >= 2, f"every trial started: {iterations}"
    assert grid.num_errors == 0
    # The stopper saw every trial that reported, by the ids the results carry.
    reported = {r.metrics["trial_id"] for r in grid if r.metrics}
    assert stopper.seen == reported


def test_ray_s_stopper_names_are_importable():
    from dasktune import stopper

    ray_exports = {
        "Stopper",
        "CombinedStopper",
        "ExperimentPlateauStopper",
        "FunctionStopper",
        "MaximumIterationStopper",
        "NoopStopper",
        "TimeoutStopper",
        "TrialPlateauStopper",
    }
    assert ray_exports <= set(stopper.__all__)
    assert all(isinstance(getattr(stopper, name), type) for name in ray_exports)
    assert tune.Stopper is stopper.Stopper
    noop = stopper.NoopStopper()
    assert noop("t", {"loss": 0}) is False and noop.stop_all() is False
    assert noop.decision_points() == (), "it never stops a trial, so none waits for it"
