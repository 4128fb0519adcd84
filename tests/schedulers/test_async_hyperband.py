"""AsyncHyperBandScheduler: Ray Tune's decisions, computed by hand.

Ray is not installed, so each expected decision below is derived by hand from
Ray Tune's rules (``ray/tune/schedulers/async_hyperband.py``):

* rungs of bracket ``s`` are ``grace * rf ** (k + s)`` for
  ``k < int(log(max_t / grace) / log(rf) - s + 1)``, visited highest first;
* a result with ``t >= max_t`` is a STOP (if ``stop_last_trials``), recorded nowhere;
* otherwise the first rung visited with ``t >= milestone`` that the trial has not
  recorded at: cutoff = ``nanpercentile(values there, (1 - 1/rf) * 100)``
  (None if empty), record the value (negated for mode "min"), STOP if
  ``value < cutoff``; then stop visiting.  With ``stop_last_trials=False`` the
  visit also ends at the first reached rung already recorded;
* after a STOP, Ray's controller calls ``on_trial_complete`` with the same
  result, and a trial that ends calls it with its last result: that result
  goes through the same rung logic (decision ignored).

``np.percentile`` with linear interpolation: for sorted ``v[0..n-1]`` and
fraction ``q`` the cutoff is at position ``q * (n - 1)``, so the median of
``[a, b]`` is ``(a + b) / 2`` and the 75th percentile of ``[a, b]`` is
``a + 0.75 (b - a)``.  Values are small integers or halves so that ties are exact.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import pytest

from dasktune.decision_points import DecisionPoints, DecisionPointTracker
from dasktune.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    TrialDecision,
    TrialScheduler,
)
from dasktune.trial import Trial

from .scheduler_contract import SchedulerContract, make_trial

STOP = TrialDecision.STOP
CONTINUE = TrialDecision.CONTINUE


class TestASHAContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return AsyncHyperBandScheduler(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            max_t=8,
            grace_period=1,
            reduction_factor=2,
        )


class TestASHAContractTwoBrackets(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return AsyncHyperBandScheduler(
            metric=self.metric, mode=self.mode, max_t=8, reduction_factor=2, brackets=2, seed=3
        )


# Drivers ------------------------------------------------------------------


def run_trial(
    scheduler: TrialScheduler, trial: Trial, curve: list[float], metric: str = "acc"
) -> int | None:
    """Report ``curve`` at iterations 1, 2, ...; the iteration of the STOP, or None.

    Like Ray's controller: after a STOP, or at the end of the curve, the
    scheduler's ``on_trial_complete`` gets the last result.
    """
    result: dict[str, Any] = {}
    for t, value in enumerate(curve, start=1):
        result = {"training_iteration": t, metric: value}
        if scheduler.on_trial_result(trial, result) is STOP:
            scheduler.on_trial_complete(trial, result)
            return t
    scheduler.on_trial_complete(trial, result)
    return None


def run_one_at_a_time(
    scheduler: TrialScheduler, curves: list[list[float]], metric: str = "acc"
) -> list[int | None]:
    """max_concurrent=1: each trial's whole curve arrives before the next trial starts."""
    trials = [make_trial(i) for i in range(len(curves))]
    for trial in trials:  # Ray creates (adds) the trials ahead of running them
        scheduler.on_trial_add(trial)
    return [
        run_trial(scheduler, trial, curve, metric)
        for trial, curve in zip(trials, curves, strict=True)
    ]


def replay(
    scheduler: TrialScheduler,
    events: list[tuple[str, float, float]],
    time_attr: str = "training_iteration",
) -> dict[str, float | None]:
    """Concurrent arrival: ``(trial, time, value)`` events; the time of each trial's STOP."""
    trials: dict[str, Trial] = {}
    stopped: dict[str, float | None] = {}
    for name, t, value in events:
        if name not in trials:
            trials[name] = Trial(name, {})
            scheduler.on_trial_add(trials[name])
            stopped[name] = None
        assert stopped[name] is None, f"event for {name} after it was stopped"
        result = {time_attr: t, "acc": value}
        if scheduler.on_trial_result(trials[name], result) is STOP:
            scheduler.on_trial_complete(trials[name], result)
            stopped[name] = t
    return stopped


def asha(**kwargs: Any) -> AsyncHyperBandScheduler:
    kwargs.setdefault("metric", "acc")
    kwargs.setdefault("mode", "max")
    return AsyncHyperBandScheduler(**kwargs)


# Rungs and decision points --------------------------------------------------


@pytest.mark.parametrize(
    ("max_t", "grace", "rf", "brackets", "expected"),
    [
        (8, 1, 2, 1, ((8, 4, 2, 1),)),
        (8, 1, 3, 1, ((3, 1),)),  # log(8)/log(3) = 1.89 -> 2 rungs
        (8, 1, 4, 1, ((4, 1),)),
        (8, 2, 2, 1, ((8, 4, 2),)),
        (8, 2, 4, 1, ((8, 2),)),
        # Bracket s starts at grace * rf**s and has s fewer rungs.
        (8, 1, 2, 3, ((8, 4, 2, 1), (8, 4, 2), (8, 4))),
        (8, 1, 3, 3, ((3, 1), (3,), ())),  # the last bracket has no rung at all
        # Ray counts rungs with a float log: log(243)/log(3) = 4.999999999999999,
        # so there is no rung at 243 (= max_t; it is then a plain max_t stop).
        (243, 1, 3, 1, ((81, 27, 9, 3, 1),)),
        (100, 1, 4, 1, ((64, 16, 4, 1),)),  # Ray's defaults
    ],
)
def test_rungs_match_ray(max_t: int, grace: int, rf: int, brackets: int, expected: tuple) -> None:
    scheduler = asha(max_t=max_t, grace_period=grace, reduction_factor=rf, brackets=brackets)
    assert scheduler.milestones == expected


def test_decision_points_are_rungs_and_max_t() -> None:
    assert asha(max_t=8, reduction_factor=2).decision_points() == DecisionPoints.at(
        "training_iteration", [1, 2, 4, 8]
    )
    # rf=3: rungs 1 and 3, plus max_t=8 where trials are stopped.
    assert asha(max_t=8, reduction_factor=3).decision_points() == DecisionPoints.at(
        "training_iteration", [1, 3, 8]
    )
    points = asha(
        time_attr="time_total_s", max_t=8, reduction_factor=2, brackets=3
    ).decision_points()
    assert points == DecisionPoints.at("time_total_s", [1, 2, 4, 8])


def test_trials_wait_exactly_where_asha_can_stop_them() -> None:
    tracker = DecisionPointTracker((asha(max_t=8, reduction_factor=2).decision_points(),))
    waits = [t for t in range(1, 12) if tracker.needs_decision({"training_iteration": t})]
    assert waits == [1, 2, 4, 8]


# Decisions with one trial at a time (max_concurrent=1) ------------------------


def test_one_at_a_time_max_rf2_grace1() -> None:
    """rf=2, grace 1, max_t 8, mode max.  Rungs 8, 4, 2, 1; cutoff = median."""
    curves = [
        [10, 20, 30, 40, 50, 60, 70, 80],  # T0
        [20, 30, 40, 50, 55, 60, 65, 70],  # T1
        [12, 50, 60, 70, 80, 90, 95, 99],  # T2
        [30, 25, 35, 38, 60, 70, 80, 90],  # T3
        [40, 45, 46, 47, 48, 49, 50, 51],  # T4
        [50, 28, 29, 30, 31, 32, 33, 34],  # T5
    ]
    # T0: first at every rung (empty rungs: no cutoff): records r1=10 (t1), r2=20 (t2),
    #     r4=40 (t4); t3, t5-7 reach no new rung; t8 >= max_t -> STOP.  Its
    #     on_trial_complete(t8) records r8=80.
    # T1: t1 20 vs median[10]=10 ok; t2 30 vs [20] ok; t4 50 vs [40] ok; t8 max_t STOP.
    # T2: t1 12 vs median[10, 20]=15 -> STOP at 1 (a slow starter, as ASHA intends).
    # T3: t1 30 vs median[10, 12, 20]=12 ok; t2 25 vs median[20, 30]=25: 25 < 25 is
    #     false -> continue (ties continue); t4 38 vs median[40, 50]=45 -> STOP at 4.
    # T4: t1 40 vs median[10, 12, 20, 30]=16 ok; t2 45 vs median[20, 25, 30]=25 ok;
    #     t4 47 vs median[38, 40, 50]=40 ok (T3's 38 was recorded though it stopped);
    #     t8 max_t STOP.
    # T5: t1 50 vs median[10, 12, 20, 30, 40]=20 ok; t2 28 vs median[20, 25, 30, 45]=27.5
    #     ok; t4 30 vs median[38, 40, 47, 50]=43.5 -> STOP at 4.
    scheduler = asha(max_t=8, grace_period=1, reduction_factor=2)
    assert run_one_at_a_time(scheduler, curves) == [8, 8, 1, 4, 8, 4]
    assert "num_stopped=6" in scheduler.debug_string()


def test_one_at_a_time_min_rf3_grace1() -> None:
    """rf=3, grace 1, max_t 8, mode min.  Rungs 3, 1; values recorded as -loss;
    cutoff = 66.7th percentile of the -loss values (position (n-1) * 2/3)."""
    curves = [
        [9, 8, 7, 6, 5, 4, 3, 2],  # T0
        [8, 7, 6, 5, 4, 3, 2, 1],  # T1
        [10, 9, 8, 7, 6, 5, 4, 3],  # T2
        [7, 9, 9, 9, 9, 9, 9, 9],  # T3
        [6, 5, 4, 3, 2, 1, 0.5, 0.25],  # T4
        [8.5, 1, 1, 1, 1, 1, 1, 1],  # T5
    ]
    # T0: first at r1 (-9, t1) and r3 (-7, t3); t8 max_t STOP.  Its completion at
    #     t8 finds both rungs recorded: nothing more.
    # T1: t1 -8 vs [-9] -> cutoff -9 ok; t3 -6 vs [-7] ok; t8 STOP.
    # T2: t1 -10 vs [-9, -8]: -9 + 2/3 = -8.33 -> STOP at 1.
    # T3: t1 -7 vs [-10, -9, -8]: position 4/3 -> -8.67 ok; t3 -9 vs [-7, -6]:
    #     -6.33 -> STOP at 3.
    # T4: t1 -6 vs [-10, -9, -8, -7]: position 2 -> -8 ok; t3 -4 vs [-9, -7, -6]:
    #     -6.67 ok; t8 STOP.
    # T5: t1 -8.5 vs [-10, -9, -8, -7, -6]: position 8/3 -> -7.33 -> STOP at 1.
    # (Without the negation, T1's loss 8 would be compared with 9 and stopped.)
    scheduler = asha(mode="min", metric="loss", max_t=8, grace_period=1, reduction_factor=3)
    assert run_one_at_a_time(scheduler, curves, metric="loss") == [8, 8, 1, 3, 8, 1]


def test_one_at_a_time_max_rf4_grace2() -> None:
    """rf=4, grace 2, max_t 8, mode max.  Rungs 8, 2; cutoff = 75th percentile."""
    curves = [
        [1, 2, 3, 4, 5, 6, 7, 8],  # T0
        [9, 1, 9, 9, 9, 9, 9, 9],  # T1
        [0, 3, 3, 3, 3, 3, 3, 4],  # T2
        [0, 2.5, 0, 0, 0, 0, 0, 0],  # T3
        [0, 2.9, 1, 1, 1, 1, 1, 1],  # T4
        [0, 2.8, 5, 5, 5, 5, 5, 5],  # T5
    ]
    # No rung at 1: no one is judged on its first result (T1's 9, T2's 0 are ignored).
    # T0: t2 first at r2 (2); t8 max_t STOP; completion records r8=8.
    # T1: t2 1 vs [2] -> STOP at 2.
    # T2: t2 3 vs [1, 2]: 1 + 0.75 = 1.75 ok; t8 STOP; completion: r8 += 4.
    # T3: t2 2.5 vs [1, 2, 3]: position 1.5 -> 2.5; 2.5 < 2.5 false -> ok; t8 STOP.
    # T4: t2 2.9 vs [1, 2, 2.5, 3]: position 2.25 -> 2.625 ok; t8 STOP.
    # T5: t2 2.8 vs [1, 2, 2.5, 2.9, 3]: position 3 -> 2.9 -> STOP at 2.
    scheduler = asha(max_t=8, grace_period=2, reduction_factor=4)
    assert run_one_at_a_time(scheduler, curves) == [8, 2, 8, 8, 8, 2]


CURVES_PAST_MAX_T = [
    [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],  # T0
    [5, 30, 30, 30, 30, 30, 30, 70, 70, 70],  # T1
    [5, 40, 40, 50, 50, 50, 50, 60, 90, 90],  # T2
    [0, 50, 50, 60, 60, 60, 60, 90, 95, 99],  # T3
]


def test_stop_last_trials_false() -> None:
    """rf=2, grace 2, max_t 8, stop_last_trials=False.  Rungs 8, 4, 2; trials may run on."""
    # T0: first at r2 (20), r4 (40) and r8 (80, at t8: with stop_last_trials=False
    #     the result at max_t goes through the rungs); t9, t10: r8 is reached and
    #     recorded -> the visit ends -> continue; the curve ends (None).
    # T1: t2 30 vs [20] ok; t4 30 vs [40] -> STOP at 4.
    # T2: t2 40 vs median[20, 30]=25 ok; t4 50 vs median[40, 30]=35 ok;
    #     t8 60 vs [80] -> STOP at 8, by the rung at max_t.
    # T3: t2 50 vs median[20, 30, 40]=30 ok; t4 60 vs median[30, 40, 50]=40 ok;
    #     t8 90 vs median[60, 80]=70 ok; runs to the end of its curve.
    scheduler = asha(max_t=8, grace_period=2, reduction_factor=2, stop_last_trials=False)
    assert run_one_at_a_time(scheduler, CURVES_PAST_MAX_T) == [None, 4, 8, None]


def test_stop_last_trials_true_on_the_same_curves() -> None:
    # The same curves with the default: everyone left is stopped at max_t (8);
    # T1 still stops at 4 (30 vs [40]).  T2 is not judged at r8 (max_t comes first).
    scheduler = asha(max_t=8, grace_period=2, reduction_factor=2)
    assert run_one_at_a_time(scheduler, CURVES_PAST_MAX_T) == [8, 4, 8, 8]


# Concurrent arrival -----------------------------------------------------------

CONCURRENT_EVENTS = [
    ("A", 1, 1),
    ("A", 2, 1),
    ("B", 1, 2),
    ("D", 1, 3),
    ("D", 2, 0.9),
    ("B", 2, 0.5),
    ("C", 1, 0.5),
    ("A", 3, 1),
    ("A", 4, 1),
]


def test_interleaved_arrival() -> None:
    """rf=2, grace 1, max_t 4.  Rungs 4, 2, 1; decisions depend on arrival order."""
    # A t1: r1 empty -> ok [1].      A t2: r2 empty -> ok [1].
    # B t1: 2 vs [1] ok -> r1 [1, 2].
    # D t1: 3 vs median[1, 2]=1.5 ok -> r1 [1, 2, 3].
    # D t2: 0.9 vs [1] -> STOP at 2 -> r2 [1, 0.9].
    # B t2: 0.5 vs median[0.9, 1]=0.95 -> STOP at 2.
    # C t1: 0.5 vs median[1, 2, 3]=2 -> STOP at 1.
    # A t3: no new rung; A t4 >= max_t -> STOP.
    stopped = replay(asha(max_t=4, reduction_factor=2), CONCURRENT_EVENTS)
    assert stopped == {"A": 4, "B": 2, "C": 1, "D": 2}


def test_arrival_order_changes_the_decision() -> None:
    # The same values one trial at a time (A, B, C, D): when D reaches rung 2,
    # B's 0.5 is already there, so the cutoff is median[0.5, 1]=0.75 and D's 0.9
    # goes on to max_t.  In the interleaved run above D met only A's 1 and stopped.
    curves = [[1, 1, 1, 1], [2, 0.5, 9, 9], [0.5, 9, 9, 9], [3, 0.9, 9, 9]]
    assert run_one_at_a_time(asha(max_t=4, reduction_factor=2), curves) == [4, 2, 1, 4]


# NaN, inf, missing values ---------------------------------------------------------


def test_nan_values() -> None:
    """rf=2, max_t 4.  nanpercentile ignores NaN; a NaN metric is never below a cutoff."""
    events = [
        ("A", 1, math.nan),  # r1 empty -> ok; r1 [nan]
        ("B", 1, 1.0),  # cutoff = nanpercentile([nan]) = nan; 1 < nan false -> ok
        ("C", 1, 0.0),  # cutoff = median of [1] (nan ignored) = 1 -> STOP
        ("D", 1, math.nan),  # cutoff median[1, 0] = 0.5; nan < 0.5 false -> ok
        ("E", 1, 0.4),  # cutoff median[1, 0] = 0.5 (both NaN ignored) -> STOP
        ("F", 1, 0.6),  # cutoff median[1, 0, 0.4] = 0.4 -> ok
    ]
    stopped = replay(asha(max_t=4, reduction_factor=2), events)
    assert stopped == {"A": None, "B": None, "C": 1, "D": None, "E": 1, "F": None}


def test_inf_values() -> None:
    events = [
        ("A", 1, 0.0),  # first: ok
        ("B", 1, 1.0),  # vs [0] ok
        ("C", 1, 2.0),  # vs median[0, 1] = 0.5 ok
        ("D", 1, math.inf),  # vs median[0, 1, 2] = 1 ok
        ("E", 1, -math.inf),  # vs median[0, 1, 2, inf] = 1.5 -> STOP
        ("F", 1, 1.4),  # vs median[-inf, 0, 1, 2, inf] = 1 ok
        ("G", 1, 0.5),  # vs median[-inf, 0, 1, 1.4, 2, inf] = 1.2 -> STOP
    ]
    stopped = replay(asha(max_t=4, reduction_factor=2), events)
    assert {k for k, v in stopped.items() if v is not None} == {"E", "G"}


def test_infinite_loss_is_stopped_in_min_mode() -> None:
    scheduler = asha(metric="loss", mode="min", max_t=4, reduction_factor=2)
    a, b, c = Trial("a", {}), Trial("b", {}), Trial("c", {})
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)
    assert scheduler.on_trial_result(a, {"training_iteration": 1, "loss": 1.0}) is CONTINUE
    # loss inf -> value -inf < cutoff -1 -> STOP; loss -inf -> +inf -> continue.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "loss": math.inf}) is STOP
    assert scheduler.on_trial_result(c, {"training_iteration": 1, "loss": -math.inf}) is CONTINUE


def test_all_nan_rung_does_not_warn() -> None:
    scheduler = asha(max_t=4, reduction_factor=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in "abc":
            trial = Trial(name, {})
            scheduler.on_trial_add(trial)
            decision = scheduler.on_trial_result(trial, {"training_iteration": 1, "acc": math.nan})
            assert decision is CONTINUE
        scheduler.debug_string()
    assert not caught, [str(w.message) for w in caught]


def test_missing_metric_or_time_continues_and_records_nothing() -> None:
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    assert scheduler.on_trial_result(a, {"training_iteration": 1}) is CONTINUE
    assert scheduler.on_trial_result(a, {"acc": 0.0}) is CONTINUE
    assert scheduler.on_trial_result(a, {"training_iteration": 1, "acc": None}) is CONTINUE
    # Nothing was recorded at rung 1, so b is first there and continues.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "acc": -5.0}) is CONTINUE
    scheduler.on_trial_complete(a, {"training_iteration": 9})  # no metric: ignored
    scheduler.on_trial_complete(a, None)


def test_bool_metric_or_time_is_ignored_like_a_missing_one() -> None:
    # Bools are flags, not numbers (dasktune._validation.is_number), as for the other
    # schedulers; ASHA used to record True as 1.0, which stopped b below.
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    assert scheduler.on_trial_result(a, {"training_iteration": 1, "acc": True}) is CONTINUE
    assert scheduler.on_trial_result(a, {"training_iteration": True, "acc": 0.9}) is CONTINUE
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "acc": 0.5}) is CONTINUE


def test_missing_metric_then_jump_fills_lower_rung_later() -> None:
    """A trial whose t1 has no metric records at rung 2 at t2, then at rung 1 at t3."""
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    assert scheduler.on_trial_result(a, {"training_iteration": 1}) is CONTINUE
    # t2: rung 2 is the highest reached -> recorded there only (the visit ends).
    assert scheduler.on_trial_result(a, {"training_iteration": 2, "acc": 5}) is CONTINUE
    # t3: rung 2 already recorded -> skipped; rung 1 not -> a's 6 is recorded there.
    assert scheduler.on_trial_result(a, {"training_iteration": 3, "acc": 6}) is CONTINUE
    # b at rung 1 meets a's 6: 5 < 6 -> STOP.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "acc": 5}) is STOP


# Float time attribute -------------------------------------------------------------


def float_time_events() -> list[tuple[str, float, float]]:
    return [
        ("A", 0.7, 1),
        ("A", 1.6, 2),
        ("A", 3.5, 3),
        ("A", 9.2, 4),
        ("A", 10.1, 5),
        ("B", 0.5, 9),
        ("B", 4.0, 3.5),
        ("B", 5.0, 1),
    ]


def test_time_total_s_floats() -> None:
    """time_total_s, grace 1.0, rf=3, max_t 10.0: rungs 9.0, 3.0, 1.0."""
    # A: 0.7 below every rung; 1.6 first at r1 (2); 3.5 first at r3 (3); 9.2 first
    #    at r9 (4); 10.1 >= max_t -> STOP.
    # B: 0.5 below every rung; 4.0 jumps past r1 and r3: recorded at r3 only, 3.5 vs
    #    [3] ok; 5.0: r3 done -> skipped, r1 not yet -> 1 vs [2] -> STOP at 5.0 -- a
    #    result that is not a decision point (see the note in the module docstring).
    scheduler = asha(time_attr="time_total_s", max_t=10.0, grace_period=1.0, reduction_factor=3)
    assert scheduler.milestones == ((9.0, 3.0, 1.0),)
    assert replay(scheduler, float_time_events(), "time_total_s") == {"A": 10.1, "B": 5.0}


def test_time_total_s_floats_without_stop_last_trials() -> None:
    # B at 5.0: r3 is reached and recorded -> the visit ends; r1 is never filled in.
    # A at 10.1 reaches no new rung and is not stopped at max_t.
    scheduler = asha(
        time_attr="time_total_s",
        max_t=10.0,
        grace_period=1.0,
        reduction_factor=3,
        stop_last_trials=False,
    )
    assert replay(scheduler, float_time_events(), "time_total_s") == {"A": None, "B": None}


# Several brackets ----------------------------------------------------------------


def test_brackets_are_drawn_like_ray() -> None:
    """Bracket of each new trial: choice(n, p = exp(sizes - max) / sum), as in Ray."""
    scheduler = asha(max_t=8, reduction_factor=2, brackets=3, seed=7)
    trials = [Trial(str(i), {}) for i in range(200)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    sizes = np.array([4, 3, 2])
    probs = np.e ** (sizes - sizes.max())
    rng = np.random.RandomState(7)
    expected = [int(rng.choice(3, p=probs / probs.sum())) for _ in trials]
    assert [scheduler.trial_bracket(t.trial_id) for t in trials] == expected
    assert set(expected) == {0, 1, 2}


def test_global_numpy_generator_without_seed() -> None:
    sizes = np.array([2, 1])
    probs = np.e ** (sizes - sizes.max())
    np.random.seed(123)
    expected = [int(np.random.choice(2, p=probs / probs.sum())) for _ in range(50)]
    np.random.seed(123)
    scheduler = asha(max_t=8, reduction_factor=3, brackets=2)
    for i in range(50):
        scheduler.on_trial_add(Trial(str(i), {}))
    assert [scheduler.trial_bracket(str(i)) for i in range(50)] == expected


def test_each_bracket_judges_its_own_trials() -> None:
    """brackets=3, rf=3, max_t 8: rungs (3, 1), (3,), (); only rung visits differ."""
    scheduler = asha(max_t=8, reduction_factor=3, brackets=3, seed=0)
    trials = [Trial(str(i), {}) for i in range(60)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    by_bracket: dict[int, list[Trial]] = {}
    for trial in trials:
        by_bracket.setdefault(scheduler.trial_bracket(trial.trial_id), []).append(trial)
    assert set(by_bracket) == {0, 1, 2}
    # Each bracket's first trial sets its rungs with 10; every later trial is worse
    # than all before it (-1, -2, ...), so it is stopped at the first rung of its
    # bracket -- or, in the bracket without rungs, only at max_t.
    first_rung = {0: 1, 1: 3, 2: 8}
    for index, members in by_bracket.items():
        assert run_trial(scheduler, members[0], [10] * 8) == 8
        for rank, trial in enumerate(members[1:], start=1):
            assert run_trial(scheduler, trial, [-rank] * 8) == first_rung[index]


# Life cycle ---------------------------------------------------------------------------


def test_completed_trial_records_its_last_result() -> None:
    """on_trial_complete goes through the rungs, as in Ray."""
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    # a ends after one result without reporting it as a result: only completion.
    scheduler.on_trial_complete(a, {"training_iteration": 1, "acc": 5})
    assert scheduler.trial_bracket("a") is None
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "acc": 4}) is STOP


def test_values_of_errored_and_removed_trials_stay() -> None:
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b, c = (Trial(n, {}) for n in "abc")
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)
    scheduler.on_trial_result(a, {"training_iteration": 1, "acc": 5})
    scheduler.on_trial_error(a)
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "acc": 4}) is STOP
    scheduler.on_trial_remove(b)
    # c meets median[5, 4] = 4.5.
    assert scheduler.on_trial_result(c, {"training_iteration": 1, "acc": 4.4}) is STOP


def test_result_of_a_trial_never_added_is_handled() -> None:
    scheduler = asha(max_t=8, reduction_factor=2)
    assert (
        scheduler.on_trial_result(Trial("x", {}), {"training_iteration": 1, "acc": 1}) is CONTINUE
    )


def test_numpy_scalars() -> None:
    scheduler = asha(max_t=8, reduction_factor=2)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_result(a, {"training_iteration": np.int64(1), "acc": np.float32(2)})
    assert (
        scheduler.on_trial_result(b, {"training_iteration": np.int64(1), "acc": np.float64(1)})
        is STOP
    )


def test_ray_signature_positionally() -> None:
    scheduler = AsyncHyperBandScheduler("training_iteration", "acc", "max", 8, 1, 2, 1, True)
    assert scheduler.milestones == ((8, 4, 2, 1),)
    assert ASHAScheduler is AsyncHyperBandScheduler
    assert isinstance(scheduler, FIFOScheduler)


def test_metric_and_mode_from_tune_config() -> None:
    scheduler = ASHAScheduler(max_t=8, reduction_factor=2)
    with pytest.raises(ValueError, match=r"needs a `metric` and a `mode`.*TuneConfig"):
        scheduler.on_trial_add(Trial("a", {}))
    assert scheduler.set_search_properties("loss", "min")
    assert not scheduler.set_search_properties("acc", None)
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_result(a, {"training_iteration": 1, "loss": 1.0})
    # mode "min" from the TuneConfig: the higher loss is stopped.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "loss": 2.0}) is STOP


def test_debug_string_shows_rungs_and_counts() -> None:
    scheduler = asha(max_t=8, reduction_factor=2, brackets=2, seed=1)
    trials = [Trial(str(i), {}) for i in range(4)]
    for i, trial in enumerate(trials):
        scheduler.on_trial_add(trial)
        scheduler.on_trial_result(trial, {"training_iteration": 2, "acc": float(i)})
    text = scheduler.debug_string()
    assert text.startswith("Using AsyncHyperBand: num_stopped=")
    assert "Bracket 0: training_iteration 8: 0 recorded, cutoff None" in text
    assert "Bracket 1: training_iteration 8:" in text
    recorded_at_2 = re.findall(r"training_iteration 2: (\d+) recorded", text)
    assert sum(map(int, recorded_at_2)) == 4


# Argument errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximize"}, r"`mode` is 'maximize', but it must be 'min' or 'max'"),
        ({"max_t": 0}, r"`max_t` is 0, but it must be a finite number > 0"),
        ({"max_t": -3}, r"`max_t` is -3"),
        ({"max_t": math.inf}, r"`max_t` is inf"),
        ({"grace_period": 0}, r"`grace_period` is 0, but it must be a finite number > 0"),
        ({"grace_period": 200}, r"`grace_period` is 200, but it must be <= max_t \(100\)"),
        ({"reduction_factor": 1}, r"`reduction_factor` is 1, but it must be a finite number > 1"),
        ({"reduction_factor": 0.5}, r"`reduction_factor` is 0.5"),
        ({"brackets": 0}, r"`brackets` is 0, but it must be an integer >= 1"),
        ({"brackets": 1.5}, r"`brackets` is 1.5"),
        ({"time_attr": ""}, r"`time_attr` is '', but it must be the non-empty name"),
        ({"time_attr": None}, r"`time_attr` is None"),
        ({"metric": ""}, r"`metric` is ''"),
        ({"stop_last_trials": "yes"}, r"`stop_last_trials` is 'yes'"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AsyncHyperBandScheduler(**kwargs)


def test_grace_period_equal_to_max_t_is_allowed() -> None:
    assert asha(max_t=5, grace_period=5).milestones == ((5,),)
