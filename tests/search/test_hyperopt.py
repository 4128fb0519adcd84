"""Tests of HyperOptSearch: the searcher contract, space conversion, TPE's use, state."""

from __future__ import annotations

import importlib
import logging
import math
import statistics
import sys
from typing import Any

import pytest

pytest.importorskip("hyperopt")

from hyperopt import hp  # noqa: E402

from dasktune.search import sample as tune  # noqa: E402
from dasktune.search.hyperopt import HyperOptSearch  # noqa: E402

from ._space_cases import (  # noqa: E402
    MARKER,
    assert_a_restored_searcher_takes_the_caller_s_constants,
    assert_points_pick_the_category_whose_bounds_hold_them,
    drive,
    drive_contract,
)
from .searcher_contract import METRIC, SearcherContract, objective, simple_space  # noqa: E402


class TestHyperOptSearchContract(SearcherContract):
    num_trials = 12
    deterministic_restore = True

    def make_searcher(self, metric: str | None, mode: str | None, space: dict[str, Any]) -> HyperOptSearch:
        # Few start-up points, so the longer contract tests reach TPE.
        searcher = HyperOptSearch(n_initial_points=4, random_state_seed=0)
        searcher.set_search_properties(metric, mode, space)
        return searcher



def make(space: dict[str, Any], mode: str = "min", **kwargs: Any) -> HyperOptSearch:
    searcher = HyperOptSearch(metric="y", mode=mode, **kwargs)
    searcher.set_search_properties(None, None, space)
    return searcher


# -- conversion of dasktune domains ------------------------------------------------------


def every_domain_space() -> dict[str, Any]:
    return {
        "uniform": tune.uniform(-2.0, 3.0),
        "quniform": tune.quniform(0.05, 1.0, 0.1),
        "loguniform": tune.loguniform(1e-4, 1e-1),
        "qloguniform": tune.qloguniform(1e-3, 1.0, 1e-3),
        "randn": tune.randn(5.0, 2.0),
        "qrandn": tune.qrandn(0.0, 1.0, 0.5),
        "randint": tune.randint(1, 10),
        "qrandint": tune.qrandint(-21, 12, 3),
        "lograndint": tune.lograndint(1, 1000),
        "qlograndint": tune.qlograndint(10, 1000, 10),
        "choice": tune.choice(["relu", "tanh", "gelu"]),
        "mixed_choice": tune.choice([1, "two", None]),
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
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn",
    "randint", "qrandint", "lograndint", "qlograndint", "choice", "mixed_choice",
]


def check_every_domain_config(config: dict[str, Any], space: dict[str, Any]) -> None:
    assert list(config) == list(space)
    for key in FLAT_DOMAINS:
        assert space[key].contains(config[key]), f"{key}={config[key]!r} is outside {space[key]!r}"
    for key in ("uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn"):
        assert type(config[key]) is float, key
    for key in ("randint", "qrandint", "lograndint", "qlograndint"):
        assert type(config[key]) is int, key
    assert config["qrandint"] % 3 == 0 and config["qlograndint"] % 10 == 0
    optimizer = config["optimizer"]
    if optimizer["name"] == "sgd":
        assert set(optimizer) == {"name", "momentum"} and 0.0 <= optimizer["momentum"] <= 0.99
    else:
        assert set(optimizer) == {"name", "betas"}
        assert type(optimizer["betas"]) is list and optimizer["betas"][1] == 0.999
        assert 0.8 <= optimizer["betas"][0] <= 0.95
    layers = config["model"]["layers"]
    assert type(layers) is list and type(layers[0]) is int and 16 <= layers[0] < 64 and layers[1] == 32
    assert config["model"]["name"] == "mlp" and 0.0 <= config["model"]["dropout"] <= 0.5
    assert config["const_list"] == [1, 2, 3] and type(config["const_list"]) is list
    assert config["const_obj"] is MARKER


def test_every_dasktune_domain_converts_in_random_and_tpe_phases() -> None:
    space = every_domain_space()
    searcher = make(space, n_initial_points=8, random_state_seed=0)
    configs = drive(searcher, 30, lambda c: c["uniform"] ** 2 + c["randint"])
    for config in configs:
        check_every_domain_config(config, space)
    assert {c["choice"] for c in configs} == {"relu", "tanh", "gelu"}
    assert {c["optimizer"]["name"] for c in configs} == {"sgd", "adam"}
    assert len({c["randint"] for c in configs}) > 3
    # Configs are fresh containers: changing one leaves the next untouched.
    configs[0]["const_list"].append(4)
    assert searcher.suggest("after")["const_list"] == [1, 2, 3]


def test_space_passed_as_argument_may_hold_dasktune_domains() -> None:
    searcher = HyperOptSearch({"x": tune.uniform(0, 1), "n": tune.randint(0, 3)}, metric="y", mode="min")
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


def test_constants_of_the_param_space_join_a_native_space() -> None:
    searcher = HyperOptSearch({"x": hp.uniform("x", 0, 1)}, metric="m", mode="min")
    assert searcher.set_search_properties(None, None, {"steps": 100, "data": {"path": "/d"}})
    assert searcher.suggest("a").keys() == {"steps", "data", "x"}


# -- learning from results -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
def test_tpe_moves_towards_the_optimum_in_both_modes(mode: str) -> None:
    sign = 1.0 if mode == "min" else -1.0
    searcher = make({"x": tune.uniform(-5.0, 5.0)}, mode=mode, n_initial_points=10, random_state_seed=3)
    configs = drive(searcher, 30, lambda c: sign * (c["x"] - 2.0) ** 2)
    best = min(configs, key=lambda c: abs(c["x"] - 2.0))
    assert abs(best["x"] - 2.0) < 0.3
    # TPE's picks (after 10 start-up trials) lie closer to the optimum than
    # uniform draws, whose median distance is 2.5; a searcher optimising the
    # wrong direction drifts to the edge (median distance > 3.5 for seeds 0-19).
    assert statistics.median(abs(c["x"] - 2.0) for c in configs[10:]) < 2.5


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
    expected = [(float(t["misc"]["vals"]["x"][0]), float(t["misc"]["vals"]["y"][0])) for t in trials.trials]
    sign = 1.0 if mode == "min" else -1.0
    searcher = make({"x": tune.uniform(-5, 5), "y": tune.uniform(0, 10)}, mode=mode,
                    n_initial_points=5, random_state_seed=11)
    configs = drive(searcher, 20, lambda c: sign * f(c["x"], c["y"]))
    assert [(c["x"], c["y"]) for c in configs] == expected


def test_failures_missing_metrics_and_nan_are_reported_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    searcher = make({"x": tune.uniform(0, 1)}, random_state_seed=0)
    for trial_id in "abcd":
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", {"y": 0.5})
    searcher.on_trial_complete("b", None, error=True)
    with caplog.at_level(logging.WARNING, logger="dasktune.search.hyperopt"):
        searcher.on_trial_complete("c", {"other": 1.0})
        searcher.on_trial_complete("d", {"y": math.nan})
    assert "records it as failed" in caplog.text
    trials = searcher.get_state()["_trials"]
    assert trials.statuses() == ["ok", "fail", "fail", "fail"]
    assert trials.losses() == [0.5, None, None, None]
    searcher.on_trial_complete("unknown", {"y": 1.0})  # not suggested here: ignored
    assert isinstance(searcher.suggest("e"), dict)


def test_max_mode_negates_the_loss() -> None:
    searcher = make({"x": tune.uniform(0, 1)}, mode="max")
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"y": 0.75})
    assert searcher.get_state()["_trials"].losses() == [-0.75]


def test_pending_trials_do_not_block_suggest() -> None:
    searcher = make(simple_space(), n_initial_points=2, random_state_seed=0)
    configs = [searcher.suggest(f"t{i}") for i in range(5)]
    assert all(isinstance(c, dict) for c in configs)
    assert len({(c["x"], c["n"], c["act"]) for c in configs}) == 5


# -- points to evaluate ----------------------------------------------------------------------


def test_points_to_evaluate_come_first_in_order_and_train_tpe() -> None:
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
    searcher = make(space, mode="max", points_to_evaluate=points, random_state_seed=0)
    first = [searcher.suggest(f"p{i}") for i in range(3)]
    assert first[0] == {"x": 1.0, "n": 5, "act": "gelu", "opt": {"name": "sgd", "m": 0.5}}
    assert first[1]["act"] == "tanh" and first[1]["opt"] == {"name": "adam"}
    assert -2.0 <= first[1]["x"] <= 2.0 and type(first[1]["n"]) is int
    assert first[2]["x"] == -1.5 and first[2]["n"] == 3 and type(first[2]["n"]) is int
    assert first[2]["act"] in ("relu", "tanh", "gelu")
    for i, config in enumerate(first):
        searcher.on_trial_complete(f"p{i}", {"y": objective(config)})
    assert searcher.get_state()["_trials"].statuses() == ["ok", "ok", "ok"]
    assert first[0] != searcher.suggest("next")


def test_points_to_evaluate_with_a_native_space_take_choice_values() -> None:
    space = {"width": hp.uniform("width", 0, 20), "activation": hp.choice("activation", ["relu", "tanh"])}
    points = [{"width": 1, "activation": "tanh"}, {"width": 4, "activation": "relu"}]
    searcher = HyperOptSearch(space, metric="m", mode="min", points_to_evaluate=points)
    assert searcher.suggest("a") == {"width": 1.0, "activation": "tanh"}
    assert searcher.suggest("b") == {"width": 4.0, "activation": "relu"}


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"act": "sigmoid"}, "one of the categories"),
        ({"x": 7.0}, "not a value of"),
        ({"typo": 1}, "not in the search space"),
        ({"n": 2.5}, "not a value of"),
    ],
)
def test_bad_points_are_rejected_with_the_key(point: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(simple_space(), points_to_evaluate=[point])


# -- bad input ----------------------------------------------------------------------


def test_grid_search_is_rejected_with_its_path_and_the_fix() -> None:
    space = {"model": {"act": tune.grid_search(["relu", "tanh"])}}
    with pytest.raises(ValueError, match=r"'model/act'.*tune\.choice\(\['relu', 'tanh'\]\)"):
        make(space)


def test_sample_from_is_rejected_with_its_path() -> None:
    space = {"a": tune.uniform(0, 1), "b": [tune.sample_from(lambda spec: 2 * spec.config.a)]}
    with pytest.raises(ValueError, match=r"'b/0' = sample_from.*tune\.uniform"):
        make(space)


def test_native_space_and_param_space_domains_are_rejected() -> None:
    searcher = HyperOptSearch({"x": hp.uniform("x", 0, 1)}, metric="m", mode="min")
    with pytest.raises(ValueError, match="one or the other"):
        searcher.set_search_properties(None, None, {"y": tune.uniform(0, 1)})


def test_suggest_without_metric_or_mode_explains_the_fix() -> None:
    searcher = HyperOptSearch({"x": hp.uniform("x", 0, 1)})
    searcher.set_search_properties(None, None, {})
    with pytest.raises(RuntimeError, match="TuneConfig"):
        searcher.suggest("a")
    with pytest.raises(RuntimeError, match="no search space"):
        HyperOptSearch(metric="m", mode="min").suggest("a")


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
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        HyperOptSearch(**kwargs)


def test_constant_only_space_and_conflicts() -> None:
    with pytest.raises(ValueError, match="only constants"):
        make({"steps": 100})
    searcher = HyperOptSearch({"x": hp.uniform("x", 0, 1)}, metric="m", mode="min")
    assert not searcher.set_search_properties("other", None, {})
    assert not searcher.set_search_properties(None, "max", {})


# -- reproducibility and state -------------------------------------------------------


def test_same_seed_same_configs_and_tuner_seed_is_used() -> None:
    def run(tuner_seed: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        searcher = HyperOptSearch(metric=METRIC, mode="max", n_initial_points=5, **kwargs)
        searcher.set_search_properties(None, None, simple_space(), seed=tuner_seed)
        return drive_contract(searcher, 15)

    assert run(random_state_seed=7) == run(random_state_seed=7)
    assert run(random_state_seed=7) != run(random_state_seed=8)
    assert run(tuner_seed=7) == run(random_state_seed=7)



def test_restore_with_pending_trials_continues_identically(tmp_path: Any) -> None:
    searcher = make(simple_space(), mode="max", n_initial_points=4, random_state_seed=0)
    drive_contract(searcher, 6)
    pending = searcher.suggest("pending")
    path = str(tmp_path / "state.pkl")
    searcher.save(path)

    restored = make(simple_space(), mode="max")
    restored.restore(path)
    for s in (searcher, restored):
        s.on_trial_complete("pending", {METRIC: objective(pending)})
    assert drive_contract(restored, 8, "r") == drive_contract(searcher, 8, "r")


def test_get_state_is_a_snapshot() -> None:
    searcher = make(simple_space(), mode="max", random_state_seed=0)
    drive_contract(searcher, 3)
    state = searcher.get_state()
    expected = drive_contract(searcher, 3, "x")
    other = make(simple_space(), mode="max")
    other.set_state(state)
    assert drive_contract(other, 3, "x") == expected


def test_missing_hyperopt_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hyperopt", None)
    monkeypatch.delitem(sys.modules, "dasktune.search.hyperopt")
    with pytest.raises(ImportError, match=r"pip install 'dasktune\[hyperopt\]'"):
        importlib.import_module("dasktune.search.hyperopt")


def test_points_pick_the_category_whose_bounds_hold_them() -> None:
    assert_points_pick_the_category_whose_bounds_hold_them(
        lambda point: HyperOptSearch(metric="y", mode="min", points_to_evaluate=[point]))


def test_a_restored_searcher_takes_the_caller_s_constants(tmp_path) -> None:
    assert_a_restored_searcher_takes_the_caller_s_constants(
        lambda: HyperOptSearch(metric="y", mode="min"), tmp_path)
