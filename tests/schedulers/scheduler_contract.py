"""Tests that every trial scheduler must pass; subclass and implement ``make_scheduler``."""

from __future__ import annotations

import abc
import json
import math
import pickle
from typing import Any

import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers import TrialDecision, TrialScheduler, TrialUpdate
from dasktune.testing import Simulator, curve_step
from dasktune.trial import Trial, TrialStatus


def make_trial(index: int) -> Trial:
    return Trial(trial_id=f"t{index}", config={"x": index}, status=TrialStatus.RUNNING)


class SchedulerContract(abc.ABC):
    """The behaviour shared by all schedulers.

    ``make_scheduler`` must return a fresh scheduler that optimises
    :attr:`metric` in :attr:`mode` over :attr:`time_attr`.
    """

    metric = "score"
    mode = "max"
    time_attr = "training_iteration"

    @abc.abstractmethod
    def make_scheduler(self) -> TrialScheduler:
        """A fresh scheduler for ``metric``, ``mode`` and ``time_attr``."""

    # Helpers -------------------------------------------------------------

    def result(self, t: float, value: Any) -> dict[str, Any]:
        return {self.time_attr: t, self.metric: value}

    def start(self, scheduler: TrialScheduler, count: int) -> list[Trial]:
        trials = [make_trial(i) for i in range(count)]
        for trial in trials:
            scheduler.on_trial_add(trial)
        return trials

    def feed(
        self,
        scheduler: TrialScheduler,
        trials: list[Trial],
        steps: range,
        values: dict[int, list[float]],
    ) -> list[TrialDecision]:
        """Report ``values[i][t - 1]`` for each step ``t`` and each trial ``i``, interleaved."""
        decisions = []
        for t in steps:
            for i, trial in enumerate(trials):
                decision = scheduler.on_trial_result(trial, self.result(t, values[i][t - 1]))
                assert isinstance(decision, TrialDecision)
                decisions.append(decision)
        return decisions

    # The contract --------------------------------------------------------

    def test_returns_a_trial_decision(self) -> None:
        scheduler = self.make_scheduler()
        [trial] = self.start(scheduler, 1)
        for t in range(1, 5):
            assert isinstance(
                scheduler.on_trial_result(trial, self.result(t, 0.1 * t)), TrialDecision
            )

    def test_tolerates_nan_and_inf(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 4)
        odd = [math.nan, math.inf, -math.inf, 0.5]
        values = {i: [odd[(i + t) % 4] for t in range(8)] for i in range(4)}
        self.feed(scheduler, trials, range(1, 9), values)
        scheduler.on_trial_complete(trials[0], self.result(8, math.nan))
        assert isinstance(scheduler.debug_string(), str)

    def test_missing_metric_continues(self) -> None:
        scheduler = self.make_scheduler()
        [trial] = self.start(scheduler, 1)
        assert scheduler.on_trial_result(trial, {self.time_attr: 1}) is TrialDecision.CONTINUE
        assert scheduler.on_trial_result(trial, {self.metric: 1.0}) is TrialDecision.CONTINUE

    def test_bool_metric_or_time_is_ignored(self) -> None:
        """A bool is a flag, not a number: such results change no later decision."""
        plain, flagged = self.make_scheduler(), self.make_scheduler()
        plain_trials, flagged_trials = self.start(plain, 3), self.start(flagged, 3)
        for flag in (True, False):
            for result in (self.result(1, flag), self.result(flag, 0.5)):
                decision = flagged.on_trial_result(flagged_trials[0], result)
                assert decision is TrialDecision.CONTINUE
        values = {i: [0.1 * ((i * 7 + t * 3) % 10) for t in range(8)] for i in range(3)}
        assert self.feed(flagged, flagged_trials, range(1, 9), values) == self.feed(
            plain, plain_trials, range(1, 9), values
        )

    def test_errored_trial_does_not_break_the_others(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 3)
        scheduler.on_trial_result(trials[0], self.result(1, 0.5))
        scheduler.on_trial_error(trials[0])
        values = {0: [0.0] * 4, 1: [0.6] * 4}
        decisions = self.feed(scheduler, trials[1:], range(1, 5), values)
        assert all(isinstance(d, TrialDecision) for d in decisions)

    def test_removed_trial_does_not_break_the_others(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 3)
        scheduler.on_trial_result(trials[0], self.result(1, 0.5))
        scheduler.on_trial_remove(trials[0])
        scheduler.on_trial_remove(trials[2])  # removed before it reported anything
        self.feed(scheduler, trials[1:2], range(1, 5), {0: [0.6] * 4})
        scheduler.on_trial_complete(trials[1], self.result(4, 0.6))

    def test_trial_added_late(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 2)
        self.feed(scheduler, trials, range(1, 5), {0: [0.1, 0.2, 0.3, 0.4], 1: [0.2] * 4})
        late = make_trial(99)
        scheduler.on_trial_add(late)
        for t in range(1, 5):
            assert isinstance(scheduler.on_trial_result(late, self.result(t, 0.9)), TrialDecision)

    def test_state_roundtrip_keeps_decisions(self) -> None:
        original = self.make_scheduler()
        trials = self.start(original, 6)
        values = {i: [0.1 * ((i * 7 + t * 3) % 10) for t in range(8)] for i in range(6)}
        self.feed(original, trials, range(1, 4), values)
        restored = self.make_scheduler()
        restored.set_state(pickle.loads(pickle.dumps(original.get_state())))
        assert self.feed(restored, trials, range(4, 9), values) == self.feed(
            original, trials, range(4, 9), values
        )

    def test_state_is_a_snapshot(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 3)
        state = scheduler.get_state()
        values = {i: [0.1 * i] * 4 for i in range(3)}
        first = self.feed(scheduler, trials, range(1, 5), values)
        scheduler.set_state(state)  # rewinds: the same results give the same decisions
        assert self.feed(scheduler, trials, range(1, 5), values) == first

    def test_decision_points(self) -> None:
        assert isinstance(self.make_scheduler().decision_points(), DecisionPoints)

    def test_trial_records_are_json_lines_by_file_name(self) -> None:
        """What the coordinator writes for a trial: file name -> JSON-serialisable records."""
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 4)
        values = {i: [0.1 * ((i * 7 + t * 3) % 10) for t in range(8)] for i in range(4)}
        self.feed(scheduler, trials, range(1, 9), values)
        for trial in trials:
            records = scheduler.trial_records(trial.trial_id)
            assert isinstance(records, dict)
            for name, rows in records.items():
                assert isinstance(name, str) and name and "/" not in name
                assert all(isinstance(row, dict) for row in rows)
                json.dumps(rows)

    def test_set_search_properties_keeps_own_values(self) -> None:
        scheduler = self.make_scheduler()
        assert scheduler.set_search_properties(None, None)

    # Whole experiments through the simulator (the coordinator's protocol) --------

    def simulated_curves(self) -> list[list[float]]:
        """Eight 8-step curves: rising, falling, flat, crossing, with NaN and inf."""
        return [
            [0.1 * t for t in range(1, 9)],
            [0.9 - 0.1 * t for t in range(1, 9)],
            [0.5] * 8,
            [0.05 * t * t for t in range(1, 9)],
            [math.nan, 0.2, 0.4, math.nan, 0.6, 0.7, 0.8, 0.9],
            [0.3, math.inf, 0.3, 0.3, -math.inf, 0.3, 0.3, 0.3],
            [1.0 / t for t in range(1, 9)],
            [0.45 + 0.01 * t for t in range(1, 9)],
        ]

    @pytest.mark.parametrize("concurrency", [1, 3])
    def test_simulated_experiment_ends(self, concurrency: int) -> None:
        """Every trial ends, none stays paused, with a failing trial among them."""
        configs, step, length = curve_step(self.simulated_curves())
        outcome = Simulator(
            self.make_scheduler(),
            configs,
            step,
            length,
            concurrency=concurrency,
            errors={3: 2},
            metric=self.metric,
        ).run()
        assert all(trial.status.is_finished for trial in outcome.trials.values())
        assert len(outcome.trials) == 8
        assert all(isinstance(update, TrialUpdate) for update in outcome.updates)

    def test_no_more_trials_at_any_time(self) -> None:
        scheduler = self.make_scheduler()
        scheduler.on_no_more_trials()
        trials = self.start(scheduler, 3)
        self.feed(scheduler, trials, range(1, 3), {i: [0.1 * i] * 2 for i in range(3)})
        scheduler.on_no_more_trials()
        scheduler.on_no_more_trials()
        updates = scheduler.pop_trial_updates()
        assert all(isinstance(u, TrialUpdate) for u in updates)
        assert {u.trial_id for u in updates} <= {t.trial_id for t in trials}
        late = make_trial(50)
        scheduler.on_trial_add(late)  # more trials after all: accepted
        assert isinstance(scheduler.on_trial_result(late, self.result(1, 0.3)), TrialDecision)
        assert all(isinstance(u, TrialUpdate) for u in scheduler.pop_trial_updates())

    def test_choose_trial_to_run_picks_a_paused_trial_or_none(self) -> None:
        scheduler = self.make_scheduler()
        trials = self.start(scheduler, 2)
        for trial in trials:
            trial.status = TrialStatus.PAUSED
        choice = scheduler.choose_trial_to_run(trials)
        assert choice is None or choice in trials
        assert scheduler.choose_trial_to_run([]) is None
