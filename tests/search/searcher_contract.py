"""Tests every Searcher must pass; subclass :class:`SearcherContract` to run them.

Example::

    from .searcher_contract import SearcherContract

    class TestHyperOptSearchContract(SearcherContract):
        def make_searcher(self, metric, mode, space):
            searcher = HyperOptSearch(random_state_seed=0)
            searcher.set_search_properties(metric, mode, space)
            return searcher

The class name does not start with ``Test``, so pytest collects the tests only
through subclasses.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import pytest

from dasktune.search.sample import Domain, choice, randint, uniform
from dasktune.search.searcher import Searcher

METRIC = "score"
MODE = "max"


def simple_space() -> dict[str, Any]:
    """A float, an int and a categorical: what every searcher must handle."""
    return {
        "x": uniform(-2.0, 2.0),
        "n": randint(1, 10),
        "act": choice(["relu", "tanh", "gelu"]),
    }


def objective(config: dict[str, Any]) -> float:
    """A smooth score with a known best region, for feeding results back."""
    bonus = {"relu": 0.0, "tanh": 0.5, "gelu": 1.0}[config["act"]]
    return -((config["x"] - 1.0) ** 2) - 0.1 * abs(config["n"] - 5) + bonus


class SearcherContract(abc.ABC):
    """Behaviour shared by all searchers, driven without a Tuner or a cluster.

    Subclasses implement :meth:`make_searcher`; the searcher it returns must
    already have its metric, mode and space set, be able to suggest at least
    ``2 * num_trials`` configs, and allow at least 3 live trials at once (the
    tests otherwise complete each trial before asking for the next).
    """

    #: Trials driven by the longer tests (model-based searchers should switch
    #: from their start-up phase to their model within this many).
    num_trials = 12
    #: Whether a restored searcher suggests exactly what the saved one would.
    deterministic_restore = False

    @abc.abstractmethod
    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> Searcher:
        """A fresh searcher for ``space`` with ``metric`` and ``mode`` set."""

    # -- helpers --------------------------------------------------------------

    def suggest_config(self, searcher: Searcher, trial_id: str) -> dict[str, Any]:
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict), (
            f"suggest({trial_id!r}) returned {config!r}, expected a config dict"
        )
        return config

    def assert_in_space(self, config: dict[str, Any], space: dict[str, Any]) -> None:
        assert set(config) == set(space), (
            f"config keys {sorted(config)} != space keys {sorted(space)}"
        )
        for key, domain in space.items():
            assert isinstance(domain, Domain)
            assert domain.contains(config[key]), f"{key}={config[key]!r} is outside {domain!r}"
        assert type(config["x"]) is float
        assert type(config["n"]) is int
        assert type(config["act"]) is str

    def run_trials(self, searcher: Searcher, count: int, prefix: str = "t") -> list[dict[str, Any]]:
        configs = []
        for i in range(count):
            trial_id = f"{prefix}{i}"
            config = self.suggest_config(searcher, trial_id)
            score = objective(config)
            searcher.on_trial_result(trial_id, {METRIC: score, "training_iteration": 1})
            searcher.on_trial_complete(trial_id, {METRIC: score, "training_iteration": 1})
            configs.append(config)
        return configs

    # -- the contract ---------------------------------------------------------

    def test_metric_and_mode_are_set(self) -> None:
        searcher = self.make_searcher(METRIC, MODE, simple_space())
        assert searcher.metric == METRIC
        assert searcher.mode == MODE

    def test_invalid_mode_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="'min' or 'max'"):
            self.make_searcher(METRIC, "maximise", simple_space())

    def test_suggest_returns_configs_inside_the_space(self) -> None:
        space = simple_space()
        searcher = self.make_searcher(METRIC, MODE, space)
        for i in range(self.num_trials):
            config = self.suggest_config(searcher, f"t{i}")
            self.assert_in_space(config, space)
            searcher.on_trial_complete(f"t{i}", {METRIC: objective(config)})

    def test_suggestions_vary(self) -> None:
        configs = self.run_trials(self.make_searcher(METRIC, MODE, simple_space()), self.num_trials)
        assert len({c["x"] for c in configs}) > 1

    def test_results_are_accepted_and_search_continues(self) -> None:
        space = simple_space()
        searcher = self.make_searcher(METRIC, MODE, space)
        for config in self.run_trials(searcher, self.num_trials):
            self.assert_in_space(config, space)
        self.assert_in_space(self.suggest_config(searcher, "after"), space)

    def test_several_live_trials_complete_out_of_order(self) -> None:
        searcher = self.make_searcher(METRIC, MODE, simple_space())
        configs = {f"t{i}": self.suggest_config(searcher, f"t{i}") for i in range(3)}
        for trial_id in ("t2", "t0", "t1"):
            searcher.on_trial_result(trial_id, {METRIC: objective(configs[trial_id])})
            searcher.on_trial_complete(trial_id, {METRIC: objective(configs[trial_id])})
        self.suggest_config(searcher, "t3")

    def test_error_completion_is_accepted(self) -> None:
        space = simple_space()
        searcher = self.make_searcher(METRIC, MODE, space)
        self.suggest_config(searcher, "failed")
        searcher.on_trial_complete("failed", None, error=True)
        self.suggest_config(searcher, "with_partial_result")
        searcher.on_trial_result("with_partial_result", {METRIC: 0.0})
        searcher.on_trial_complete("with_partial_result", {METRIC: 0.0}, error=True)
        self.assert_in_space(self.suggest_config(searcher, "next"), space)

    def test_result_without_metric_or_with_nan_is_accepted(self) -> None:
        searcher = self.make_searcher(METRIC, MODE, simple_space())
        self.suggest_config(searcher, "a")
        searcher.on_trial_complete("a", {"training_iteration": 1})
        self.suggest_config(searcher, "b")
        searcher.on_trial_complete("b", {METRIC: math.nan})
        self.suggest_config(searcher, "c")

    def test_save_then_restore_into_a_fresh_instance_continues(self, tmp_path: Any) -> None:
        space = simple_space()
        searcher = self.make_searcher(METRIC, MODE, space)
        self.run_trials(searcher, self.num_trials // 2)
        path = str(tmp_path / "searcher-state.pkl")
        searcher.save(path)

        fresh = self.make_searcher(METRIC, MODE, space)
        fresh.restore(path)
        assert fresh.metric == METRIC and fresh.mode == MODE
        restored = self.run_trials(fresh, self.num_trials // 2, prefix="after")
        for config in restored:
            self.assert_in_space(config, space)
        if self.deterministic_restore:
            assert restored == self.run_trials(searcher, self.num_trials // 2, prefix="after")
