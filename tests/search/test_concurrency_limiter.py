"""ConcurrencyLimiter: plain and batch mode, delegation, validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import dasktune.search as tune
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher

from .searcher_contract import SearcherContract


class RecordingSearcher(Searcher):
    """Suggests numbered configs, FINISHED after ``total``; records every call."""

    def __init__(
        self, total: int = 100, metric: str | None = None, mode: str | None = None
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.total = total
        self.suggested: list[str] = []
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.completed: list[tuple[str, dict[str, Any] | None, bool]] = []
        self.properties: list[tuple[Any, ...]] = []

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        self.properties.append((metric, mode, config, spec))
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if len(self.suggested) >= self.total:
            return Searcher.FINISHED
        self.suggested.append(trial_id)
        return {"i": len(self.suggested)}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.results.append((trial_id, result))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.completed.append((trial_id, result, error))


class SelfLimitingSearcher(RecordingSearcher):
    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.own_limit = max_concurrent
        return True


def completed_ids(searcher: RecordingSearcher) -> list[str]:
    return [trial_id for trial_id, _, _ in searcher.completed]


# ------------------------------------------------------------------ plain mode


def test_suggest_returns_none_at_the_limit_and_resumes_after_completion() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert limiter.suggest("a") == {"i": 1}
    assert limiter.suggest("b") == {"i": 2}
    assert limiter.suggest("c") is None
    assert inner.suggested == ["a", "b"]  # the wrapped searcher was not asked
    assert limiter.live_trials == {"a", "b"}

    limiter.on_trial_complete("a", {"score": 1.0})
    assert inner.completed == [("a", {"score": 1.0}, False)]  # forwarded at once
    assert limiter.suggest("c") == {"i": 3}
    assert limiter.suggest("d") is None


def test_errored_trials_free_their_place_and_are_forwarded() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    limiter.suggest("a")
    limiter.on_trial_complete("a", None, error=True)
    assert inner.completed == [("a", None, True)]
    assert limiter.suggest("b") == {"i": 2}


def test_intermediate_results_pass_through() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    limiter.suggest("a")
    limiter.on_trial_result("a", {"score": 0.5})
    assert inner.results == [("a", {"score": 0.5})]


def test_finished_and_none_are_not_counted_as_live() -> None:
    inner = RecordingSearcher(total=1)
    limiter = ConcurrencyLimiter(inner, max_concurrent=3)
    assert limiter.suggest("a") == {"i": 1}
    assert limiter.suggest("b") == Searcher.FINISHED
    assert limiter.live_trials == {"a"}


def test_duplicate_live_trial_id_is_rejected() -> None:
    limiter = ConcurrencyLimiter(RecordingSearcher(), max_concurrent=3)
    limiter.suggest("a")
    with pytest.raises(ValueError, match=r"`trial_id` is 'a'.*unique"):
        limiter.suggest("a")


def test_unknown_trial_completion_goes_straight_to_the_searcher() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=1, batch=True)
    limiter.on_trial_complete("from-before-restore", {"score": 2.0})
    assert completed_ids(inner) == ["from-before-restore"]


# ------------------------------------------------------------------ batch mode


def test_batch_waits_for_the_whole_batch_then_forwards_all_results() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=3, batch=True)
    assert [limiter.suggest(t) for t in "abc"] == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert limiter.suggest("d") is None

    limiter.on_trial_complete("b", {"score": 2.0})
    limiter.on_trial_complete("a", None, error=True)
    assert inner.completed == []  # buffered until the batch is done
    assert limiter.suggest("d") is None  # a finished trial does not free a place

    limiter.on_trial_complete("c", {"score": 3.0})
    assert inner.completed == [
        ("b", {"score": 2.0}, False),
        ("a", None, True),
        ("c", {"score": 3.0}, False),
    ]
    assert limiter.live_trials == frozenset()
    assert [limiter.suggest(t) for t in "def"] == [{"i": 4}, {"i": 5}, {"i": 6}]
    assert limiter.suggest("g") is None


def test_batch_completing_a_trial_twice_counts_once() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.on_trial_complete("a", {"score": 1.0})
    limiter.on_trial_complete("a", {"score": 1.0})
    assert inner.completed == []
    limiter.on_trial_complete("b", {"score": 2.0})
    assert completed_ids(inner) == ["a", "b"]


def test_batch_smaller_than_limit_closes_when_its_trials_finish() -> None:
    inner = RecordingSearcher(total=1)
    limiter = ConcurrencyLimiter(inner, max_concurrent=4, batch=True)
    limiter.suggest("a")
    assert limiter.suggest("b") == Searcher.FINISHED
    limiter.on_trial_complete("a", {"score": 1.0})
    assert completed_ids(inner) == ["a"]


def test_batch_with_basic_variant_generator_runs_in_rounds() -> None:
    searcher = BasicVariantGenerator(random_state=0)
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2, batch=True)
    assert limiter.set_search_properties(None, None, {"x": tune.grid_search([1, 2, 3, 4, 5])})
    rounds: list[list[int]] = []
    trial = 0
    while True:
        batch = []
        while True:
            config = limiter.suggest(f"t{trial}")
            if not isinstance(config, dict):
                break
            batch.append((f"t{trial}", config["x"]))
            trial += 1
        if not batch:
            assert config == Searcher.FINISHED
            break
        rounds.append([x for _, x in batch])
        for trial_id, _ in batch:
            limiter.on_trial_complete(trial_id, {"score": 0.0})
    assert rounds == [[1, 2], [3, 4], [5]]


# ------------------------------------------------------------------ delegation


def test_metric_mode_and_search_properties_are_delegated() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert limiter.metric is None and limiter.mode is None
    assert limiter.set_search_properties("loss", "min", {"a": 1}, num_samples=3, seed=7)
    assert inner.properties == [("loss", "min", {"a": 1}, {"num_samples": 3, "seed": 7})]
    assert (limiter.metric, limiter.mode) == ("loss", "min")
    assert (ConcurrencyLimiter(RecordingSearcher(metric="acc", mode="max"), 1).metric) == "acc"


def test_conflicting_search_properties_are_reported() -> None:
    searcher = BasicVariantGenerator()
    limiter = ConcurrencyLimiter(searcher, max_concurrent=1)
    limiter.set_search_properties(None, None, {"a": tune.uniform(0, 1)})
    limiter.suggest("t0")
    with pytest.raises(ValueError, match="already made suggestions for another param_space"):
        limiter.set_search_properties(None, None, {"b": tune.uniform(0, 1)})


def test_it_answers_for_the_wrapped_searcher_s_nature() -> None:
    """A limited grid still ends the search itself and needs no metric (as the Tuner asks)."""
    grid = ConcurrencyLimiter(BasicVariantGenerator(), max_concurrent=1)
    assert grid.ends_search_itself and not grid.learns_from_results
    model = ConcurrencyLimiter(RecordingSearcher(), max_concurrent=1)
    assert not model.ends_search_itself and model.learns_from_results


def test_save_and_restore_delegate_to_the_wrapped_searcher(tmp_path: Any) -> None:
    space = {"x": tune.uniform(0, 1)}
    first = ConcurrencyLimiter(BasicVariantGenerator(random_state=3), max_concurrent=1)
    first.set_search_properties(None, None, space, num_samples=4)
    head = first.suggest("t0")
    first.on_trial_complete("t0", {"score": 1.0})
    path = str(tmp_path / "state.pkl")
    first.save(path)
    expected = first.suggest("t1")

    inner = BasicVariantGenerator()
    second = ConcurrencyLimiter(inner, max_concurrent=1)
    second.restore(path)
    assert second.suggest("t1") == expected != head


def test_get_state_round_trips_limiter_and_searcher_state() -> None:
    inner = RecordingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.on_trial_complete("a", {"score": 1.0})
    state = limiter.get_state()

    other = ConcurrencyLimiter(RecordingSearcher(), max_concurrent=2, batch=True)
    other.set_state(state)
    assert other.live_trials == {"a", "b"}
    assert other.searcher.suggested == ["a", "b"]  # type: ignore[attr-defined]
    other.on_trial_complete("b", {"score": 2.0})
    assert completed_ids(other.searcher) == ["a", "b"]  # type: ignore[arg-type]
    assert limiter.live_trials == {"a", "b"}  # the original is unaffected


def test_a_searcher_that_limits_itself_is_not_limited_twice() -> None:
    inner = SelfLimitingSearcher()
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    assert inner.own_limit == 1
    assert isinstance(limiter.suggest("a"), dict)
    assert isinstance(limiter.suggest("b"), dict)  # the searcher's own logic decides
    limiter.on_trial_complete("a", {"score": 1.0})
    assert completed_ids(inner) == ["a"]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_max_concurrent_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(
        ValueError, match=rf"`max_concurrent` is {bad!r}, but it must be an int >= 1"
    ):
        ConcurrencyLimiter(RecordingSearcher(), max_concurrent=bad)


def test_max_concurrent_may_be_a_numpy_int() -> None:
    # Integers follow dasktune._validation.is_integer: numpy ints count (they used to be refused).
    limiter = ConcurrencyLimiter(RecordingSearcher(), max_concurrent=np.int64(2))
    assert limiter.max_concurrent == 2 and type(limiter.max_concurrent) is int


def test_only_searchers_can_be_wrapped() -> None:
    with pytest.raises(TypeError, match=r"`searcher` is 'hyperopt'.*Searcher"):
        ConcurrencyLimiter("hyperopt", max_concurrent=2)  # type: ignore[arg-type]


# ------------------------------------------------------------------ contract


class TestConcurrencyLimiterContract(SearcherContract):
    """A limiter around the default searcher is itself a well-behaved searcher."""

    deterministic_restore = True

    def make_searcher(
        self, metric: str | None, mode: str | None, space: dict[str, Any]
    ) -> Searcher:
        limiter = ConcurrencyLimiter(BasicVariantGenerator(random_state=0), max_concurrent=4)
        limiter.set_search_properties(metric, mode, space, num_samples=-1)
        return limiter


def test_the_base_searcher_has_ray_s_optional_hooks() -> None:
    """Ray-style custom searchers call these through super()."""
    searcher = RecordingSearcher()
    assert searcher.set_max_concurrency(3) is False  # so a ConcurrencyLimiter does the limiting
    with pytest.raises(NotImplementedError, match="pass them as points_to_evaluate"):
        searcher.add_evaluated_point({"x": 1}, 0.5)
