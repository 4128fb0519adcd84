"""FIFOScheduler: never stops anything, never makes a trial wait."""

from __future__ import annotations

from dasktune.decision_points import DecisionPoints, DecisionPointTracker
from dasktune.schedulers import FIFOScheduler, TrialDecision, TrialScheduler

from .scheduler_contract import SchedulerContract, make_trial


class TestFIFOContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return FIFOScheduler()


def test_always_continues() -> None:
    scheduler = FIFOScheduler()
    trial = make_trial(0)
    scheduler.on_trial_add(trial)
    for t in range(1, 100):
        assert scheduler.on_trial_result(trial, {"training_iteration": t, "loss": -t}) is (
            TrialDecision.CONTINUE
        )


def test_decision_points_never() -> None:
    points = FIFOScheduler().decision_points()
    assert points == DecisionPoints.never()
    tracker = DecisionPointTracker((points,))
    assert not any(tracker.needs_decision({"training_iteration": t}) for t in range(1, 50))


def test_search_properties_are_filled_in() -> None:
    scheduler = FIFOScheduler()
    assert scheduler.set_search_properties("loss", "min")
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")


def test_no_trial_records_by_default() -> None:
    """TrialScheduler.trial_records: only schedulers with records of their own (PBT) add any."""
    scheduler = FIFOScheduler()
    scheduler.on_trial_add(make_trial(0))
    assert scheduler.trial_records("t0") == {}
    assert TrialScheduler().trial_records("t0") == {}
