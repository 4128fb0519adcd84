"""The coordinator's decision core: trial events in, decisions out, no I/O.

The loop (``execution/loop.py``) feeds it what the cluster reports and carries
out what it decides.  The controller knows nothing of the loop, the cluster or
the storage, so everything here can be tested without Dask (and is driven by a
fake clock in :mod:`dasktune.testing`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dasktune._util import AUTO_RESULT_FIELDS as _AUTO_KEYS
from dasktune._util import flatten
from dasktune._validation import is_finite_number
from dasktune.decision_points import DecisionPoints, merge_decision_points
from dasktune.schedulers.async_hyperband import AsyncHyperBandScheduler
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialScheduler, TrialUpdate
from dasktune.search.concurrency_limiter import ConcurrencyLimiter
from dasktune.search.searcher import Searcher
from dasktune.search.variant_generator import BasicVariantGenerator
from dasktune.trial import Trial, TrialStatus


class MetricNotReportedError(ValueError):
    """A scheduler or searcher needs a metric that the trainable does not report."""


@dataclass
class ControllerSettings:
    """The parts of TuneConfig/RunConfig that steer decisions."""

    num_samples: int = 1
    time_budget_s: float | None = None
    max_failures: int = 0
    fail_fast: bool | str = False
    required_metrics: tuple[tuple[str, str], ...] = ()  # (metric, who needs it)
    searcher_counts_samples: bool = False  # True: stop asking after num_samples trials
    max_concurrent_trials: int = 0  # TuneConfig's; 0: no limit


@dataclass
class Controller:
    """Owns the trials and asks the searcher, scheduler and stopper what to do."""

    searcher: Searcher
    scheduler: TrialScheduler
    stopper: Any  # dasktune.stopper.Stopper | None
    settings: ControllerSettings
    trial_id_prefix: str = "t"
    clock: Callable[[], float] = time.monotonic
    trials: list[Trial] = field(default_factory=list)
    _search_done: bool = False
    _stop_all: bool = False
    _started_at: float | None = None
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self._by_id: dict[str, Trial] = {t.trial_id: t for t in self.trials}
        # The trials not yet finished, in order of creation: what the per-turn questions
        # (is it done? which paused trial runs next?) look at, so that their cost follows
        # the trials in flight, not every trial of the experiment.
        self._unfinished: dict[str, Trial] = {
            t.trial_id: t for t in self.trials if not t.status.is_finished
        }
        self._idle_since: float | None = None
        # CONTINUE updates for trials that are still on their way to PAUSED.
        self._held: dict[str, list[TrialUpdate]] = {}
        # Updates taken from the scheduler at the moment it made them, not yet handed out.
        self._fresh: list[TrialUpdate] = []
        self._told_no_more = False
        self._stuck_since: float | None = None
        self._told_waiting: bool | None = None  # what the scheduler last heard

    def check_stalled(self, active_runs: int, limit_s: float) -> None:
        """Raise if the searcher keeps saying "not now" while nothing runs (it would hang)."""
        if active_runs or self._idle_since is None or self._search_done:
            return
        if any(t.status in (TrialStatus.PENDING, TrialStatus.PAUSED) for t in self.unfinished()):
            return
        if self.clock() - self._idle_since >= limit_s:
            raise RuntimeError(
                f"{type(self.searcher).__name__}.suggest() returned None for {limit_s:.0f} s while "
                "no trial was running, so the experiment cannot go on. A searcher returns None "
                "only while it waits for running trials; return Searcher.FINISHED to end the "
                "search (or raise dasktune.searcher-idle-timeout in dask.config)."
            )

    # -- what to run -----------------------------------------------------
    def start(self) -> None:
        self._started_at = self.clock()

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        points = [self.scheduler.decision_points()]
        if self.stopper is not None:
            points.extend(self.stopper.decision_points())
        return merge_decision_points(points)

    @property
    def search_finished(self) -> bool:
        return self._search_done

    @property
    def may_draw_ahead(self) -> bool:
        """Whether trials may be drawn and queued ahead of free slots without changing
        what is decided: the searcher learns nothing from results (its suggestions do
        not depend on when they are asked for) and the scheduler never pauses trials
        (FIFO, ASHA's stopping rules). Schedulers that pause (PBT, HyperBand, promotion
        ASHA, a yielding median rule, any other) decide from the order in which trials
        progress, which queued trials would change."""
        return not self.searcher.learns_from_results and type(self.scheduler) in (
            FIFOScheduler,
            AsyncHyperBandScheduler,
        )

    def new_trials(self, room: int) -> list[Trial]:
        """Up to ``room`` new trials from the searcher (fewer if it has none now).

        The caller names each new trial and gives it its storage before it runs.
        """
        made: list[Trial] = []
        while room > 0 and not self._search_done and not self._stop_all:
            if self.settings.searcher_counts_samples and 0 <= self.settings.num_samples <= len(
                self.trials
            ):
                self._search_done = True
                break
            index = len(self.trials)
            trial_id = f"{self.trial_id_prefix}_{index:05d}"
            config = self.searcher.suggest(trial_id)
            if isinstance(config, str):  # Searcher.FINISHED, the one str suggest() returns
                self._search_done = True
                break
            if config is None:
                if self._idle_since is None:
                    self._idle_since = self.clock()
                break
            self._idle_since = None
            self._told_no_more = False  # trials come again: the scheduler may wait for them
            trial = Trial(trial_id, config)
            self.trials.append(trial)
            self._by_id[trial.trial_id] = trial
            self._unfinished[trial.trial_id] = trial
            self.scheduler.on_trial_add(trial)
            made.append(trial)
            room -= 1
        return made

    def adopt(self, trials: list[Trial], search_finished: bool) -> None:
        """Take over the trials of an experiment being resumed, in their order of creation.

        The searcher and scheduler already know them (from their saved state, or
        told by the caller); new trials continue the numbering.
        """
        self.trials = list(trials)
        self._by_id = {trial.trial_id: trial for trial in trials}
        self._unfinished = {t.trial_id: t for t in trials if not t.status.is_finished}
        self._search_done = search_finished

    def trial(self, trial_id: str) -> Trial:
        return self._by_id[trial_id]

    def unfinished(self) -> list[Trial]:
        """The trials that are neither TERMINATED nor ERROR, in order of creation."""
        done = [tid for tid, t in self._unfinished.items() if t.status.is_finished]
        for tid in done:
            del self._unfinished[tid]
        return list(self._unfinished.values())

    def count(self, *states: TrialStatus) -> int:
        trials = self.trials if any(s.is_finished for s in states) else self.unfinished()
        return sum(1 for t in trials if t.status in states)

    def paused_to_resume(self) -> Trial | None:
        paused = [t for t in self.unfinished() if t.status == TrialStatus.PAUSED]
        if not paused:
            return None
        self._tell_waiting()
        choice = self.scheduler.choose_trial_to_run(paused)
        return choice if choice is not None and choice.status == TrialStatus.PAUSED else None

    def live_limit(self) -> int:
        """How many trials may be live (not ended, paused ones included) at once; 0: any.

        ``TuneConfig(max_concurrent_trials)``, or the searcher's own limit if lower.
        """
        limits = [self.settings.max_concurrent_trials]
        if isinstance(self.searcher, (ConcurrencyLimiter, BasicVariantGenerator)):
            limits.append(self.searcher.max_concurrent)
        return min((n for n in limits if n > 0), default=0)

    def trials_waiting(self) -> bool:
        """Whether a trial waits for a worker, paused ones aside: a queued run, or a new
        trial the search would create now (see :meth:`TrialScheduler.on_trials_waiting`)."""
        if not (self._search_done or self._stop_all or self._told_no_more):
            limit = self.live_limit()
            if (
                not limit
                or self.count(TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED) < limit
            ):
                return True
        return bool(self.count(TrialStatus.PENDING))

    def _tell_waiting(self) -> None:
        if type(self.scheduler).on_trials_waiting is TrialScheduler.on_trials_waiting:
            return  # it does not listen: spare the counting
        waiting = self.trials_waiting()
        if waiting != self._told_waiting:
            self._told_waiting = waiting
            self.scheduler.on_trials_waiting(waiting)

    # -- what happened ---------------------------------------------------
    def on_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Decide what ``trial`` does after ``result``; raises if a needed metric is missing.

        As in Ray Tune, the stopper is asked first; a result that stops the
        trial is not passed on to the scheduler or searcher (both hear of the
        trial again when it completes).
        """
        result = _with_flat_keys(result)
        self._check_metrics(trial, result)
        trial.last_result = result
        self._tell_waiting()
        if self.stopper is not None and self.stopper(trial.trial_id, result):
            decision = TrialDecision.STOP
        else:
            decision = self.scheduler.on_trial_result(trial, result)
            self.searcher.on_trial_result(trial.trial_id, result)
        if self.stopper is not None and self.stopper.stop_all():
            self.stop_everything("a stopper's stop_all() returned True")
        self._collect_updates()
        return TrialDecision.CONTINUE if decision == TrialDecision.NOOP else decision

    def _collect_updates(self) -> None:
        """Take the scheduler's updates as soon as it made them, noting for each exploit
        the iteration the source trial had then: that is the checkpoint to copy, even if
        the source reports on before the exploiting trial has paused."""
        for update in self.scheduler.pop_trial_updates():
            source = self._by_id.get(update.checkpoint_from or "")
            if source is not None and update.checkpoint_iteration is None:
                iteration = source.last_result.get("training_iteration")
                if isinstance(iteration, int):
                    update = dataclasses.replace(update, checkpoint_iteration=iteration)
            self._fresh.append(update)

    def clone_sources(self) -> dict[str, set[int]]:
        """The checkpoints (trial id -> iterations) that exploits waiting to be carried
        out will copy: storage keeps them until then."""
        pinned: dict[str, set[int]] = {}
        waiting = [u for updates in self._held.values() for u in updates] + self._fresh
        for update in waiting:
            if update.checkpoint_from is not None and update.checkpoint_iteration is not None:
                pinned.setdefault(update.checkpoint_from, set()).add(update.checkpoint_iteration)
        return pinned

    def note_result(self, trial: Trial, result: dict[str, Any]) -> dict[str, Any]:
        """Make ``result`` the trial's last result without deciding anything (a trial
        already told to stop still reports); returns it as decisions see it."""
        trial.last_result = _with_flat_keys(result)
        return trial.last_result

    def _check_metrics(self, trial: Trial, result: dict[str, Any]) -> None:
        if all(key in _AUTO_KEYS for key in result):
            return  # a report with only a checkpoint, as Ray Tune allows
        for metric, needed_by in self.settings.required_metrics:
            if metric not in result:
                reported = sorted(k for k in result if k not in _AUTO_KEYS)
                raise MetricNotReportedError(
                    f"Trial {trial} reported {reported or 'no metrics'}, but {needed_by} needs "
                    f"the metric {metric!r}. Report it with tune.report({{{metric!r}: value}}) "
                    "(a class trainable: in the dict step() returns), or pass metric= one of "
                    "the reported keys (TUNE_DISABLE_STRICT_METRIC_CHECKING=1 lets results "
                    "without it through, as in Ray Tune)."
                )

    def on_complete(self, trial: Trial) -> None:
        """The trial ended normally or was stopped."""
        trial.status = TrialStatus.TERMINATED
        if trial.last_result:
            trial.last_result["done"] = True
        self.scheduler.on_trial_complete(trial, trial.last_result or None)
        self.searcher.on_trial_complete(trial.trial_id, trial.last_result or None, error=False)
        self._collect_updates()

    def on_error(self, trial: Trial, message: str) -> bool:
        """The trial's run failed; return True if it should be retried."""
        trial.num_failures += 1
        trial.error_msg = message
        limit = self.settings.max_failures
        if not self._stop_all and (limit < 0 or trial.num_failures <= limit):
            trial.status = TrialStatus.PENDING
            return True
        trial.status = TrialStatus.ERROR
        self.scheduler.on_trial_error(trial)
        self.searcher.on_trial_complete(trial.trial_id, trial.last_result or None, error=True)
        if self.settings.fail_fast:
            self.stop_everything(f"trial {trial} failed and FailureConfig(fail_fast=True)")
        return False

    def on_paused(self, trial: Trial) -> list[TrialUpdate]:
        """The trial's run ended at a PAUSE; returns the updates held for it."""
        trial.status = TrialStatus.PAUSED
        return self._held.pop(trial.trial_id, [])

    def take_updates(self, active_runs: int = 0) -> list[tuple[Trial, TrialUpdate]]:
        """The scheduler's decisions about other trials, ready to carry out now.

        A CONTINUE for a trial that is still running (it was just told to pause)
        is held until :meth:`on_paused`.
        """
        no_more = self.search_finished and not self.count(TrialStatus.PENDING)
        # A searcher with nothing to offer now (a ConcurrencyLimiter counts paused trials as
        # live) while nothing runs and trials wait paused for more to come: the scheduler is
        # told no more come, or the two would wait for each other for ever.
        idle = (
            self._idle_since is not None
            and not active_runs
            and not self.count(TrialStatus.PENDING)
            and bool(self.count(TrialStatus.PAUSED))
        )
        if (no_more or idle) and not self._told_no_more:
            self._told_no_more = True
            self.scheduler.on_no_more_trials()
        self._collect_updates()
        fresh, self._fresh = self._fresh, []
        ready = []
        for update in fresh:
            trial = self._by_id.get(update.trial_id)
            if trial is None or trial.status.is_finished:
                continue
            if update.decision == TrialDecision.CONTINUE and trial.status != TrialStatus.PAUSED:
                self._held.setdefault(trial.trial_id, []).append(update)
                continue
            ready.append((trial, update))
        return ready

    def end_paused(self, trial: Trial) -> None:
        """A scheduler stopped a trial while it was paused."""
        self.on_complete(trial)

    def check_stuck(self, active_runs: int, limit_s: float) -> None:
        """Raise if trials sit PAUSED with nothing running and the scheduler resumes none."""
        paused = self.count(TrialStatus.PAUSED)
        no_more_now = self.search_finished or self._idle_since is not None
        if active_runs or not paused or not no_more_now or self.count(TrialStatus.PENDING):
            self._stuck_since = None
            return
        now = self.clock()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= limit_s:
            raise RuntimeError(
                f"{type(self.scheduler).__name__} keeps {paused} trials PAUSED while none runs "
                f"and no new trial comes, so the experiment cannot finish. Its "
                "choose_trial_to_run() should resume one, or pop_trial_updates() stop them. "
                f"Scheduler state: {self.scheduler.debug_string()}; paused: "
                + ", ".join(
                    f"{t} at {t.last_result.get('training_iteration')}"
                    for t in self.trials
                    if t.status == TrialStatus.PAUSED
                )
            )

    # -- the experiment as a whole ---------------------------------------
    def stop_everything(self, reason: str) -> None:
        if not self._stop_all:
            self._stop_all = True
            self.stop_reason = reason

    @property
    def stopping(self) -> bool:
        return self._stop_all

    def check_budget(self) -> None:
        budget = self.settings.time_budget_s
        if budget is not None and self._started_at is not None:
            if self.clock() - self._started_at >= budget:
                self.stop_everything(f"time_budget_s={budget} was reached")
        if self.stopper is not None and not self._stop_all and self.stopper.stop_all():
            self.stop_everything("a stopper's stop_all() returned True")

    def is_done(self, active_runs: int) -> bool:
        if active_runs:
            return False
        if self._stop_all:
            return True
        waiting = any(
            t.status in (TrialStatus.PENDING, TrialStatus.PAUSED) for t in self.unfinished()
        )
        return self._search_done and not waiting

    def best_trial(self, metric: str | None, mode: str | None) -> Trial | None:
        if not metric or not mode:
            return None
        best, best_value = None, None
        for trial in self.trials:
            value = trial.last_result.get(metric)
            if not is_finite_number(value):
                continue
            if best_value is None or (value > best_value if mode == "max" else value < best_value):
                best, best_value = trial, value
        return best


def _with_flat_keys(result: dict[str, Any]) -> dict[str, Any]:
    """Nested metrics both ways: ``result["eval"]["acc"]`` for Ray-style stoppers and
    Result.metrics, ``result["eval/acc"]`` for metric names given as "a/b".  The config
    (``result["config"]``) stays nested only, as in Ray Tune."""
    nested = {k: v for k, v in result.items() if isinstance(v, dict) and k != "config"}
    if nested:
        return {**result, **flatten(nested)}
    return result
