"""Schedulers that pause, resume and clone trials, on a real multi-process cluster."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import dask
import pytest

import dasktune as tune
from dasktune.schedulers import (
    PB2,
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialDecision,
)

from .median_vs_ray import (
    RAY_OUTCOME,
    SCENARIOS,
    comparable,
    differences,
    make_trainable,
    outcome_of,
    ray_outcomes,
)

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def curve(config):
    """Reports rate * step; resumes from its checkpoint (the step count)."""
    step = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "step")) as f:
            step = int(f.read())
    while step < config["steps"]:
        step += 1
        time.sleep(config.get("sleep", 0))
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            tune.report(
                {"score": config["rate"] * step, "step": step},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


def run(client, storage, scheduler, rates, name, steps=9, verbose=0, **tune_kwargs):
    return tune.Tuner(
        curve,
        param_space={"rate": tune.grid_search(rates), "steps": steps},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, **tune_kwargs),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=verbose),
        client=client,
    ).fit()


def assert_continuous(result):
    """Iterations continue across pauses, with no row recorded twice."""
    df = result.metrics_dataframe
    assert df["training_iteration"].tolist() == list(range(1, len(df) + 1))
    assert df["step"].tolist() == df["training_iteration"].tolist()


def resumed(result) -> bool:
    """A new run (resume) restarts iterations_since_restore."""
    return (result.metrics_dataframe["iterations_since_restore"].diff() < 0).any()


def test_hyperband_pauses_and_resumes_from_checkpoints(client, storage, capsys):
    rates = [0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4, 0.8, 0.6]
    # A status line every turn of the loop. Only two trials run at a time, so the first of
    # a bracket to reach a rung stays PAUSED while its bracket-mates get there: the line at
    # the end of that turn shows it, however fast the trials run. (With a line every 0.05 s,
    # a fast machine printed none while a trial was paused.)
    with dask.config.set({"dasktune.console.interval": 0}):
        grid = run(
            client,
            storage,
            HyperBandScheduler(max_t=9, reduction_factor=3),
            rates,
            "hyperband",
            verbose=1,
        )
    assert grid.num_terminated == len(rates) and grid.num_errors == 0
    for result in grid:
        assert_continuous(result)
    assert any(resumed(r) for r in grid), "some trial should have paused and resumed"
    best = grid.get_best_result()
    assert best.config["rate"] == 0.9 and best.metrics["training_iteration"] == 9
    assert "PAUSED" in capsys.readouterr().out
    # Halving: not every trial trained to max_t.
    assert sum(len(r.metrics_dataframe) for r in grid) < 9 * len(rates)


def test_promotion_asha_pauses_at_rungs_and_promotes(client, storage):
    rates = [0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4, 0.8]
    grid = run(
        client,
        storage,
        ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3, mode_of_operation="promotion"),
        rates,
        "promotion",
        max_concurrent_trials=2,
    )
    assert grid.num_errors == 0
    for result in grid:
        assert_continuous(result)
    assert any(resumed(r) for r in grid)
    assert grid.get_best_result().config["rate"] == 0.9
    assert sum(len(r.metrics_dataframe) for r in grid) < 9 * len(rates)


def test_median_stopping_rule_stops_trials_below_the_median(client, storage):
    rates = [0.9, 0.8, 0.7, 0.1, 0.05]
    grid = run(
        client,
        storage,
        MedianStoppingRule(time_attr="training_iteration", grace_period=2, min_samples_required=2),
        rates,
        "median",
        max_concurrent_trials=1,
    )
    lengths = {r.config["rate"]: len(r.metrics_dataframe) for r in grid}
    # Ray's rule: past the grace period, a trial stops when its best score is below the
    # median of the other trials' mean scores over [grace_period, t]. At t=2 those are
    # 1.8 (rate 0.9) and 1.6 (rate 0.8), median 1.7: rate 0.7 (best 1.4) stops there.
    assert lengths == {0.9: 9, 0.8: 9, 0.7: 2, 0.1: 2, 0.05: 2}
    for result in grid:
        assert_continuous(result)


class Counter(tune.Trainable):
    def setup(self, config):
        self.total = 0.0

    def step(self):
        self.total += self.config["rate"]
        return {"score": self.total}

    def save_checkpoint(self, checkpoint_dir):
        return {"total": self.total}

    def load_checkpoint(self, state):
        self.total = state["total"]


def test_class_trainable_pauses_with_its_state(client, storage):
    rates = [0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4, 0.8, 0.6]
    grid = tune.Tuner(
        Counter,
        param_space={"rate": tune.grid_search(rates)},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", scheduler=HyperBandScheduler(max_t=9, reduction_factor=3)
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert grid.num_errors == 0
    for result in grid:
        df = result.metrics_dataframe
        n = len(df)
        # The running total continues across pauses: step k reports k * rate.
        expected = [round(result.config["rate"] * k, 9) for k in range(1, n + 1)]
        assert [round(v, 9) for v in df["score"]] == expected
    assert any(resumed(r) for r in grid)


def test_fifo_never_pauses(client, storage):
    grid = run(client, storage, FIFOScheduler(), [0.1, 0.2], "fifo", steps=3)
    assert not any(resumed(r) for r in grid)


def test_pbt_beats_random_search_on_the_toy_problem(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "pbt_toy.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    scores = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(random search|PBT):\s+best accuracy ([0-9.]+)", out.stdout, re.M)
    }
    # Synchronous PBT (the example's choice) copies at the same steps whichever worker is
    # ahead: the same result every run (0.8969 against 0.5207), where the asynchronous one
    # it replaced ended anywhere from 0.57 to 0.66 by which trial won each race.
    assert scores["PBT"] > scores["random search"] + 0.1, out.stdout
    # The same budget: each trial trains to the same step, and a clone continues from the
    # step of the checkpoint it copies, which all trials have reached together.
    iterations = re.search(r"random search (\d+), PBT (\d+)", out.stdout)
    assert int(iterations.group(2)) == int(iterations.group(1)), out.stdout
    # Every exploit is logged in the trial's directory.
    logs = [
        os.path.join(root, f)
        for root, _, files in os.walk(tmp_path / "dasktune_results")
        for f in files
        if f == "config_changes.jsonl"
    ]
    assert logs
    entry = json.loads(open(logs[0]).readline())
    assert {"training_iteration", "source_trial", "old_config", "new_config"} <= set(entry)


def test_pbt_policy_file_replays_on_a_new_trial(client, storage):
    from dasktune.schedulers import PopulationBasedTraining, PopulationBasedTrainingReplay

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=2,
        hyperparam_mutations={"rate": [0.1, 0.2, 0.4, 0.8]},
        seed=1,
    )
    grid = tune.Tuner(
        curve,
        param_space={"rate": tune.choice([0.1, 0.2, 0.4, 0.8]), "steps": 8},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", num_samples=6, seed=2, scheduler=pbt
        ),
        run_config=tune.RunConfig(name="pbt", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    policies = [
        os.path.join(r.path, "pbt_policy.jsonl")
        for r in grid
        if os.path.exists(os.path.join(r.path, "pbt_policy.jsonl"))
    ]
    assert policies, "some trial should have exploited another"
    with open(policies[0]) as f:
        chain = [json.loads(line) for line in f]
    assert all({"source", "step", "old_config", "new_config"} <= set(e) for e in chain)

    with pytest.warns(UserWarning, match="replaced by the initial config"):
        replay = tune.Tuner(
            curve,
            param_space={"steps": 8},
            tune_config=tune.TuneConfig(
                metric="score", mode="max", scheduler=PopulationBasedTrainingReplay(policies[0])
            ),
            run_config=tune.RunConfig(name="replay", storage_path=storage, verbose=0),
            client=client,
        ).fit()
    (result,) = replay
    # The replayed trial ends with the config the policy ends with.
    assert result.config["rate"] == chain[-1]["new_config"]["rate"]
    assert_continuous(result)

    # Ray's policy files, where Ray's PBT guides look: beside the trials, one row per exploit.
    trial_id = chain[-1]["trial_id"]
    ray_policy = os.path.join(grid.experiment_path, f"pbt_policy_{trial_id}.txt")
    with open(ray_policy) as f:
        rows = [json.loads(line) for line in f]
    assert rows == [
        [e["trial_id"], e["source"], e["step"], e["source_step"], e["old_config"], e["new_config"]]
        for e in chain
    ]
    with open(os.path.join(grid.experiment_path, "pbt_global.txt")) as f:
        every = [json.loads(line) for line in f]
    assert rows[-1] in every and len(every) >= len(rows)
    # The guide replays it with the scheduler alone: no metric or mode needed.
    with pytest.warns(UserWarning, match="replaced by the initial config"):
        (ray_replayed,) = tune.Tuner(
            curve,
            param_space={"steps": 8},
            tune_config=tune.TuneConfig(scheduler=PopulationBasedTrainingReplay(ray_policy)),
            run_config=tune.RunConfig(name="ray_replay", storage_path=storage, verbose=0),
            client=client,
        ).fit()
    assert ray_replayed.config["rate"] == chain[-1]["new_config"]["rate"]


class SixRates(tune.search.Searcher):
    """A searcher that is not BasicVariantGenerator: six configs, then FINISHED."""

    def __init__(self):
        super().__init__(metric="score", mode="max")
        self.made = 0

    def suggest(self, trial_id):
        if self.made >= 6:
            return tune.search.Searcher.FINISHED
        self.made += 1
        return {"rate": self.made / 10, "steps": 9}


PAUSING = {
    "hyperband": lambda: HyperBandScheduler(max_t=9, reduction_factor=3),
    "asha-promotion": lambda: ASHAScheduler(
        max_t=9, grace_period=1, reduction_factor=3, mode_of_operation="promotion"
    ),
    "median": lambda: MedianStoppingRule(grace_period=1, min_samples_required=3, hard_stop=False),
    "pbt": lambda: tune.schedulers.PopulationBasedTraining(
        perturbation_interval=3, hyperparam_mutations={"rate": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(PAUSING))
def test_a_pausing_scheduler_ends_behind_a_concurrency_limited_searcher(client, storage, name):
    """The limiter counts paused trials as live and offers no new one; the scheduler keeps
    them paused for the trials to come. Told that none come, it lets them run on."""
    grid = tune.Tuner(
        curve,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=PAUSING[name](),
            num_samples=6,
            search_alg=tune.search.ConcurrencyLimiter(SixRates(), max_concurrent=2),
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert len(grid) == 6 and grid.num_errors == 0
    assert all(r.status == "TERMINATED" for r in grid)


def lineage(config):
    """Reports the rate it trains with; resumes from its checkpoint (step and total)."""
    step, total = 0, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state")) as f:
            step, total = json.load(f)
    while step < 6:
        step += 1
        total += config["rate"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state"), "w") as f:
                json.dump([step, total], f)
            tune.report(
                {"score": total, "rate_used": config["rate"]},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


def test_a_clone_of_a_trial_that_is_behind_records_its_new_lineage(client, storage):
    """One trial at a time: a trial that exploits one behind it steps back in iterations,
    and what it trains from there (with the new config) is recorded and decided on."""
    from dasktune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=2,
        seed=3,
        resample_probability=0,
        hyperparam_mutations={"rate": [0.1, 0.2, 0.3, 0.4]},
    )
    grid = tune.Tuner(
        lineage,
        param_space={"rate": tune.grid_search([0.1, 0.2, 0.3, 0.4])},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", scheduler=pbt, max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(name="behind", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    stepped_back = 0
    for result in grid:
        df = result.metrics_dataframe
        iterations = df["training_iteration"].tolist()
        backs = [i + 1 for i, (a, b) in enumerate(itertools.pairwise(iterations)) if b <= a]
        if not backs:
            continue
        stepped_back += 1
        # From the step back on, the rows are the new lineage's: they run to the end with
        # the new config, which the final metrics therefore match.
        new = df.iloc[backs[-1] :]
        assert new["training_iteration"].tolist() == list(range(iterations[backs[-1]], 7))
        assert set(new["rate_used"]) == {result.config["rate"]}
        assert result.metrics["rate_used"] == result.config["rate"]
    assert stepped_back  # the case under test happened


def no_checkpoints(config):
    for i in range(8):
        tune.report({"score": config["rate"] * (i + 1), "rate_used": config["rate"]})


def test_pbt_skips_an_exploit_of_a_trial_without_checkpoints(client, storage, caplog):
    """Nothing to copy: as in Ray, the trial keeps its own config (and says why, once)."""
    import logging

    from dasktune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=2,
        seed=0,
        hyperparam_mutations={"rate": [0.1, 0.2, 0.3, 0.4]},
    )
    with caplog.at_level(logging.WARNING, logger="dasktune.execution.loop"):
        grid = tune.Tuner(
            no_checkpoints,
            param_space={"rate": tune.grid_search([0.1, 0.2, 0.3, 0.4])},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
            run_config=tune.RunConfig(name="nockpt", storage_path=storage, verbose=0),
            client=client,
        ).fit()
    for result in grid:
        assert set(result.metrics_dataframe["rate_used"]) == {result.config["rate"]}
        assert not os.path.exists(os.path.join(result.path, "config_changes.jsonl"))
    warnings = [r.message for r in caplog.records if "has reported none" in r.getMessage()]
    assert len(warnings) == 1


class PauseTheFirst(FIFOScheduler):
    """A custom scheduler: when the second trial reports iteration 2, it pauses the first
    (a TrialUpdate), which FIFO then resumes."""

    def __init__(self):
        super().__init__()
        self.order, self.updates = [], []

    def on_trial_add(self, trial):
        self.order.append(trial.trial_id)

    def on_trial_result(self, trial, result):
        if trial.trial_id == self.order[1] and result["training_iteration"] == 2:
            self.updates = [tune.schedulers.TrialUpdate(self.order[0], TrialDecision.PAUSE)]
        return TrialDecision.CONTINUE

    def pop_trial_updates(self):
        updates, self.updates = self.updates, []
        return updates


class Starts(tune.Callback):
    def __init__(self):
        self.starts = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.starts[trial.trial_name] = self.starts.get(trial.trial_name, 0) + 1


def test_a_trial_update_pauses_a_running_trial_which_resumes(client, storage):
    starts = Starts()
    grid = tune.Tuner(
        # The first trial runs 3 s; the second asks for its pause after 0.6 s.
        curve,
        param_space={"rate": tune.grid_search([1.0, 2.0]), "steps": 10, "sleep": 0.3},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=PauseTheFirst()),
        run_config=tune.RunConfig(
            name="pause-update", storage_path=storage, verbose=0, callbacks=[starts]
        ),
        client=client,
    ).fit()
    first = min(grid, key=lambda r: r.path)
    assert starts.starts[os.path.basename(first.path)] == 2  # paused, then resumed
    assert_continuous(first)
    assert first.metrics_dataframe["done"].tolist() == [False] * 9 + [True]


def checkpoints_its_iteration(config):
    """Checkpoints its iteration; after a restore, reports which iteration it came from."""
    import tempfile

    start, came_from = 0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "it")) as f:
            start = came_from = int(f.read())
    for it in range(start + 1, 13):
        directory = tempfile.mkdtemp()
        with open(os.path.join(directory, "it"), "w") as f:
            f.write(str(it))
        tune.report(
            {"score": config["rate"] * it, "came_from": came_from},
            checkpoint=tune.Checkpoint.from_directory(directory),
        )


def test_pbt_copies_the_checkpoint_it_decided_on_even_when_only_the_newest_is_kept(client, storage):
    """The source reports on before the exploiting trial has paused; with num_to_keep=1 its
    checkpoint at the decision would be gone, but the exploit must still start from it."""
    from dasktune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=3,
        hyperparam_mutations={"rate": [0.1, 0.5, 1.0]},
        seed=4,
    )
    grid = tune.Tuner(
        checkpoints_its_iteration,
        param_space={"rate": tune.grid_search([0.1, 0.2, 0.9, 1.0])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(
            name="pinned",
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
        client=client,
    ).fit()
    exploits = 0
    for result in grid:
        path = os.path.join(result.path, "pbt_policy.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            own = [
                e
                for e in map(json.loads, f)
                if e["trial_id"] == result.metrics["trial_id"] and e["step"] < 12
            ]  # an exploit at the last step has nothing to train
        if not own:
            continue
        last = own[-1]
        if last["source_step"] >= 12:
            continue  # restored at the source's last iteration: nothing left to train or report
        rows = result.metrics_dataframe
        exploits += 1
        # The lineage after the exploit continues from the source's checkpoint that PBT
        # decided on (and logged), not from a newer one the source reported meanwhile.
        assert last["source_step"] in set(rows["came_from"]), (
            last,
            rows[["training_iteration", "came_from"]].to_string(),
        )
    assert exploits, "some trial should have exploited another"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_median_stopping_rule_ends_trials_where_ray_tune_does(client, storage, name):
    """Each scenario of median_vs_ray.py under a concurrency limit: every trial ends at the
    iteration that Ray Tune 2.60's did (RAY_OUTCOME, recorded from Ray by that script), and
    one trial at a time, pauses after the iterations Ray's did. Before the coordinator told
    the rule of the limit, trials short of samples yielded to trials Ray would not have
    started, and two that Ray runs to the end in "one_at_a_time" stopped at 3 and 4."""
    curves, limit, rule = SCENARIOS[name]
    grid = tune.Tuner(
        make_trainable("dasktune", seconds=0.1),
        param_space={"curve": tune.grid_search(curves)},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            max_concurrent_trials=limit,
            scheduler=MedianStoppingRule(time_attr="training_iteration", **rule),
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert grid.num_errors == 0
    assert comparable(name, outcome_of(grid)) == comparable(name, RAY_OUTCOME[name])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_recorded_ray_outcome_is_what_ray_does(tmp_path):
    """Where Ray Tune is installed beside dasktune, RAY_OUTCOME is checked against it: the
    scenarios of one trial at a time, which Ray runs the same every time."""
    pytest.importorskip("ray.tune")
    sequential = [name for name, (_, limit, _) in SCENARIOS.items() if limit == 1]
    assert differences(ray_outcomes(str(tmp_path), sequential)) == []


def test_pb2_explores_within_bounds_from_copied_checkpoints(client, storage):
    """PB2 on a real cluster: trials of the lower quantile go on from a better trial's
    checkpoint with a rate the bandit chose within the bounds.

    That the bandit prefers the rates that did better is checked where it is
    deterministic, tests/schedulers/test_pb2.py::test_prefers_the_region_that_improved
    (a fake clock): here the order of the results, and so the bandit's data, depend on
    the machine's timing, and with four choices a majority above the grid's rates failed
    once in CI (2 of 4; three earlier runs: 5 of 6, 5 of 6, 4 of 5)."""

    pb2 = PB2(
        time_attr="training_iteration",
        perturbation_interval=2,
        hyperparam_bounds={"rate": [0.1, 1.0]},
        seed=0,
    )
    grid = run(client, storage, pb2, [0.1, 0.2, 0.3, 0.4], "pb2", steps=20)
    assert grid.num_errors == 0 and grid.num_terminated == 4
    changes = []
    for log in (os.path.join(r.path, "config_changes.jsonl") for r in grid):
        if os.path.exists(log):
            with open(log) as f:
                changes += [json.loads(line) for line in f]
    assert changes, "some trial should have exploited another"
    chosen = [c["new_config"]["rate"] for c in changes]
    assert all(0.1 <= rate <= 1.0 for rate in chosen)
    # A clone goes on from the step of the checkpoint it copied. (One that copies a trial at
    # its last step has nothing left to train, and ends with its own last result.)
    for result in grid:
        df = result.metrics_dataframe
        assert df["step"].tolist() == df["training_iteration"].tolist()
