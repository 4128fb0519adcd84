"""AsyncHyperBandScheduler(mode_of_operation="promotion"): the ASHA paper's promotions.

Rules (Li et al. 2020, Algorithm 2; see the module docstring of asha_promotion):
a trial reaching a rung is recorded there and pauses; a paused trial may go on
(be promoted) when it is among the best ``floor(n / rf)`` of the ``n`` values
of its rung and was not promoted from it yet, highest rung first; once no
trial will be added, a rung nothing can reach any more promotes its best
paused trial if it promoted none, and stops its other paused trials.

With ``max_t=8, grace_period=1, reduction_factor=2`` trials pause at rungs
1, 2 and 4 and stop at 8 (max_t).
"""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest

from dasktune.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    TrialDecision,
    TrialScheduler,
    TrialUpdate,
)
from dasktune.schedulers.asha_promotion import PromotionASHAScheduler
from dasktune.testing import Simulator, curve_step
from dasktune.trial import Trial, TrialStatus

from .scheduler_contract import SchedulerContract

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE


class TestPromotionContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return AsyncHyperBandScheduler(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            max_t=8,
            reduction_factor=2,
            mode_of_operation="promotion",
        )


class TestPromotionContractBrackets(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return AsyncHyperBandScheduler(
            metric=self.metric,
            mode=self.mode,
            max_t=8,
            reduction_factor=2,
            brackets=2,
            seed=0,
            stop_last_trials=False,
            mode_of_operation="promotion",
        )


def asha(mode_of_operation: str = "promotion", **kwargs: Any) -> AsyncHyperBandScheduler:
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    kwargs.setdefault("max_t", 8)
    kwargs.setdefault("reduction_factor", 2)
    return AsyncHyperBandScheduler(mode_of_operation=mode_of_operation, **kwargs)


def simulate(scheduler: TrialScheduler, curves: list[list[float]], **kwargs: Any):
    configs, step, length = curve_step(curves)
    return Simulator(scheduler, configs, step, length, **kwargs).run()


def report(scheduler: TrialScheduler, trial: Trial, t: float, value: float) -> TrialDecision:
    return scheduler.on_trial_result(trial, {"training_iteration": t, "score": value})


FOUR = [
    [1, 2, 3, 4, 5, 6, 7, 8],  # t0
    [3, 3, 3, 3, 3, 3, 3, 3],  # t1
    [2, 5, 6, 7, 8, 9, 10, 11],  # t2
    [0, 1, 1, 1, 1, 1, 1, 1],  # t3
]


def test_promotions_at_concurrency_one() -> None:
    # t0@1: rung 1 holds [t0 1]: floor(1/2) = 0 promotable -> PAUSE.  Nothing to promote:
    #   the coordinator starts t1.
    # t1@1: rung 1 [1, 3]: top 1 is t1 itself -> it goes on (CONTINUE).
    # t1@2: rung 2 [3]: nobody -> PAUSE.  New trial t2.
    # t2@1: rung 1 [1, 3, 2]: top 1 is t1, already promoted -> PAUSE.  New trial t3.
    # t3@1: rung 1 [1, 3, 2, 0]: top 2 = t1, t2; t2 is the next promotion, not t3 -> PAUSE.
    # The coordinator resumes t2: t2@2: rung 2 [3, 5]: top 1 = t2 -> CONTINUE; t2@4:
    #   rung 4 [7]: nobody -> PAUSE.  Nothing to promote, no trial left: on_no_more_trials.
    # Rung 1 (nothing can arrive): t1 and t2 were promoted; t0 and t3 are stopped.
    # Rung 2: t2 was promoted; t1 is stopped.  Rung 4 promoted no one: its best paused
    # trial, t2, goes on anyway, and stops at max_t 8.
    scheduler = asha()
    outcome = simulate(scheduler, FOUR)
    assert outcome.decisions("t_00000") == [(1, PAUSE)]
    assert outcome.decisions("t_00001") == [(1, CONTINUE), (2, PAUSE)]
    assert outcome.decisions("t_00003") == [(1, PAUSE)]
    assert outcome.decisions("t_00002") == (
        [(1, PAUSE), (2, CONTINUE), (3, CONTINUE), (4, PAUSE)]
        + [(t, CONTINUE) for t in (5, 6, 7)]
        + [(8, STOP)]
    )
    assert outcome.updates == [
        TrialUpdate("t_00000", STOP),
        TrialUpdate("t_00003", STOP),
        TrialUpdate("t_00001", STOP),
    ]
    assert outcome.iterations == 1 + 2 + 8 + 1
    assert outcome.best() == 11
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    # Stopping ASHA (Ray) on the same curves: t0 passes every empty rung to 8; t1 stops
    # at 4 (3 < 4); t2 passes (2 vs median[1, 3] = 2 is no stop) to 8; t3 stops at 1.
    stopping = simulate(asha("stopping"), FOUR)
    assert stopping.stopped_at() == {"t_00000": 8, "t_00001": 4, "t_00002": 8, "t_00003": 1}
    assert stopping.iterations == 21


# The first trials mislead stopping ASHA at concurrency 1.
EARLY_LEADERS = [
    [5.0, 5.5, 6.0, 6.2, 6.3, 6.4, 6.5, 6.6],  # t0: starts well, plateaus low
    [5.2, 5.7, 6.2, 6.4, 6.5, 6.6, 6.7, 6.8],  # t1: a little better at every step
    [5.4, 5.9, 6.4, 6.6, 6.7, 6.8, 6.9, 7.0],  # t2: again
    [1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0],  # t3: slow and poor
    [1.5, 2.5, 3.5, 4.5, 5.0, 5.5, 6.0, 6.5],  # t4: slow and poor
    [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0],  # t5: the best, but it comes sixth
    [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0],  # t6
    [2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5],  # t7
]


def test_promotion_beats_stopping_at_concurrency_one_with_equal_budget() -> None:
    """Stopping ASHA compares each trial only with those before it: t0, t1 and t2 each
    beat their predecessors at every rung, run to max_t and use up the 24 iterations;
    t5 never runs.  Promotion ASHA only promotes the best of each group: t0 pauses at
    rung 1, t1 goes to 2, t2 to 4, t3 and t4 pause at 1, then t5 leads every rung and
    runs to max_t: 17 iterations for the best score.  (t0 gets a second iteration
    later, when t7 makes it one of the top 4 of the 8 values at rung 1.)"""
    stopping = simulate(asha("stopping"), EARLY_LEADERS, budget=24)
    promotion = simulate(asha("promotion"), EARLY_LEADERS, budget=24)
    assert stopping.iterations == 24 and promotion.iterations <= 24
    assert stopping.best() == 7.0
    assert promotion.best() == 13.0
    assert promotion.iterations_of("t_00005") == 8
    assert [promotion.iterations_of(f"t_{i:05d}") for i in range(8)] == [2, 2, 4, 1, 1, 8, 1, 1]


# choose_trial_to_run ---------------------------------------------------------------------


def test_highest_rung_is_promoted_first() -> None:
    scheduler = asha()
    trials = {name: Trial(name, {}) for name in "abcdef"}
    for trial in trials.values():
        scheduler.on_trial_add(trial)
    a, b, c, d, e, f = trials.values()
    assert report(scheduler, a, 1, 10) is PAUSE  # rung 1 [10]: nobody
    assert report(scheduler, b, 1, 9) is PAUSE  # top 1 = a: a is the next promotion
    assert scheduler.choose_trial_to_run([a, b]) is a
    assert report(scheduler, a, 2, 10) is PAUSE  # rung 2 [10]: nobody
    assert report(scheduler, c, 1, 8) is PAUSE  # rung 1: top 1 = a, done
    assert report(scheduler, d, 1, 7) is PAUSE  # top 2 = a, b: b is next
    assert scheduler.choose_trial_to_run([a, b, c, d]) is b
    assert report(scheduler, b, 2, 9) is PAUSE  # rung 2 [10, 9]: top 1 = a
    assert report(scheduler, e, 1, 11) is PAUSE  # rung 2's a goes first
    assert report(scheduler, f, 1, 12) is PAUSE
    # Rung 2 promotes a; rung 1 (top 3 = f, e, a) could promote f and e: a first.
    assert scheduler.choose_trial_to_run([a, b, c, d, e, f]) is a
    assert scheduler.choose_trial_to_run([b, c, d, e, f]) is f
    assert scheduler.choose_trial_to_run([b, c, d, e]) is e
    assert scheduler.choose_trial_to_run([b, c, d]) is None


def test_values_of_removed_trials_stay_and_hold_their_rank() -> None:
    scheduler = asha()
    a, b, c, d = (Trial(n, {}) for n in "abcd")
    for trial in (a, b, c, d):
        scheduler.on_trial_add(trial)
    assert report(scheduler, a, 1, 5) is PAUSE
    assert report(scheduler, b, 1, 4) is PAUSE
    scheduler.on_trial_remove(a)  # a was the next promotion: its place is not given away
    assert scheduler.choose_trial_to_run([b]) is None
    assert report(scheduler, c, 1, 3) is PAUSE
    # rung 1 [5, 4, 3, 6]: top 2 = d, a -> d goes on at once.
    assert report(scheduler, d, 1, 6) is CONTINUE


def test_nan_ranks_last() -> None:
    scheduler = asha()
    a, b, c = (Trial(n, {}) for n in "abc")
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)
    assert report(scheduler, a, 1, math.nan) is PAUSE
    # Rung 1 [nan, -inf]: top 1 is a (NaN ties with -inf; a was recorded first).
    assert report(scheduler, b, 1, -math.inf) is PAUSE
    assert scheduler.choose_trial_to_run([a, b]) is a
    # Rung 1 [nan, -inf, 0]: top 1 is c, which goes on; b stays behind.
    assert report(scheduler, c, 1, 0.0) is CONTINUE
    assert scheduler.choose_trial_to_run([b]) is None


def test_mode_min() -> None:
    scheduler = asha(mode="min", metric="loss")
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    assert scheduler.on_trial_result(a, {"training_iteration": 1, "loss": 2.0}) is PAUSE
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "loss": 1.0}) is CONTINUE


def test_time_jumps_record_every_rung_reached() -> None:
    scheduler = asha(time_attr="time_total_s")
    a, b, c = (Trial(n, {}) for n in "abc")
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)

    def at(trial: Trial, t: float, v: float) -> TrialDecision:
        return scheduler.on_trial_result(trial, {"time_total_s": t, "score": v})

    assert at(a, 0.5, 1) is CONTINUE  # below rung 1
    assert at(a, 2.5, 5) is PAUSE  # reached rungs 1 and 2: recorded at both, waits at 2
    # b at rung 1 [5, 4]: top 1 = a, which went past rung 1 already -> b waits.
    assert at(b, 1.2, 4) is PAUSE
    assert at(c, 2.0, 6) is CONTINUE  # rung 1 [5, 4, 6] top 1 = c; rung 2 [5, 6] top 1 = c


# After the last trial ---------------------------------------------------------------------------


def test_rung_settles_only_when_nothing_can_reach_it() -> None:
    scheduler = asha()
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    assert report(scheduler, a, 1, 5) is PAUSE
    scheduler.on_no_more_trials()
    assert scheduler.pop_trial_updates() == []  # b may still reach rung 1
    # b arrives: rung 1 [5, 3] promotes a (top 1); b, the rest, is stopped at once.
    assert report(scheduler, b, 1, 3) is STOP
    assert scheduler.pop_trial_updates() == []
    assert scheduler.choose_trial_to_run([a]) is a


def test_drain_promotes_the_best_of_a_rung_that_promoted_no_one() -> None:
    scheduler = asha(reduction_factor=4, max_t=16)  # rungs 1, 4; quota floor(n / 4)
    trials = [Trial(f"t{i}", {}) for i in range(3)]
    for trial, value in zip(trials, (2, 7, 5), strict=True):
        scheduler.on_trial_add(trial)
        assert report(scheduler, trial, 1, value) is PAUSE
    scheduler.on_no_more_trials()
    # Rung 1 [2, 7, 5]: floor(3/4) = 0 promoted -> t1, the best, goes on; the others
    # stop (updates in rank order).
    assert scheduler.pop_trial_updates() == [TrialUpdate("t2", STOP), TrialUpdate("t0", STOP)]
    assert scheduler.choose_trial_to_run([trials[1]]) is trials[1]
    assert report(scheduler, trials[1], 4, 7) is CONTINUE  # alone at rung 4: promoted too
    assert report(scheduler, trials[1], 16, 9) is STOP  # max_t


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_simulated_runs_end_and_narrow_down(concurrency: int) -> None:
    curves = [
        [((i * 37) % 23) / 23 * (1 - math.exp(-t / (1 + i % 5))) for t in range(1, 9)]
        for i in range(24)
    ]
    scheduler = asha()
    outcome = simulate(scheduler, curves, concurrency=concurrency)
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    reached = {
        m: sum(1 for tid in outcome.trials if outcome.iterations_of(tid) >= m) for m in (1, 2, 4, 8)
    }
    # Promotions are final, so a trial promoted early and overtaken later still went up:
    # more than floor(24 / 2) trials may pass rung 1 (as in the paper's algorithm).
    assert reached[1] == 24
    assert 24 > reached[2] >= reached[4] >= reached[8] >= 1
    assert outcome.iterations < 24 * 8 / 2


def test_stop_last_trials_false_promotes_past_max_t() -> None:
    # With stop_last_trials=False rung 8 is a rung too; promoted from it, a trial runs on.
    curves = [[float(i + t) for t in range(1, 13)] for i in range(4)]
    outcome = simulate(asha(stop_last_trials=False), curves)
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    assert max(outcome.iterations_of(tid) for tid in outcome.trials) == 12


def test_several_brackets() -> None:
    curves = [[((i * 7) % 11) + 0.1 * t for t in range(1, 9)] for i in range(16)]
    outcome = simulate(asha(brackets=3, seed=4), curves, concurrency=3)
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())


# Arguments ---------------------------------------------------------------------------------------


def test_mode_of_operation_argument() -> None:
    assert asha("stopping").mode_of_operation == "stopping"
    assert AsyncHyperBandScheduler().mode_of_operation == "stopping"
    scheduler = asha()
    assert scheduler.mode_of_operation == "promotion"
    assert "mode_of_operation=promotion" in scheduler.debug_string()
    with pytest.raises(ValueError, match=r"`mode_of_operation` is 'promote', but it must be"):
        asha("promote")
    with pytest.raises(TypeError):
        AsyncHyperBandScheduler("training_iteration", "s", "max", 8, 1, 2, 1, True, 0, "promotion")  # type: ignore[misc]


def test_promotion_is_a_subclass_that_the_constructor_picks() -> None:
    """One class per algorithm; Ray's constructor and isinstance checks still work."""
    for build in (AsyncHyperBandScheduler, ASHAScheduler):
        scheduler = build(metric="s", mode="max", mode_of_operation="promotion")
        assert type(scheduler) is PromotionASHAScheduler
        assert isinstance(scheduler, AsyncHyperBandScheduler)
        assert type(build(metric="s", mode="max")) is AsyncHyperBandScheduler
    assert PromotionASHAScheduler(metric="s", mode="max").mode_of_operation == "promotion"
    scheduler = asha()
    trials = [Trial(f"t{i}", {}) for i in range(3)]
    for i, trial in enumerate(trials):
        scheduler.on_trial_add(trial)
        report(scheduler, trial, 1, float(i))
    for copied in (pickle.loads(pickle.dumps(scheduler)), copy.deepcopy(scheduler)):
        assert type(copied) is PromotionASHAScheduler
        assert copied.debug_string() == scheduler.debug_string()


def test_a_class_runs_only_its_own_algorithm() -> None:
    with pytest.raises(
        ValueError,
        match=r"`mode_of_operation` is 'stopping', but "
        r"PromotionASHAScheduler runs 'promotion' ASHA",
    ):
        PromotionASHAScheduler(metric="s", mode="max", mode_of_operation="stopping")

    class MyASHA(AsyncHyperBandScheduler):
        pass

    with pytest.raises(
        ValueError, match=r"MyASHA runs 'stopping' ASHA.*subclass PromotionASHAScheduler"
    ):
        MyASHA(metric="s", mode="max", mode_of_operation="promotion")
