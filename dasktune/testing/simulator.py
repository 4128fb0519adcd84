"""A discrete-event simulator that drives the real coordinator on a fake clock.

:class:`Simulator` plays the experiment loop (``execution/loop.py``) and the
cluster, without Dask.  It calls the real
:class:`~dasktune.execution.controller.Controller` in the loop's order, with
the real searcher and scheduler, so a scheduler tested here meets the
coordinator that users run.  Each turn of the loop:

1. ``check_budget``; if the experiment is stopping, wind down (below) and end;
2. carry out ``take_updates``: STOP or PAUSE a trial that runs, end a paused
   trial with ``end_paused``, prepare a CONTINUE's resume (``new_config``,
   ``checkpoint_from``);
3. launch, while slots are free: retries, then ``paused_to_resume``, then
   ``new_trials``;
4. ``is_done`` ends the experiment; ``check_stalled`` and ``check_stuck`` raise
   :class:`Stalled` (after the loop's ``searcher-idle-timeout`` of fake time);
5. drain: move the clock to the next event, or on by 0.5 s (the loop's wait on
   its inbox) if none comes sooner, and handle every event due by then.

A trial's run is simulated as the worker runs it: it starts, trains one
iteration every ``speed(config)`` seconds and reports after each; its run ends
when a decision stops or pauses it (``on_complete`` / ``on_paused``), when it
has trained ``length(config)`` iterations, or when an injected error fails it
(``on_error``, retried up to ``max_failures`` times).  What is simplified:

* every report waits for its decision, which comes back at once (decision
  points with no latency); a STOP or PAUSE sent to a trial while it trains (a
  TrialUpdate, the wind-down) reaches it at its next report, as in a worker;
* every report carries a checkpoint (a deep copy of the step's state); a run
  starts from its trial's latest checkpoint, which PBT's ``checkpoint_from``
  replaces with a copy of another trial's latest;
* ``budget`` caps training iterations as ``time_budget_s`` caps time: the
  report that spends the last iteration stops its trial, and the experiment
  winds down, each other running trial stopping at its next report.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dasktune import config
from dasktune._protocol import RunStatus
from dasktune.execution.controller import Controller, ControllerSettings
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialScheduler, TrialUpdate
from dasktune.search.searcher import Searcher
from dasktune.stopper import CombinedStopper, Stopper
from dasktune.testing.outcome import Outcome, Report, Stalled
from dasktune.trial import Trial, TrialStatus

# step(config, state, iteration) -> (new state, score); ``state`` is None at iteration 1.
Step = Callable[[dict[str, Any], Any, int], tuple[Any, float]]

#: How long the loop waits on its inbox in one turn (ExperimentLoop._drain's timeout).
_DRAIN_S = 0.5
#: The loop's wait in each turn of its wind-down, and how long trials get to stop.
_WIND_DOWN_DRAIN_S = 0.2
_STOP_GRACE_S = 30.0

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE


class FakeClock:
    """A clock that moves only when told: ``clock()`` is ``clock.now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ConfigList(Searcher):
    """A searcher that suggests ``configs`` in order, then ``Searcher.FINISHED``."""

    ends_search_itself = True
    learns_from_results = False

    def __init__(self, configs: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self._configs = [copy.deepcopy(c) for c in configs]
        self._given = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if self._given >= len(self._configs):
            return Searcher.FINISHED
        self._given += 1
        return copy.deepcopy(self._configs[self._given - 1])


class _IterationBudget(Stopper):
    """Stops the experiment, and the trial that reports, once ``budget`` iterations ran."""

    def __init__(self, spent: Callable[[], int], budget: int) -> None:
        self._spent, self._budget = spent, budget

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        return self._spent() >= self._budget


def curve_step(
    curves: Sequence[Sequence[float]],
) -> tuple[list[dict[str, Any]], Step, Callable[[dict[str, Any]], int]]:
    """Configs, step and length for trials that follow fixed learning curves.

    Trial ``i`` has the config ``{"curve": i}`` and reports ``curves[i][k - 1]``
    at iteration ``k``.
    """

    def step(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
        return None, float(curves[config["curve"]][iteration - 1])

    return [{"curve": i} for i in range(len(curves))], step, lambda c: len(curves[c["curve"]])


@dataclass(frozen=True)
class _Checkpoint:
    iteration: int
    state: Any
    time_total: float


@dataclass
class _Store:
    """What the loop's TrialStore keeps that decides how a trial runs again."""

    latest: _Checkpoint | None = None
    recorded_through: int = 0
    history: list[_Checkpoint] = field(default_factory=list)

    def checkpoint_at(self, iteration: int | None) -> _Checkpoint | None:
        """As TrialStore.checkpoint_at: the newest checkpoint from at most ``iteration``."""
        if iteration is None:
            return self.latest
        older = [c for c in self.history if c.iteration <= iteration]
        return older[-1] if older else None


@dataclass
class _Run:
    """One submitted run of a trial: the loop's record of it and the simulated worker."""

    run_id: str
    trial: Trial
    index: int  # the trial's place in the order of creation
    seconds: float  # per iteration
    iteration: int = 0
    state: Any = None
    time_total: float = 0.0
    since_restore: int = 0
    started: bool = False  # its RunStarted was handled: the loop knows its worker
    requested: TrialDecision | None = None  # the STOP or PAUSE sent to it


class Simulator:
    """Run the configs of a searcher under ``scheduler`` through the real Controller.

    Args:
        scheduler: The scheduler under test.
        configs: One config per trial, suggested in this order (through
            :class:`ConfigList`), or any Searcher.
        step: The training: ``step(config, state, iteration) -> (state, score)``.
        length: How many iterations a trial trains before its run ends by itself.
        concurrency: Slots: runs at once (the loop's queue limit).
        max_concurrent_trials: As in TuneConfig: at most this many runs at once (it
            replaces ``concurrency``, as it replaces the cluster's size in the loop),
            and the limit the coordinator tells schedulers about; 0 for none.
        budget: Stop the experiment once this many iterations ran in all.
        errors: ``{trial index: iteration}``: the trial's run fails at that
            iteration instead of reporting, once (a retry gets past it).
        metric: The name under which ``step``'s score is reported.
        speed: Seconds per iteration of a config (default 1).
        time_budget_s, max_failures, fail_fast: As in TuneConfig and FailureConfig.
        stopper: A Stopper, as ``RunConfig(stop=...)``.
        num_samples: How many trials to ask a Searcher for that does not end its
            search itself (not needed with a list of configs).
        idle_timeout_s: How long nothing may run before :class:`Stalled`; the
            default is ``dasktune.searcher-idle-timeout``, as in the loop.
    """

    def __init__(
        self,
        scheduler: TrialScheduler,
        configs: Sequence[dict[str, Any]] | Searcher,
        step: Step,
        length: Callable[[dict[str, Any]], int],
        *,
        concurrency: int = 1,
        max_concurrent_trials: int = 0,
        budget: int | None = None,
        errors: dict[int, int] | None = None,
        metric: str = "score",
        speed: Callable[[dict[str, Any]], float] | None = None,
        time_budget_s: float | None = None,
        max_failures: int = 0,
        fail_fast: bool = False,
        stopper: Stopper | None = None,
        num_samples: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        searcher = configs if isinstance(configs, Searcher) else ConfigList(configs)
        if num_samples is None and not searcher.ends_search_itself:
            raise ValueError(
                f"{type(searcher).__name__} does not end its search itself, and num_samples is "
                "None, so the simulated experiment would never end. Pass num_samples=N."
            )
        self.step, self.length, self.metric = step, length, metric
        self.speed = speed or (lambda config: 1.0)
        self.concurrency = max_concurrent_trials or concurrency
        self.idle_timeout_s = (
            float(config.get("searcher-idle-timeout")) if idle_timeout_s is None else idle_timeout_s
        )
        self.clock = FakeClock()
        self.iterations = 0
        stoppers = [stopper] if stopper is not None else []
        if budget is not None:
            stoppers.append(_IterationBudget(lambda: self.iterations, budget))
        settings = ControllerSettings(
            num_samples=-1 if num_samples is None else num_samples,
            time_budget_s=time_budget_s,
            max_failures=max_failures,
            fail_fast=fail_fast,
            searcher_counts_samples=not searcher.ends_search_itself,
            max_concurrent_trials=max_concurrent_trials,
        )
        combined = CombinedStopper(*stoppers) if len(stoppers) > 1 else next(iter(stoppers), None)
        self.controller = Controller(
            searcher, scheduler, combined, settings, trial_id_prefix="t", clock=self.clock
        )
        self._errors = dict(errors or {})
        self._runs: dict[str, _Run] = {}
        self._run_counts: dict[str, int] = {}
        self._retry: list[Trial] = []
        self._stores: dict[str, _Store] = {}
        self._index: dict[str, int] = {}
        self._events: list[tuple[float, int, Callable[[_Run], None], _Run]] = []
        self._seq = itertools.count()
        self._reports: list[Report] = []
        self._updates: list[TrialUpdate] = []
        self._ran = False

    # -- the loop (ExperimentLoop._loop) -----------------------------------------

    def run(self) -> Outcome:
        """Run the experiment to its end; raises :class:`Stalled` where the loop would hang."""
        if self._ran:
            raise RuntimeError("A Simulator runs one experiment; make a new one to run again.")
        self._ran = True
        self.controller.start()
        while True:
            self.controller.check_budget()
            if self.controller.stopping:
                self._wind_down()
                break
            self._apply_updates()
            self._launch()
            if self.controller.is_done(len(self._runs)):
                break
            try:
                self.controller.check_stalled(len(self._runs), self.idle_timeout_s)
                self.controller.check_stuck(len(self._runs), self.idle_timeout_s)
            except RuntimeError as exc:
                raise Stalled(str(exc)) from exc
            self._drain(_DRAIN_S)
        return Outcome(
            trials={t.trial_id: t for t in self.controller.trials},
            reports=self._reports,
            iterations=self.iterations,
            updates=self._updates,
            time=self.clock.now,
            stop_reason=self.controller.stop_reason,
        )

    def _drain(self, timeout: float) -> None:
        """Wait (on the fake clock) up to ``timeout`` for an event; handle all that are due."""
        if not self._events or self._events[0][0] > self.clock.now + timeout:
            self.clock.now += timeout
            return
        self.clock.now = max(self.clock.now, self._events[0][0])
        while self._events and self._events[0][0] <= self.clock.now:
            _, _, handle, run = heapq.heappop(self._events)
            if run.run_id in self._runs:  # a late event of a run already finished is dropped
                handle(run)

    def _at(self, time: float, handle: Callable[[_Run], None], run: _Run) -> None:
        heapq.heappush(self._events, (time, next(self._seq), handle, run))

    def _wind_down(self) -> None:
        """Stop every run; give them the loop's grace to report once more and end."""
        for run in list(self._runs.values()):
            self._request(run, STOP)
            if not run.started:  # cancelled before it began: Dask drops it
                self._finish_run(run, RunStatus.STOPPED)
        deadline = self.clock.now + _STOP_GRACE_S
        while self._runs and self.clock.now < deadline:
            self._drain(_WIND_DOWN_DRAIN_S)
        for run in list(self._runs.values()):
            self._finish_run(run, RunStatus.STOPPED)

    # -- launching (ExperimentLoop._launch) ----------------------------------------

    def _launch(self) -> None:
        room = self.concurrency - len(self._runs)
        while room > 0 and self._retry:
            self._submit(self._retry.pop(0))
            room -= 1
        while room > 0:
            trial = self.controller.paused_to_resume()
            if trial is None:
                break
            self._submit(trial)
            room -= 1
        for trial in self.controller.new_trials(room):
            self._index[trial.trial_id] = len(self._index)
            self._stores[trial.trial_id] = _Store()
            self._submit(trial)

    def _submit(self, trial: Trial) -> None:
        """Start a run of ``trial`` from its latest checkpoint."""
        runs = self._run_counts[trial.trial_id] = self._run_counts.get(trial.trial_id, 0) + 1
        run = _Run(
            f"{trial.trial_id}-{runs}",
            trial,
            self._index[trial.trial_id],
            seconds=float(self.speed(trial.config)),
        )
        latest = self._stores[trial.trial_id].latest
        if latest is not None:
            run.iteration, run.time_total = latest.iteration, latest.time_total
            run.state = copy.deepcopy(latest.state)
        trial.status = TrialStatus.PENDING
        self._runs[run.run_id] = run
        self._at(self.clock.now, self._on_started, run)

    # -- the scheduler's updates (ExperimentLoop._apply_updates) -------------------

    def _apply_updates(self) -> None:
        for trial, update in self.controller.take_updates(len(self._runs)):
            self._updates.append(update)
            run = next((r for r in self._runs.values() if r.trial is trial), None)
            if update.decision in (STOP, PAUSE) and run is not None:
                self._request(run, update.decision)
            elif update.decision is STOP and trial.status is TrialStatus.PAUSED:
                self.controller.end_paused(trial)
            elif update.decision is CONTINUE:
                self._prepare_resume(trial, update)

    def _prepare_resume(self, trial: Trial, update: TrialUpdate) -> None:
        """A new config and/or another trial's checkpoint for a paused trial's next run."""
        store = self._stores[trial.trial_id]
        if update.checkpoint_from is not None:
            source = self._stores.get(update.checkpoint_from)
            entry = source.checkpoint_at(update.checkpoint_iteration) if source else None
            if entry is None:
                return  # nothing to copy: as in the loop, the exploit is skipped
            store.latest = entry
            store.history.append(entry)
            store.recorded_through = entry.iteration
        if update.new_config is not None:
            trial.config = dict(update.new_config)

    def _request(self, run: _Run, decision: TrialDecision) -> None:
        """Send STOP or PAUSE to a run; its worker reads it at its next report."""
        run.requested = decision

    # -- the simulated worker and the loop's handling of its messages --------------

    def _on_started(self, run: _Run) -> None:
        run.started = True
        run.trial.status = TrialStatus.RUNNING
        if run.iteration >= self.length(run.trial.config):
            self._at(self.clock.now, partial(self._finish_run, status=RunStatus.FINISHED), run)
        else:
            self._at(self.clock.now + run.seconds, self._on_iteration, run)

    def _on_iteration(self, run: _Run) -> None:
        """The run trained one more iteration: it fails, or reports and hears what to do."""
        trial = run.trial
        run.iteration += 1
        run.since_restore += 1
        run.time_total += run.seconds
        self.iterations += 1
        if self._errors.get(run.index) == run.iteration:
            del self._errors[run.index]
            error = f"Simulated error of trial {trial} at iteration {run.iteration}"
            self._at(
                self.clock.now, partial(self._finish_run, status=RunStatus.ERROR, error=error), run
            )
            return
        run.state, score = self.step(trial.config, run.state, run.iteration)
        result = {
            self.metric: score,
            "training_iteration": run.iteration,
            "time_this_iter_s": run.seconds,
            "time_total_s": run.time_total,
            "time_since_restore": run.since_restore * run.seconds,
            "iterations_since_restore": run.since_restore,
            "trial_id": trial.trial_id,
            "done": False,
        }
        pending = run.requested  # a worker told to stop or pause does not wait for a decision
        decision = self._on_result(run, result)
        ended = pending or (decision if decision in (STOP, PAUSE) else None)
        if ended is not None:
            status = RunStatus.STOPPED if ended is STOP else RunStatus.PAUSED
            self._at(self.clock.now, partial(self._finish_run, status=status), run)
        elif run.iteration >= self.length(trial.config):
            self._at(self.clock.now, partial(self._finish_run, status=RunStatus.FINISHED), run)
        else:
            self._at(self.clock.now + run.seconds, self._on_iteration, run)

    def _on_result(self, run: _Run, result: dict[str, Any]) -> TrialDecision:
        """ExperimentLoop._on_result: checkpoint, decide, record.

        Its skipping of iterations already on record never applies here: every
        report carries a checkpoint, so no run trains an iteration twice.
        """
        trial, store = run.trial, self._stores[run.trial.trial_id]
        store.latest = _Checkpoint(run.iteration, copy.deepcopy(run.state), run.time_total)
        store.history.append(store.latest)
        if run.requested is STOP:
            decision = STOP
        else:  # a trial asked to pause still reports, and may be stopped
            decision = self.controller.on_result(trial, result)
            if run.requested is PAUSE and decision is not STOP:
                decision = PAUSE
        if decision in (STOP, PAUSE):
            result["done"] = decision is STOP
            self._request(run, decision)
        store.recorded_through = run.iteration
        self._reports.append(
            Report(trial.trial_id, run.iteration, result[self.metric], decision, self.clock.now)
        )
        return decision

    def _finish_run(self, run: _Run, status: RunStatus, error: str | None = None) -> None:
        """ExperimentLoop._finish_run: the run ended; tell the controller how."""
        if self._runs.pop(run.run_id, None) is None:
            return
        trial = run.trial
        if status is RunStatus.PAUSED and run.requested is STOP:
            status = RunStatus.STOPPED  # a STOP sent while the run was pausing wins
        if status is RunStatus.PAUSED:
            for update in self.controller.on_paused(trial):
                self._updates.append(update)
                self._prepare_resume(trial, update)
        elif status is RunStatus.ERROR:
            if self.controller.on_error(trial, error or "unknown error"):
                self._retry.append(trial)
        else:
            self.controller.on_complete(trial)
