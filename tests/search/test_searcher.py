"""The Searcher base class: metric and mode from the constructor or the Tuner."""

from __future__ import annotations

from typing import Any

import pytest

from dasktune.search.searcher import Searcher


class Fixed(Searcher):
    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        return {}


def test_the_tuner_fills_in_metric_and_mode() -> None:
    searcher = Fixed(metric="loss")
    assert searcher.set_search_properties(None, "min", {"x": 1}, num_samples=2, seed=0)
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    assert searcher.set_search_properties("loss", "min", None)


def test_a_conflicting_metric_or_mode_is_reported() -> None:
    # The docstring promised False (the Tuner then raises); the base class used to
    # return True and silently keep its own values.
    searcher = Fixed(metric="loss", mode="min")
    assert not searcher.set_search_properties("accuracy", None, None)
    assert not searcher.set_search_properties(None, "max", None)
    assert (searcher.metric, searcher.mode) == ("loss", "min")


def test_an_invalid_mode_is_named() -> None:
    with pytest.raises(ValueError, match=r"`mode` is 'minimise', but it must be 'min' or 'max'"):
        Fixed(mode="minimise")
    with pytest.raises(ValueError, match=r"`mode` is 'up'"):
        Fixed().set_search_properties("loss", "up", None)
