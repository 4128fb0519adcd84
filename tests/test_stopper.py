"""Stoppers: Ray Tune's semantics, decision points, argument errors."""

from __future__ import annotations

import datetime
import math
import pickle
from typing import Any

import pytest

from dasktune.decision_points import DecisionPoints, DecisionPointTracker, merge_decision_points
from dasktune.stopper import (
    CombinedStopper,
    DictStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
    as_stopper,
)

ALWAYS = (DecisionPoints.always(),)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def results(metric: str, values: list[Any]) -> list[dict[str, Any]]:
    return [{"training_iteration": i, metric: v} for i, v in enumerate(values, start=1)]


# Stopper base ------------------------------------------------------------------------


def test_stopper_needs_call() -> None:
    with pytest.raises(TypeError):
        Stopper()  # type: ignore[abstract]


def test_custom_stopper_defaults() -> None:
    class Custom(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return result["x"] > 1

    stopper = Custom()
    assert stopper("t", {"x": 2}) and not stopper.stop_all()
    assert stopper.decision_points() == ALWAYS


# MaximumIterationStopper -------------------------------------------------------------


def test_maximum_iteration_counts_results_per_trial() -> None:
    stopper = MaximumIterationStopper(3)
    assert [stopper("a", {}) for _ in range(3)] == [False, False, True]
    assert [stopper("b", {}) for _ in range(2)] == [False, False]
    assert not stopper.stop_all()


def test_maximum_iteration_decision_point() -> None:
    points = MaximumIterationStopper(3).decision_points()
    assert points == (DecisionPoints.at("training_iteration", [3]),)
    tracker = DecisionPointTracker(points)
    assert [t for t in range(1, 6) if tracker.needs_decision({"training_iteration": t})] == [3]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_maximum_iteration_errors(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"`max_iter` is .*, but it must be an integer >= 1"):
        MaximumIterationStopper(bad)


def test_maximum_iteration_pickles() -> None:
    stopper = MaximumIterationStopper(2)
    stopper("a", {})
    assert pickle.loads(pickle.dumps(stopper))("a", {})


# TrialPlateauStopper ----------------------------------------------------------------


def feed(stopper: Stopper, trial_id: str, rows: list[dict[str, Any]]) -> list[bool]:
    return [stopper(trial_id, row) for row in rows]


def test_trial_plateau_defaults() -> None:
    # num_results=4, grace_period=4, std=0.01: the 4th result is the first that can
    # stop; the last 4 values [1, 1, 1, 1] have std 0 < 0.01.
    stopper = TrialPlateauStopper("loss")
    assert feed(stopper, "a", results("loss", [1, 1, 1, 1])) == [False, False, False, True]


def test_trial_plateau_window_and_std() -> None:
    stopper = TrialPlateauStopper("loss", std=0.1, num_results=3, grace_period=0)
    # Windows: [5], [5, 1], [5, 1, 1.1] std 1.86, [1, 1.1, 1.05] std 0.041 < 0.1.
    assert feed(stopper, "a", results("loss", [5, 1, 1.1, 1.05])) == [False, False, False, True]
    # Trials are independent.
    assert feed(stopper, "b", results("loss", [1, 1])) == [False, False]


def test_trial_plateau_grace_period_counts_results() -> None:
    stopper = TrialPlateauStopper("loss", num_results=2, grace_period=5)
    assert feed(stopper, "a", results("loss", [1] * 6)) == [False] * 4 + [True, True]


@pytest.mark.parametrize(
    ("mode", "threshold", "expected"),
    [
        ("min", 0.5, [False, False, False, False]),  # plateau at 1.0, not below 0.5
        ("min", 1.0, [False, False, False, True]),  # 1.0 <= 1.0: may stop
        ("max", 2.0, [False, False, False, False]),  # 1.0 not above 2.0
        ("max", 0.5, [False, False, False, True]),
    ],
)
def test_trial_plateau_threshold(mode: str, threshold: float, expected: list[bool]) -> None:
    stopper = TrialPlateauStopper("m", metric_threshold=threshold, mode=mode)
    assert feed(stopper, "a", results("m", [1.0] * 4)) == expected


def test_trial_plateau_ignores_missing_nan_and_none() -> None:
    stopper = TrialPlateauStopper(
        "loss", num_results=2, grace_period=0, metric_threshold=5, mode="min"
    )
    rows = [{"loss": 1}, {"other": 1}, {"loss": 1}, {"loss": None}, {"loss": math.nan}, {"loss": 1}]
    # Windows: [1], [1, missing], [missing, 1], [1, None], [None, nan], [nan, 1]: no stop.
    assert feed(stopper, "a", rows) == [False] * 6
    assert stopper("a", {"loss": 1}) is True  # [1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": ""}, r"`metric` is ''"),
        ({"std": 0}, r"`std` is 0, but it must be a finite number > 0"),
        ({"num_results": 0}, r"`num_results` is 0, but it must be an integer >= 1"),
        ({"grace_period": -1}, r"`grace_period` is -1, but it must be an integer >= 0"),
        ({"metric_threshold": "x", "mode": "min"}, r"`metric_threshold` is 'x'"),
        ({"metric_threshold": 0.0}, r"`mode` is None, but it must be 'min' or 'max' when"),
        ({"mode": "up"}, r"`mode` is 'up'"),
    ],
)
def test_trial_plateau_errors(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("metric", "loss")
    with pytest.raises(ValueError, match=message):
        TrialPlateauStopper(**kwargs)


def test_trial_plateau_pickles_and_acts_anywhere() -> None:
    stopper = TrialPlateauStopper("loss", num_results=2, grace_period=0)
    stopper("a", {"loss": 1})
    assert pickle.loads(pickle.dumps(stopper))("a", {"loss": 1})
    assert stopper.decision_points() == ALWAYS


# TimeoutStopper ------------------------------------------------------------------------


def test_timeout_clock_starts_at_first_stop_all() -> None:
    clock = FakeClock()
    stopper = TimeoutStopper(10, clock=clock)
    clock.now += 100  # set-up time before the first check does not count
    assert not stopper.stop_all()
    clock.now += 6
    assert not stopper.stop_all()
    clock.now += 4
    assert stopper.stop_all()
    assert not stopper("a", {"training_iteration": 1})


def test_timeout_timedelta() -> None:
    clock = FakeClock()
    stopper = TimeoutStopper(datetime.timedelta(minutes=1), clock=clock)
    assert not stopper.stop_all()
    clock.now += 59.5
    assert not stopper.stop_all()
    clock.now += 0.5
    assert stopper.stop_all()


_NOW = [1000.0]


def fake_time() -> float:
    return _NOW[0]


def test_timeout_restore_does_not_count_downtime() -> None:
    stopper = TimeoutStopper(10, clock=fake_time)
    stopper.stop_all()
    _NOW[0] += 4
    stopper.stop_all()
    restored = pickle.loads(pickle.dumps(stopper))
    _NOW[0] += 1000  # the experiment was down
    assert not restored.stop_all()  # the clock restarts here; 6 s are left
    _NOW[0] += 5.9
    assert not restored.stop_all()
    _NOW[0] += 0.1
    assert restored.stop_all()


def test_timeout_never_makes_trials_wait() -> None:
    assert TimeoutStopper(1).decision_points() == ()


@pytest.mark.parametrize(
    "bad", [0, -1, "10", None, math.nan, math.inf, True, datetime.timedelta(0)]
)
def test_timeout_errors(bad: Any) -> None:
    with pytest.raises(
        ValueError, match=r"`timeout` is .*, but it must be a number of seconds > 0"
    ):
        TimeoutStopper(bad)


# ExperimentPlateauStopper ------------------------------------------------------------


def test_experiment_plateau_min() -> None:
    stopper = ExperimentPlateauStopper("loss", std=0.01, top=3)
    # Top 3 (lowest): [5], [1, 5], [1, 1, 5] std 1.9, [1, 1, 1] std 0 -> plateau.
    assert [stopper(t, {"loss": v}) for t, v in zip("abcd", [5, 1, 1, 1], strict=True)] == [
        False,
        False,
        False,
        True,
    ]
    assert stopper.stop_all()


def test_experiment_plateau_max_keeps_the_highest() -> None:
    stopper = ExperimentPlateauStopper("acc", std=0.01, top=2, mode="max")
    assert not stopper("a", {"acc": 0.9})
    assert not stopper("b", {"acc": 0.1})  # top [0.1, 0.9]
    assert stopper("c", {"acc": 0.9})  # top [0.9, 0.9]


def test_experiment_plateau_patience() -> None:
    # The plateau (top 2 = [1, 1]) is first seen at the 2nd result (counter 1), again
    # at the 3rd (counter 2 >= patience 2: stop).
    stopper = ExperimentPlateauStopper("loss", top=2, patience=2)
    assert [stopper("a", {"loss": v}) for v in [1, 1, 1]] == [False, False, True]
    # A result that breaks the plateau resets the counter.
    stopper = ExperimentPlateauStopper("loss", top=2, patience=1)
    assert [stopper("a", {"loss": v}) for v in [2, 2, 1, 1]] == [False, True, False, True]


def test_experiment_plateau_ignores_missing_and_nan() -> None:
    stopper = ExperimentPlateauStopper("loss", top=2)
    assert not stopper("a", {"loss": 1})
    assert not stopper("a", {"other": 1})
    assert not stopper("a", {"loss": math.nan})
    assert not stopper("a", {"loss": None})
    assert stopper("a", {"loss": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximum"}, r"`mode` is 'maximum', but it must be 'min' or 'max'"),
        ({"mode": None}, r"`mode` is None"),
        ({"top": 1}, r"`top` is 1, but it must be an integer >= 2"),
        ({"top": 2.0}, r"`top` is 2.0"),
        ({"patience": -1}, r"`patience` is -1, but it must be an integer >= 0"),
        ({"std": 0.0}, r"`std` is 0.0, but it must be a finite number > 0"),
        ({"metric": None}, r"`metric` is None"),
    ],
)
def test_experiment_plateau_errors(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("metric", "loss")
    with pytest.raises(ValueError, match=message):
        ExperimentPlateauStopper(**kwargs)


def test_plateau_stoppers_share_the_metric_and_mode_interface() -> None:
    """Like schedulers and searchers: ``metric``/``mode`` readable, TuneConfig values merged."""
    trial = TrialPlateauStopper("loss")
    assert (trial.metric, trial.mode) == ("loss", None)
    assert trial.set_search_properties("loss", "min") and trial.mode == "min"
    assert not trial.set_search_properties("accuracy", None)
    experiment = ExperimentPlateauStopper("acc", mode="max")
    assert (experiment.metric, experiment.mode) == ("acc", "max")
    assert not experiment.set_search_properties(None, "min")
    assert experiment.mode == "max"


# CombinedStopper ---------------------------------------------------------------------


def test_combined_or_and_short_circuit() -> None:
    asked: list[str] = []

    def says(name: str, answer: bool) -> FunctionStopper:
        return FunctionStopper(lambda trial_id, result: asked.append(name) or answer)

    assert not CombinedStopper(says("a", False), says("b", False))("t", {})
    assert asked == ["a", "b"]
    asked.clear()
    # The first that says yes ends the asking (as in Ray): "d" does not see the result.
    assert CombinedStopper(says("c", True), says("d", True))("t", {})
    assert asked == ["c"]


def test_combined_stop_all() -> None:
    clock = FakeClock()
    stopper = CombinedStopper(MaximumIterationStopper(5), TimeoutStopper(1, clock=clock))
    assert not stopper.stop_all()
    clock.now += 2
    assert stopper.stop_all()


def test_combined_decision_points_are_merged() -> None:
    combined = CombinedStopper(
        MaximumIterationStopper(10),
        DictStopper({"training_iteration": 4, "time_total_s": 60}),
        TimeoutStopper(5),
    )
    assert set(combined.decision_points()) == {
        DecisionPoints.at("training_iteration", [4, 10]),
        DecisionPoints.at("time_total_s", [60]),
    }
    assert (
        CombinedStopper(MaximumIterationStopper(3), TrialPlateauStopper("x")).decision_points()
        == ALWAYS
    )
    assert CombinedStopper().decision_points() == ()


def test_combined_rejects_non_stoppers() -> None:
    with pytest.raises(TypeError, match=r"Argument 1 of CombinedStopper is .*FunctionStopper"):
        CombinedStopper(MaximumIterationStopper(1), lambda t, r: True)  # type: ignore[arg-type]


# FunctionStopper -------------------------------------------------------------------


def test_function_stopper() -> None:
    stopper = FunctionStopper(lambda trial_id, result: result["loss"] < 0.1)
    assert stopper("a", {"loss": 0.05}) is True
    assert stopper("a", {"loss": 1}) is False
    assert not stopper.stop_all()
    assert stopper.decision_points() == ALWAYS


def test_function_stopper_errors() -> None:
    with pytest.raises(TypeError, match=r"`function` is 3, but it must be a callable"):
        FunctionStopper(3)  # type: ignore[arg-type]

    class LooksLikeAStopper:
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return True

    with pytest.raises(TypeError, match=r"has a `stop_all` method but does not subclass"):
        FunctionStopper(LooksLikeAStopper())


# DictStopper -------------------------------------------------------------------------


def test_dict_stopper_any_key_reached() -> None:
    stopper = DictStopper({"training_iteration": 10, "mean_accuracy": 0.98})
    assert not stopper("a", {"training_iteration": 9, "mean_accuracy": 0.97})
    assert stopper("a", {"training_iteration": 10, "mean_accuracy": 0.5})  # >= is enough
    assert stopper("b", {"training_iteration": 1, "mean_accuracy": 0.99})
    assert not stopper.stop_all()


def test_dict_stopper_counts_bools_as_ray_does() -> None:
    """Unlike elsewhere in dasktune, a bool criterion or result value compares as 0 or 1."""
    stopper = DictStopper({"solved": True})
    assert not stopper("a", {"solved": False})
    assert stopper("a", {"solved": True})
    with pytest.raises(ValueError, match="must be a number"):
        DictStopper({"loss": math.nan})


def test_dict_stopper_nested_keys() -> None:
    stopper = DictStopper({"val": {"acc": 0.9}})
    assert stopper.criteria == {"val/acc": 0.9}
    assert stopper("a", {"val/acc": 0.95})  # a flattened result
    assert stopper("b", {"val": {"acc": 0.95}})  # a nested result
    assert not stopper("c", {"val": {"acc": 0.5}})


def test_dict_stopper_missing_key_is_an_error() -> None:
    stopper = DictStopper({"mean_accuracy": 0.9})
    with pytest.raises(ValueError) as error:
        stopper("a", {"training_iteration": 1, "loss": 0.3})
    message = str(error.value)
    assert "`mean_accuracy` is not in the trial's result" in message
    assert "['loss', 'training_iteration']" in message
    assert "tune.report" in message


def test_dict_stopper_tolerates_a_key_reported_before_or_a_final_result() -> None:
    stopper = DictStopper({"val_acc": 0.9})
    assert not stopper("a", {"training_iteration": 1, "val_acc": 0.1})
    assert not stopper("a", {"training_iteration": 2})  # val_acc only every few iterations
    assert not stopper("b", {"training_iteration": 1, "done": True})


def test_dict_stopper_stops_before_checking_later_keys() -> None:
    # As in Ray, criteria are checked in order and the first one reached stops.
    stopper = DictStopper({"training_iteration": 3, "mean_accuracy": 0.9})
    assert stopper("a", {"training_iteration": 3})


def test_dict_stopper_non_numeric_value_is_an_error() -> None:
    with pytest.raises(
        ValueError, match=r"`acc` needs a number in each result, but the result has acc='high'"
    ):
        DictStopper({"acc": 0.9})("a", {"acc": "high"})


def test_dict_stopper_nan_never_stops() -> None:
    assert not DictStopper({"acc": 0.9})("a", {"acc": math.nan})


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"acc": "0.9"}, r"`acc` has the value '0.9', but it must be a number"),
        ({"acc": math.nan}, r"`acc` has the value nan"),
        ({"": 1}, r"key '' is not a non-empty string"),
        ({3: 1}, r"key 3 is not a non-empty string"),
    ],
)
def test_dict_stopper_errors(criteria: dict[Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DictStopper(criteria)


def test_dict_stopper_decision_points() -> None:
    assert DictStopper({"training_iteration": 10}).decision_points() == (
        DecisionPoints.at("training_iteration", [10]),
    )
    assert set(DictStopper({"training_iteration": 10, "time_total_s": 30.5}).decision_points()) == {
        DecisionPoints.at("training_iteration", [10]),
        DecisionPoints.at("time_total_s", [30.5]),
    }
    # A metric may cross its threshold at any result.
    assert (
        DictStopper({"training_iteration": 10, "mean_accuracy": 0.98}).decision_points() == ALWAYS
    )


def test_dict_stopper_waits_at_the_stopping_result() -> None:
    stopper = DictStopper({"training_iteration": 4})
    tracker = DecisionPointTracker(stopper.decision_points())
    for t in range(1, 10):
        result = {"training_iteration": t}
        if stopper("a", result):
            break
        assert not tracker.needs_decision(result)
    assert t == 4 and tracker.needs_decision({"training_iteration": 4})


# as_stopper -----------------------------------------------------------------------------


def test_as_stopper() -> None:
    assert as_stopper(None) is None
    assert as_stopper({}) is None
    max_iter = MaximumIterationStopper(2)
    assert as_stopper(max_iter) is max_iter
    from_dict = as_stopper({"training_iteration": 5})
    assert isinstance(from_dict, DictStopper) and from_dict.criteria == {"training_iteration": 5}
    from_function = as_stopper(lambda trial_id, result: True)
    assert isinstance(from_function, FunctionStopper) and from_function("a", {})


@pytest.mark.parametrize("bad", [3, "training_iteration", [("training_iteration", 3)], 1.5])
def test_as_stopper_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"`stop` is .* but it must be None, a dict"):
        as_stopper(bad)


# merge_decision_points -----------------------------------------------------------------


def test_merge_decision_points() -> None:
    never = DecisionPoints.never()
    assert merge_decision_points([]) == ()
    assert merge_decision_points([never, never]) == ()
    assert merge_decision_points([never, DecisionPoints.always()]) == ALWAYS
    merged = merge_decision_points(
        [
            DecisionPoints.at("training_iteration", [1, 4]),
            DecisionPoints.at("training_iteration", [4, 8]),
        ]
    )
    assert merged == (DecisionPoints.at("training_iteration", [1, 4, 8]),)
