"""BasicVariantGenerator and the pure resolution helpers."""

from __future__ import annotations

import copy
import logging
from collections import Counter
from typing import Any

import numpy as np
import pytest

import dasktune.search as tune
from dasktune.search import (
    BasicVariantGenerator,
    Searcher,
    count_variants,
    generate_variants,
    resolve,
)

from .searcher_contract import SearcherContract


def run_all(searcher: Searcher, limit: int = 10_000) -> list[dict[str, Any]]:
    """Suggest until FINISHED, completing each trial at once."""
    configs = []
    for i in range(limit):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            return configs
        assert isinstance(config, dict)
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"score": 1.0})
    raise AssertionError(f"no FINISHED after {limit} suggestions")


def make(
    space: dict[str, Any], num_samples: int = 1, seed: int | None = 0, **kwargs: Any
) -> BasicVariantGenerator:
    searcher = BasicVariantGenerator(**kwargs)
    assert searcher.set_search_properties(None, None, space, num_samples=num_samples, seed=seed)
    return searcher


# -------------------------------------------------------------- resolution


def test_constants_pass_through_and_space_is_not_modified() -> None:
    big = object()
    space = {"a": 1, "b": "x", "c": None, "d": big, "e": {"f": [1, 2]}, "lr": tune.uniform(0, 1)}
    before = copy.deepcopy({k: v for k, v in space.items() if k != "d"})
    config = resolve(space, np.random.default_rng(0))
    assert config["a"] == 1 and config["b"] == "x" and config["c"] is None
    assert config["d"] is big  # shared, not copied
    assert config["e"] == {"f": [1, 2]} and config["e"] is not space["e"]
    assert isinstance(config["lr"], float)
    assert {k: v for k, v in space.items() if k != "d"} == before


def test_nested_dicts_lists_and_tuples_are_resolved() -> None:
    space = {
        "model": {
            "depth": tune.randint(1, 4),
            "act": tune.choice(["relu", "tanh"]),
            "opt": {"lr": tune.loguniform(1e-4, 1e-2)},
        },
        "layers": [tune.randint(8, 9), 16, {"units": tune.qrandint(32, 64, 32)}],
        "pair": (tune.choice(["p"]), "const"),
    }
    config = resolve(space, np.random.default_rng(1))
    assert config["model"]["depth"] in {1, 2, 3}
    assert config["model"]["act"] in {"relu", "tanh"}
    assert 1e-4 <= config["model"]["opt"]["lr"] < 1e-2
    assert config["layers"][0] == 8 and config["layers"][1] == 16
    assert config["layers"][2]["units"] in {32, 64}
    assert config["pair"] == ("p", "const") and isinstance(config["pair"], tuple)


def test_domains_inside_chosen_values_are_resolved() -> None:
    space = {
        "opt": tune.choice(
            [
                {"name": "sgd", "lr": tune.uniform(0.1, 0.2)},
                {"name": "adam", "lr": tune.uniform(1e-4, 1e-3)},
            ]
        )
    }
    names = Counter()
    for seed in range(40):
        opt = resolve(space, np.random.default_rng(seed))["opt"]
        names[opt["name"]] += 1
        assert isinstance(opt["lr"], float)
        assert (0.1 <= opt["lr"] < 0.2) if opt["name"] == "sgd" else (1e-4 <= opt["lr"] < 1e-3)
    assert set(names) == {"sgd", "adam"}


def test_resolve_refuses_grid_search() -> None:
    with pytest.raises(ValueError, match=r"grid_search at `a/b`.*generate_variants"):
        resolve({"a": {"b": tune.grid_search([1, 2])}}, np.random.default_rng(0))


def test_resolve_rejects_non_dict_space() -> None:
    with pytest.raises(ValueError, match=r"`param_space` is \[1, 2\].*must be a dict"):
        resolve([1, 2], np.random.default_rng(0))  # type: ignore[arg-type]


# --------------------------------------------------------------- sample_from


def test_sample_from_sees_resolved_config_by_attribute_and_item() -> None:
    space = {
        "a": tune.randint(5, 10),
        "nested": {"b": tune.uniform(0, 1)},
        "by_attr": tune.sample_from(lambda spec: spec.config.a * 2),
        "by_item": tune.sample_from(lambda spec: spec["config"]["nested"]["b"] + 1),
        "nested_attr": tune.sample_from(lambda spec: spec.config.nested.b),
        "mapping_api": tune.sample_from(lambda spec: sorted(spec.config.keys())[:2]),
        "newer_ray_style": tune.sample_from(lambda config: config["a"] + 1),
        "no_argument": tune.sample_from(lambda: "constant"),
    }
    config = resolve(space, np.random.default_rng(0))
    assert config["by_attr"] == 2 * config["a"]
    assert config["by_item"] == config["nested"]["b"] + 1
    assert config["nested_attr"] == config["nested"]["b"]
    assert config["mapping_api"] == ["a", "by_attr"]
    assert config["newer_ray_style"] == config["a"] + 1
    assert config["no_argument"] == "constant"


def test_sample_from_chains_resolve_over_passes_regardless_of_order() -> None:
    space = {
        "c": tune.sample_from(lambda spec: spec.config.b + 1),
        "b": tune.sample_from(lambda spec: spec.config.a * 10),
        "a": tune.randint(1, 4),
    }
    config = resolve(space, np.random.default_rng(0))
    assert config["b"] == config["a"] * 10 and config["c"] == config["b"] + 1
    assert list(config) == ["c", "b", "a"]  # key order of the space is kept


def test_sample_from_cycle_raises_naming_both_keys() -> None:
    space = {
        "a": tune.sample_from(lambda spec: spec.config.b),
        "b": tune.sample_from(lambda spec: spec.config.a),
    }
    with pytest.raises(ValueError, match=r"`a` reads `b`, `b` reads `a`.*cycle"):
        resolve(space, np.random.default_rng(0))


def test_sample_from_missing_key_names_location_and_known_keys() -> None:
    space = {
        "lr": tune.uniform(0, 1),
        "x": tune.sample_from(lambda spec: spec.config.learning_rate),
    }
    with pytest.raises(
        ValueError, match=r"function at `x` raised AttributeError.*'learning_rate'.*'lr'"
    ):
        resolve(space, np.random.default_rng(0))


def test_sample_from_reading_a_list_element() -> None:
    space = {
        "sizes": [tune.randint(1, 3), 7],
        "first": tune.sample_from(lambda spec: spec.config.sizes[0] + spec.config.sizes[-1]),
    }
    config = resolve(space, np.random.default_rng(0))
    assert config["first"] == config["sizes"][0] + 7


def test_sample_from_numpy_scalar_becomes_python_scalar() -> None:
    config = resolve({"x": tune.sample_from(lambda spec: np.int64(3))}, np.random.default_rng(0))
    assert type(config["x"]) is int


def test_sample_from_config_is_read_only() -> None:
    def mutate(spec: Any) -> int:
        spec.config.a = 5
        return 1

    with pytest.raises(ValueError, match="read-only"):
        resolve({"a": 1, "b": tune.sample_from(mutate)}, np.random.default_rng(0))


def test_sample_from_sees_grid_values() -> None:
    space = {
        "width": tune.grid_search([2, 4]),
        "double": tune.sample_from(lambda spec: spec.config.width * 2),
    }
    configs = run_all(make(space))
    assert [(c["width"], c["double"]) for c in configs] == [(2, 4), (4, 8)]


# ---------------------------------------------------------------------- grid


def test_grid_cross_product_last_key_varies_fastest() -> None:
    space = {"x": tune.grid_search([10, 20]), "y": tune.grid_search(["a", "b", "c"])}
    configs = run_all(make(space))
    assert [(c["x"], c["y"]) for c in configs] == [
        (10, "a"),
        (10, "b"),
        (10, "c"),
        (20, "a"),
        (20, "b"),
        (20, "c"),
    ]


def test_grid_order_follows_insertion_not_alphabet_and_nested_depth_first() -> None:
    space = {
        "z": tune.grid_search([1, 2]),
        "m": {"inner": tune.grid_search(["p", "q"])},
        "a": tune.grid_search([True, False]),
    }
    configs = run_all(make(space))
    assert [(c["z"], c["m"]["inner"], c["a"]) for c in configs] == [
        (1, "p", True),
        (1, "p", False),
        (1, "q", True),
        (1, "q", False),
        (2, "p", True),
        (2, "p", False),
        (2, "q", True),
        (2, "q", False),
    ]


def test_num_samples_repeats_whole_grid_and_resamples_random_values() -> None:
    space = {"a": tune.grid_search([1, 2, 3]), "b": tune.uniform(0, 1)}
    configs = run_all(make(space, num_samples=4))
    assert len(configs) == 12
    assert [c["a"] for c in configs] == [1, 2, 3] * 4
    assert len({c["b"] for c in configs}) == 12


def test_grid_values_may_hold_domains_and_dicts() -> None:
    space = {
        "opt": tune.grid_search([{"name": "sgd", "lr": tune.uniform(0.1, 0.2)}, {"name": "adam"}])
    }
    configs = run_all(make(space, num_samples=2))
    assert [c["opt"]["name"] for c in configs] == ["sgd", "adam", "sgd", "adam"]
    assert configs[0]["opt"]["lr"] != configs[2]["opt"]["lr"]


def test_constant_grid_search_keeps_random_values_within_a_sample() -> None:
    space = {
        "a": tune.grid_search([1, 2, 3]),
        "b": tune.uniform(0, 1),
        "c": tune.sample_from(lambda spec: spec.config.a + spec.config.b),
    }
    configs = run_all(make(space, num_samples=2, constant_grid_search=True))
    assert len({c["b"] for c in configs[:3]}) == 1 and len({c["b"] for c in configs[3:]}) == 1
    assert configs[0]["b"] != configs[3]["b"]
    assert all(c["c"] == c["a"] + c["b"] for c in configs)


@pytest.mark.parametrize(
    ("space", "pattern"),
    [
        ({"a": {"grid_search": []}}, r"grid search at `a`.*non-empty list"),
        ({"a": {"grid_search": "abc"}}, r"grid search at `a`.*non-empty list"),
        ({"a": tune.grid_search([tune.grid_search([1])])}, r"nested grids are not supported"),
    ],
)
def test_bad_grid_markers_are_rejected_early(space: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        BasicVariantGenerator().set_search_properties(None, None, space)


def test_generate_variants_one_pass_over_the_grid() -> None:
    space = {"x": tune.grid_search([1, 2]), "y": tune.randint(0, 100)}
    configs = list(generate_variants(space, np.random.default_rng(0)))
    assert [c["x"] for c in configs] == [1, 2]
    assert list(generate_variants({"a": 1}, np.random.default_rng(0))) == [{"a": 1}]


# --------------------------------------------------------- counting, ending


def test_finished_after_exhaustion_and_stays_finished() -> None:
    searcher = make({"a": tune.grid_search([1, 2])}, num_samples=2)
    assert len(run_all(searcher)) == 4
    assert searcher.is_finished()
    assert searcher.suggest("again") == Searcher.FINISHED
    assert searcher.suggest("again2") == Searcher.FINISHED


def test_plain_random_space_gives_num_samples_configs() -> None:
    configs = run_all(make({"lr": tune.loguniform(1e-4, 1e-1)}, num_samples=25))
    assert len(configs) == 25


def test_empty_space_gives_num_samples_empty_configs() -> None:
    assert run_all(make({}, num_samples=3)) == [{}, {}, {}]
    searcher = BasicVariantGenerator()
    searcher.set_search_properties(None, None, None)
    assert run_all(searcher) == [{}]


def test_infinite_num_samples_never_finishes() -> None:
    searcher = make({"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 1)}, num_samples=-1)
    configs = [searcher.suggest(f"t{i}") for i in range(500)]
    assert all(isinstance(c, dict) for c in configs)
    assert [c["a"] for c in configs[:4]] == [1, 2, 1, 2]
    assert searcher.total_samples is None


@pytest.mark.parametrize(
    ("space", "num_samples", "points"),
    [
        (
            {
                "a": tune.grid_search([1, 2, 3]),
                "b": tune.grid_search(["x", "y"]),
                "c": tune.uniform(0, 1),
            },
            3,
            None,
        ),
        (
            {"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)},
            4,
            [{"a": 2, "b": 2}, {"a": 1}, {"b": 2}],
        ),
        ({"a": tune.uniform(0, 1)}, 2, [{"a": 0.5}, {"a": 0.6}, {"a": 0.7}]),
        ({}, 5, None),
    ],
)
def test_count_variants_matches_generated_count(
    space: dict[str, Any], num_samples: int, points: list[dict[str, Any]] | None
) -> None:
    searcher = make(space, num_samples=num_samples, points_to_evaluate=points)
    expected = count_variants(space, num_samples, points)
    assert searcher.total_samples == expected
    assert len(run_all(searcher)) == expected


def test_count_variants_infinite_is_none() -> None:
    assert count_variants({"a": tune.grid_search([1, 2])}, -1) is None


@pytest.mark.parametrize("bad", [0, -2, 1.5, "3", True])
def test_bad_num_samples_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match=rf"`num_samples` is {bad!r}.*positive int, or -1"):
        BasicVariantGenerator().set_search_properties(None, None, {"a": 1}, num_samples=bad)


def test_suggest_before_search_properties_explains_fix() -> None:
    with pytest.raises(RuntimeError, match="set_search_properties"):
        BasicVariantGenerator().suggest("t0")


# ------------------------------------------------------------ reproducibility


SPACE = {
    "a": tune.grid_search([1, 2]),
    "lr": tune.loguniform(1e-5, 1e-1),
    "n": tune.randint(0, 1000),
    "act": tune.choice(["relu", "tanh", "gelu"]),
    "x": tune.qrandn(0, 1, 0.01),
}


def test_same_seed_same_sequence() -> None:
    assert run_all(make(SPACE, num_samples=5, seed=123)) == run_all(
        make(SPACE, num_samples=5, seed=123)
    )


def test_different_seeds_differ() -> None:
    assert run_all(make(SPACE, num_samples=5, seed=1)) != run_all(
        make(SPACE, num_samples=5, seed=2)
    )


def test_random_state_takes_precedence_over_spec_seed() -> None:
    from_constructor = run_all(make(SPACE, num_samples=3, seed=999, random_state=5))
    from_seed = run_all(make(SPACE, num_samples=3, seed=5))
    assert from_constructor == from_seed


def test_global_numpy_state_is_not_used_or_touched() -> None:
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    first = run_all(make(SPACE, num_samples=2, seed=4))
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(12345)
    assert run_all(make(SPACE, num_samples=2, seed=4)) == first


def test_bad_random_state_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"`random_state` is 'abc'"):
        BasicVariantGenerator(random_state="abc")  # type: ignore[arg-type]


# ---------------------------------------------------------- points_to_evaluate


def test_points_come_first_and_partial_points_are_filled() -> None:
    space = {
        "lr": tune.uniform(0, 1),
        "layers": tune.randint(1, 5),
        "opt": {"name": "adam", "beta": tune.uniform(0.8, 0.99)},
    }
    points = [{"lr": 0.5, "layers": 2}, {"opt": {"beta": 0.9}}]
    configs = run_all(make(space, num_samples=4, points_to_evaluate=points))
    assert len(configs) == 4
    assert configs[0]["lr"] == 0.5 and configs[0]["layers"] == 2
    assert 0.8 <= configs[0]["opt"]["beta"] < 0.99
    assert configs[1]["opt"] == {"name": "adam", "beta": 0.9} and 0 <= configs[1]["lr"] < 1
    assert all(c["opt"]["name"] == "adam" for c in configs)


def test_a_point_inside_a_choice_of_dicts_keeps_the_category_s_other_keys(caplog) -> None:
    space = {"ch": tune.choice([{"opt": "sgd", "lr": tune.uniform(0, 1)}, {"opt": "adam"}])}
    points = [{"ch": {"opt": "sgd", "lr": 0.3}}, {"ch": {"opt": "sgd"}}]
    with caplog.at_level(logging.WARNING):
        configs = run_all(make(space, num_samples=2, points_to_evaluate=points))
    assert configs[0] == {"ch": {"opt": "sgd", "lr": 0.3}}
    assert configs[1]["ch"]["opt"] == "sgd" and 0 <= configs[1]["ch"]["lr"] < 1
    assert not caplog.records  # both points are valid: no "outside its domain" warning


def test_points_follow_ray_documented_example() -> None:
    space = {"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)}
    points = [{"a": 2, "b": 2}, {"a": 1}, {"b": 2}]
    configs = run_all(make(space, num_samples=4, points_to_evaluate=points))
    assert [c["a"] for c in configs] == [2, 1, 1, 2, 1, 2]
    assert configs[0]["b"] == 2 and configs[2]["b"] == 2 and configs[3]["b"] == 2


def test_more_points_than_num_samples_are_all_evaluated() -> None:
    points = [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}]
    configs = run_all(make({"x": tune.uniform(0, 1)}, num_samples=1, points_to_evaluate=points))
    assert [c["x"] for c in configs] == [0.1, 0.2, 0.3]


def test_point_with_unknown_key_names_it() -> None:
    searcher = BasicVariantGenerator(points_to_evaluate=[{"lr": 0.1, "momentum": 0.9}])
    with pytest.raises(
        ValueError, match=r"points_to_evaluate\[0\]` sets `momentum`.*not in the param space"
    ):
        searcher.set_search_properties(None, None, {"lr": tune.uniform(0, 1)})


def test_point_that_is_not_a_dict_is_rejected() -> None:
    searcher = BasicVariantGenerator(points_to_evaluate=[[0.1]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\]` is \[0.1\]"):
        searcher.set_search_properties(None, None, {"lr": tune.uniform(0, 1)})


def test_point_outside_domain_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        configs = run_all(make({"lr": tune.uniform(0, 1)}, points_to_evaluate=[{"lr": 5.0}]))
    assert configs == [{"lr": 5.0}]
    assert "outside its domain" in caplog.text


def test_points_are_copied_from_the_caller() -> None:
    points = [{"x": [1, 2]}]
    searcher = make({"x": tune.choice([[1, 2], [3]])}, points_to_evaluate=points)
    points[0]["x"].append(99)
    assert run_all(searcher) == [{"x": [1, 2]}]


# --------------------------------------------------------- concurrency, state


def test_max_concurrent_holds_back_until_completion() -> None:
    searcher = make({"x": tune.uniform(0, 1)}, num_samples=5, max_concurrent=2)
    assert isinstance(searcher.suggest("a"), dict)
    assert isinstance(searcher.suggest("b"), dict)
    assert searcher.suggest("c") is None
    searcher.on_trial_complete("a", {"score": 1})
    assert isinstance(searcher.suggest("c"), dict)


def test_bad_max_concurrent_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"`max_concurrent` is -1.*>= 0"):
        BasicVariantGenerator(max_concurrent=-1)
    with pytest.raises(ValueError, match=r"`max_concurrent` is True"):
        BasicVariantGenerator(max_concurrent=True)
    # Integers follow dasktune._validation.is_integer: numpy ints count (they used to be refused).
    assert type(BasicVariantGenerator(max_concurrent=np.int64(2)).max_concurrent) is int


def test_save_restore_continues_the_identical_sequence(tmp_path: Any) -> None:
    space = dict(SPACE, double=tune.sample_from(lambda spec: spec.config.n * 2))
    reference = run_all(make(space, num_samples=3, seed=8))
    searcher = make(space, num_samples=3, seed=8)
    head = [searcher.suggest(f"t{i}") for i in range(3)]
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    fresh = BasicVariantGenerator()
    fresh.restore(path)
    assert head + run_all(fresh) == reference


def test_get_state_is_independent_of_the_live_searcher() -> None:
    searcher = make(SPACE, num_samples=3, seed=8)
    state = searcher.get_state()
    first = searcher.suggest("t0")
    other = BasicVariantGenerator()
    other.set_state(state)
    assert other.suggest("t0") == first


def test_second_space_after_suggestions_is_a_conflict() -> None:
    searcher = make({"a": tune.uniform(0, 1)})
    assert searcher.set_search_properties(None, None, {"a": tune.uniform(0, 1)})  # same space: fine
    searcher.suggest("t0")
    with pytest.raises(
        ValueError, match="BasicVariantGenerator already made suggestions for another param_space"
    ):
        searcher.set_search_properties(None, None, {"b": tune.uniform(0, 1)})


def test_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="'min' or 'max'"):
        BasicVariantGenerator().set_search_properties("loss", "minimise", {})


# ------------------------------------------------------------------ contract


class TestBasicVariantGeneratorContract(SearcherContract):
    deterministic_restore = True

    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> Searcher:
        searcher = BasicVariantGenerator(random_state=0)
        searcher.set_search_properties(metric, mode, space, num_samples=-1)
        return searcher


def test_without_a_seed_numpy_s_global_seed_repeats_the_configs() -> None:
    """Ray Tune draws from numpy's global generator, and its FAQ recommends
    ``np.random.seed`` for reproducible random search: that must hold here too."""
    space = {
        "a": tune.randint(5, 10),
        "b": tune.sample_from(lambda spec: int(np.random.randint(0, spec.config.a))),
        "x": tune.uniform(0, 1),
    }

    def draw() -> list[Any]:
        searcher = BasicVariantGenerator()
        searcher.set_search_properties(None, None, space, num_samples=6)
        return [searcher.suggest(f"t{i}") for i in range(6)]

    np.random.seed(1234)
    first = draw()
    np.random.seed(1234)
    assert draw() == first
    np.random.seed(4321)
    assert draw() != first
