"""Tests of OptunaSearch: the searcher contract, space conversion, ask/tell, state."""

from __future__ import annotations

import importlib
import logging
import math
import statistics
import sys
from typing import Any

import pytest

pytest.importorskip("optuna")

import optuna  # noqa: E402
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from dasktune.search import sample as tune  # noqa: E402
from dasktune.search.optuna import OptunaSearch  # noqa: E402

from ._space_cases import (  # noqa: E402
    MARKER,
    assert_a_restored_searcher_takes_the_caller_s_constants,
    assert_points_pick_the_category_whose_bounds_hold_them,
    drive,
    drive_contract,
)
from .searcher_contract import METRIC, SearcherContract, objective, simple_space  # noqa: E402


class TestOptunaSearchContract(SearcherContract):
    num_trials = 14
    deterministic_restore = True

    def make_searcher(self, metric: str | None, mode: str | None, space: dict[str, Any]) -> OptunaSearch:
        searcher = OptunaSearch(seed=0)
        searcher.set_search_properties(metric, mode, space)
        return searcher


def make(space: Any, mode: Any = "min", metric: Any = "y", **kwargs: Any) -> OptunaSearch:
    searcher = OptunaSearch(metric=metric, mode=mode, **kwargs)
    searcher.set_search_properties(None, None, space if isinstance(space, dict) else {})
    return searcher




def states(searcher: OptunaSearch) -> list[TrialState]:
    return [trial.state for trial in searcher.get_state()["_study"].trials]


# -- conversion of dasktune domains ------------------------------------------------------


def every_domain_space() -> dict[str, Any]:
    return {
        "uniform": tune.uniform(-2.0, 3.0),
        "quniform": tune.quniform(0.05, 1.0, 0.1),
        "loguniform": tune.loguniform(1e-4, 1e-1),
        "qloguniform": tune.qloguniform(1e-3, 1.0, 1e-3),
        "randint": tune.randint(1, 10),
        "qrandint": tune.qrandint(-21, 12, 3),
        "lograndint": tune.lograndint(1, 1000),
        "qlograndint": tune.qlograndint(10, 1000, 10),
        "choice": tune.choice(["relu", "tanh", "gelu"]),
        "mixed_choice": tune.choice([1, "two", None]),
        "tuple_choice": tune.choice([(1, 2), (3, 4)]),
        "optimizer": tune.choice(
            [
                {"name": "sgd", "momentum": tune.uniform(0.0, 0.99)},
                {"name": "adam", "betas": [tune.uniform(0.8, 0.95), 0.999]},
            ]
        ),
        "model": {"layers": [tune.randint(16, 64), 32], "dropout": tune.uniform(0.0, 0.5), "name": "mlp"},
        "const_list": [1, 2, 3],
        "const_obj": MARKER,
    }


FLAT_DOMAINS = [
    "uniform", "quniform", "loguniform", "qloguniform", "randint", "qrandint",
    "lograndint", "qlograndint", "choice", "mixed_choice", "tuple_choice",
]


def check_every_domain_config(config: dict[str, Any], space: dict[str, Any]) -> None:
    assert list(config) == list(space)
    for key in FLAT_DOMAINS:
        assert space[key].contains(config[key]), f"{key}={config[key]!r} is outside {space[key]!r}"
    for key in ("uniform", "quniform", "loguniform", "qloguniform"):
        assert type(config[key]) is float, key
    for key in ("randint", "qrandint", "lograndint", "qlograndint"):
        assert type(config[key]) is int, key
    assert type(config["tuple_choice"]) is tuple
    optimizer = config["optimizer"]
    if optimizer["name"] == "sgd":
        assert set(optimizer) == {"name", "momentum"} and 0.0 <= optimizer["momentum"] <= 0.99
    else:
        assert set(optimizer) == {"name", "betas"} and optimizer["betas"][1] == 0.999
        assert 0.8 <= optimizer["betas"][0] <= 0.95
    layers = config["model"]["layers"]
    assert type(layers) is list and type(layers[0]) is int and 16 <= layers[0] < 64 and layers[1] == 32
    assert config["model"]["name"] == "mlp"
    assert config["const_list"] == [1, 2, 3] and config["const_obj"] is MARKER


def test_every_dasktune_domain_converts_in_random_and_tpe_phases() -> None:
    space = every_domain_space()
    searcher = make(space, seed=0)
    configs = drive(searcher, 25, lambda c: c["uniform"] ** 2 + c["randint"])
    for config in configs:
        check_every_domain_config(config, space)
    assert {c["choice"] for c in configs} == {"relu", "tanh", "gelu"}
    assert {c["optimizer"]["name"] for c in configs} == {"sgd", "adam"}


@pytest.mark.parametrize("domain", [tune.randn(0, 1), tune.qrandn(0, 1, 0.5)])
def test_normal_domains_are_rejected_with_a_replacement(domain: Any) -> None:
    with pytest.raises(ValueError, match=r"'lr' = randn.*no normal distribution.*tune\.uniform"):
        make({"lr": domain})


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
        assert set(config) == ({"kind", "x", "batch_size", "epochs"} if config["kind"] == "a"
                               else {"kind", "batch_size", "epochs"})


def test_define_by_run_must_return_a_dict_or_none() -> None:
    searcher = OptunaSearch(lambda trial: [trial.suggest_float("x", 0, 1)], metric="m", mode="min")
    with pytest.raises(TypeError, match="must return None or a dict"):
        searcher.suggest("a")
    assert states(searcher) == [TrialState.FAIL]


# -- learning from results -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
def test_tpe_moves_towards_the_optimum_in_both_modes(mode: str) -> None:
    sign = 1.0 if mode == "min" else -1.0
    searcher = make({"x": tune.uniform(-5.0, 5.0)}, mode=mode, seed=3)
    configs = drive(searcher, 30, lambda c: sign * (c["x"] - 2.0) ** 2)
    best = min(configs, key=lambda c: abs(c["x"] - 2.0))
    assert abs(best["x"] - 2.0) < 0.3
    # TPE's picks (after 10 start-up trials) lie closer to the optimum than
    # uniform draws, whose median distance is 2.5; a searcher optimising the
    # wrong direction drifts to the edge (median distance > 3.5 for seeds 0-19).
    assert statistics.median(abs(c["x"] - 2.0) for c in configs[10:]) < 2.5


def test_failures_missing_metrics_and_nan_are_told_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    searcher = make({"x": tune.uniform(0, 1)}, seed=0)
    for trial_id in "abcd":
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", {"y": 0.5})
    searcher.on_trial_complete("b", None, error=True)
    with caplog.at_level(logging.WARNING, logger="dasktune.search.optuna"):
        searcher.on_trial_complete("c", {"other": 1.0})
        searcher.on_trial_complete("d", {"y": math.nan})
    assert "records it as failed" in caplog.text
    assert states(searcher) == [TrialState.COMPLETE] + [TrialState.FAIL] * 3
    searcher.on_trial_complete("unknown", {"y": 1.0})  # not suggested here: ignored
    assert isinstance(searcher.suggest("e"), dict)


def test_pending_trials_do_not_block_suggest() -> None:
    searcher = make(simple_space(), seed=0)
    configs = [searcher.suggest(f"t{i}") for i in range(5)]
    assert all(isinstance(c, dict) for c in configs)
    assert len({(c["x"], c["n"], c["act"]) for c in configs}) == 5


def test_optuna_info_logging_is_silenced() -> None:
    optuna.logging.set_verbosity(optuna.logging.INFO)
    OptunaSearch()
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING


# -- points to evaluate ----------------------------------------------------------------------


def test_points_to_evaluate_come_first_in_order() -> None:
    space = {
        "x": tune.uniform(-2.0, 2.0),
        "n": tune.randint(1, 10),
        "act": tune.choice(["relu", "tanh", "gelu"]),
        "opt": tune.choice([{"name": "sgd", "m": tune.uniform(0, 1)}, {"name": "adam"}]),
    }
    points = [
        {"x": 1.0, "n": 5, "act": "gelu", "opt": {"name": "sgd", "m": 0.5}},
        {"act": "tanh", "opt": {"name": "adam"}},
        {"x": -1.5, "n": 3.0},
    ]
    searcher = make(space, mode="max", points_to_evaluate=points, seed=0)
    first = [searcher.suggest(f"p{i}") for i in range(3)]
    assert first[0] == {"x": 1.0, "n": 5, "act": "gelu", "opt": {"name": "sgd", "m": 0.5}}
    assert first[1]["act"] == "tanh" and first[1]["opt"] == {"name": "adam"}
    assert -2.0 <= first[1]["x"] <= 2.0 and type(first[1]["n"]) is int
    assert first[2]["x"] == -1.5 and first[2]["n"] == 3 and type(first[2]["n"]) is int
    for i, config in enumerate(first):
        searcher.on_trial_complete(f"p{i}", {"y": objective(config)})
    assert states(searcher) == [TrialState.COMPLETE] * 3


def test_points_to_evaluate_with_native_distributions() -> None:
    space = {"width": FloatDistribution(0, 20), "activation": CategoricalDistribution(["relu", "tanh"])}
    points = [{"width": 1.0, "activation": "tanh"}, {"width": 4.0, "activation": "relu"}]
    searcher = OptunaSearch(space, metric="m", mode="min", points_to_evaluate=points)
    assert searcher.suggest("a") == points[0]
    assert searcher.suggest("b") == points[1]


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"act": "sigmoid"}, "one of the categories"),
        ({"x": 7.0}, "not a value of"),
        ({"typo": 1}, "not in the search space"),
    ],
)
def test_bad_points_are_rejected_with_the_key(point: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(simple_space(), points_to_evaluate=[point])


# -- bad input ----------------------------------------------------------------------


def test_grid_search_is_rejected_with_its_path_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'model/act'.*tune\.choice\(\['relu', 'tanh'\]\)"):
        make({"model": {"act": tune.grid_search(["relu", "tanh"])}})


def test_sample_from_is_rejected_with_its_path() -> None:
    space = {"a": tune.uniform(0, 1), "b": tune.sample_from(lambda spec: 2 * spec.config.a)}
    with pytest.raises(ValueError, match=r"'b' = sample_from.*define-by-run"):
        make(space)


def test_native_space_and_param_space_domains_are_rejected() -> None:
    searcher = OptunaSearch({"x": FloatDistribution(0, 1)}, metric="m", mode="min")
    with pytest.raises(ValueError, match="one or the other"):
        searcher.set_search_properties(None, None, {"y": tune.uniform(0, 1)})
    assert searcher.set_search_properties(None, None, {"steps": 10})
    assert searcher.suggest("a").keys() == {"x", "steps"}


def test_suggest_without_metric_or_mode_explains_the_fix() -> None:
    searcher = OptunaSearch({"x": FloatDistribution(0, 1)})
    searcher.set_search_properties(None, None, {})
    with pytest.raises(RuntimeError, match="TuneConfig"):
        searcher.suggest("a")
    with pytest.raises(RuntimeError, match="no search space"):
        OptunaSearch(metric="m", mode="min").suggest("a")


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
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
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
            q["metrics"]["loss"] <= p["metrics"]["loss"] and q["metrics"]["speed"] >= p["metrics"]["speed"]
            and q is not p and q["metrics"] != p["metrics"]
            for q in front
        )
        assert not dominated


def test_pareto_front_of_one_objective_is_the_best_trial() -> None:
    searcher = make({"x": tune.uniform(0, 1)}, seed=0)
    assert searcher.pareto_front() == []
    configs = drive(searcher, 5, lambda c: c["x"])
    (best,) = searcher.pareto_front()
    assert best["config"] == min(configs, key=lambda c: c["x"]) and best["trial_id"].startswith("t")


# -- reproducibility and state -------------------------------------------------------


def test_same_seed_same_configs_and_tuner_seed_is_used() -> None:
    def run(tuner_seed: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        searcher = OptunaSearch(metric=METRIC, mode="max", **kwargs)
        searcher.set_search_properties(None, None, simple_space(), seed=tuner_seed)
        return drive_contract(searcher, 14)

    assert run(seed=7) == run(seed=7)
    assert run(seed=7) != run(seed=8)
    assert run(tuner_seed=7) == run(seed=7)


def test_restore_with_pending_trials_continues_identically(tmp_path: Any) -> None:
    searcher = make(simple_space(), mode="max", metric=METRIC, seed=0)
    drive_contract(searcher, 8)
    pending = searcher.suggest("pending")
    path = str(tmp_path / "state.pkl")
    searcher.save(path)

    restored = make(simple_space(), mode="max", metric=METRIC)
    restored.restore(path)
    for s in (searcher, restored):
        s.on_trial_complete("pending", {METRIC: objective(pending)})
    assert drive_contract(restored, 6, "r") == drive_contract(searcher, 6, "r")


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


def test_missing_optuna_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.delitem(sys.modules, "dasktune.search.optuna")
    with pytest.raises(ImportError, match=r"pip install 'dasktune\[optuna\]'"):
        importlib.import_module("dasktune.search.optuna")


def test_points_pick_the_category_whose_bounds_hold_them() -> None:
    assert_points_pick_the_category_whose_bounds_hold_them(
        lambda point: OptunaSearch(metric="y", mode="min", points_to_evaluate=[point]))


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


def test_a_restored_searcher_takes_the_caller_s_constants(tmp_path) -> None:
    assert_a_restored_searcher_takes_the_caller_s_constants(
        lambda: OptunaSearch(metric="y", mode="min"), tmp_path)
