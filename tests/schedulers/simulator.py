"""A pure stand-in for the coordinator, to drive schedulers through whole experiments.

It plays the coordinator's part of the scheduler protocol:

* trials are created only when a slot is free (``on_trial_add``), after
  ``choose_trial_to_run`` declined to resume a paused trial; when the configs
  run out it calls ``on_no_more_trials`` once and offers the slot again;
* every running trial reports one result per time unit (ties in the order of
  creation); the decision is applied at once (STOP ends it, PAUSE pauses it
  with its checkpoint) and a trial whose workload is over ends by itself;
* after every event ``pop_trial_updates`` is applied: STOP ends the trial,
  PAUSE pauses it at its next report, CONTINUE installs ``new_config`` and
  ``checkpoint_from`` (the other trial's latest checkpoint) for its resume;
* a trial that errors (``errors={index: iteration}``) gets ``on_trial_error``.

It raises :class:`Stalled` when trials are paused, nothing runs and nothing can
be started: the hang that ``on_no_more_trials`` must prevent.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dasktune.schedulers import TrialDecision, TrialScheduler
from dasktune.trial import Trial, TrialStatus

# step(config, state, iteration) -> (new state, score); ``state`` is None at iteration 1.
Step = Callable[[dict[str, Any], Any, int], tuple[Any, float]]


class Stalled(RuntimeError):
    """Every remaining trial is paused and the scheduler resumes none."""


@dataclass
class Report:
    trial_id: str
    iteration: int
    score: float
    decision: TrialDecision
    time: float


@dataclass
class Outcome:
    trials: dict[str, Trial]
    reports: list[Report]
    iterations: int  # training iterations run in all (the budget used)
    updates: list[Any] = field(default_factory=list)

    def best(self, mode: str = "max") -> float:
        scores = [r.score for r in self.reports if not math.isnan(r.score)]
        return max(scores) if mode == "max" else min(scores)

    def stopped_at(self) -> dict[str, int | None]:
        """The iteration of each trial's STOP decision (None: not stopped by a decision)."""
        out: dict[str, int | None] = {tid: None for tid in self.trials}
        for report in self.reports:
            if report.decision is TrialDecision.STOP:
                out[report.trial_id] = report.iteration
        return out

    def decisions(self, trial_id: str) -> list[tuple[int, TrialDecision]]:
        return [(r.iteration, r.decision) for r in self.reports if r.trial_id == trial_id]

    def iterations_of(self, trial_id: str) -> int:
        return sum(1 for r in self.reports if r.trial_id == trial_id)


def curve_step(
    curves: list[list[float]],
) -> tuple[list[dict[str, Any]], Step, Callable[[dict[str, Any]], int]]:
    """Configs, step and length for trials that follow fixed learning curves."""

    def step(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
        return None, curves[config["curve"]][iteration - 1]

    return [{"curve": i} for i in range(len(curves))], step, lambda c: len(curves[c["curve"]])


@dataclass
class _Run:
    trial: Trial
    index: int
    iteration: int = 0
    state: Any = None
    checkpoint: tuple[int, Any] | None = None
    restore: tuple[int, Any] | None = None  # from checkpoint_from
    pause_next: bool = False
    generation: int = 0  # invalidates queued events of an earlier run


class Simulator:
    """Run ``configs`` under ``scheduler`` with ``concurrency`` slots.

    Args:
        scheduler: The scheduler under test.
        configs: One config per trial, created in this order.
        step: The training: ``step(config, state, iteration) -> (state, score)``.
        length: How many iterations a trial runs before it ends by itself.
        concurrency: Slots.
        budget: Stop the whole experiment after this many iterations in all.
        errors: ``{trial index: iteration}``: the trial fails instead of reporting then.
    """

    def __init__(
        self,
        scheduler: TrialScheduler,
        configs: list[dict[str, Any]],
        step: Step,
        length: Callable[[dict[str, Any]], int],
        *,
        concurrency: int = 1,
        budget: int | None = None,
        errors: dict[int, int] | None = None,
        metric: str = "score",
        time_attr: str = "training_iteration",
    ) -> None:
        self.scheduler = scheduler
        self.configs = [copy.deepcopy(c) for c in configs]
        self.step, self.length = step, length
        self.concurrency, self.budget = concurrency, budget
        self.errors = errors or {}
        self.metric, self.time_attr = metric, time_attr
        self.runs: dict[str, _Run] = {}
        self.reports: list[Report] = []
        self.applied: list[Any] = []
        self.iterations = 0
        self.now = 0.0
        self._events: list[tuple[float, int, int, str]] = []
        self._announced_end = False

    # -- the loop -------------------------------------------------------------

    def run(self) -> Outcome:
        self._fill_slots()
        while self._events:
            if self.budget is not None and self.iterations >= self.budget:
                break
            self.now, _, generation, tid = heapq.heappop(self._events)
            run = self.runs[tid]
            if run.generation != generation or run.trial.status is not TrialStatus.RUNNING:
                continue
            self._advance(run)
            self._apply_updates()
            self._fill_slots()
        paused = [t for t, r in self.runs.items() if r.trial.status is TrialStatus.PAUSED]
        if paused and (self.budget is None or self.iterations < self.budget):
            raise Stalled(f"paused forever: {paused}\n{self.scheduler.debug_string()}")
        return Outcome({t: r.trial for t, r in self.runs.items()}, self.reports, self.iterations,
                       self.applied)

    def _advance(self, run: _Run) -> None:
        trial = run.trial
        run.iteration += 1
        self.iterations += 1
        if self.errors.get(run.index) == run.iteration:
            trial.status = TrialStatus.ERROR
            self.scheduler.on_trial_error(trial)
            return
        run.state, score = self.step(trial.config, run.state, run.iteration)
        run.checkpoint = (run.iteration, copy.deepcopy(run.state))
        result = {self.time_attr: run.iteration, self.metric: score}
        trial.last_result = result
        decision = self.scheduler.on_trial_result(trial, dict(result))
        self.reports.append(Report(trial.trial_id, run.iteration, score, decision, self.now))
        if decision is TrialDecision.STOP:
            self._end(run)
        elif decision is TrialDecision.PAUSE or run.pause_next:
            run.pause_next = False
            trial.status = TrialStatus.PAUSED
        elif run.iteration >= self.length(trial.config):
            self._end(run)
        else:
            self._schedule(run)

    def _fill_slots(self) -> None:
        while self._running() < self.concurrency:
            if self.budget is not None and self.iterations >= self.budget:
                return
            paused = [r.trial for r in self.runs.values() if r.trial.status is TrialStatus.PAUSED]
            choice = self.scheduler.choose_trial_to_run(paused) if paused else None
            if choice is not None:
                assert choice in paused, f"{choice} is not paused"
                self._resume(self.runs[choice.trial_id])
            elif len(self.runs) < len(self.configs):
                self._start_new()
            elif not self._announced_end:
                self._announced_end = True
                self.scheduler.on_no_more_trials()
            else:
                return
            self._apply_updates()

    def _start_new(self) -> None:
        index = len(self.runs)
        trial = Trial(f"t{index}", copy.deepcopy(self.configs[index]))
        run = self.runs[trial.trial_id] = _Run(trial, index)
        self.scheduler.on_trial_add(trial)
        trial.status = TrialStatus.RUNNING
        self._schedule(run)

    def _resume(self, run: _Run) -> None:
        source = run.restore or run.checkpoint
        run.restore = None
        run.iteration, run.state = (0, None) if source is None else copy.deepcopy(source)
        run.trial.status = TrialStatus.RUNNING
        if run.iteration >= self.length(run.trial.config):
            self._end(run)  # paused at its last report: the resumed run ends at once
        else:
            self._schedule(run)

    def _schedule(self, run: _Run) -> None:
        run.generation += 1
        event = (self.now + 1.0, run.index, run.generation, run.trial.trial_id)
        heapq.heappush(self._events, event)

    def _end(self, run: _Run) -> None:
        run.trial.status = TrialStatus.TERMINATED
        run.generation += 1
        self.scheduler.on_trial_complete(run.trial, run.trial.last_result or None)

    def _running(self) -> int:
        return sum(1 for r in self.runs.values() if r.trial.status is TrialStatus.RUNNING)

    def _apply_updates(self) -> None:
        for update in self.scheduler.pop_trial_updates():
            self.applied.append(update)
            run = self.runs[update.trial_id]
            status = run.trial.status
            assert not status.is_finished, f"update for a finished trial: {update}"
            if update.decision is TrialDecision.STOP:
                self._end(run)
            elif update.decision is TrialDecision.PAUSE:
                run.pause_next = True
            elif update.decision is TrialDecision.CONTINUE:
                if update.new_config is not None:
                    run.trial.config = copy.deepcopy(update.new_config)
                if update.checkpoint_from is not None:
                    run.restore = self.runs[update.checkpoint_from].checkpoint
