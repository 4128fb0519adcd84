"""HyperBandScheduler: Ray Tune's brackets and milestones, synchronous rounds, computed by hand.

Ray is not installed; the expectations follow Ray Tune's ``hyperband.py``:

* ``s_max_1 = round(log(max_t) / log(eta)) + 1`` bracket kinds per band;
  bracket ``s`` holds ``n0 = ceil(s_max_1 / (s + 1) * eta ** s)`` trials, its
  first milestone is ``int(max_t * eta ** -s)``, and each halving keeps
  ``ceil(n / eta)`` and moves the milestone to ``int(min(r * eta, max_t))``;
* the ranking is a stable ascending sort of the metric (negated for "min"),
  keeping the last ``n``: on ties the trial added later wins.

With ``max_t=9, eta=3`` (used throughout) there are three bracket kinds:
``s=0``: 3 trials run to 9; ``s=1``: 5 trials to 3, the best 2 to 9;
``s=2``: 9 trials to 1, the best 3 to 3, the best 1 to 9.  Trials fill them
in that order: t0-t2 go to s=0, t3-t7 to s=1, t8-t16 to s=2.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers import (
    HyperBandScheduler,
    TrialDecision,
    TrialScheduler,
    TrialUpdate,
)
from dasktune.testing import Simulator, curve_step
from dasktune.trial import Trial, TrialStatus

from .scheduler_contract import SchedulerContract

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE


class TestHyperBandContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        # max_t=4, eta=2: brackets s=0 (3 trials to 4), s=1 (3 to 2, 2 to 4), s=2 (4 to 1...).
        return HyperBandScheduler(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            max_t=4,
            reduction_factor=2,
        )


class TestHyperBandContractMin(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return HyperBandScheduler(metric=self.metric, mode=self.mode, max_t=9)


def hb(**kwargs: Any) -> HyperBandScheduler:
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    kwargs.setdefault("max_t", 9)
    return HyperBandScheduler(**kwargs)


def simulate(scheduler: HyperBandScheduler, curves: list[list[float]], **kwargs: Any):
    configs, step, length = curve_step(curves)
    return Simulator(scheduler, configs, step, length, **kwargs).run()


def s1_curves(values: list[float], length: int = 9) -> list[list[float]]:
    """Three filler trials for bracket s=0, then one constant curve per value (bracket s=1)."""
    return [[0.0] * length] * 3 + [[v] * length for v in values]


# Brackets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_t", "eta", "expected"),
    [
        (9, 3, [(0, [3], [9]), (1, [5, 2], [3, 9]), (2, [9, 3, 1], [1, 3, 9])]),
        (
            81,
            3,
            [
                (0, [5], [81]),
                (1, [8, 3], [27, 81]),
                (2, [15, 5, 2], [9, 27, 81]),
                (3, [34, 12, 4, 2], [3, 9, 27, 81]),
                (4, [81, 27, 9, 3, 1], [1, 3, 9, 27, 81]),
            ],
        ),
        # max_t=100: int() truncation makes the last milestones 99 and 81, not 100.
        (
            100,
            3,
            [
                (0, [5], [100]),
                (1, [8, 3], [33, 99]),
                (2, [15, 5, 2], [11, 33, 99]),
                (3, [34, 12, 4, 2], [3, 9, 27, 81]),
                (4, [81, 27, 9, 3, 1], [1, 3, 9, 27, 81]),
            ],
        ),
        (
            8,
            2,
            [
                (0, [4], [8]),
                (1, [4, 2], [4, 8]),
                (2, [6, 3, 2], [2, 4, 8]),
                (3, [8, 4, 2, 1], [1, 2, 4, 8]),
            ],
        ),
    ],
)
def test_brackets_match_ray(max_t: int, eta: int, expected: list) -> None:
    assert hb(max_t=max_t, reduction_factor=eta).brackets == expected


def test_bracket_kind_with_no_first_milestone_is_skipped() -> None:
    # max_t=200, eta=3: s_max_1 = 6, but r0(5) = int(200 / 243) = 0: Ray skips that kind.
    scheduler = hb(max_t=200)
    assert [s for s, _, _ in scheduler.brackets] == [0, 1, 2, 3, 4]
    sizes = {0: 6, 1: 9, 2: 18, 3: 41, 4: 98}
    trials = [Trial(f"t{i}", {}) for i in range(sum(sizes.values()) + 1)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    # The band is full after the s=4 bracket; the next trial starts band 1 with s=0.
    assert scheduler.trial_bracket(trials[-2].trial_id) == (0, 4)
    assert scheduler.trial_bracket(trials[-1].trial_id) == (1, 0)


def test_decision_points_are_the_milestones_and_max_t() -> None:
    assert hb().decision_points() == DecisionPoints.at("training_iteration", [1, 3, 9])
    points = hb(max_t=100, time_attr="time_total_s").decision_points()
    assert points == DecisionPoints.at("time_total_s", [1, 3, 9, 11, 27, 33, 81, 99, 100])


def test_trials_fill_brackets_in_ray_order() -> None:
    scheduler = hb()
    for i in range(18):
        scheduler.on_trial_add(Trial(f"t{i}", {}))
    where = [scheduler.trial_bracket(f"t{i}") for i in range(18)]
    assert where == [(0, 0)] * 3 + [(0, 1)] * 5 + [(0, 2)] * 9 + [(1, 0)]


# A whole run, one trial at a time -----------------------------------------------


def test_one_round_at_concurrency_one() -> None:
    """Bracket s=1 gets t3..t7 with values 4, 2, 5, 1, 3 (constant curves)."""
    # t0-t2 (s=0) run to 9 and stop there (max_t).
    # t3 reaches 3: its bracket still has room (1 of 5), so it pauses; the coordinator
    # finds no trial to resume and starts t4, which pauses at 3 too, and so do t5, t6.
    # t7 fills the bracket; when it reaches 3 the round is complete: keep ceil(5/3)=2.
    # Ascending: t6 (1), t4 (2), t7 (3), t3 (4), t5 (5) -> good t3, t5; bad t6, t4, t7.
    # t7 is the reporting trial: STOP; t6 and t4 get STOP updates; t3 and t5 get
    # CONTINUE updates and resume (t3 first: order of addition) to 9, where they stop.
    scheduler = hb()
    outcome = simulate(scheduler, s1_curves([4, 2, 5, 1, 3]))
    assert outcome.stopped_at() == {
        "t_00000": 9,
        "t_00001": 9,
        "t_00002": 9,
        "t_00003": 9,
        "t_00004": None,
        "t_00005": 9,
        "t_00006": None,
        "t_00007": 3,
    }
    assert outcome.updates == [
        TrialUpdate("t_00006", STOP),
        TrialUpdate("t_00004", STOP),
        TrialUpdate("t_00003", CONTINUE),
        TrialUpdate("t_00005", CONTINUE),
    ]
    t3 = [d for _, d in outcome.decisions("t_00003")]
    assert t3 == [CONTINUE, CONTINUE, PAUSE] + [CONTINUE] * 5 + [STOP]
    # Budget: 3 * 9 (s=0) + 5 * 3 + 2 * 6 (s=1).
    assert outcome.iterations == 54
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    assert "num_stopped=3" in scheduler.debug_string()


def test_ties_go_to_the_trial_added_later() -> None:
    # Values 2, 1, 2, 1, 2: stable ascending t4, t6, t3, t5, t7 -> keep t5 and t7.
    outcome = simulate(hb(), s1_curves([2, 1, 2, 1, 2]))
    reached_9 = {tid for tid, at in outcome.stopped_at().items() if at == 9}
    assert reached_9 == {"t_00000", "t_00001", "t_00002", "t_00005", "t_00007"}


def test_mode_min_keeps_the_lowest() -> None:
    outcome = simulate(hb(mode="min"), s1_curves([4, 2, 5, 1, 3]))
    reached_9 = {tid for tid, at in outcome.stopped_at().items() if at == 9}
    assert reached_9 == {"t_00000", "t_00001", "t_00002", "t_00006", "t_00004"}


def test_nan_ranks_last_and_inf_first() -> None:
    # max mode, values nan, inf, 1, -inf, 0: ranked as -inf, inf, 1, -inf, 0 ->
    # ascending t3 (nan), t6 (-inf), t7 (0), t5 (1), t4 (inf): keep t5 and t4.
    outcome = simulate(hb(), s1_curves([math.nan, math.inf, 1, -math.inf, 0]))
    reached_9 = {tid for tid, at in outcome.stopped_at().items() if at == 9}
    assert reached_9 == {"t_00000", "t_00001", "t_00002", "t_00004", "t_00005"}


def test_concurrency_changes_timing_not_the_budget() -> None:
    """17 trials fill one band: 27 + 27 + (9 + 3 * 2 + 1 * 6) = 75 iterations."""
    curves = [[((i * 7) % 17) / 17 + 0.001 * t for t in range(1, 10)] for i in range(17)]
    for concurrency in (1, 3, 8):
        outcome = simulate(hb(), curves, concurrency=concurrency)
        assert outcome.iterations == 75, concurrency
        full = [tid for tid, at in outcome.stopped_at().items() if at == 9]
        assert len(full) == 3 + 2 + 1


# Trials that leave a round, rounds that cannot fill ---------------------------------


def test_errored_trial_leaves_the_round() -> None:
    # t7 fails at iteration 2, before reaching 3: the round holds t3..t6 (4, 2, 5, 1),
    # complete once t7 is gone; keep ceil(5/3)=2 of them: t5 and t3.
    outcome = simulate(hb(), s1_curves([4, 2, 5, 1, 3]), errors={7: 2})
    assert outcome.trials["t_00007"].status is TrialStatus.ERROR
    reached_9 = {tid for tid, at in outcome.stopped_at().items() if at == 9}
    assert reached_9 == {"t_00000", "t_00001", "t_00002", "t_00003", "t_00005"}


def test_trial_ending_early_leaves_the_round() -> None:
    scheduler = hb()
    trials = [Trial(f"t{i}", {}) for i in range(8)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    for trial, value in zip(trials[3:7], [4, 2, 5, 1], strict=True):
        assert scheduler.on_trial_result(trial, {"training_iteration": 3, "score": value}) is PAUSE
    assert scheduler.on_trial_result(trials[7], {"training_iteration": 2, "score": 9}) is CONTINUE
    assert scheduler.pop_trial_updates() == []
    # t7's training ends by itself at 2: the round is complete without it.
    scheduler.on_trial_complete(trials[7], {"training_iteration": 2, "score": 9})
    assert scheduler.pop_trial_updates() == [
        TrialUpdate("t6", STOP),
        TrialUpdate("t4", STOP),
        TrialUpdate("t3", CONTINUE),
        TrialUpdate("t5", CONTINUE),
    ]


def test_no_more_trials_completes_an_unfilled_round() -> None:
    # Only t3..t6 reach bracket s=1 (it has room for 5): they wait at 3 until the
    # coordinator says no trial will come; then the best 2 (t5: 5, t3: 4) go on.
    outcome = simulate(hb(), s1_curves([4, 2, 5, 1]))
    assert outcome.updates == [
        TrialUpdate("t_00006", STOP),
        TrialUpdate("t_00004", STOP),
        TrialUpdate("t_00003", CONTINUE),
        TrialUpdate("t_00005", CONTINUE),
    ]
    assert outcome.stopped_at()["t_00005"] == 9


def test_without_no_more_trials_the_round_waits() -> None:
    scheduler = hb()
    trials = [Trial(f"t{i}", {}) for i in range(5)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    scheduler.on_trial_result(trials[3], {"training_iteration": 3, "score": 1})
    scheduler.on_trial_result(trials[4], {"training_iteration": 3, "score": 2})
    for trial in trials[3:]:
        trial.status = TrialStatus.PAUSED
    assert scheduler.choose_trial_to_run(trials[3:]) is None  # start a new trial instead
    scheduler.on_no_more_trials()
    # ceil(5 / 3) = 2 >= 2 live trials: both continue; t3 (added first) resumes first.
    assert scheduler.pop_trial_updates() == [
        TrialUpdate("t3", CONTINUE),
        TrialUpdate("t4", CONTINUE),
    ]
    assert scheduler.choose_trial_to_run(trials[3:]) is trials[3]


def test_trials_added_after_halving_go_to_a_new_bracket() -> None:
    scheduler = hb()
    trials = [Trial(f"t{i}", {}) for i in range(8)]
    for trial in trials[:7]:
        scheduler.on_trial_add(trial)
    for trial in trials[3:7]:
        scheduler.on_trial_result(trial, {"training_iteration": 3, "score": 1.0})
    scheduler.on_no_more_trials()  # s=1 halves with 4 of its 5 trials
    scheduler.on_trial_add(trials[7])  # a trial after all: it does not join s=1
    assert scheduler.trial_bracket("t7") == (0, 2)


def test_overstepping_trials_with_float_time() -> None:
    """time_total_s jumps past milestones: a trial waits at the highest one it reached."""
    scheduler = hb(time_attr="time_total_s")
    trials = [Trial(f"t{i}", {}) for i in range(8)]
    for trial in trials:
        scheduler.on_trial_add(trial)

    def report(i: int, t: float, v: float) -> TrialDecision:
        return scheduler.on_trial_result(trials[i], {"time_total_s": t, "score": v})

    assert report(3, 2.5, 1) is CONTINUE
    assert report(3, 4.2, 5) is PAUSE  # past 3 (but below 9): waits at 3
    assert report(4, 9.5, 9) is STOP  # past max_t: stops at once, leaves the round
    assert report(5, 3.0, 4) is PAUSE
    assert report(6, 3.1, 2) is PAUSE
    # t7 completes the round (t3 5, t5 4, t6 2, t7 3): keep t5 and t3 (updates in
    # ascending order); t3, at 4.2 < 9, resumes like the others.
    assert report(7, 3.3, 3) is STOP
    assert scheduler.pop_trial_updates() == [
        TrialUpdate("t6", STOP),
        TrialUpdate("t5", CONTINUE),
        TrialUpdate("t3", CONTINUE),
    ]


def test_stop_last_trials_false_lets_the_final_round_run_on() -> None:
    # Curves of 12 steps: s=0 trials and the s=1 winners run past max_t to their end.
    scheduler = hb(stop_last_trials=False)
    outcome = simulate(scheduler, s1_curves([4, 2, 5, 1, 3], length=12))
    iterations = {tid: outcome.iterations_of(tid) for tid in outcome.trials}
    assert iterations == {
        "t_00000": 12,
        "t_00001": 12,
        "t_00002": 12,
        "t_00003": 12,
        "t_00004": 3,
        "t_00005": 12,
        "t_00006": 3,
        "t_00007": 3,
    }
    assert outcome.stopped_at()["t_00007"] == 3


def test_choose_trial_to_run_only_resumes_winners() -> None:
    scheduler = hb()
    trials = [Trial(f"t{i}", {}) for i in range(8)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    for trial, value in zip(trials[3:], [4, 2, 5, 1, 3], strict=True):
        scheduler.on_trial_result(trial, {"training_iteration": 3, "score": value})
        trial.status = TrialStatus.PAUSED
    scheduler.pop_trial_updates()
    paused = [trials[4], trials[6], trials[5], trials[3]]
    assert scheduler.choose_trial_to_run(paused) is trials[3]
    assert scheduler.choose_trial_to_run([trials[4], trials[5]]) is trials[5]
    assert scheduler.choose_trial_to_run([trials[4], trials[6]]) is None


def test_results_of_stopped_or_unknown_trials() -> None:
    scheduler = hb()
    stray = Trial("stray", {})
    assert scheduler.on_trial_result(stray, {"training_iteration": 1, "score": 1}) is CONTINUE
    scheduler.on_trial_remove(stray)
    assert scheduler.on_trial_result(stray, {"training_iteration": 2, "score": 1}) is CONTINUE
    scheduler.on_trial_complete(Trial("never", {}), None)
    # A trial this scheduler stopped (at max_t) is stopped again if it reports.
    t1 = Trial("t1", {})
    assert scheduler.on_trial_result(t1, {"training_iteration": 9, "score": 0}) is STOP
    assert scheduler.on_trial_result(t1, {"training_iteration": 10, "score": 0}) is STOP


# Arguments ------------------------------------------------------------------------------


def test_metric_and_mode_from_tune_config() -> None:
    scheduler = HyperBandScheduler(max_t=9)
    with pytest.raises(ValueError, match=r"needs a `metric` and a `mode`.*TuneConfig"):
        scheduler.on_trial_add(Trial("a", {}))
    assert scheduler.set_search_properties("loss", "min")
    scheduler.on_trial_add(Trial("a", {}))
    assert scheduler.trial_bracket("a") == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximize"}, r"`mode` is 'maximize', but it must be 'min' or 'max'"),
        ({"max_t": 0}, r"`max_t` is 0, but it must be a finite number >= 1"),
        ({"max_t": math.inf}, r"`max_t` is inf"),
        ({"reduction_factor": 1}, r"`reduction_factor` is 1, but it must be a finite number > 1"),
        ({"time_attr": ""}, r"`time_attr` is ''"),
        ({"metric": ""}, r"`metric` is ''"),
        ({"stop_last_trials": 1}, r"`stop_last_trials` is 1, but it must be True or False"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HyperBandScheduler(**kwargs)


def test_ray_signature_positionally() -> None:
    scheduler = HyperBandScheduler("training_iteration", "acc", "max", 9, 3, True)
    assert scheduler.max_t == 9 and scheduler.time_attr == "training_iteration"
