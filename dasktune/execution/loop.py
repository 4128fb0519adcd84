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
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dasktune import config
from dasktune._protocol import (
    SHOULD_CHECKPOINT,
    AwaitingDecision,
    CheckpointStored,
    Decision,
    Message,
    ResultReported,
    RunEnded,
    RunOutcome,
    RunStarted,
    RunStatus,
    read_messages,
)
from dasktune.callback import CallbackList
from dasktune.execution._dask import FRESH_WORKERS_S, DaskBackend, RunDone
from dasktune.execution.capacity import Capacity
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller
from dasktune.execution.resume import scheduler_state, search_state
from dasktune.result import ResultGrid, build_result_grid
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.storage.experiment import ExperimentStore, TrialStore
from dasktune.storage.layout import spool_file_name
from dasktune.storage.spool import read_spool
from dasktune.trainable.session import RunSpec, TrialContext
from dasktune.trial import Trial, TrialStatus

logger = logging.getLogger(__name__)

#: How long a STOP or PAUSE waits for its trial's next result before it is sent again.
_RESEND_REQUEST_S = 1.0
#: How often the loop looks at the cluster's workers to size its queue of trial runs.
_CAPACITY_REFRESH_S = 1.0
#: Seconds disconnected between attempts to restart a Dask client's stalled reconnection.
_RECONNECT_NUDGE_S = 5.0
#: How often the experiment state file is written, at least...
_STATE_INTERVAL_S = 5.0
#: ...and at most once per this many times what writing it took (a large experiment's).
_STATE_COST_FACTOR = 50

_STOPPING = {TrialDecision.STOP: Decision.STOP, TrialDecision.PAUSE: Decision.PAUSE}


@dataclass
class _Run:
    """One submitted run of a trial (a trial has several after failures or pauses)."""

    run_id: str
    trial: Trial
    store: TrialStore
    spool: str  # the run's spool file (storage/spool.py)
    worker: str | None = None
    outcome: RunOutcome | None = None
    exception: bytes | None = None
    processed: int = 0  # results handled, by sequence number: 1..processed
    spool_offset: int = 0  # how far the spool has been read
    checkpoints_seen: set[str] = field(default_factory=set)
    requested: Decision | None = None  # STOP or PAUSE sent to it
    requested_sent: float = 0.0  # when it was last sent
    cancelled_by_us: bool = False  # cancelled before it started (the experiment stopped)
    wound_down: bool = False  # stopped because the whole experiment stopped
    lost: tuple[str, str] | None = None  # lost while the connection was down: (type, why)
    from_checkpoint: bool = False  # it started from a checkpoint


@dataclass
class ExperimentSpec:
    """What the loop needs to run trials, besides the controller."""

    trainable: Any
    params: dict[str, Any]
    trainable_name: str
    #: ``trainable`` pickled when the Tuner was made (None: pickle it now).
    trainable_pickle: bytes | None = None
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False
    #: TuneConfig's ``f(trial) -> str`` for trial names and directory names, if given.
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    #: Run each trial in its directory (None: as Ray Tune does, where workers run one trial
    #: at a time), and RunConfig(log_to_file)'s (stdout, stderr) file names.
    chdir_to_trial_dir: bool | None = None
    log_files: tuple[str, str] | None = None
    #: What each trial asked for (``with_resources``; one CPU if it asked nothing, as in
    #: Ray), for ``get_context().get_trial_resources()``; None: the request Dask uses.
    trial_resources: dict[str, float] | None = None


class ExperimentLoop:
    """Runs one experiment to its end and returns its ResultGrid."""

    def __init__(
        self,
        backend: DaskBackend,
        controller: Controller,
        spec: ExperimentSpec,
        store: ExperimentStore,
        capacity: Capacity,
        callbacks: CallbackList,
        console: ConsoleReporter,
        metric: Any,
        mode: Any,
        resume: list[Trial] | None = None,
    ) -> None:
        self.backend = backend
        self.controller = controller
        self.spec = spec
        self.store = store
        self.capacity = capacity
        self.callbacks = callbacks
        self.console = console
        self.metric, self.mode = metric, mode
        self._runs: dict[str, _Run] = {}
        self._retry: list[Trial] = list(resume or [])  # trials to run (again) first
        self._interrupted: str | None = None  # why the experiment was cut short, if it was
        self._signal: int | None = None  # the SIGTERM or SIGUSR1 that stopped it
        self._points = controller.decision_points()
        # Short runs may be queued further ahead where drawing trials early changes nothing.
        self.capacity.queue_ahead = controller.may_draw_ahead
        self._capacity_checked = 0.0
        self._warned_no_checkpoint = False
        self._trainable_ref: Any = None
        self._param_refs: dict[str, Any] = {}
        self._state_written = 0.0
        self._state_interval = _STATE_INTERVAL_S
        self._idle_limit = float(config.get("searcher-idle-timeout"))
        self._decision_timeout = float(config.get("decision-timeout"))
        self._decision_resend = float(config.get("decision-resend"))
        self._stop_grace = float(config.get("stop-grace"))
        self._reconnect_timeout = float(config.get("reconnect-timeout"))
        self._disconnected_since: float | None = None
        self._reconnect_nudged = 0.0
        self._turn = 0  # loop turns, the "iteration" callbacks receive

    # -- the loop ----------------------------------------------------------
    def run(self) -> ResultGrid:
        """Run the experiment; on an error, Ctrl-C or SIGTERM stop it, save it, and raise.

        Whatever ends it, every result so far is on disk and in the ResultGrid (on the
        exception as ``result_grid``), the journal says how it ended, callbacks hear
        ``on_experiment_end``, and the cluster is left without a running trial.
        """
        failure: BaseException | None = None
        with _StopSignals(self._on_signal):
            try:
                self._prepare()
                self._loop()
            except BaseException as exc:  # a user error or Ctrl-C: stop, save, then raise
                failure = exc
                self._interrupted = f"{type(exc).__name__}: {exc}"
                self.controller.stop_everything(self._interrupted)
                self._wind_down()
            finally:
                self._close(failure)
                self.callbacks.on_experiment_end(self.controller.trials)
        grid = self.result_grid()
        if failure is None and self._signal is not None:
            failure = ExperimentInterrupted(self._signal, self.store.path)
            logger.warning("%s", failure)  # the exit is quiet otherwise (SystemExit)
        if failure is not None:
            failure.result_grid = grid  # type: ignore[attr-defined]
            raise failure
        self.console.summary(self.controller.trials)
        return grid

    def _on_signal(self, signum: int) -> None:
        """SIGTERM or SIGUSR1 (a batch system's walltime or preemption): wind down like a
        first Ctrl-C; :class:`_StopSignals` makes a second one end the process at once."""
        self._signal = signum
        self._interrupted = f"received {signal.Signals(signum).name}"
        self.controller.stop_everything(self._interrupted)

    def _prepare(self) -> None:
        self._refresh_capacity(force=True, max_age=FRESH_WORKERS_S)
        self._trainable_ref = self.backend.ship(self.spec.trainable, self.spec.trainable_pickle)
        self._param_refs = {k: self.backend.scatter(v) for k, v in self.spec.params.items()}
        self.backend.warm_up(self._trainable_ref, self._param_refs)
        self.backend.start()
        self.controller.start()
        self.console.start()

    def _refresh_capacity(self, force: bool = False, max_age: float = 0.0) -> None:
        now = time.monotonic()
        if not force and now - self._capacity_checked < _CAPACITY_REFRESH_S:
            return
        self._capacity_checked = now
        self._check_connection(now)
        if self._disconnected_since is not None:
            return  # asking the scheduler would block until Dask's connect timeout
        try:
            workers = self.backend.workers(max_age=max_age)
        except Exception as exc:  # a slow or restarting scheduler: keep the last size
            logger.debug("Could not read the cluster's workers: %r", exc)
            return
        self._check_workers_alive(workers)
        self.capacity.update(workers)

    def _check_connection(self, now: float) -> None:
        """A Dask client whose connection dropped and never came back would wait for ever."""
        if self.backend.connected():
            self._disconnected_since = None
            for run in [r for r in self._runs.values() if r.lost is not None]:
                self._lose(run, *run.lost)  # type: ignore[misc]
            return
        if self._disconnected_since is None:
            self._disconnected_since = now
            self._reconnect_nudged = now
        elif now - self._reconnect_nudged > _RECONNECT_NUDGE_S:
            self._reconnect_nudged = now
            if self.backend.restart_stalled_reconnection():
                logger.info("The Dask client stopped reconnecting to the scheduler; trying again.")
        if now - self._disconnected_since > self._reconnect_timeout:
            raise ConnectionError(
                f"The driver lost its connection to the Dask scheduler and it did not come back "
                f"within dasktune.reconnect-timeout = {self._reconnect_timeout:g} s. The "
                f"experiment stopped and is saved in {self.store.path}: continue it with "
                "Tuner.restore(path, trainable) once the scheduler can be reached."
            )

    def _notify(self, hook: str, *args: Any) -> None:
        if self._interrupted is None:
            self.callbacks.notify(hook, self._turn, self.controller.trials, *args)
            return
        try:  # winding down after an error: a callback's own failure must not cut it short
            self.callbacks.notify(hook, self._turn, self.controller.trials, *args)
        except Exception as exc:
            logger.warning("A callback's %s failed while the experiment stopped: %r", hook, exc)

    def _loop(self) -> None:
        self.callbacks.setup(experiment_path=self.store.path)
        while True:
            self._turn += 1
            self._notify("on_step_begin")
            self.controller.check_budget()
            if self.controller.stopping:
                self._wind_down()
                return
            self._apply_updates()
            self.store.pinned = self.controller.clone_sources()
            self._refresh_capacity()
            self._launch()
            if self.controller.is_done(len(self._runs)):
                return
            self.controller.check_stalled(len(self._runs), self._idle_limit)
            self.controller.check_stuck(len(self._runs), self._idle_limit)
            self._drain(timeout=0.5)
            self.backend.flush()
            self.console.update(self.controller, self._active_trials())
            self._maybe_write_state()
            self.store.sync()
            self._notify("on_step_end")

    def _wind_down(self) -> None:
        """Stop every run, and wait (``dasktune.stop-grace`` at most) until they have ended.

        Dask cannot interrupt a running task, so a trial stops at its next report.  One that
        does not report within the grace period (a hung data loader) is ended by restarting
        its worker process, so that the cluster is healthy for the next experiment.
        """
        for run in list(self._runs.values()):
            run.wound_down = run.requested != Decision.STOP
            self._request(run, Decision.STOP)
            if run.worker is None:
                run.cancelled_by_us = True
                self.backend.cancel(run.run_id)
        deadline = time.monotonic() + self._stop_grace
        while self._runs and time.monotonic() < deadline:
            self._drain(timeout=0.2)
        hung = list(self._runs.values())
        if not hung:
            return
        workers = sorted({run.worker for run in hung if run.worker is not None})
        restarted = bool(workers) and self.backend.restart_workers(workers)
        for run in hung:
            self._recover(run)
            if run.outcome is not None:
                self._maybe_finish(run)
                continue
            if self._interrupted is not None and run.wound_down:
                self._finish_run(run, RunStatus.STOPPED)  # resumable, like the others
                continue
            self._finish_run(
                run,
                RunStatus.ERROR,
                f"StopTimeout: Trial {run.trial} did not stop within dasktune.stop-grace = "
                f"{self._stop_grace:g} s after the experiment stopped it: it did not reach "
                "tune.report (a hung data loader, an endless loop?). "
                + (
                    "Its worker process was restarted to end it.\n"
                    if restarted
                    else "Its worker could not be restarted, so it may still run there.\n"
                ),
                "StopTimeout",
            )

    # -- launching ---------------------------------------------------------
    def _launch(self) -> None:
        """Submit runs up to the queue's limit: retries first, then paused trials the
        scheduler resumes, then new trials from the searcher.

        The journal is written before the runs are submitted: no run writes files
        for a trial that the journal does not know.
        """
        again: list[RunSpec] = []  # retries and paused trials
        new: list[RunSpec] = []
        # Behind a deep queue of new trials, runs again start first, as the order here says.
        first = 1 if self.capacity.deep else 0
        try:
            self._gather_runs(again, new)
            if again or new:
                self.store.flush()
            for specs, priority in ((again, first), (new, 0)):
                self.backend.submit_many(
                    specs,
                    self._trainable_ref,
                    self._param_refs,
                    (self.spec.checkpoint_frequency, self.spec.checkpoint_at_end),
                    self.capacity.request,
                    priority=priority,
                )
                specs.clear()
        finally:
            for spec in again + new:  # not submitted (an error on the way): not in flight
                self._runs.pop(spec.run_id, None)

    def _gather_runs(self, again: list[RunSpec], fresh: list[RunSpec]) -> None:
        room = self.capacity.queue_limit - len(self._runs)
        while len(again) < room and self._retry:
            again.append(self._prepare_run(self._retry.pop(0)))
        while len(again) < room:
            trial = self.controller.paused_to_resume()
            if trial is None:
                break
            again.append(self._prepare_run(trial))
        room -= len(again)
        if room < self.capacity.refill_at and len(self._runs) >= self.capacity.slots:
            return  # a deep queue of short runs is refilled in batches; its workers are busy
        finished = self.controller.search_finished
        new = self.controller.new_trials(room)
        if new or finished != self.controller.search_finished:
            first_index = len(self.controller.trials) - len(new)
            drawn = [(t.trial_id, i, t.config) for i, t in enumerate(new, start=first_index)]
            # Saved before the trials are journaled: a resumed searcher knows every trial.
            self.store.save_search_state(
                search_state(self.controller.searcher, self.controller.search_finished, drawn)
            )
            for index, trial in enumerate(new, start=first_index):
                self._add_trial(trial, index)
                fresh.append(self._prepare_run(trial))

    def _add_trial(self, trial: Trial, index: int) -> None:
        """Name a new trial and give it its place in storage."""
        trial.trainable_name = self.spec.trainable_name
        trial.trial_name, trial.local_path = self.store.name_trial(index)
        if self.spec.trial_dirname_creator is not None:
            trial.local_path = self.store.custom_trial_dir(
                _created_name(self.spec.trial_dirname_creator, trial, "trial_dirname_creator")
            )
            trial.trial_name = os.path.basename(trial.local_path)
        if self.spec.trial_name_creator is not None:
            trial.trial_name = _created_name(
                self.spec.trial_name_creator, trial, "trial_name_creator"
            )
        self.store.add_trial(trial, index)

    def _prepare_run(self, trial: Trial) -> RunSpec:
        """Make the trial's next run (submitted by the caller) and count it as in flight."""
        store = self.store.trial(trial.trial_id)
        store.runs += 1
        run_id = f"{trial.trial_id}-{store.runs}"
        latest = store.latest_checkpoint
        resume_from = latest[1] if latest else {}
        spec = RunSpec(
            run_id=run_id,
            context=TrialContext(
                trial_id=trial.trial_id,
                trial_name=trial.trial_name,
                trial_dir=trial.local_path,
                experiment_name=self.store.name,
                experiment_path=self.store.path,
                resources=dict(
                    self.spec.trial_resources
                    if self.spec.trial_resources is not None
                    else self.capacity.request
                ),
            ),
            config=trial.config,
            topic=self.backend.topic,
            decision_points=self._points,
            checkpoint_path=latest[0] if latest else None,
            start_iteration=int(resume_from.get("training_iteration", 0)),
            start_time_total=float(resume_from.get("time_total_s", 0.0)),
            checkpoint_index=store.next_checkpoint_index,
            decision_timeout=self._decision_timeout,
            decision_resend=self._decision_resend,
            chdir=self.spec.chdir_to_trial_dir,
            log_files=self.spec.log_files,
        )
        trial.status = TrialStatus.PENDING
        self._runs[run_id] = _Run(
            run_id,
            trial,
            store,
            os.path.join(trial.local_path, spool_file_name(run_id)),
            from_checkpoint=latest is not None,
        )
        return spec

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
                self.store.trial_status(trial)
                self.store.trial(trial.trial_id).finish()
                self._notify("on_trial_complete", trial)
            elif update.decision == TrialDecision.CONTINUE:
                self._prepare_resume(trial, update)

    def _prepare_resume(self, trial: Trial, update: TrialUpdate) -> None:
        """Apply a new config and/or another trial's checkpoint before a paused trial resumes."""
        store = self.store.trial(trial.trial_id)
        if update.checkpoint_from is not None:
            source = self.store.get(update.checkpoint_from)
            entry = source.checkpoint_at(update.checkpoint_iteration) if source else None
            if entry is None:
                # Nothing to copy: a new config on top of the trial's own weights would be
                # neither trial's lineage. As in Ray Tune, the exploit is skipped.
                self._warn_no_checkpoint(trial, update.checkpoint_from)
                return
            store.clone_checkpoint(entry)
            trial.checkpoint_path = store.latest_checkpoint[0]  # type: ignore[index]
        if update.new_config is not None:
            store.record_config_change(
                trial.last_result.get("training_iteration", 0),
                update.checkpoint_from,
                trial.config,
                update.new_config,
            )
            trial.config = dict(update.new_config)
            store.write_records(self.controller.scheduler.trial_records(trial.trial_id))

    def _warn_no_checkpoint(self, trial: Trial, source_id: str) -> None:
        if self._warned_no_checkpoint:
            return
        self._warned_no_checkpoint = True
        other = self.controller.trial(source_id)
        logger.warning(
            "%s wanted trial %s to continue from trial %s's checkpoint, but trial %s has "
            "reported none, so the trial keeps its own config. Report checkpoints "
            "(tune.report(..., checkpoint=...)) for it to copy.",
            type(self.controller.scheduler).__name__,
            trial,
            other,
            other,
        )

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

    def _handle(self, item: dict[str, Any] | Message | RunDone) -> None:
        if isinstance(item, RunDone):
            run = self._runs.get(item.run_id)
            if run is not None:
                self._on_future_done(run)
            return
        if isinstance(item, dict):  # an event's data: one message or a batch of them
            for message in read_messages(item):
                self._handle(message)
            return
        run = self._runs.get(item.run)
        if run is None:
            return  # a late message of a run already finished
        if isinstance(item, ResultReported):
            run.worker = item.worker
            self._receive(run, item.seq, item.result, item.checkpoint, item.wait)
        elif isinstance(item, RunStarted):
            run.worker = item.worker
            run.trial.status = TrialStatus.RUNNING
            self._notify("on_trial_start", run.trial)
            if run.from_checkpoint:
                self._notify("on_trial_restore", run.trial)
            if run.requested:
                self._send_request(run)
        elif isinstance(item, CheckpointStored):
            self._add_checkpoint(run, item.checkpoint, run.trial.last_result)
        elif isinstance(item, AwaitingDecision):
            run.worker = item.worker
            if item.seq > run.processed:  # the result itself was lost on the way
                self._recover(run)
            if item.seq <= run.processed:
                self._answer(run, item.seq)
        elif isinstance(item, RunEnded):
            if run.outcome is None:
                run.outcome = item.outcome
            self._maybe_finish(run)

    def _receive(
        self, run: _Run, seq: int, result: dict[str, Any], checkpoint: str | None, wait: bool
    ) -> None:
        """Handle the run's result number ``seq``, exactly once and in order."""
        if seq <= run.processed:  # already handled (read from the spool): answer again
            if wait:
                self._answer(run, seq)
            return
        if seq > run.processed + 1:  # results before it were lost on the way: read them back
            self._recover(run)
            if seq <= run.processed:
                if wait:
                    self._answer(run, seq)
                return
        run.processed = seq
        self._on_result(run, seq, result, checkpoint, wait)

    def _recover(self, run: _Run) -> None:
        """Handle what the run spooled but the driver has not heard (see storage/spool.py)."""
        records = read_spool(run.spool, run.spool_offset)
        run.spool_offset = records.offset
        for spooled in records.results:
            if spooled.seq == run.processed + 1:
                run.processed = spooled.seq
                self._on_result(
                    run,
                    spooled.seq,
                    spooled.result,
                    spooled.checkpoint,
                    spooled.wait and run.worker is not None,
                )
        for path, _ in records.checkpoints:
            self._add_checkpoint(run, path, run.trial.last_result)
        if records.end is not None and run.outcome is None:
            run.outcome = RunOutcome.from_wire(records.end)

    def _on_result(
        self, run: _Run, seq: int, result: dict[str, Any], checkpoint: str | None, wait: bool
    ) -> None:
        trial, store = run.trial, run.store
        if result["training_iteration"] <= store.recorded_through and run.requested is None:
            # A resumed trial re-trains iterations after an older checkpoint: they are
            # already on record, so they are neither recorded twice nor decided again.
            if wait:
                self._answer(run, seq)
            return
        # The trial's config, as Ray Tune adds it to every result (callbacks, stoppers and
        # analyses read result["config"]); not sent by the trial, which would pay for it
        # in every message.
        result.setdefault("config", dict(trial.config))
        if checkpoint:
            self._add_checkpoint(run, checkpoint, result)
        try:
            if run.requested == Decision.STOP:
                decision = TrialDecision.STOP
                self.controller.note_result(trial, result)
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
            if wait:
                self._answer(run, seq)
            elif run.requested and time.monotonic() - run.requested_sent > _RESEND_REQUEST_S:
                self._send_request(run)  # it reports on, so the request may have been lost
        self.console.result(trial, result)
        self._notify("on_trial_result", trial, result)
        if result.get(SHOULD_CHECKPOINT) and run.worker is not None and not run.requested:
            # A callback asked for a checkpoint (Ray Tune's way): after the run's next step.
            self.backend.deliver(run.worker, run.run_id, Decision.CHECKPOINT)

    def _answer(self, run: _Run, seq: int) -> None:
        """Tell the run, waiting at its result ``seq``, what to do."""
        if run.worker is not None:
            self.backend.deliver(run.worker, run.run_id, run.requested or Decision.CONTINUE, seq)

    def _request(self, run: _Run, decision: Decision) -> None:
        if run.requested == decision or run.requested == Decision.STOP:
            return
        run.requested = decision
        self._send_request(run)

    def _send_request(self, run: _Run) -> None:
        if run.worker is not None and run.requested is not None:
            run.requested_sent = time.monotonic()
            self.backend.deliver(run.worker, run.run_id, run.requested)

    def _add_checkpoint(self, run: _Run, path: str, metrics: dict[str, Any]) -> None:
        if path in run.checkpoints_seen:
            return  # heard both as a message and from the spool
        run.checkpoints_seen.add(path)
        run.store.add_checkpoint(path, metrics)
        run.trial.checkpoint_path = path
        self._notify("on_trial_save", run.trial)

    # -- ending runs -------------------------------------------------------
    def _on_future_done(self, run: _Run) -> None:
        """The run's Dask future completed: with the run's outcome, or lost."""
        status = self.backend.future_status(run.run_id)
        if status == "finished":
            if run.outcome is None:  # its 'end' message is still on its way, or was lost
                self._recover(run)
            if run.outcome is None:
                fetched = self.backend.fetch_outcome(run.run_id)
                if isinstance(fetched, RunOutcome):
                    run.outcome = fetched
            if run.outcome is not None:
                self._maybe_finish(run)
                return
        if run.cancelled_by_us or (
            run.outcome is not None
            and run.outcome.status == RunStatus.CANCELLED
            and run.requested == Decision.STOP
        ):
            self._finish_run(run, RunStatus.STOPPED)
        elif status == "cancelled":
            self.backend.resubscribe()  # a reconnected client may have lost its subscription
            self._lose(
                run,
                "ConnectionLost",
                "the driver's connection to the Dask scheduler "
                "dropped, and Dask cancelled its tasks",
            )
        elif not self.backend.connected():
            self._lose(
                run, "ConnectionLost", "the driver's connection to the Dask scheduler dropped"
            )
        else:
            cause = self.backend.fetch_outcome(run.run_id)
            self._lose(run, "WorkerLost", f"its Dask task failed with {cause!r}")

    def _maybe_finish(self, run: _Run) -> None:
        """End the run once every result it reported has been handled."""
        outcome = run.outcome
        assert outcome is not None
        if outcome.status == RunStatus.DUPLICATE:
            # Dask ran the task again after its worker died; the claim made it do nothing.
            self._lose(run, "WorkerLost", "its worker process died while running it")
            return
        if outcome.status == RunStatus.CANCELLED:
            # It saw its Dask task released and stopped itself: as asked, or after a drop.
            if not run.cancelled_by_us and run.requested != Decision.STOP:
                self._lose(
                    run,
                    "ConnectionLost",
                    "Dask released its task (the driver's connection to the scheduler dropped)",
                )
                return
            outcome.status = RunStatus.STOPPED
        if run.processed < outcome.num_reports:
            self._recover(run)
        if run.processed < outcome.num_reports:
            self._finish_run(
                run,
                RunStatus.ERROR,
                f"Trial {run.trial} reported {outcome.num_reports} results in its run "
                f"{run.run_id}, but only {run.processed} reached the driver and its spool "
                f"{run.spool} holds no more: the storage path may not be shared between the "
                "workers and the driver.\n",
                "ResultsLost",
            )
        elif outcome.status == RunStatus.ERROR:
            run.exception = outcome.exception or self._exception_of(run)
            self._finish_run(run, RunStatus.ERROR, outcome.error, outcome.error_type)
        else:
            self._finish_run(run, outcome.status)

    def _exception_of(self, run: _Run) -> bytes | None:
        """The trial's pickled exception, which travels with the future's result."""
        fetched = self.backend.fetch_outcome(run.run_id)
        return fetched.exception if isinstance(fetched, RunOutcome) else None

    def _lose(self, run: _Run, error_type: str, why: str) -> None:
        """The run is gone without an outcome: keep what it spooled, then fail or stop it.

        While the connection to the scheduler is down, the run waits: once it is back
        the run fails (and FailureConfig may retry it); if it never comes back the
        experiment stops, saved, with the trial still to run (see _check_connection).
        """
        if not self.backend.connected():
            run.lost = (error_type, why)
            return
        self._recover(run)
        # DUPLICATE: Dask ran the task again after the worker died; CANCELLED: it saw its task
        # released.  Neither is how the run itself ended.
        ended = run.outcome is not None and run.outcome.status not in (
            RunStatus.DUPLICATE,
            RunStatus.CANCELLED,
        )
        if self._interrupted is not None and not ended:
            # The experiment is stopping (a SIGTERM to the whole job kills workers too):
            # the trial was cut short, not failed, and a restore runs it on (unless its
            # scheduler had stopped it before).
            run.wound_down = run.wound_down or run.requested != Decision.STOP
            self.backend.cancel(run.run_id)
            self._finish_run(run, RunStatus.STOPPED)
            return
        self.backend.cancel(run.run_id)  # no silent re-run by Dask behind dasktune's back
        if run.worker is not None:  # it may still run (a dropped connection): stop it there
            self.backend.deliver(run.worker, run.run_id, Decision.STOP)
        if ended:
            self._maybe_finish(run)  # it had ended after all; its outcome was in its spool
        elif run.requested == Decision.STOP:
            self._finish_run(run, RunStatus.STOPPED)
        else:
            self._finish_run(
                run,
                RunStatus.ERROR,
                f"{error_type}: Trial {run.trial} lost its run {run.run_id} after "
                f"{run.processed} results: "
                f"{why}. Its results so far are recorded; FailureConfig(max_failures=...) "
                "decides whether it is retried from its latest checkpoint.\n",
                error_type,
            )

    def _check_workers_alive(self, workers: Any) -> None:
        """Runs whose worker left the cluster are lost (noticed within a capacity refresh)."""
        for run in list(self._runs.values()):
            if run.worker is not None and run.worker not in workers and run.outcome is None:
                self._lose(
                    run,
                    "WorkerLost",
                    f"its worker {run.worker} left the cluster: the "
                    "worker process died or was killed, or its batch job ended",
                )

    def _finish_run(
        self, run: _Run, status: RunStatus, error: str | None = None, error_type: str | None = None
    ) -> None:
        self._runs.pop(run.run_id, None)
        self.backend.release(run.run_id)
        trial, store = run.trial, run.store
        if run.processed and isinstance(trial.last_result.get("time_since_restore"), float):
            self.capacity.note_run(trial.last_result["time_since_restore"])
        if status == RunStatus.PAUSED and run.requested == Decision.STOP:
            status = RunStatus.STOPPED  # a STOP sent while the run was pausing wins
        message = None
        if status == RunStatus.STOPPED and run.wound_down and self._interrupted is not None:
            # Cut short by Ctrl-C, a signal or an error: not finished, so a restored
            # experiment runs it on from its latest checkpoint.
            trial.status = TrialStatus.PENDING
        elif status == RunStatus.PAUSED:
            for update in self.controller.on_paused(trial):
                self._prepare_resume(trial, update)
        elif status == RunStatus.ERROR:
            message = error or "unknown error"
            store.record_error(message, run.exception)
            if self.controller.on_error(trial, message):
                logger.warning(
                    "Trial %s failed (%s); retrying it (failure %d).",
                    trial,
                    error_type,
                    trial.num_failures,
                )
                self._retry.append(trial)
            else:
                self._notify("on_trial_error", trial)
                self.console.error(trial, error_type or "error", message)
        else:
            self.controller.on_complete(trial)
            self._notify("on_trial_complete", trial)
        self.store.trial_status(trial, message)
        store.finish() if trial.status == TrialStatus.TERMINATED else store.close()

    # -- the record ----------------------------------------------------------
    def _maybe_write_state(self, force: bool = False) -> None:
        """Write experiment_state.json and the scheduler's snapshot, every few seconds.

        Both hold every trial, so their cost grows with the experiment: the interval
        grows with it, so that they never take more than a few percent of the driver.
        """
        now = time.monotonic()
        if not force and now - self._state_written < self._state_interval:
            return
        self.store.write_state(self.controller.trials, self.metric, self.mode)
        self._save_scheduler_state()
        done = time.monotonic()
        self._state_written = done
        self._state_interval = max(_STATE_INTERVAL_S, _STATE_COST_FACTOR * (done - now))

    def _save_scheduler_state(self) -> None:
        self.store.save_scheduler_state(
            scheduler_state(
                self.controller.scheduler, self.controller.stopper, self.controller.trials
            )
        )

    def _close(self, failure: BaseException | None) -> None:
        """Save the state, say in the journal how the experiment ended, release the cluster."""
        try:
            self._maybe_write_state(force=True)
            self.store.write_records(self.controller.scheduler.experiment_records())
            if self._interrupted is None:
                self.store.end("finished", self.controller.stop_reason)
            else:
                self.store.end("interrupted", self._interrupted)
        except Exception as exc:  # a full disk: the first error is the one that counts
            logger.debug("Could not save the experiment's state at its end: %r", exc)
        finally:
            self.store.close()
            self.backend.close()

    def result_grid(self) -> ResultGrid:
        return build_result_grid(
            self.controller.trials, self.store.get, self.store.path, self.metric, self.mode
        )


def _created_name(creator: Any, trial: Trial, argument: str) -> str:
    """What TuneConfig's name creator returned for ``trial``, checked."""
    name = creator(trial)
    if not isinstance(name, str) or not name.strip():
        raise TypeError(
            f"TuneConfig({argument}={getattr(creator, '__name__', creator)!s}) returned "
            f"{name!r} for trial {trial.trial_id}; it must return a non-empty string."
        )
    return name


class ExperimentInterrupted(SystemExit):
    """The experiment was stopped by SIGTERM or SIGUSR1 and saved.

    A ``SystemExit`` with code 128 + the signal's number: a script that does not
    catch it exits quietly with the status a batch system reads as "killed by the
    signal", and requeues.  It carries ``result_grid`` like any error of ``fit``.
    """

    def __init__(self, signum: int, experiment_path: str) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.experiment_path = experiment_path

    def __str__(self) -> str:
        return (
            f"dasktune: stopped by {signal.Signals(self.signum).name}; the experiment is "
            f"saved in {self.experiment_path}. Continue it with Tuner.restore(path, "
            "trainable), or run the same script again with RunConfig(resume='auto')."
        )


class _StopSignals:
    """While the experiment runs: SIGTERM and SIGUSR1 call ``on_signal`` the first time
    and end the process at once the second time. Only in the main thread (the only one
    Python delivers signals to); the previous handlers come back afterwards."""

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
    )

    def __init__(self, on_signal: Any) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self._received = False

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self._received:  # a second signal: no more winding down
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._received = True
        self._on_signal(signum)

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
