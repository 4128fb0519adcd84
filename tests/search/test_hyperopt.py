"""Tests of HyperOptSearch: the searcher contracts, hyperopt's own spaces, TPE as fmin runs it."""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("hyperopt")

from hyperopt import hp

from dasktune.search import sample as tune
from dasktune.search.hyperopt import HyperOptSearch

from .library_searcher_contract import LibrarySearcherContract, drive


class TestHyperOptSearch(LibrarySearcherContract):
    num_trials = 12
    deterministic_restore = True
    searcher_class = HyperOptSearch
    seed_argument = "random_state_seed"
    library = "hyperopt"
    extra_domains = {"randn": tune.randn(5.0, 2.0), "qrandn": tune.qrandn(0.0, 1.0, 0.5)}

    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> HyperOptSearch:
        # Few start-up points, so the longer contract tests reach TPE.
        searcher = HyperOptSearch(n_initial_points=4, random_state_seed=0)
        searcher.set_search_properties(metric, mode, space)
        return searcher

    def native_space(self) -> dict[str, Any]:
        return {"x": hp.uniform("x", 0, 1)}

    def told(self, searcher: Any) -> list[tuple[str, float | None]]:
        trials = searcher.get_state()["_trials"]
        return list(zip(trials.statuses(), trials.losses(), strict=True))

    def startup(self, count: int) -> dict[str, Any]:
        return {"n_initial_points": count}


def make(space: dict[str, Any], mode: str = "min", **kwargs: Any) -> HyperOptSearch:
    searcher = HyperOptSearch(metric="y", mode=mode, **kwargs)
    searcher.set_search_properties(None, None, space)
    return searcher


# -- hyperopt's own spaces ---------------------------------------------------------------


def test_space_passed_as_argument_may_hold_dasktune_domains() -> None:
    searcher = HyperOptSearch(
        {"x": tune.uniform(0, 1), "n": tune.randint(0, 3)}, metric="y", mode="min"
    )
    config = searcher.suggest("a")
    assert 0 <= config["x"] <= 1 and config["n"] in (0, 1, 2)


def test_native_hyperopt_space_as_in_the_ray_tutorial() -> None:
    space = {"lr": hp.loguniform("lr", -10, -1), "momentum": hp.uniform("momentum", 0.1, 0.9)}
    searcher = HyperOptSearch(space, metric="mean_accuracy", mode="max", random_state_seed=0)
    # The Tuner passes its (empty) param_space and TuneConfig settings.
    assert searcher.set_search_properties(None, None, {}, num_samples=10, seed=None)
    for i in range(25):
        config = searcher.suggest(str(i))
        assert set(config) == {"lr", "momentum"}
        assert math.exp(-10) <= config["lr"] <= math.exp(-1) and 0.1 <= config["momentum"] <= 0.9
        searcher.on_trial_complete(str(i), {"mean_accuracy": config["momentum"]})


def test_native_space_keeps_constants_and_nested_choices() -> None:
    space = {
        "steps": 100,
        "activation": hp.choice("activation", ["relu", "tanh"]),
        "optimizer": hp.choice(
            "optimizer", [{"kind": "sgd", "lr": hp.uniform("sgd_lr", 0, 1)}, {"kind": "adam"}]
        ),
        "units": hp.randint("units", 4, 8),
    }
    searcher = HyperOptSearch(space, metric="m", mode="min", random_state_seed=1)
    for i in range(10):
        config = searcher.suggest(str(i))
        assert config["steps"] == 100 and config["activation"] in ("relu", "tanh")
        assert config["optimizer"]["kind"] in ("sgd", "adam")
        assert type(config["units"]) is int and 4 <= config["units"] < 8


# -- TPE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
def test_sequential_suggestions_equal_hyperopt_fmin_for_the_same_seed(mode: str) -> None:
    """The wrapper adds no sampling of its own: it replays fmin's TPE exactly."""
    import functools

    import numpy as np
    from hyperopt import Trials, fmin, tpe

    def f(x: float, y: float) -> float:
        return (x - 1.0) ** 2 + abs(y - 3.0)

    trials = Trials()
    fmin(
        lambda c: f(c["x"], c["y"]),
        {"x": hp.uniform("x", -5, 5), "y": hp.uniform("y", 0, 10)},
        algo=functools.partial(tpe.suggest, n_startup_jobs=5),
        max_evals=20,
        trials=trials,
        rstate=np.random.default_rng(11),
        show_progressbar=False,
    )
    expected = [
        (float(t["misc"]["vals"]["x"][0]), float(t["misc"]["vals"]["y"][0])) for t in trials.trials
    ]
    sign = 1.0 if mode == "min" else -1.0
    searcher = make(
        {"x": tune.uniform(-5, 5), "y": tune.uniform(0, 10)},
        mode=mode,
        n_initial_points=5,
        random_state_seed=11,
    )
    configs = drive(searcher, 20, lambda c: sign * f(c["x"], c["y"]))
    assert [(c["x"], c["y"]) for c in configs] == expected


def test_max_mode_negates_the_loss() -> None:
    searcher = make({"x": tune.uniform(0, 1)}, mode="max")
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"y": 0.75})
    assert searcher.get_state()["_trials"].losses() == [-0.75]


# -- points to evaluate and arguments -----------------------------------------------------


def test_points_to_evaluate_with_a_native_space_take_choice_values() -> None:
    space = {
        "width": hp.uniform("width", 0, 20),
        "activation": hp.choice("activation", ["relu", "tanh"]),
    }
    points = [{"width": 1, "activation": "tanh"}, {"width": 4, "activation": "relu"}]
    searcher = HyperOptSearch(space, metric="m", mode="min", points_to_evaluate=points)
    assert searcher.suggest("a") == {"width": 1.0, "activation": "tanh"}
    assert searcher.suggest("b") == {"width": 4.0, "activation": "relu"}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": ["a", "b"]}, ValueError, "OptunaSearch"),
        ({"n_initial_points": -1}, ValueError, "n_initial_points"),
        ({"gamma": 0}, ValueError, "gamma"),
        ({"space": [hp.uniform("x", 0, 1)]}, TypeError, "dict"),
        ({"points_to_evaluate": {"x": 1}}, TypeError, "points_to_evaluate"),
        ({"mode": "maximize"}, ValueError, "'min' or 'max'"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        HyperOptSearch(**kwargs)
