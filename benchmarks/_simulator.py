"""A discrete-event stand-in for dasktune's coordinator, to compare schedulers on synthetic curves.

It plays the coordinator's side of the scheduler protocol without Dask (the
same protocol as ``tests/schedulers/simulator.py``, which the tests keep to
themselves): a trial is created only when a worker is free and
``choose_trial_to_run`` resumed no paused trial; ``on_no_more_trials`` is
called once the configs run out; decisions and ``pop_trial_updates`` are
applied after every event; a paused trial resumes from the checkpoint of its
last report (or of ``checkpoint_from``).  Each config trains at its own speed
(seconds per iteration), so with several workers results arrive out of step.
The experiment ends when every trial has ended or the iteration budget is spent.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dasktune.schedulers import TrialDecision, TrialScheduler
from dasktune.trial import Trial, TrialStatus


@dataclass
class RunStats:
    """What one simulated experiment achieved."""

    best: float  # best metric value reported by any trial
    iterations: int  # training iterations run, all trials together
    trials: int  # trials started
    full: int  # trials that reported at iteration len(curve)
    wall: float  # simulated seconds until the end


@dataclass
class _Run:
    trial: Trial
    index: int
    iteration: int = 0
    checkpoint: int = 0
    restore: int | None = None
    pause_next: bool = False
    generation: int = 0


def simulate(
    scheduler: TrialScheduler,
    curves: Sequence[Sequence[float]],
    seconds_per_iteration: Sequence[float],
    *,
    concurrency: int,
    budget: int,
    metric: str = "score",
    time_attr: str = "training_iteration",
    mode: str = "max",
) -> RunStats:
    """Run one experiment: trial ``i`` reports ``curves[i][k - 1]`` at iteration ``k``."""
    runs: dict[str, _Run] = {}
    events: list[tuple[float, int, int, str]] = []
    now, iterations, best, full = 0.0, 0, -math.inf if mode == "max" else math.inf, 0
    announced = False

    def schedule(run: _Run) -> None:
        run.generation += 1
        delay = seconds_per_iteration[run.index]
        heapq.heappush(events, (now + delay, run.index, run.generation, run.trial.trial_id))

    def end(run: _Run) -> None:
        run.trial.status = TrialStatus.TERMINATED
        run.generation += 1
        scheduler.on_trial_complete(run.trial, run.trial.last_result or None)

    def apply_updates() -> None:
        for update in scheduler.pop_trial_updates():
            run = runs[update.trial_id]
            if run.trial.status.is_finished:
                continue
            if update.decision is TrialDecision.STOP:
                end(run)
            elif update.decision is TrialDecision.PAUSE:
                run.pause_next = True
            elif update.decision is TrialDecision.CONTINUE:
                if update.new_config is not None:
                    run.trial.config = dict(update.new_config)
                if update.checkpoint_from is not None:
                    run.restore = runs[update.checkpoint_from].checkpoint

    def resume(run: _Run) -> None:
        run.iteration = run.restore if run.restore is not None else run.checkpoint
        run.restore = None
        run.trial.status = TrialStatus.RUNNING
        if run.iteration >= len(curves[run.index]):
            end(run)  # paused at its last report: the resumed run ends at once
        else:
            schedule(run)

    def fill_slots() -> None:
        nonlocal announced
        while sum(r.trial.status is TrialStatus.RUNNING for r in runs.values()) < concurrency:
            paused = [r.trial for r in runs.values() if r.trial.status is TrialStatus.PAUSED]
            choice = scheduler.choose_trial_to_run(paused) if paused else None
            if choice is not None:
                resume(runs[choice.trial_id])
            elif len(runs) < len(curves):
                index = len(runs)
                trial = Trial(f"t{index:05d}", {"curve": index})
                run = runs[trial.trial_id] = _Run(trial, index)
                scheduler.on_trial_add(trial)
                trial.status = TrialStatus.RUNNING
                schedule(run)
            elif not announced:
                announced = True
                scheduler.on_no_more_trials()
            else:
                return
            apply_updates()

    fill_slots()
    while events and iterations < budget:
        now, _, generation, tid = heapq.heappop(events)
        run = runs[tid]
        if generation != run.generation or run.trial.status is not TrialStatus.RUNNING:
            continue
        run.iteration += 1
        iterations += 1
        run.checkpoint = run.iteration
        score = float(curves[run.index][run.iteration - 1])
        if not math.isnan(score):
            best = max(best, score) if mode == "max" else min(best, score)
        if run.iteration == len(curves[run.index]):
            full += 1
        result: dict[str, Any] = {time_attr: run.iteration, metric: score}
        run.trial.last_result = result
        decision = scheduler.on_trial_result(run.trial, dict(result))
        if decision is TrialDecision.STOP:
            end(run)
        elif decision is TrialDecision.PAUSE or run.pause_next:
            run.pause_next = False
            run.trial.status = TrialStatus.PAUSED
        elif run.iteration >= len(curves[run.index]):
            end(run)
        else:
            schedule(run)
        apply_updates()
        fill_slots()
    if iterations < budget and any(r.trial.status is TrialStatus.PAUSED for r in runs.values()):
        raise RuntimeError(f"{type(scheduler).__name__} left trials paused forever")
    return RunStats(best=best, iterations=iterations, trials=len(runs), full=full, wall=now)
