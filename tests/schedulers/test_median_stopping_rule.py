"""MedianStoppingRule: Ray Tune's decisions, computed by hand.

Ray is not installed; the expectations follow Ray Tune's ``median_stopping_rule.py``:

* ``on_trial_result`` records the result (if it has ``time_attr`` and
  ``metric``), then: before ``grace_period`` continue; the other trials whose
  latest recorded time is ``>= t`` are the samples; with fewer than
  ``min_samples_required`` the trial yields (PAUSE) if more than
  ``min_time_slice`` passed since its last yield and a trial is waiting,
  else continues; otherwise it stops when its best recorded value is strictly
  worse than the median of the samples' running means over ``[grace_period, t]``;
* ``on_trial_complete`` records the result again; Ray's controller also replays
  the last result of a trial that ended by itself to ``on_trial_result``, so
  such a trial's last result is recorded three times in all (see the module).

Curves are lists of metric values at ``training_iteration`` 1, 2, ...
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers import MedianStoppingRule, TrialDecision, TrialScheduler
from dasktune.search import ConcurrencyLimiter
from dasktune.testing import Simulator, curve_step
from dasktune.testing.simulator import ConfigList
from dasktune.trial import Trial

from ..integration.median_vs_ray import CURVES, RAY_OUTCOME, SCENARIOS
from .scheduler_contract import SchedulerContract

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE


class TestMedianStoppingContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return MedianStoppingRule(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            grace_period=1,
            min_samples_required=2,
        )


class TestMedianStoppingContractSoft(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return MedianStoppingRule(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            grace_period=2,
            min_samples_required=1,
            hard_stop=False,
        )


def msr(**kwargs: Any) -> MedianStoppingRule:
    kwargs.setdefault("time_attr", "training_iteration")
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return MedianStoppingRule(**kwargs)


def simulate(scheduler: MedianStoppingRule, curves: list[list[float]], **kwargs: Any):
    configs, step, length = curve_step(curves)
    return Simulator(scheduler, configs, step, length, **kwargs).run()


# One trial at a time, no yielding ---------------------------------------------------

SEQUENTIAL = [
    [1, 2, 3, 4, 5],  # T0
    [2, 2, 2, 6, 6],  # T1
    [0, 1, 2, 2, 9],  # T2
    [4.2, 0, 0, 0, 0],  # T3
    [0, 3, 3, 3.5, 3.5],  # T4
]


@pytest.mark.parametrize("limit", ["max_concurrent_trials", "ConcurrencyLimiter"])
def test_sequential_grid_matches_ray(limit: str) -> None:
    """grace 2, 2 samples, max, min_time_slice 0 (the default), one trial at a time under
    a concurrency limit of 1: Ray then never has a trial waiting, so a trial short of
    samples continues instead of yielding, and the trials run one after the other."""
    # T0, T1: too few other trials at every t -> run to the end.  Each ended by
    #   itself: its last result (5, x) is recorded 3 times.
    #   T0 holds (1,1) (2,2) (3,3) (4,4) (5,5)x3; T1 (1,2) (2,2) (3,2) (4,6) (5,6)x3.
    # T2 t=2: samples T0, T1; means over [2, 2]: 2, 2 -> median 2; best max(0, 1) = 1
    #   < 2 -> STOP at 2 (its completion adds (2,1) once more).
    # T3 t=2: samples T0, T1, T2 (its last time is 2 >= 2); means 2, 2, 1 -> 2; best 4.2 ok.
    #   t=3: samples T0, T1: means [2,3] 2.5 and [2,2] 2 -> 2.25; ok.
    #   t=4: [2,3,4] 3 and [2,2,6] 10/3 -> 3.17; ok.
    #   t=5: [2,3,4,5,5,5] 4 and [2,2,6,6,6,6] 14/3 -> median 4.33 > 4.2 -> STOP at 5.
    #   (Recording the last results only twice, as a coordinator that does not replay
    #   them would, gives means 3.8 and 4.4, median 4.1 < 4.2: T3 would go on.)
    # T4 t=2: samples T0, T1, T2, T3; means 2, 2, 1, 0 -> 1.5; best 3 ok.
    #   t=3: samples T0, T1, T3: 2.5, 2, 0 -> 2; ok.  t=4: 3, 3.33, 0 -> 3; best 3.5 ok.
    #   t=5: 4, 4.67, T3 [0,0,0,0,0] 0 -> 4 > 3.5 -> STOP at 5.
    scheduler = msr(grace_period=2, min_samples_required=2)
    configs, step, length = curve_step(SEQUENTIAL)
    if limit == "max_concurrent_trials":
        simulator = Simulator(scheduler, configs, step, length, max_concurrent_trials=1)
    else:
        simulator = Simulator(scheduler, ConcurrencyLimiter(ConfigList(configs), 1), step, length)
    outcome = simulator.run()
    assert outcome.stopped_at() == {
        "t_00000": None,
        "t_00001": None,
        "t_00002": 2,
        "t_00003": 5,
        "t_00004": 5,
    }
    assert not any(r.decision is PAUSE for r in outcome.reports)
    assert scheduler.debug_string() == "Using MedianStoppingRule: num_stopped=3."


def test_last_result_of_a_trial_stopped_by_a_stopper_counts_once() -> None:
    """A completion with a result the rule has not seen (a stopper ended the trial) is
    recorded once, as in Ray, where the stopper's result never reaches the scheduler."""
    scheduler = msr(grace_period=1, min_samples_required=1, min_time_slice=math.inf)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_result(a, {"training_iteration": 1, "score": 0.0})
    scheduler.on_trial_complete(a, {"training_iteration": 2, "score": 3.0})
    # a holds (1, 0), (2, 3): mean 1.5 < 1.6 -> b continues (3 copies: 2.25 -> STOP).
    assert scheduler.on_trial_result(b, {"training_iteration": 2, "score": 1.6}) is CONTINUE


def test_last_result_of_a_trial_that_ended_by_itself_counts_three_times() -> None:
    """Ray replays it to on_trial_result, then passes it to on_trial_complete."""
    scheduler = msr(grace_period=1, min_samples_required=1, min_time_slice=math.inf)
    c, d = Trial("c", {}), Trial("d", {})
    scheduler.on_trial_result(c, {"training_iteration": 1, "score": 0.0})
    scheduler.on_trial_result(c, {"training_iteration": 2, "score": 3.0})
    scheduler.on_trial_complete(c, {"training_iteration": 2, "score": 3.0})
    # c holds (1, 0), (2, 3) x 3: mean 2.25 > 2.1 -> STOP (2 copies: 2.0 -> continue).
    assert scheduler.on_trial_result(d, {"training_iteration": 2, "score": 2.1}) is STOP


# Yielding: one slot, trials waiting ---------------------------------------------------


def test_yielding_at_concurrency_one_matches_ray() -> None:
    """grace 1, 1 sample, max, min_time_slice 0: trials yield while others wait, and
    paused trials resume in FIFO order once no new trial can start (Ray: PENDING
    trials before PAUSED ones, each in order of creation)."""
    # t0@1: no sample -> yields (new trials may come).  The slot goes to a new trial, t1.
    # t1@1: sample t0 (its last time 1 >= 1): mean 1 -> median 1; best 2 ok.
    # t1@2: no trial at 2 yet -> yields.  New trial t2.
    # t2@1: samples t0 (1), t1 (mean of (1,2) = 2) -> 1.5; best 0 -> STOP.
    # No trial left to start: on_no_more_trials; t0 resumes first.
    # t0@2: sample t1 (last time 2): mean over [1, 2] = (2 + 0) / 2 = 1; best 1 is not
    #   strictly worse -> ok.
    # t0@3: no sample at 3; t1 is paused (waiting) and 3 - 1 > 0 -> yields again.
    # FIFO resumes t0 again: it was paused at its last report, so it ends at once,
    #   by itself (its last result is recorded 3 times in all, as in Ray).
    # t1 resumes: t1@3: sample t0: mean over [1, 3] of 1, 1, 1, 1, 1 = 1; best 2 ok.
    scheduler = msr(grace_period=1, min_samples_required=1)
    outcome = simulate(scheduler, [[1, 1, 1], [2, 0, 0], [0, 5, 5]])
    assert outcome.decisions("t_00000") == [(1, PAUSE), (2, CONTINUE), (3, PAUSE)]
    assert outcome.decisions("t_00001") == [(1, CONTINUE), (2, PAUSE), (3, CONTINUE)]
    assert outcome.decisions("t_00002") == [(1, STOP)]
    assert [r.trial_id for r in outcome.reports] == [
        "t_00000",
        "t_00001",
        "t_00001",
        "t_00002",
        "t_00000",
        "t_00000",
        "t_00001",
    ]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_ray_end_to_end_outcomes_in_the_simulator(name: str) -> None:
    """The scenarios that tests/integration/median_vs_ray.py ran under Ray Tune 2.60, each
    ending at the iterations Ray's trials ended at, pausing where Ray's paused."""
    names, limit, rule = SCENARIOS[name]
    scheduler = msr(**rule)
    outcome = simulate(scheduler, [CURVES[n] for n in names], max_concurrent_trials=limit)
    ended = {}
    for index, curve in enumerate(names):
        trial_id = f"t_{index:05d}"
        paused = [i for i, decision in outcome.decisions(trial_id) if decision is PAUSE]
        ended[curve] = (outcome.trials[trial_id].last_result["training_iteration"], paused)
    assert ended == RAY_OUTCOME[name]


def test_two_at_a_time_ends_do_not_depend_on_the_order_of_reports() -> None:
    """Why "two_at_a_time" can be compared with Ray end to end: its trials end where they do
    whichever trials have reached t when one reports (here, trials up to 50% faster or
    slower than others).  At t=2, for instance, the samples of "shelf" (2.6) are rise and
    twin (2 each), fade (5), flat (3) and maybe late (0): the median is 2 or 2.5; at t=3 rise
    and twin (2.5), fade (4.5), flat (3): 2.75 -> STOP at 3."""
    names, limit, rule = SCENARIOS["two_at_a_time"]
    expected = {curve: end for curve, (end, _) in RAY_OUTCOME["two_at_a_time"].items()}
    rng = random.Random(0)
    for _ in range(30):
        speeds = [rng.uniform(0.5, 1.5) for _ in names]
        outcome = simulate(
            msr(**rule),
            [CURVES[n] for n in names],
            max_concurrent_trials=limit,
            speed=lambda config, speeds=speeds: speeds[config["curve"]],
        )
        ends = {
            names[i]: outcome.trials[f"t_{i:05d}"].last_result["training_iteration"]
            for i in range(len(names))
        }
        assert ends == expected, speeds


def test_soft_stopped_trial_resumes_before_new_trials_at_the_limit() -> None:
    """hard_stop=False under max_concurrent_trials=1: Ray counts the paused trial as live,
    so no new trial may start, and FIFO resumes it at once."""
    # t0 runs alone: too few samples, nothing waits -> it continues to its end.
    # t1@1: sample t0 (mean 1) > best 0 -> PAUSE, a soft stop; then it runs on unjudged.
    # t2@1: samples t0 (1) and t1 (its last time 3, mean over [1, 1] of 0) -> 0.5 < 2.
    scheduler = msr(grace_period=1, min_samples_required=1, hard_stop=False)
    outcome = simulate(scheduler, [[1, 1, 1], [0, 0, 0], [2, 2, 2]], max_concurrent_trials=1)
    assert outcome.decisions("t_00001") == [(1, PAUSE), (2, CONTINUE), (3, CONTINUE)]
    assert [(r.trial_id[-1], r.iteration) for r in outcome.reports] == [
        ("0", 1),
        ("0", 2),
        ("0", 3),
        ("1", 1),
        ("1", 2),
        ("1", 3),
        ("2", 1),
        ("2", 2),
        ("2", 3),
    ]
    assert all(t.last_result["training_iteration"] == 3 for t in outcome.trials.values())


def test_yields_only_while_trials_wait() -> None:
    """What the coordinator says through on_trials_waiting decides between yielding and
    continuing when samples are missing, and whether a paused trial may run again."""
    scheduler = msr(grace_period=1, min_samples_required=1)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    scheduler.on_trials_waiting(False)  # a concurrency limit is reached
    assert report(scheduler, a, 1, 1.0) is CONTINUE
    scheduler.on_trials_waiting(True)  # a run is queued, or a slot of the limit is free
    assert report(scheduler, a, 2, 1.0) is PAUSE
    assert scheduler.choose_trial_to_run([a]) is None  # the waiting trial goes first
    # b@1: sample a (mean 1 over [1, 1]) -> not worse; b@3: no sample at 3, a is paused
    # (it waits to run again) -> b yields to it even when nothing else waits.
    assert report(scheduler, b, 1, 1.0) is CONTINUE
    scheduler.on_trials_waiting(False)
    assert report(scheduler, b, 3, 1.0) is PAUSE
    assert scheduler.choose_trial_to_run([a, b]) is a


def test_min_time_slice_limits_yielding() -> None:
    # min_time_slice 2: t0 yields at 1 (since -inf), and again only once 3 - 1 > 2 fails
    # -> at t=3 it continues; at 4, 4 - 1 = 3 > 2 -> yields.
    scheduler = msr(grace_period=1, min_samples_required=1, min_time_slice=2)
    t0 = Trial("t0", {})
    scheduler.on_trial_add(t0)
    decisions = [
        scheduler.on_trial_result(t0, {"training_iteration": t, "score": 1.0}) for t in (1, 2, 3, 4)
    ]
    assert decisions == [PAUSE, CONTINUE, CONTINUE, PAUSE]


def test_no_yield_when_nothing_waits() -> None:
    scheduler = msr(grace_period=1, min_samples_required=1)
    t0 = Trial("t0", {})
    scheduler.on_trial_add(t0)
    scheduler.on_no_more_trials()
    assert scheduler.on_trial_result(t0, {"training_iteration": 1, "score": 1.0}) is CONTINUE
    assert scheduler.choose_trial_to_run([]) is None


def test_running_trials_count_as_samples() -> None:
    """Ray's code (not its docstring) compares with any trial that reached t, running too."""
    scheduler = msr(grace_period=1, min_samples_required=1, min_time_slice=math.inf)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_add(a)
    scheduler.on_trial_add(b)
    for t in (1, 2, 3):
        scheduler.on_trial_result(a, {"training_iteration": t, "score": 1.0})
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "score": 1.0}) is CONTINUE
    assert scheduler.on_trial_result(b, {"training_iteration": 2, "score": 0.5}) is CONTINUE
    b2 = Trial("b2", {})
    scheduler.on_trial_add(b2)
    # samples a (mean 1) and b (mean 0.75) -> 0.875 > 0.5 -> STOP.
    assert scheduler.on_trial_result(b2, {"training_iteration": 2, "score": 0.5}) is STOP


# hard_stop=False -----------------------------------------------------------------------


def test_soft_stop_pauses_then_runs_fifo() -> None:
    # t1@1: sample t0 (mean 1) > best 0 -> PAUSE (soft stop).  No trial is left to
    # start: the coordinator says so, and t1 resumes; it is never judged again.
    scheduler = msr(
        grace_period=1, min_samples_required=1, min_time_slice=math.inf, hard_stop=False
    )
    outcome = simulate(scheduler, [[1, 1, 1], [0, 0, 0]])
    assert outcome.decisions("t_00001") == [(1, PAUSE), (2, CONTINUE), (3, CONTINUE)]
    assert scheduler.debug_string() == "Using MedianStoppingRule: num_stopped=1."


def test_resumed_soft_stopped_trial_no_longer_counts_as_waiting() -> None:
    scheduler = msr(grace_period=1, min_samples_required=1, hard_stop=False)
    scheduler.on_no_more_trials()
    a, b, c = Trial("a", {}), Trial("b", {}), Trial("c", {})
    scheduler.on_trial_complete(a, {"training_iteration": 1, "score": 1.0})
    assert report(scheduler, b, 1, 0.0) is PAUSE  # soft stop: b waits to run again
    assert report(scheduler, c, 1, 2.0) is CONTINUE
    assert report(scheduler, c, 2, 2.0) is PAUSE  # no sample at 2, b waits: yield
    assert report(scheduler, b, 2, 0.0) is CONTINUE  # b resumed, never judged again
    assert report(scheduler, c, 3, 2.0) is CONTINUE  # nobody waits any more


def report(scheduler: MedianStoppingRule, trial: Trial, t: float, value: float) -> TrialDecision:
    return scheduler.on_trial_result(trial, {"training_iteration": t, "score": value})


# Mode, NaN, odd results -------------------------------------------------------------------


def test_mode_min() -> None:
    scheduler = msr(mode="min", metric="loss", grace_period=1, min_samples_required=1)
    a, b, c = Trial("a", {}), Trial("b", {}), Trial("c", {})
    scheduler.on_trial_complete(a, {"training_iteration": 1, "loss": 2.0})
    # Lower is better: b's best loss 3 is worse than the median 2 -> STOP.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "loss": 3.0}) is STOP
    # c: median of a (2) and b (3) = 2.5; loss 2.5 is not strictly worse.
    assert scheduler.on_trial_result(c, {"training_iteration": 1, "loss": 2.5}) is CONTINUE


def test_nan_running_means_are_no_samples() -> None:
    """As in Ray 2.60: only finite running means are samples, and min_samples_required
    counts those.  (Checked against Ray's own class, driven by hand.)"""
    scheduler = msr(grace_period=1, min_samples_required=1)
    scheduler.on_no_more_trials()
    a, b, c, d = (Trial(n, {}) for n in "abcd")
    scheduler.on_trial_complete(a, {"training_iteration": 1, "score": math.nan})
    # a's mean is NaN: no sample, too few samples, nothing waits -> continue.
    assert report(scheduler, b, 1, 0.0) is CONTINUE
    # c: samples b (0) -> median 0; c's only value is NaN, the worst -> STOP.
    assert report(scheduler, c, 1, math.nan) is STOP
    # d: samples b (0); a's and c's means are NaN -> median 0 > -5 -> STOP.
    assert report(scheduler, d, 1, -5.0) is STOP


def test_nan_is_the_worst_best_value() -> None:
    """The one place where dasktune differs from Ray on purpose: Ray's best value is
    Python's max over the results, which is NaN when the first one is NaN, so Ray stops
    e below (NaN is never the max of the median and it); here NaN is the worst value."""
    scheduler = msr(grace_period=2, min_samples_required=1)
    scheduler.on_no_more_trials()
    x, e = Trial("x", {}), Trial("e", {})
    report(scheduler, x, 1, 1.0)
    report(scheduler, x, 2, 0.3)
    scheduler.on_trial_complete(x, {"training_iteration": 2, "score": 0.3})
    assert report(scheduler, e, 1, math.nan) is CONTINUE  # before the grace period
    # samples x: mean over [2, 2] 0.3; e's best is 0.5 (Ray's: NaN) -> continue.
    assert report(scheduler, e, 2, 0.5) is CONTINUE


def test_trial_without_results_in_the_window_is_left_out() -> None:
    """time_total_s jumps: a sample with no result in [grace, t] has no running mean."""
    scheduler = msr(time_attr="time_total_s", grace_period=5, min_samples_required=1)
    scheduler.on_no_more_trials()
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_result(a, {"time_total_s": 1.0, "score": 9.0})
    scheduler.on_trial_result(a, {"time_total_s": 20.0, "score": 9.0})
    # At t=10, a has no result in [5, 10]: no sample, b continues (Ray 2.60 too).
    assert scheduler.on_trial_result(b, {"time_total_s": 10.0, "score": 0.0}) is CONTINUE
    # At t=20, a's mean over [5, 20] is 9 > 0 -> STOP.
    assert scheduler.on_trial_result(b, {"time_total_s": 20.0, "score": 0.0}) is STOP


def test_results_without_time_or_metric_are_ignored() -> None:
    scheduler = msr(grace_period=0, min_samples_required=1)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_result(a, {"training_iteration": 1})
    scheduler.on_trial_result(a, {"score": 5.0})
    scheduler.on_trial_result(a, {"training_iteration": 1, "score": None})
    scheduler.on_trial_complete(a, None)
    scheduler.on_no_more_trials()
    # Nothing was recorded for a: b has no sample and continues.
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "score": -1.0}) is CONTINUE


def test_stopped_trial_reporting_again_is_stopped_again() -> None:
    scheduler = msr(grace_period=1, min_samples_required=1)
    a, b = Trial("a", {}), Trial("b", {})
    scheduler.on_trial_complete(a, {"training_iteration": 1, "score": 1.0})
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "score": 0.0}) is STOP
    assert scheduler.on_trial_result(b, {"training_iteration": 2, "score": 9.0}) is STOP


def test_decision_points_always() -> None:
    assert msr().decision_points() == DecisionPoints.always()


def test_ray_defaults_and_signature() -> None:
    rule = MedianStoppingRule("time_total_s", "acc", "max", 60.0, 3, 0, True)
    assert rule.metric == "acc" and rule.mode == "max"
    scheduler = MedianStoppingRule()
    with pytest.raises(ValueError, match=r"needs a `metric` and a `mode`"):
        scheduler.on_trial_add(Trial("a", {}))
    assert scheduler.set_search_properties("loss", "min")
    scheduler.on_trial_add(Trial("a", {}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "best"}, r"`mode` is 'best', but it must be 'min' or 'max'"),
        ({"grace_period": -1}, r"`grace_period` is -1, but it must be a finite number >= 0"),
        ({"min_samples_required": 0}, r"`min_samples_required` is 0, but it must be an integer"),
        ({"min_samples_required": 2.5}, r"`min_samples_required` is 2.5"),
        ({"min_time_slice": -1}, r"`min_time_slice` is -1, but it must be a number >= 0"),
        ({"hard_stop": "no"}, r"`hard_stop` is 'no', but it must be True or False"),
        ({"time_attr": ""}, r"`time_attr` is ''"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MedianStoppingRule(**kwargs)
