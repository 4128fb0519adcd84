"""The experiment loop: carries the controller's decisions out on the cluster.

One job: it reads the backend's inbox (messages from trials, and their futures
completing), asks the pure :class:`Controller` what to do, has storage record
what happened, and sends decisions back to trials.  Capacity lives in
:mod:`~dasktune.execution.capacity`, the record in :mod:`dasktune.storage`,
callbacks in :class:`~dasktune.callback.CallbackList`, and the ResultGrid is
built by :func:`dasktune.result.build_result_grid`.  The wiring is one way: the
loop calls the controller, never the reverse.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from typing import Any

from dasktune import config
from dasktune._protocol import (
    CheckpointStored,
    Decision,
    Message,
    ResultReported,
    RunEnded,
    RunOutcome,
    RunStarted,
    RunStatus,
)
from dasktune.callback import CallbackList
from dasktune.execution._dask import DaskBackend, RunDone
from dasktune.execution.capacity import Capacity
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller
from dasktune.result import ResultGrid, build_result_grid
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.storage.experiment import ExperimentStore, TrialStore
from dasktune.storage.layout import trial_dir_name
from dasktune.trainable.session import RunSpec, TrialContext
from dasktune.trial import Trial, TrialStatus

logger = logging.getLogger(__name__)

#: How long to wait for a run's last results after its future completed.
_LATE_EVENT_GRACE_S = 2.0
#: How long trials get to end after the experiment stops them.
_STOP_GRACE_S = 30.0
#: How often the loop looks at the cluster's workers to size its queue of trial runs.
_CAPACITY_REFRESH_S = 1.0
#: How often the experiment state file is written.
_STATE_INTERVAL_S = 5.0

_STOPPING = {TrialDecision.STOP: Decision.STOP, TrialDecision.PAUSE: Decision.PAUSE}


@dataclass
class _Run:
    """One submitted run of a trial (a trial has several after failures or pauses)."""

    run_id: str
    trial: Trial
    store: TrialStore
    worker: str | None = None
    outcome: RunOutcome | None = None
    exception: bytes | None = None
    future_done: bool = False
    results: int = 0
    requested: Decision | None = None  # STOP or PAUSE sent to it
    deadline: float | None = None


@dataclass
class ExperimentSpec:
    """What the loop needs to run trials, besides the controller."""

    trainable: Any
    params: dict[str, Any]
    trainable_name: str
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False


class ExperimentLoop:
    """Runs one experiment to its end and returns its ResultGrid."""

    def __init__(self, backend: DaskBackend, controller: Controller, spec: ExperimentSpec,
                 store: ExperimentStore, capacity: Capacity, callbacks: CallbackList,
                 console: ConsoleReporter, metric: Any, mode: Any) -> None:
        self.backend = backend
        self.controller = controller
        self.spec = spec
        self.store = store
        self.capacity = capacity
        self.callbacks = callbacks
        self.console = console
        self.metric, self.mode = metric, mode
        self._runs: dict[str, _Run] = {}
        self._run_counts: dict[str, int] = {}
        self._retry: list[Trial] = []
        self._points = controller.decision_points()
        self._capacity_checked = 0.0
        self._warned_no_checkpoint = False
        self._trainable_ref: Any = None
        self._param_refs: dict[str, Any] = {}
        self._state_written = 0.0
        self._idle_limit = float(config.get("searcher-idle-timeout"))
        self._decision_timeout = float(config.get("decision-timeout"))
        self._turn = 0  # loop turns, the "iteration" callbacks receive

    # -- the loop ----------------------------------------------------------
    def run(self) -> ResultGrid:
        failure: BaseException | None = None
        try:
            self._prepare()
            self._loop()
        except BaseException as exc:  # a user error or Ctrl-C: stop, save, then raise
            failure = exc
            self.controller.stop_everything(f"{type(exc).__name__}: {exc}")
            self._wind_down()
        finally:
            self._close()
            self.callbacks.on_experiment_end(self.controller.trials)
        grid = self.result_grid()
        if failure is not None:
            failure.result_grid = grid  # type: ignore[attr-defined]
            raise failure
        self.console.summary(self.controller.trials)
        return grid

    def _prepare(self) -> None:
        self._refresh_capacity(force=True)
        self._trainable_ref = self.backend.ship(self.spec.trainable)
        self._param_refs = {k: self.backend.scatter(v) for k, v in self.spec.params.items()}
        self.backend.warm_up(self._trainable_ref, self._param_refs)
        self.backend.start()
        self.controller.start()
        self.console.start()

    def _refresh_capacity(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._capacity_checked < _CAPACITY_REFRESH_S:
            return
        self._capacity_checked = now
        try:
            workers = self.backend.workers()
        except Exception as exc:  # a slow or restarting scheduler: keep the last size
            logger.debug("Could not read the cluster's workers: %r", exc)
            return
        self.capacity.update(workers)

    def _notify(self, hook: str, *args: Any) -> None:
        self.callbacks.notify(hook, self._turn, self.controller.trials, *args)

    def _loop(self) -> None:
        self.callbacks.setup(experiment_path=self.store.path)
        while True:
            self._turn += 1
            self.controller.check_budget()
            if self.controller.stopping:
                self._wind_down()
                return
            self._apply_updates()
            self._refresh_capacity()
            self._launch()
            if self.controller.is_done(len(self._runs)):
                return
            self.controller.check_stalled(len(self._runs), self._idle_limit)
            self.controller.check_stuck(len(self._runs), self._idle_limit)
            self._drain(timeout=0.5)
            self._check_deadlines()
            self.console.update(self.controller, self._active_trials())
            self._maybe_write_state()

    def _wind_down(self) -> None:
        """Stop every run and wait (a bounded time) for their last results."""
        for run in list(self._runs.values()):
            self._request(run, Decision.STOP)
            if run.worker is None:
                self.backend.cancel(run.run_id)
        deadline = time.monotonic() + _STOP_GRACE_S
        while self._runs and time.monotonic() < deadline:
            self._drain(timeout=0.2)
            self._check_deadlines()
        for run in list(self._runs.values()):
            logger.warning("Trial %s did not stop within %.0f s; leaving it.", run.trial, _STOP_GRACE_S)
            self._finish_run(run, RunStatus.STOPPED)

    # -- launching ---------------------------------------------------------
    def _launch(self) -> None:
        room = self.capacity.queue_limit - len(self._runs)
        while room > 0 and self._retry:
            self._submit(self._retry.pop(0))
            room -= 1
        while room > 0:
            trial = self.controller.paused_to_resume()
            if trial is None:
                break
            self._submit(trial)
            room -= 1
        new = self.controller.new_trials(room)
        first_index = len(self.controller.trials) - len(new)
        for index, trial in enumerate(new, start=first_index):
            self._add_trial(trial, index)
            self._submit(trial)

    def _add_trial(self, trial: Trial, index: int) -> None:
        """Name a new trial and give it its place in storage."""
        trial.trial_name = trial_dir_name(self.spec.trainable_name, index)
        trial.local_path = os.path.join(self.store.path, trial.trial_name)
        self.store.add_trial(trial)

    def _submit(self, trial: Trial) -> None:
        store = self.store.trial(trial.trial_id)
        runs = self._run_counts[trial.trial_id] = self._run_counts.get(trial.trial_id, 0) + 1
        run_id = f"{trial.trial_id}-{runs}"
        latest = store.latest_checkpoint
        resume_from = latest[1] if latest else {}
        spec = RunSpec(
            run_id=run_id,
            context=TrialContext(
                trial_id=trial.trial_id, trial_name=trial.trial_name, trial_dir=trial.local_path,
                experiment_name=self.store.name, experiment_path=self.store.path,
                resources=dict(self.capacity.request),
            ),
            config=trial.config,
            topic=self.backend.topic,
            decision_points=self._points,
            checkpoint_path=latest[0] if latest else None,
            start_iteration=int(resume_from.get("training_iteration", 0)),
            start_time_total=float(resume_from.get("time_total_s", 0.0)),
            checkpoint_index=store.next_checkpoint_index,
            decision_timeout=self._decision_timeout,
        )
        self.backend.submit(spec, self._trainable_ref, self._param_refs,
                            (self.spec.checkpoint_frequency, self.spec.checkpoint_at_end),
                            self.capacity.request)
        trial.status = TrialStatus.PENDING
        self._runs[run_id] = _Run(run_id, trial, store)

    def _run_of(self, trial: Trial) -> _Run | None:
        return next((r for r in self._runs.values() if r.trial is trial), None)

    def _apply_updates(self) -> None:
        """Carry out the scheduler's decisions about trials that are not reporting."""
        for trial, update in self.controller.take_updates(len(self._runs)):
            run = self._run_of(trial)
            if update.decision in _STOPPING and run is not None:
                self._request(run, _STOPPING[update.decision])
            elif update.decision == TrialDecision.STOP and trial.status == TrialStatus.PAUSED:
                self.controller.end_paused(trial)
                self.store.trial(trial.trial_id).finish()
                self._notify("on_trial_complete", trial)
            elif update.decision == TrialDecision.CONTINUE:
                self._prepare_resume(trial, update)

    def _prepare_resume(self, trial: Trial, update: TrialUpdate) -> None:
        """Apply a new config and/or another trial's checkpoint before a paused trial resumes."""
        store = self.store.trial(trial.trial_id)
        if update.checkpoint_from is not None:
            source = self.store.get(update.checkpoint_from)
            if source is None or source.latest_checkpoint is None:
                # Nothing to copy: a new config on top of the trial's own weights would be
                # neither trial's lineage. As in Ray Tune, the exploit is skipped.
                self._warn_no_checkpoint(trial, update.checkpoint_from)
                return
            store.clone_checkpoint(source.latest_checkpoint)
            trial.checkpoint_path = store.latest_checkpoint[0]  # type: ignore[index]
        if update.new_config is not None:
            store.record_config_change(trial.last_result.get("training_iteration", 0),
                                       update.checkpoint_from, trial.config, update.new_config)
            trial.config = dict(update.new_config)
            policy_log = getattr(self.controller.scheduler, "policy_log", None)
            if callable(policy_log):  # PBT: the lineage that PopulationBasedTrainingReplay replays
                store.write_records({"pbt_policy.jsonl": policy_log(trial.trial_id)})

    def _warn_no_checkpoint(self, trial: Trial, source_id: str) -> None:
        if self._warned_no_checkpoint:
            return
        self._warned_no_checkpoint = True
        other = self.controller.trial(source_id)
        logger.warning(
            "%s wanted trial %s to continue from trial %s's checkpoint, but trial %s has "
            "reported none, so the trial keeps its own config. Report checkpoints "
            "(tune.report(..., checkpoint=...)) for it to copy.",
            type(self.controller.scheduler).__name__, trial, other, other)

    def _active_trials(self) -> int:
        return sum(1 for r in self._runs.values() if r.worker is not None)

    # -- messages ------------------------------------------------------------
    def _drain(self, timeout: float) -> None:
        try:
            item = self.backend.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(item)
        for _ in range(10_000):
            try:
                item = self.backend.inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: Message | RunDone) -> None:
        if isinstance(item, RunDone):
            run = self._runs.get(item.run_id)
            if run is not None:
                run.future_done = True
                self._maybe_finish(run)
            return
        run = self._runs.get(item.run)
        if run is None:
            return  # a late message of a run already finished
        if isinstance(item, ResultReported):
            run.worker = item.worker
            self._on_result(run, item)
        elif isinstance(item, RunStarted):
            run.worker = item.worker
            run.trial.status = TrialStatus.RUNNING
            self._notify("on_trial_start", run.trial)
            if run.requested:
                self.backend.deliver(run.worker, run.run_id, run.requested)
        elif isinstance(item, CheckpointStored):
            self._add_checkpoint(run, item.checkpoint, run.trial.last_result)
        elif isinstance(item, RunEnded):
            run.outcome = item.outcome
            self._maybe_finish(run)

    def _on_result(self, run: _Run, message: ResultReported) -> None:
        trial, result, store = run.trial, message.result, run.store
        run.results += 1
        if result["training_iteration"] <= store.recorded_through and run.requested is None:
            # A resumed trial re-trains iterations after an older checkpoint: they are
            # already on record, so they are neither recorded twice nor decided again.
            if message.wait:
                self.backend.deliver(message.worker, run.run_id, Decision.CONTINUE)
            return
        if message.checkpoint:
            self._add_checkpoint(run, message.checkpoint, result)
        try:
            if run.requested == Decision.STOP:
                decision = TrialDecision.STOP
            else:  # a trial asked to pause (by a TrialUpdate) still reports, and may be stopped
                decision = self.controller.on_result(trial, result)
                if run.requested == Decision.PAUSE and decision != TrialDecision.STOP:
                    decision = TrialDecision.PAUSE
        except BaseException:
            store.record(result)  # keep what was computed, then end the experiment
            raise
        if decision in _STOPPING:
            result["done"] = decision == TrialDecision.STOP
            store.record(result)
            self._request(run, _STOPPING[decision])
        else:
            store.record(result)
            if message.wait:
                self.backend.deliver(message.worker, run.run_id, Decision.CONTINUE)
        self.console.result(trial, result)
        self._notify("on_trial_result", trial, result)

    def _request(self, run: _Run, decision: Decision) -> None:
        if run.requested == decision:
            return
        run.requested = decision
        if run.worker is not None:
            self.backend.deliver(run.worker, run.run_id, decision)

    def _add_checkpoint(self, run: _Run, path: str, metrics: dict[str, Any]) -> None:
        run.store.add_checkpoint(path, metrics)
        run.trial.checkpoint_path = path

    # -- ending runs -------------------------------------------------------
    def _maybe_finish(self, run: _Run) -> None:
        if not run.future_done:
            return
        if run.outcome is None:
            status = self.backend.future_status(run.run_id)
            if status in ("error", "cancelled", "lost"):
                cause = self.backend.fetch_outcome(run.run_id) if status == "error" else None
                self._finish_lost(run, repr(cause) if cause else status)
            elif run.deadline is None:
                run.deadline = time.monotonic() + _LATE_EVENT_GRACE_S
            return
        if run.results < run.outcome.num_reports and run.deadline is None:
            run.deadline = time.monotonic() + _LATE_EVENT_GRACE_S
            return
        if run.results >= run.outcome.num_reports or time.monotonic() >= (run.deadline or 0):
            self._finish_outcome(run, run.outcome)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.deadline is None or now < run.deadline:
                continue
            if run.outcome is None:
                fetched = self.backend.fetch_outcome(run.run_id)
                if isinstance(fetched, BaseException):
                    self._finish_lost(run, repr(fetched))
                    continue
                run.outcome = fetched
            self._finish_outcome(run, run.outcome)

    def _finish_outcome(self, run: _Run, outcome: RunOutcome) -> None:
        if outcome.status == RunStatus.ERROR:
            run.exception = outcome.exception
            self._finish_run(run, RunStatus.ERROR, outcome.error, outcome.error_type)
        else:
            self._finish_run(run, outcome.status)

    def _finish_lost(self, run: _Run, status: str) -> None:
        if status == "cancelled" or run.requested == Decision.STOP:
            self._finish_run(run, RunStatus.STOPPED)
            return
        self._finish_run(
            run, RunStatus.ERROR,
            f"Trial {run.trial} ended without a result: its Dask task failed with {status}. Its "
            "worker process died while running it (out of memory, a crash in native code, or "
            "killed); Dask retries such a task on other workers a few times "
            "(distributed.scheduler.allowed-failures).\n", "WorkerLost")

    def _finish_run(self, run: _Run, status: RunStatus, error: str | None = None,
                    error_type: str | None = None) -> None:
        self._runs.pop(run.run_id, None)
        self.backend.release(run.run_id)
        trial, store = run.trial, run.store
        if status == RunStatus.PAUSED and run.requested == Decision.STOP:
            status = RunStatus.STOPPED  # a STOP sent while the run was pausing wins
        if status == RunStatus.PAUSED:
            for update in self.controller.on_paused(trial):
                self._prepare_resume(trial, update)
        elif status == RunStatus.ERROR:
            message = error or "unknown error"
            store.record_error(message, run.exception)
            if self.controller.on_error(trial, message):
                logger.warning("Trial %s failed (%s); retrying it (failure %d).",
                               trial, error_type, trial.num_failures)
                self._retry.append(trial)
            else:
                self._notify("on_trial_error", trial)
            self.console.error(trial, error_type or "error")
        else:
            self.controller.on_complete(trial)
            self._notify("on_trial_complete", trial)
        store.finish() if trial.status == TrialStatus.TERMINATED else store.close()

    # -- the record ----------------------------------------------------------
    def _maybe_write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._state_written < _STATE_INTERVAL_S:
            return
        self._state_written = now
        self.store.write_state(self.controller.trials, self.metric, self.mode)

    def _close(self) -> None:
        self.store.close()
        try:
            self._maybe_write_state(force=True)
        finally:
            self.backend.close()

    def result_grid(self) -> ResultGrid:
        return build_result_grid(self.controller.trials, self.store.trial, self.store.path,
                                 self.metric, self.mode)
