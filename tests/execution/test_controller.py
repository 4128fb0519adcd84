"""The coordinator's decision core with a real searcher and schedulers, no cluster."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.execution.controller import Controller, ControllerSettings, MetricNotReportedError
from dasktune.schedulers import ASHAScheduler, FIFOScheduler, TrialDecision, TrialScheduler
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from dasktune.search.sample import grid_search, uniform
from dasktune.stopper import MaximumIterationStopper, Stopper
from dasktune.trial import Trial, TrialStatus


def searcher_for(
    num_samples: int = 1, space: dict[str, Any] | None = None, max_concurrent: int = 0
) -> BasicVariantGenerator:
    searcher = BasicVariantGenerator(max_concurrent=max_concurrent, random_state=0)
    assert searcher.set_search_properties(
        None, None, space or {"lr": uniform(0, 1)}, num_samples=num_samples
    )
    return searcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_controller(
    searcher: Searcher | None = None,
    scheduler: TrialScheduler | None = None,
    stopper: Any = None,
    clock: Any = None,
    **settings: Any,
) -> Controller:
    controller = Controller(
        searcher=searcher or searcher_for(settings.get("num_samples", 1)),
        scheduler=scheduler or FIFOScheduler(),
        stopper=stopper,
        settings=ControllerSettings(**settings),
        trial_id_prefix="t",
        clock=clock or FakeClock(),
    )
    controller.start()
    return controller


def result(iteration: int, **metrics: Any) -> dict[str, Any]:
    return {
        "training_iteration": iteration,
        "time_total_s": float(iteration),
        "trial_id": "x",
        "done": False,
        **metrics,
    }


# -- new trials -------------------------------------------------------------


def test_new_trials_respects_room_and_num_samples() -> None:
    controller = make_controller(searcher=searcher_for(5), num_samples=5)
    first = controller.new_trials(2)
    assert [t.trial_id for t in first] == ["t_00000", "t_00001"]
    assert all(t.trial_name == "" for t in first), "naming is the loop's job, not the controller's"
    assert not controller.search_finished
    rest = controller.new_trials(10)
    assert [t.trial_id for t in rest] == ["t_00002", "t_00003", "t_00004"]
    assert controller.search_finished
    assert controller.new_trials(10) == []
    assert len(controller.trials) == 5
    assert controller.trial("t_00003") is rest[1]
    assert all(0 <= t.config["lr"] <= 1 for t in controller.trials)
    assert controller.count(TrialStatus.PENDING) == 5


def test_new_trials_with_no_room_asks_nothing() -> None:
    controller = make_controller()
    assert controller.new_trials(0) == []
    assert controller.trials == [] and not controller.search_finished


def test_grid_search_expands_per_sample() -> None:
    searcher = searcher_for(2, {"lr": grid_search([0.1, 0.2, 0.3])})
    controller = make_controller(searcher=searcher, num_samples=2)
    trials = controller.new_trials(100)
    assert [t.config["lr"] for t in trials] == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3]
    assert controller.search_finished


def test_searcher_returning_none_is_asked_again_later() -> None:
    controller = make_controller(searcher=searcher_for(3, max_concurrent=1), num_samples=3)
    (first,) = controller.new_trials(5)
    assert controller.new_trials(5) == [] and not controller.search_finished
    controller.on_complete(first)
    assert len(controller.new_trials(5)) == 1


class Endless(Searcher):
    def __init__(self) -> None:
        super().__init__()
        self.suggested = 0

    def suggest(self, trial_id: str) -> dict[str, Any]:
        self.suggested += 1
        return {"i": self.suggested}


def test_searcher_counts_samples_stops_at_num_samples() -> None:
    searcher = Endless()
    controller = make_controller(searcher=searcher, num_samples=3, searcher_counts_samples=True)
    assert len(controller.new_trials(2)) == 2
    assert len(controller.new_trials(5)) == 1
    assert controller.search_finished
    assert searcher.suggested == 3


def test_searcher_counts_samples_unlimited_with_minus_one() -> None:
    controller = make_controller(searcher=Endless(), num_samples=-1, searcher_counts_samples=True)
    assert len(controller.new_trials(50)) == 50
    assert not controller.search_finished


def test_scheduler_sees_every_new_trial() -> None:
    asha = ASHAScheduler(metric="loss", mode="min", max_t=8, reduction_factor=2)
    controller = make_controller(searcher=searcher_for(3), scheduler=asha, num_samples=3)
    for trial in controller.new_trials(3):
        assert asha.trial_bracket(trial.trial_id) == 0


def test_no_new_trials_once_stopping() -> None:
    controller = make_controller(searcher=searcher_for(5), num_samples=5)
    controller.stop_everything("test")
    assert controller.new_trials(5) == []


# -- results ----------------------------------------------------------------


def test_fifo_lets_trials_continue_and_records_the_last_result() -> None:
    controller = make_controller()
    (trial,) = controller.new_trials(1)
    last = result(1, loss=0.5)
    assert controller.on_result(trial, last) is TrialDecision.CONTINUE
    assert trial.last_result is last


class Noop(FIFOScheduler):
    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        return TrialDecision.NOOP


def test_noop_becomes_continue() -> None:
    controller = make_controller(scheduler=Noop())
    (trial,) = controller.new_trials(1)
    assert controller.on_result(trial, result(1, loss=1.0)) is TrialDecision.CONTINUE


def test_asha_stops_the_worse_trial_at_a_rung() -> None:
    asha = ASHAScheduler(metric="loss", mode="min", max_t=8, grace_period=1, reduction_factor=2)
    controller = make_controller(
        searcher=searcher_for(2),
        scheduler=asha,
        num_samples=2,
        required_metrics=(("loss", "ASHAScheduler(metric=...)"),),
    )
    good, bad = controller.new_trials(2)
    assert controller.on_result(good, result(1, loss=0.1)) is TrialDecision.CONTINUE
    assert controller.on_result(bad, result(1, loss=0.9)) is TrialDecision.STOP


def test_asha_decision_points_reach_the_trials() -> None:
    asha = ASHAScheduler(metric="loss", mode="min", max_t=8, reduction_factor=2)
    controller = make_controller(scheduler=asha)
    assert controller.decision_points() == (DecisionPoints.at("training_iteration", [1, 2, 4, 8]),)


def test_decision_points_of_fifo_and_a_stopper_are_merged() -> None:
    controller = make_controller(stopper=MaximumIterationStopper(3))
    assert controller.decision_points() == (DecisionPoints.at("training_iteration", [3]),)
    asha = ASHAScheduler(metric="loss", mode="min", max_t=8, reduction_factor=2)
    controller = make_controller(scheduler=asha, stopper=MaximumIterationStopper(3))
    assert controller.decision_points() == (
        DecisionPoints.at("training_iteration", [1, 2, 3, 4, 8]),
    )


def test_decision_points_of_fifo_alone_are_empty() -> None:
    assert make_controller().decision_points() == ()


def test_stopper_stops_a_trial() -> None:
    controller = make_controller(stopper=MaximumIterationStopper(2))
    (trial,) = controller.new_trials(1)
    assert controller.on_result(trial, result(1, loss=1.0)) is TrialDecision.CONTINUE
    assert controller.on_result(trial, result(2, loss=0.5)) is TrialDecision.STOP
    assert not controller.stopping


class PauseAll(FIFOScheduler):
    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        return TrialDecision.PAUSE


class Recording(FIFOScheduler):
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        self.seen.append(result)
        return TrialDecision.CONTINUE


class RecordingSearcher(BasicVariantGenerator):
    def __init__(self) -> None:
        super().__init__(random_state=0)
        self.set_search_properties(None, None, {"lr": uniform(0, 1)}, num_samples=1)
        self.seen: list[dict[str, Any]] = []

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.seen.append(result)


def test_a_result_that_the_stopper_stops_is_not_passed_on() -> None:
    scheduler, searcher = Recording(), RecordingSearcher()
    controller = make_controller(
        searcher=searcher, scheduler=scheduler, stopper=MaximumIterationStopper(2)
    )
    (trial,) = controller.new_trials(1)
    controller.on_result(trial, result(1, loss=1.0))
    assert controller.on_result(trial, result(2, loss=0.5)) is TrialDecision.STOP
    assert [r["training_iteration"] for r in scheduler.seen] == [1]
    assert [r["training_iteration"] for r in searcher.seen] == [1]
    assert trial.last_result["training_iteration"] == 2


def test_nested_metrics_are_flattened_before_deciding() -> None:
    scheduler = Recording()
    controller = make_controller(
        scheduler=scheduler, required_metrics=(("val/acc", "TuneConfig(metric=...)"),)
    )
    (trial,) = controller.new_trials(1)
    nested = result(1, val={"acc": 0.9, "loss": 0.1})
    assert controller.on_result(trial, nested) is TrialDecision.CONTINUE
    assert scheduler.seen[-1]["val/acc"] == 0.9
    assert trial.last_result["val/loss"] == 0.1
    assert controller.best_trial("val/acc", "max") is trial


def test_stopper_overrides_a_pause() -> None:
    controller = make_controller(scheduler=PauseAll(), stopper=MaximumIterationStopper(1))
    (trial,) = controller.new_trials(1)
    assert controller.on_result(trial, result(1, loss=1.0)) is TrialDecision.STOP


class StopAllAfter(Stopper):
    def __init__(self, results: int) -> None:
        self.left = results

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.left -= 1
        return False

    def stop_all(self) -> bool:
        return self.left <= 0


def test_stopper_stop_all_stops_the_experiment() -> None:
    controller = make_controller(searcher=searcher_for(3), stopper=StopAllAfter(2), num_samples=3)
    a, b = controller.new_trials(2)
    controller.on_result(a, result(1, loss=1.0))
    assert not controller.stopping
    controller.on_result(b, result(1, loss=1.0))
    assert controller.stopping
    assert controller.stop_reason == "a stopper's stop_all() returned True"
    assert controller.new_trials(5) == []
    assert controller.is_done(active_runs=0)


def test_missing_required_metric_names_the_reported_keys() -> None:
    asha = ASHAScheduler(metric="accuracy", mode="max", max_t=8)
    controller = make_controller(
        scheduler=asha, required_metrics=(("accuracy", "ASHAScheduler(metric=...)"),)
    )
    (trial,) = controller.new_trials(1)
    with pytest.raises(MetricNotReportedError) as info:
        controller.on_result(trial, result(1, loss=0.5, mean_acc=0.9))
    message = str(info.value)
    assert "Trial t_00000 reported ['loss', 'mean_acc']" in message
    assert "ASHAScheduler(metric=...) needs the metric 'accuracy'" in message
    assert "tune.report({'accuracy': value})" in message
    assert "training_iteration" not in message.split("needs")[0], "automatic keys are left out"
    assert isinstance(info.value, ValueError)
    assert trial.last_result == {}, "nothing was decided on the bad result"


def test_result_without_user_metrics_is_not_checked() -> None:
    controller = make_controller(required_metrics=(("loss", "ASHAScheduler(metric=...)"),))
    (trial,) = controller.new_trials(1)
    assert controller.on_result(trial, result(1)) is TrialDecision.CONTINUE


def test_required_metric_present_passes() -> None:
    controller = make_controller(required_metrics=(("loss", "x"), ("acc", "y")))
    (trial,) = controller.new_trials(1)
    assert controller.on_result(trial, result(1, loss=1.0, acc=0.5)) is TrialDecision.CONTINUE


# -- completion and failures ------------------------------------------------


def test_on_complete_terminates_and_marks_the_last_result_done() -> None:
    controller = make_controller()
    (trial,) = controller.new_trials(1)
    controller.on_result(trial, result(1, loss=1.0))
    controller.on_complete(trial)
    assert trial.status is TrialStatus.TERMINATED
    assert trial.last_result["done"] is True
    assert controller.new_trials(1) == []
    assert controller.is_done(active_runs=0)


def test_on_complete_without_results() -> None:
    controller = make_controller()
    (trial,) = controller.new_trials(1)
    controller.on_complete(trial)
    assert trial.status is TrialStatus.TERMINATED and trial.last_result == {}


def test_retries_up_to_max_failures_then_error() -> None:
    controller = make_controller(max_failures=2)
    (trial,) = controller.new_trials(1)
    trial.status = TrialStatus.RUNNING
    assert controller.on_error(trial, "first") is True
    assert trial.status is TrialStatus.PENDING and trial.num_failures == 1
    assert not controller.is_done(active_runs=0), "a trial waiting for its retry is not done"
    assert controller.on_error(trial, "second") is True
    assert controller.on_error(trial, "third") is False
    assert trial.status is TrialStatus.ERROR
    assert trial.num_failures == 3 and trial.error_msg == "third"
    assert not controller.stopping
    assert controller.new_trials(1) == []
    assert controller.is_done(active_runs=0)


def test_no_retry_by_default() -> None:
    controller = make_controller()
    (trial,) = controller.new_trials(1)
    assert controller.on_error(trial, "boom") is False
    assert trial.status is TrialStatus.ERROR


def test_negative_max_failures_retries_forever() -> None:
    controller = make_controller(max_failures=-1)
    (trial,) = controller.new_trials(1)
    assert all(controller.on_error(trial, "boom") for _ in range(20))
    assert trial.status is TrialStatus.PENDING


def test_error_frees_the_searchers_slot() -> None:
    controller = make_controller(searcher=searcher_for(2, max_concurrent=1), num_samples=2)
    (first,) = controller.new_trials(2)
    assert controller.on_error(first, "boom") is False
    assert len(controller.new_trials(2)) == 1


def test_fail_fast_stops_everything() -> None:
    controller = make_controller(
        searcher=searcher_for(4), num_samples=4, fail_fast=True, max_failures=3
    )
    a, b = controller.new_trials(2)
    # fail_fast applies once the trial has used its retries.
    assert controller.on_error(a, "boom") is True
    assert not controller.stopping
    controller.on_error(a, "boom")
    controller.on_error(a, "boom")
    assert controller.on_error(a, "boom") is False
    assert controller.stopping
    assert controller.stop_reason == "trial t_00000 failed and FailureConfig(fail_fast=True)"
    assert controller.new_trials(2) == []
    assert controller.is_done(active_runs=0)
    # Once stopping, a failure is not retried.
    assert controller.on_error(b, "boom") is False and b.status is TrialStatus.ERROR


def test_paused_trial_is_resumed() -> None:
    controller = make_controller(searcher=searcher_for(2), num_samples=2)
    a, b = controller.new_trials(2)
    assert controller.paused_to_resume() is None
    controller.on_paused(b)
    assert b.status is TrialStatus.PAUSED
    assert controller.paused_to_resume() is b
    controller.on_complete(a)
    assert not controller.is_done(active_runs=0), "a paused trial must still run"


# -- trials waiting (on_trials_waiting) ---------------------------------------


class ListeningScheduler(FIFOScheduler):
    def __init__(self) -> None:
        super().__init__()
        self.heard: list[bool] = []

    def on_trials_waiting(self, waiting: bool) -> None:
        self.heard.append(waiting)


def test_live_limit_is_the_lowest_of_tune_config_and_searcher() -> None:
    assert make_controller().live_limit() == 0
    assert make_controller(max_concurrent_trials=3).live_limit() == 3
    assert make_controller(searcher=searcher_for(max_concurrent=2)).live_limit() == 2
    limited = ConcurrencyLimiter(searcher_for(), max_concurrent=4)
    assert make_controller(searcher=limited, max_concurrent_trials=5).live_limit() == 4
    assert make_controller(searcher=limited, max_concurrent_trials=1).live_limit() == 1


def test_trials_wait_while_the_limit_leaves_room_counting_paused_trials() -> None:
    controller = make_controller(searcher=searcher_for(4), num_samples=4, max_concurrent_trials=2)
    (a,) = controller.new_trials(1)
    a.status = TrialStatus.RUNNING
    assert controller.trials_waiting(), "a second trial may start"
    (b,) = controller.new_trials(1)
    b.status = TrialStatus.RUNNING
    assert not controller.trials_waiting(), "two live trials fill the limit"
    controller.on_paused(b)
    assert not controller.trials_waiting(), "a paused trial still counts, as in Ray"
    controller.on_complete(a)
    assert controller.trials_waiting()


def test_queued_runs_wait_even_at_the_limit_or_after_the_search() -> None:
    controller = make_controller(searcher=searcher_for(2), num_samples=2, max_concurrent_trials=2)
    a, b = controller.new_trials(2)  # both PENDING: queued, say on a one-worker cluster
    assert controller.search_finished or controller.new_trials(1) == []
    a.status = TrialStatus.RUNNING
    assert controller.trials_waiting(), "b's run waits for a worker"
    b.status = TrialStatus.RUNNING
    assert not controller.trials_waiting()


def test_no_trial_waits_once_no_more_come() -> None:
    controller = make_controller(searcher=searcher_for(1), num_samples=1)
    (a,) = controller.new_trials(1)
    assert controller.trials_waiting()  # a is queued
    a.status = TrialStatus.RUNNING
    controller.new_trials(1)
    assert controller.search_finished and not controller.trials_waiting()


def test_the_scheduler_hears_changes_before_it_decides() -> None:
    scheduler = ListeningScheduler()
    controller = make_controller(
        searcher=searcher_for(3), scheduler=scheduler, num_samples=3, max_concurrent_trials=2
    )
    a, b = controller.new_trials(2)
    a.status = b.status = TrialStatus.RUNNING
    controller.on_result(a, result(1, score=1.0))
    controller.on_result(b, result(1, score=1.0))
    assert scheduler.heard == [False], "told once, before the first decision"
    controller.on_paused(b)
    controller.on_complete(a)
    assert controller.paused_to_resume() is b
    assert scheduler.heard == [False, True], "b is paused: one new trial may come"


def test_schedulers_that_do_not_listen_are_not_told() -> None:
    class Counting(Controller):
        asked = 0

        def trials_waiting(self) -> bool:
            Counting.asked += 1
            return super().trials_waiting()

    controller = Counting(
        searcher_for(), FIFOScheduler(), None, ControllerSettings(), clock=FakeClock()
    )
    (a,) = controller.new_trials(1)
    controller.on_result(a, result(1, score=1.0))
    controller.paused_to_resume()
    assert Counting.asked == 0


# -- the experiment as a whole ----------------------------------------------


def test_time_budget_with_an_injected_clock() -> None:
    clock = FakeClock()
    controller = make_controller(clock=clock, time_budget_s=10)
    clock.now += 9.99
    controller.check_budget()
    assert not controller.stopping
    clock.now += 0.01
    controller.check_budget()
    assert controller.stopping
    assert controller.stop_reason == "time_budget_s=10 was reached"
    assert controller.is_done(active_runs=0)


def test_time_budget_counts_from_start() -> None:
    clock = FakeClock()
    controller = Controller(
        searcher_for(), FIFOScheduler(), None, ControllerSettings(time_budget_s=5), clock=clock
    )
    clock.now += 100
    controller.check_budget()
    assert not controller.stopping, "no budget is spent before start()"
    controller.start()
    clock.now += 4
    controller.check_budget()
    assert not controller.stopping


def test_check_budget_polls_the_stoppers_stop_all() -> None:
    controller = make_controller(stopper=StopAllAfter(0))
    controller.check_budget()
    assert controller.stopping
    assert controller.stop_reason == "a stopper's stop_all() returned True"


def test_first_stop_reason_is_kept() -> None:
    controller = make_controller()
    controller.stop_everything("first")
    controller.stop_everything("second")
    assert controller.stop_reason == "first"


def test_is_done() -> None:
    controller = make_controller(searcher=searcher_for(2), num_samples=2)
    assert not controller.is_done(active_runs=0), "the search has not started"
    a, b = controller.new_trials(1) + controller.new_trials(1)
    assert not controller.is_done(active_runs=0)
    controller.new_trials(1)  # learns that the search is over
    assert controller.search_finished
    controller.on_complete(a)
    assert not controller.is_done(active_runs=0), "b is still pending"
    controller.on_complete(b)
    assert not controller.is_done(active_runs=1), "a run is still active"
    assert controller.is_done(active_runs=0)


def test_stopping_is_done_only_without_active_runs() -> None:
    controller = make_controller(searcher=searcher_for(3), num_samples=3)
    controller.new_trials(3)
    controller.stop_everything("user")
    assert not controller.is_done(active_runs=2)
    assert controller.is_done(active_runs=0)


def test_best_trial() -> None:
    controller = make_controller(searcher=searcher_for(4), num_samples=4)
    a, b, c, d = controller.new_trials(4)
    controller.on_result(a, result(1, loss=0.5))
    controller.on_result(b, result(1, loss=math.nan))
    controller.on_result(c, result(1, loss=0.2))
    controller.on_result(d, result(1, acc=1.0))
    assert controller.best_trial("loss", "min") is c
    assert controller.best_trial("loss", "max") is a
    assert controller.best_trial(None, "min") is None
    assert controller.best_trial("loss", None) is None
    assert controller.best_trial("missing", "min") is None


def test_best_trial_with_numpy_metrics() -> None:
    controller = make_controller(searcher=searcher_for(2), num_samples=2)
    a, b = controller.new_trials(2)
    controller.on_result(a, result(1, loss=np.float32(0.5)))
    controller.on_result(b, result(1, loss=np.float32(0.2)))
    assert controller.best_trial("loss", "min") is b


def test_a_searcher_that_never_suggests_is_an_error_not_a_hang() -> None:
    class Stuck(Searcher):
        def suggest(self, trial_id):
            return None

    now = [0.0]
    controller = Controller(
        Stuck(metric="loss", mode="min"),
        FIFOScheduler(),
        None,
        ControllerSettings(num_samples=3, searcher_counts_samples=True),
        clock=lambda: now[0],
    )
    assert controller.new_trials(2) == []
    controller.check_stalled(active_runs=0, limit_s=30)  # not yet
    now[0] = 31.0
    with pytest.raises(RuntimeError, match=r"Stuck.suggest\(\) returned None for 30 s"):
        controller.check_stalled(active_runs=0, limit_s=30)
    controller.check_stalled(active_runs=1, limit_s=30)  # fine while a trial runs


# -- drawing ahead ----------------------------------------------------------


def test_trials_may_be_drawn_ahead_only_where_that_changes_no_decision() -> None:
    from dasktune.schedulers import HyperBandScheduler, MedianStoppingRule, PopulationBasedTraining

    assert make_controller().may_draw_ahead, "random search, FIFO"
    assert make_controller(scheduler=ASHAScheduler(metric="m", mode="max")).may_draw_ahead
    pausing = [
        ASHAScheduler(metric="m", mode="max", mode_of_operation="promotion"),
        HyperBandScheduler(metric="m", mode="max"),
        MedianStoppingRule(metric="m", mode="max"),
        PopulationBasedTraining(metric="m", mode="max", hyperparam_mutations={"lr": [0.1, 0.2]}),
    ]
    for scheduler in pausing:
        assert not make_controller(scheduler=scheduler).may_draw_ahead, type(scheduler).__name__

    class Learns(Searcher):
        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            return {}

    assert not make_controller(searcher=Learns(metric="m", mode="max")).may_draw_ahead


def test_the_unfinished_trials_follow_every_way_a_trial_ends() -> None:
    controller = make_controller(searcher=searcher_for(4), num_samples=4, max_failures=1)
    a, b, c, d = controller.new_trials(4)
    assert controller.unfinished() == [a, b, c, d]
    controller.on_complete(a)
    assert controller.on_error(b, "boom"), "retried: still unfinished"
    assert controller.on_error(c, "boom") and not controller.on_error(c, "boom"), "c fails for good"
    controller.on_paused(d)
    assert controller.unfinished() == [b, d]
    assert controller.count(TrialStatus.PENDING) == 1 and controller.count(TrialStatus.PAUSED) == 1
    assert controller.count(TrialStatus.TERMINATED, TrialStatus.ERROR) == 2
    assert controller.paused_to_resume() is d
    controller.adopt([a, b, c, d], search_finished=True)
    assert controller.unfinished() == [b, d], "rebuilt when an experiment is resumed"
