"""DecisionPointTracker: at which results a trial waits for the driver's decision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dasktune.decision_points import DecisionPoints, DecisionPointTracker, merge_decision_points


def waits(points: tuple[DecisionPoints, ...], attr: str, values: list[object]) -> list[bool]:
    tracker = DecisionPointTracker(points)
    return [tracker.needs_decision({attr: v}) for v in values]


def test_never_waits() -> None:
    never = (DecisionPoints.never(),)
    assert waits(never, "training_iteration", list(range(1, 20))) == [False] * 19
    assert waits((), "training_iteration", [1, 2, 3]) == [False] * 3


def test_always_waits() -> None:
    tracker = DecisionPointTracker((DecisionPoints.always(),))
    assert all(tracker.needs_decision({}) for _ in range(5))
    assert tracker.needs_decision({"training_iteration": math.nan})


def test_each_milestone_is_passed_once() -> None:
    points = (DecisionPoints.at("training_iteration", [1, 4, 16]),)
    got = waits(points, "training_iteration", list(range(1, 21)))
    assert [i for i, w in zip(range(1, 21), got, strict=True) if w] == [1, 4, 16]


def test_milestones_given_in_any_order_to_at() -> None:
    points = DecisionPoints.at("training_iteration", [16, 1, 4])
    assert points.milestones == (1.0, 4.0, 16.0)
    got = waits((points,), "training_iteration", [1, 2, 4, 5, 16])
    assert got == [True, False, True, False, True]


def test_unsorted_milestones_built_directly() -> None:
    points = DecisionPoints(attr="training_iteration", milestones=(4.0, 1.0))
    assert waits((points,), "training_iteration", [1, 2, 4]) == [True, False, True]


def test_jumping_past_several_milestones_waits_once() -> None:
    points = (DecisionPoints.at("training_iteration", [1, 2, 4, 8]),)
    assert waits(points, "training_iteration", [5, 6, 7, 8, 9]) == [True, False, False, True, False]


def test_value_going_back_does_not_wait_again() -> None:
    points = (DecisionPoints.at("score", [2]),)
    assert waits(points, "score", [3, 1, 2, 3]) == [True, False, False, False]


def test_float_milestones_and_values() -> None:
    points = (DecisionPoints.at("time_total_s", [0.5, 1.5]),)
    assert waits(points, "time_total_s", [0.3, 0.5, 1.0, 1.49, 1.5, 9.0]) == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]


def test_nan_missing_and_non_numbers_are_ignored_without_consuming_a_milestone() -> None:
    points = (DecisionPoints.at("training_iteration", [2]),)
    tracker = DecisionPointTracker(points)
    assert not tracker.needs_decision({"training_iteration": math.nan})
    assert not tracker.needs_decision({})
    assert not tracker.needs_decision({"training_iteration": "3"})
    assert not tracker.needs_decision({"training_iteration": None})
    assert tracker.needs_decision({"training_iteration": 2})


def test_infinity_passes_every_milestone_once() -> None:
    points = (DecisionPoints.at("loss", [1, 2]),)
    assert waits(points, "loss", [math.inf, math.inf]) == [True, False]


@pytest.mark.parametrize("value", [np.int64(2), np.float32(2.0)])
def test_numpy_numbers_reach_milestones(value: object) -> None:
    assert waits((DecisionPoints.at("epoch", [2]),), "epoch", [value]) == [True]


def test_numpy_float64_reaches_milestones() -> None:
    assert waits((DecisionPoints.at("epoch", [2]),), "epoch", [np.float64(2.0)]) == [True]


def test_several_points_are_tracked_independently() -> None:
    tracker = DecisionPointTracker(
        (
            DecisionPoints.at("training_iteration", [2]),
            DecisionPoints.at("time_total_s", [10.0]),
            DecisionPoints.never(),
        )
    )
    results = [
        {"training_iteration": 1, "time_total_s": 3.0},
        {"training_iteration": 2, "time_total_s": 6.0},  # iteration milestone
        {"training_iteration": 3, "time_total_s": 11.0},  # time milestone
        {"training_iteration": 4, "time_total_s": 12.0},
    ]
    assert [tracker.needs_decision(r) for r in results] == [False, True, True, False]


def test_both_points_reached_at_once_consume_both() -> None:
    tracker = DecisionPointTracker(
        (
            DecisionPoints.at("training_iteration", [2]),
            DecisionPoints.at("time_total_s", [10.0]),
        )
    )
    assert tracker.needs_decision({"training_iteration": 2, "time_total_s": 10.0})
    assert not tracker.needs_decision({"training_iteration": 3, "time_total_s": 11.0})


def test_always_among_several_points_still_advances_the_others() -> None:
    tracker = DecisionPointTracker(
        (DecisionPoints.always(), DecisionPoints.at("training_iteration", [1]))
    )
    assert tracker.needs_decision({"training_iteration": 1})
    assert tracker.needs_decision({"training_iteration": 2})
    assert tracker._passed == [0, 1]


def test_trackers_do_not_share_state() -> None:
    points = (DecisionPoints.at("training_iteration", [1]),)
    first, second = DecisionPointTracker(points), DecisionPointTracker(points)
    assert first.needs_decision({"training_iteration": 1})
    assert second.needs_decision({"training_iteration": 1})


def test_merge_decision_points() -> None:
    merged = merge_decision_points(
        [
            DecisionPoints.at("training_iteration", [4, 1]),
            DecisionPoints.never(),
            DecisionPoints.at("training_iteration", [4, 16]),
            DecisionPoints.at("time_total_s", [60]),
        ]
    )
    assert merged == (
        DecisionPoints.at("training_iteration", [1, 4, 16]),
        DecisionPoints.at("time_total_s", [60]),
    )
    assert merge_decision_points([DecisionPoints.never(), DecisionPoints.always()]) == (
        DecisionPoints.always(),
    )
    assert merge_decision_points([DecisionPoints.never()]) == ()
