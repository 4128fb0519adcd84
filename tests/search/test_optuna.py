"""Tests of OptunaSearch: the searcher contracts, Optuna's own spaces, define-by-run, objectives."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("optuna")

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from dasktune.search import sample as tune
from dasktune.search.optuna import OptunaSearch

from .library_searcher_contract import LibrarySearcherContract, drive

_TOLD = {TrialState.COMPLETE: "ok", TrialState.FAIL: "fail"}


class TestOptunaSearch(LibrarySearcherContract):
    num_trials = 14
    deterministic_restore = True
    searcher_class = OptunaSearch
    seed_argument = "seed"
    library = "optuna"

    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> OptunaSearch:
        searcher = OptunaSearch(seed=0)
        searcher.set_search_properties(metric, mode, space)
        return searcher

    def native_space(self) -> dict[str, Any]:
        return {"x": FloatDistribution(0, 1)}

    def told(self, searcher: Any) -> list[tuple[str, float | None]]:
        trials = searcher.get_state()["_study"].trials
        return [(_TOLD.get(trial.state, trial.state.name), trial.value) for trial in trials]

    def startup(self, count: int) -> dict[str, Any]:
        return {}  # OptunaSearch has no such argument: its TPESampler starts after 10


def make(space: Any, mode: Any = "min", metric: Any = "y", **kwargs: Any) -> OptunaSearch:
    searcher = OptunaSearch(metric=metric, mode=mode, **kwargs)
    searcher.set_search_properties(None, None, space if isinstance(space, dict) else {})
    return searcher


def states(searcher: OptunaSearch) -> list[TrialState]:
    return [trial.state for trial in searcher.get_state()["_study"].trials]


# -- Optuna's own spaces ----------------------------------------------------------------


@pytest.mark.parametrize("domain", [tune.randn(0, 1), tune.qrandn(0, 1, 0.5)])
def test_normal_domains_are_rejected_with_a_replacement(domain: Any) -> None:
    with pytest.raises(ValueError, match=r"'lr' = randn.*no normal distribution.*tune\.uniform"):
        make({"lr": domain})


def test_sample_from_is_rejected_with_the_define_by_run_fix() -> None:
    space = {"a": tune.uniform(0, 1), "b": tune.sample_from(lambda spec: 2 * spec.config.a)}
    with pytest.raises(ValueError, match=r"'b' = sample_from.*define-by-run"):
        make(space)


def test_native_distributions() -> None:
    space = {
        "a": FloatDistribution(6, 8),
        "b": FloatDistribution(1e-4, 1e-2, log=True),
        "n": IntDistribution(1, 4),
        "act": CategoricalDistribution(["relu", "tanh"]),
    }
    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    assert searcher.set_search_properties(None, None, {}, num_samples=5, seed=None)
    for config in drive_with(searcher, 12, "loss"):
        assert 6 <= config["a"] <= 8 and 1e-4 <= config["b"] <= 1e-2
        assert config["n"] in (1, 2, 3, 4) and config["act"] in ("relu", "tanh")


def drive_with(searcher: OptunaSearch, count: int, metric: str) -> list[dict[str, Any]]:
    configs = []
    for i in range(count):
        config = searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {metric: float(i % 3)})
        configs.append(config)
    return configs


def test_define_by_run_function_with_constants() -> None:
    def space(trial: optuna.Trial) -> dict[str, Any]:
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("x", 0, 1)
        return {"batch_size": 64}

    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    assert searcher.set_search_properties(None, None, {"epochs": 3})
    for config in drive_with(searcher, 8, "loss"):
        assert config["batch_size"] == 64 and config["epochs"] == 3
        assert set(config) == (
            {"kind", "x", "batch_size", "epochs"}
            if config["kind"] == "a"
            else {"kind", "batch_size", "epochs"}
        )


def test_define_by_run_must_return_a_dict_or_none() -> None:
    searcher = OptunaSearch(lambda trial: [trial.suggest_float("x", 0, 1)], metric="m", mode="min")
    with pytest.raises(TypeError, match="must return None or a dict"):
        searcher.suggest("a")
    assert states(searcher) == [TrialState.FAIL]


# -- Optuna's logging, points and arguments ----------------------------------------------


def test_optuna_info_logging_is_silenced() -> None:
    optuna.logging.set_verbosity(optuna.logging.INFO)
    OptunaSearch()
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING


def test_points_to_evaluate_with_native_distributions() -> None:
    space = {
        "width": FloatDistribution(0, 20),
        "activation": CategoricalDistribution(["relu", "tanh"]),
    }
    points = [{"width": 1.0, "activation": "tanh"}, {"width": 4.0, "activation": "relu"}]
    searcher = OptunaSearch(space, metric="m", mode="min", points_to_evaluate=points)
    assert searcher.suggest("a") == points[0]
    assert searcher.suggest("b") == points[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": ["a", "b"], "mode": "min"}, ValueError, "same length"),
        ({"metric": ["a", "b"], "mode": ["min"]}, ValueError, "same length"),
        ({"metric": "a", "mode": ["min", "max"]}, ValueError, "same length"),
        ({"mode": ["min", "maximise"], "metric": ["a", "b"]}, ValueError, "'min' or 'max'"),
        ({"space": 3}, TypeError, "define-by-run"),
        ({"sampler": "tpe"}, TypeError, "sampler"),
        ({"points_to_evaluate": [1]}, TypeError, "points_to_evaluate"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        OptunaSearch(**kwargs)


# -- multi-objective ----------------------------------------------------------------------


def test_multi_objective_smoke() -> None:
    searcher = OptunaSearch(
        {"x": tune.uniform(0.0, 1.0)}, metric=["loss", "speed"], mode=["min", "max"], seed=0
    )
    assert searcher.set_search_properties("loss", "min", {})  # the Tuner's metric is one of them
    assert not searcher.set_search_properties("loss", "max", {})
    assert not searcher.set_search_properties("other", "min", {})
    for i in range(15):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"loss": config["x"] ** 2, "speed": config["x"]})
    searcher.suggest("failed")
    searcher.on_trial_complete("failed", {"loss": 1.0})  # "speed" missing
    front = searcher.pareto_front()
    assert front and all(set(p["metrics"]) == {"loss", "speed"} for p in front)
    for p in front:
        assert p["metrics"]["loss"] == pytest.approx(p["config"]["x"] ** 2)
        dominated = any(
            q["metrics"]["loss"] <= p["metrics"]["loss"]
            and q["metrics"]["speed"] >= p["metrics"]["speed"]
            and q is not p
            and q["metrics"] != p["metrics"]
            for q in front
        )
        assert not dominated


def test_pareto_front_of_one_objective_is_the_best_trial() -> None:
    searcher = make({"x": tune.uniform(0, 1)}, seed=0)
    assert searcher.pareto_front() == []
    configs = drive(searcher, 5, lambda c: c["x"])
    (best,) = searcher.pareto_front()
    assert best["config"] == min(configs, key=lambda c: c["x"]) and best["trial_id"].startswith("t")


# -- state ----------------------------------------------------------------------------


def test_define_by_run_lambda_survives_save_and_restore(tmp_path: Any) -> None:
    searcher = OptunaSearch(
        lambda trial: {"y": trial.suggest_float("x", 0, 1)}, metric="m", mode="min", seed=0
    )
    drive_with(searcher, 3, "m")
    path = str(tmp_path / "state.pkl")
    searcher.save(path)
    restored = OptunaSearch()
    restored.restore(path)
    assert drive_with(restored, 3, "m") == drive_with(searcher, 3, "m")


def test_categories_that_compare_equal_are_told_apart() -> None:
    """choice([True, 1, 1.0]): Optuna would record all three as True; indices keep them apart."""
    categories = [True, 1, 1.0]
    searcher = OptunaSearch(metric="y", mode="min", seed=0)
    searcher.set_search_properties(None, None, {"c": tune.choice(categories)})
    returned = []
    for i in range(12):
        config = searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {"y": 0.0})
        returned.append(config["c"])
    recorded = [categories[trial.params["c"]] for trial in searcher._study.trials]
    assert [(type(v), v) for v in recorded] == [(type(v), v) for v in returned]
    assert len({type(v) for v in returned}) > 1
