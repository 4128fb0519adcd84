"""Repeater: each config runs ``repeat`` times, and the searcher hears of the mean (pure)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dasktune.search import TRIAL_INDEX, BasicVariantGenerator, Repeater, Searcher
from dasktune.search.sample import grid_search

from .searcher_contract import SearcherContract
from .test_concurrency_limiter import RecordingSearcher


def repeater(repeat: int = 3, **kwargs: Any) -> tuple[Repeater, RecordingSearcher]:
    inner = RecordingSearcher(metric="score", mode="max")
    return Repeater(inner, repeat=repeat, **kwargs), inner


def test_each_config_runs_repeat_times_with_its_index() -> None:
    wrapper, inner = repeater(3)
    configs = [wrapper.suggest(f"t{i}") for i in range(6)]
    assert configs == [
        {"i": 1, TRIAL_INDEX: 0},
        {"i": 1, TRIAL_INDEX: 1},
        {"i": 1, TRIAL_INDEX: 2},
        {"i": 2, TRIAL_INDEX: 0},
        {"i": 2, TRIAL_INDEX: 1},
        {"i": 2, TRIAL_INDEX: 2},
    ]
    assert inner.suggested == ["t0", "t3"], "the wrapped searcher is asked once per group"
    configs[0]["i"] = 99
    assert wrapper.suggest("t6") == {"i": 3, TRIAL_INDEX: 0}, "each trial gets its own copy"


def test_the_wrapped_searcher_hears_the_group_mean_once_under_its_first_trial() -> None:
    wrapper, inner = repeater(3)
    for i in range(6):
        wrapper.suggest(f"t{i}")
    wrapper.on_trial_result("t0", {"score": 100.0})
    assert inner.results == [], "intermediate results stay with the repeater"
    for trial_id, score in (("t1", 2.0), ("t4", 10.0), ("t0", 4.0), ("t3", 20.0)):
        wrapper.on_trial_complete(trial_id, {"score": score})
    assert inner.completed == []
    wrapper.on_trial_complete("t2", {"score": 9.0})
    assert inner.completed == [("t0", {"score": 5.0}, False)]
    wrapper.on_trial_complete("t2", {"score": 1000.0})  # reported twice: counted once
    wrapper.on_trial_complete("t5", None, error=True)  # a failed repeat is left out
    assert inner.completed[1:] == [("t3", {"score": 15.0}, False)]


def test_a_group_whose_every_repeat_failed_is_an_error_for_the_wrapped_searcher() -> None:
    wrapper, inner = repeater(2)
    wrapper.suggest("a")
    wrapper.suggest("b")
    wrapper.on_trial_complete("a", None, error=True)
    wrapper.on_trial_complete("b", {"score": math.nan})
    assert inner.completed == [("a", None, True)]


def test_finished_and_wait_pass_through_and_a_cut_short_group_is_not_told() -> None:
    wrapper, inner = repeater(2)
    inner.total = 1
    assert wrapper.suggest("a") == {"i": 1, TRIAL_INDEX: 0}
    assert wrapper.suggest("b") == {"i": 1, TRIAL_INDEX: 1}
    assert wrapper.suggest("c") == Searcher.FINISHED
    wrapper, inner = repeater(3, set_index=False)
    assert wrapper.suggest("a") == {"i": 1}
    wrapper.on_trial_complete("a", {"score": 1.0})
    assert inner.completed == [], "num_samples cut the group short: Ray tells no one either"


def test_around_a_grid_every_config_is_repeated() -> None:
    wrapper = Repeater(BasicVariantGenerator(), repeat=2)
    wrapper.set_search_properties(None, None, {"x": grid_search([1, 2])}, num_samples=1)
    assert wrapper.ends_search_itself
    suggestions = []
    while (config := wrapper.suggest(f"t{len(suggestions)}")) != Searcher.FINISHED:
        suggestions.append(config)
    assert suggestions == [
        {"x": 1, TRIAL_INDEX: 0},
        {"x": 1, TRIAL_INDEX: 1},
        {"x": 2, TRIAL_INDEX: 0},
        {"x": 2, TRIAL_INDEX: 1},
    ]


def test_state_round_trips_with_the_groups() -> None:
    wrapper, _ = repeater(2)
    wrapper.suggest("a")
    wrapper.on_trial_complete("a", {"score": 1.0})
    state = wrapper.get_state()
    fresh, fresh_inner = repeater(2)
    fresh.set_state(state)
    assert fresh.suggest("b") == {"i": 1, TRIAL_INDEX: 1}
    fresh.on_trial_complete("b", {"score": 3.0})
    assert fresh_inner.completed == [("a", {"score": 2.0}, False)]


def test_bad_arguments_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"`searcher` is 'hyperopt'.*Searcher"):
        Repeater("hyperopt", repeat=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`repeat` is 0.*int >= 1"):
        Repeater(BasicVariantGenerator(), repeat=0)
    wrapper, _ = repeater(2)
    wrapper.suggest("a")
    with pytest.raises(ValueError, match=r"`trial_id` is 'a'.*unique"):
        wrapper.suggest("a")


class TestRepeaterContract(SearcherContract):
    """A repeater around the default searcher is itself a well-behaved searcher."""

    deterministic_restore = True

    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> Searcher:
        wrapper = Repeater(BasicVariantGenerator(random_state=0), repeat=2, set_index=False)
        wrapper.set_search_properties(metric, mode, space, num_samples=-1)
        return wrapper
