"""Searchers inside real experiments: reproducibility, concurrency, ASHA, bad input."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest
from hyperopt import hp

import dasktune as tune
from dasktune.schedulers import ASHAScheduler
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater
from dasktune.search.hyperopt import HyperOptSearch
from dasktune.search.optuna import OptunaSearch


def quadratic(config):
    start = time.time()
    for step in range(3):
        time.sleep(config.get("sleep", 0))
        tune.report(
            {
                "loss": (config["x"] - 0.3) ** 2 + 0.1 / (step + 1),
                "start": start,
                "end": time.time(),
            }
        )


SPACE = {"x": tune.uniform(0, 1), "width": tune.choice([8, 16, 32])}


def fit(client, storage, name, **tune_kwargs):
    param_space = tune_kwargs.pop("param_space", SPACE)
    return tune.Tuner(
        quadratic,
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
        client=client,
    ).fit()


def configs(grid):
    return [r.config for r in sorted(grid, key=lambda r: r.path)]


@pytest.mark.parametrize(
    "make_searcher",
    [
        lambda: None,
        lambda: HyperOptSearch(n_initial_points=3),
        lambda: OptunaSearch(),
    ],
    ids=["random", "hyperopt", "optuna"],
)
def test_seed_gives_the_same_config_sequence(client, storage, make_searcher):
    runs = [
        fit(
            client,
            storage,
            f"run{i}",
            search_alg=make_searcher(),
            metric="loss",
            mode="min",
            num_samples=8,
            max_concurrent_trials=1,
            seed=3,
        )
        for i in range(2)
    ]
    assert configs(runs[0]) == configs(runs[1])
    assert len({c["x"] for c in configs(runs[0])}) == 8
    other = fit(
        client,
        storage,
        "other",
        search_alg=make_searcher(),
        metric="loss",
        mode="min",
        num_samples=8,
        max_concurrent_trials=1,
        seed=4,
    )
    assert configs(other) != configs(runs[0])


def overlapping(grid) -> bool:
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_model_based_searcher_keeps_both_workers_busy(client, storage):
    grid = fit(
        client,
        storage,
        "busy",
        search_alg=HyperOptSearch(n_initial_points=2),
        metric="loss",
        mode="min",
        num_samples=8,
        param_space={**SPACE, "sleep": 0.05},
    )
    assert len(grid) == 8 and overlapping(grid)


def test_max_concurrent_trials_limits_a_searcher(client, storage):
    slow = {**SPACE, "sleep": 0.03}
    grid = fit(
        client,
        storage,
        "one",
        search_alg=HyperOptSearch(n_initial_points=2),
        metric="loss",
        mode="min",
        num_samples=5,
        max_concurrent_trials=1,
        param_space=slow,
    )
    assert len(grid) == 5 and not overlapping(grid)
    grid = fit(
        client,
        storage,
        "limiter",
        metric="loss",
        mode="min",
        num_samples=5,
        search_alg=ConcurrencyLimiter(OptunaSearch(), max_concurrent=1),
        param_space=slow,
    )
    assert len(grid) == 5 and not overlapping(grid)


def test_a_limited_grid_runs_every_variant_and_needs_no_metric(client, storage):
    """ConcurrencyLimiter(BasicVariantGenerator()): the grid decides the count, as unwrapped."""
    space = {**SPACE, "x": tune.grid_search([0.1, 0.2, 0.3]), "sleep": 0.02}
    grid = fit(
        client,
        storage,
        "limited-grid",
        num_samples=2,
        param_space=space,
        search_alg=ConcurrencyLimiter(BasicVariantGenerator(), max_concurrent=1),
    )
    assert sorted(r.config["x"] for r in grid) == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    assert not overlapping(grid)


def test_ray_s_spellings_of_no_limit_and_of_a_budget(client, storage):
    import datetime

    grid = fit(
        client,
        storage,
        "no-limit",
        num_samples=3,
        max_concurrent_trials=0,
        time_budget_s=datetime.timedelta(minutes=5),
    )
    assert len(grid) == 3


def test_native_hyperopt_space_without_param_space(client, storage):
    searcher = HyperOptSearch(
        {"x": hp.uniform("x", 0, 1)},
        metric="loss",
        mode="min",
        random_state_seed=0,
        n_initial_points=4,
    )
    grid = fit(client, storage, "native", param_space=None, search_alg=searcher, num_samples=12)
    assert len(grid) == 12 and grid.num_errors == 0
    best = grid.get_best_result("loss", "min")
    assert abs(best.config["x"] - 0.3) < 0.2


def test_asha_with_hyperopt_tells_the_searcher_about_stopped_trials(client, storage):
    searcher = HyperOptSearch(n_initial_points=3, random_state_seed=1)
    grid = fit(
        client,
        storage,
        "asha",
        search_alg=searcher,
        metric="loss",
        mode="min",
        num_samples=10,
        max_concurrent_trials=1,
        scheduler=ASHAScheduler(max_t=3, grace_period=1, reduction_factor=2),
    )
    stopped = [r for r in grid if r.metrics["training_iteration"] < 3]
    assert stopped, "ASHA should have stopped some trials early"
    # Every trial, stopped ones included, reached hyperopt with its last loss.
    losses = sorted(
        t["result"]["loss"] for t in searcher._trials.trials if t["result"].get("status") == "ok"
    )
    assert losses == sorted(r.metrics["loss"] for r in grid)


def test_optuna_multi_objective_gives_a_pareto_front(client, storage):
    def two_objectives(config):
        tune.report({"loss": config["x"], "cost": 1 - config["x"] + 0.1 * config["y"]})

    searcher = OptunaSearch(metric=["loss", "cost"], mode=["min", "min"], seed=0)
    grid = tune.Tuner(
        two_objectives,
        param_space={"x": tune.uniform(0, 1), "y": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=10),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    front = grid.get_pareto_front()
    assert 1 <= len(front) <= 10
    for a in front:  # nothing on the front is dominated by any trial
        assert not any(
            b.metrics["loss"] <= a.metrics["loss"] and b.metrics["cost"] < a.metrics["cost"]
            for b in grid
        )


def test_bad_search_input_fails_before_any_trial(client, storage):
    with pytest.raises(ValueError, match="one or the other"):
        fit(
            client,
            storage,
            "mixed",
            search_alg=HyperOptSearch({"x": hp.uniform("x", 0, 1)}),
            metric="loss",
            mode="min",
        )
    with pytest.raises(ValueError, match=r"OptunaSearch needs a metric and a mode.*neither"):
        fit(client, storage, "nometric", search_alg=OptunaSearch())
    # Half given: the message names what is there and what is missing, and no made-up metric.
    with pytest.raises(
        ValueError, match=r"has metric='acc' but no mode. Pass HyperOptSearch\(metric='acc', mode="
    ):
        fit(client, storage, "nomode", search_alg=HyperOptSearch(metric="acc"))
    with pytest.raises(ValueError, match=r"HyperBandScheduler needs.*has mode='max' but no metric"):
        fit(client, storage, "nomode", scheduler=ASHAScheduler(mode="max"))
    with pytest.raises(ValueError, match="grid_search"):
        fit(
            client,
            storage,
            "grid",
            search_alg=HyperOptSearch(),
            metric="loss",
            mode="min",
            param_space={"x": tune.grid_search([1, 2])},
        )
    import os

    assert not os.path.exists(os.path.join(storage, "mixed"))


def test_missing_optional_package_names_the_extra():
    code = (
        "import sys; sys.modules['hyperopt'] = None\n"
        "from dasktune.search.hyperopt import HyperOptSearch"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "pip install 'dasktune[hyperopt]'" in out.stderr


def test_a_repeater_runs_each_optuna_config_twice_and_optuna_learns_the_mean(client, storage):
    def noisy(config):
        # Each repeat of a config scores 1 apart: the searcher should see their mean.
        tune.report({"loss": config["x"] + config["__trial_index__"]})

    optuna_search = OptunaSearch(seed=0)
    grid = tune.Tuner(
        noisy,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            search_alg=Repeater(optuna_search, repeat=2),
            metric="loss",
            mode="min",
            num_samples=6,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    by_x: dict[float, list[int]] = {}
    for result in grid:
        by_x.setdefault(result.config["x"], []).append(result.config["__trial_index__"])
    assert sorted(sorted(indices) for indices in by_x.values()) == [[0, 1]] * 3
    told = sorted(
        (t.params["x"], t.value) for t in optuna_search._study.trials if t.value is not None
    )
    assert [x for x, _ in told] == sorted(by_x)
    assert all(value == pytest.approx(x + 0.5) for x, value in told)


def test_numpy_s_global_seed_repeats_the_default_search(client, storage):
    import numpy as np

    def drawn():
        np.random.seed(2024)  # Ray's FAQ: seed numpy before the Tuner for the same configs
        grid = tune.Tuner(
            quadratic,
            param_space={**SPACE, "n": tune.sample_from(lambda spec: int(np.random.randint(9)))},
            tune_config=tune.TuneConfig(num_samples=4),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
            client=client,
        ).fit()
        return sorted((r.config["x"], r.config["width"], r.config["n"]) for r in grid)

    assert drawn() == drawn()
