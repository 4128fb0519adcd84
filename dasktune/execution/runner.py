"""The experiment loop: carries the controller's decisions out on the cluster.

It reads the backend's inbox (results published by trials, and their
futures completing), asks the pure :class:`Controller` what to do, records
every result in storage as it arrives, and sends decisions back to trials.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from dasktune import config
from dasktune._util import AUTO_RESULT_FIELDS, flatten
from dasktune._validation import is_finite_number
from dasktune.execution._dask import DaskBackend, trial_slots, usable_request
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller
from dasktune.result import Result, ResultGrid, TrialError
from dasktune.schedulers.trial_scheduler import TrialDecision
from dasktune.storage.experiment import (
    TrialRecorder,
    append_jsonl,
    copy_checkpoint,
    delete_checkpoint,
    trial_dir_name,
    write_experiment_state,
    write_jsonl,
)
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.session import CONTINUE, PAUSE, STOP, RunSpec, TrialContext
from dasktune.trial import Trial, TrialStatus

logger = logging.getLogger(__name__)

#: How long to wait for a run's last results after its future completed.
_LATE_EVENT_GRACE_S = 2.0
#: How long trials get to end after the experiment stops them.
_STOP_GRACE_S = 30.0
#: How often the runner looks at the cluster's workers to size its queue of trial runs.
_CAPACITY_REFRESH_S = 1.0


@dataclass
class CheckpointPolicy:
    """RunConfig's CheckpointConfig, as the runner applies it."""

    num_to_keep: int | None = None
    score_attribute: str | None = None
    score_order: str = "max"
    frequency: int = 0
    at_end: bool = False


@dataclass
class _Book:
    """The driver's files and checkpoints of one trial."""

    recorder: TrialRecorder
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    next_checkpoint_index: int = 0
    runs: int = 0
    # The last iteration on record of the trial's current lineage: a resumed run that trains
    # iterations again from an older checkpoint of its own does not record them twice.
    recorded_through: int = 0
    exception: bytes | None = None  # the last failure's exception, pickled


@dataclass
class _Run:
    """One submitted run of a trial (a trial has several after failures or pauses)."""

    run_id: str
    trial: Trial
    worker: str | None = None
    outcome: dict[str, Any] | None = None
    future_done: bool = False
    results: int = 0
    requested: str | None = None  # STOP or PAUSE sent to it
    deadline: float | None = None


@dataclass
class ExperimentSpec:
    """What the runner needs from the Tuner besides the controller."""

    trainable: Any
    params: dict[str, Any]
    resources: dict[str, float]
    experiment_name: str
    experiment_path: str
    metric: str | None
    mode: str | None
    checkpoint: CheckpointPolicy
    max_concurrent: int = 0
    callbacks: tuple[Any, ...] = ()
    # False while the cluster has had no worker to check ``resources`` against.
    resources_checked: bool = True
    # How long the cluster may have no worker at all; None: it scales itself, wait.
    worker_timeout: float | None = None


class ExperimentRunner:
    """Runs one experiment to its end and returns its ResultGrid."""

    def __init__(self, backend: DaskBackend, controller: Controller, spec: ExperimentSpec,
                 console: ConsoleReporter) -> None:
        self.backend = backend
        self.controller = controller
        self.spec = spec
        self.console = console
        self._books: dict[str, _Book] = {}
        self._runs: dict[str, _Run] = {}
        self._retry: list[Trial] = []
        self._points = controller.decision_points()
        self._capacity = 1
        self._capacity_checked = 0.0
        self._no_worker_since: float | None = None
        self._warned_no_checkpoint = False
        self._warned_unscored = False
        self._trainable_ref: Any = None
        self._param_refs: dict[str, Any] = {}
        self._state_written = 0.0
        self._idle_limit = float(config.get("searcher-idle-timeout"))
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
            for callback in self.spec.callbacks:
                callback.on_experiment_end(self.controller.trials)
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
        """Follow the cluster's size: workers join (from a batch queue, or by cluster.adapt)
        and leave while the experiment runs."""
        now = time.monotonic()
        if not force and now - self._capacity_checked < _CAPACITY_REFRESH_S:
            return
        self._capacity_checked = now
        try:
            workers = self.backend.workers()
        except Exception as exc:  # a slow or restarting scheduler: keep the last size
            logger.debug("Could not read the cluster's workers: %r", exc)
            return
        if workers:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        elif (self.spec.worker_timeout is not None
              and now - self._no_worker_since > self.spec.worker_timeout):
            raise RuntimeError(
                f"The Dask cluster has had no worker for dasktune.worker-timeout = "
                f"{self.spec.worker_timeout:g} s, so no trial can run. Start workers "
                "(cluster.scale(n), or `dask worker <scheduler address>`), let the cluster scale "
                "itself (cluster.adapt(maximum=n)), or, where workers take longer to start (a "
                "batch queue, an autoscaler dasktune cannot see), raise dasktune.worker-timeout "
                "in dask.config."
            )
        if not self.spec.resources_checked and workers:
            self.spec.resources = usable_request(workers, self.spec.resources)
            self.spec.resources_checked = True
        # With no worker yet, queued trials are what ask a self-scaling cluster to grow.
        self._capacity = self.spec.max_concurrent or max(1, trial_slots(workers, self.spec.resources))

    def _notify(self, hook: str, *args: Any) -> None:
        for callback in self.spec.callbacks:
            getattr(callback, hook)(self._turn, self.controller.trials, *args)

    def _loop(self) -> None:
        for callback in self.spec.callbacks:
            callback.setup(experiment_path=self.spec.experiment_path)
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
            self._request(run, STOP)
            if run.worker is None:
                self.backend.cancel(run.run_id)
        deadline = time.monotonic() + _STOP_GRACE_S
        while self._runs and time.monotonic() < deadline:
            self._drain(timeout=0.2)
            self._check_deadlines()
        for run in list(self._runs.values()):
            logger.warning("Trial %s did not stop within %.0f s; leaving it.", run.trial, _STOP_GRACE_S)
            self._finish_run(run, {"status": "stopped"})

    # -- launching ---------------------------------------------------------
    def _launch(self) -> None:
        # Queue up to one extra run per slot so a worker never idles between trials.
        limit = self._capacity if self.spec.max_concurrent else 2 * self._capacity
        room = limit - len(self._runs)
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
            self._submit(trial)

    def make_trial(self, trial_id: str, index: int, trial_config: dict[str, Any]) -> Trial:
        dirname = trial_dir_name(getattr(self.spec.trainable, "__name__", "trial"), index)
        trial = Trial(trial_id=trial_id, config=trial_config, trial_name=dirname,
                      local_path=os.path.join(self.spec.experiment_path, dirname))
        book = _Book(TrialRecorder(trial.local_path))
        book.recorder.write_params(trial_config)
        self._books[trial_id] = book
        return trial

    def _submit(self, trial: Trial) -> None:
        book = self._books[trial.trial_id]
        book.runs += 1
        run_id = f"{trial.trial_id}-{book.runs}"
        latest = book.checkpoints[-1] if book.checkpoints else None
        resume_from = latest[1] if latest else {}
        spec = RunSpec(
            run_id=run_id,
            context=TrialContext(
                trial_id=trial.trial_id, trial_name=trial.trial_name, trial_dir=trial.local_path,
                experiment_name=self.spec.experiment_name,
                experiment_path=self.spec.experiment_path, resources=dict(self.spec.resources),
            ),
            config=trial.config,
            topic=self.backend.topic,
            decision_points=self._points,
            checkpoint_path=latest[0] if latest else None,
            start_iteration=int(resume_from.get("training_iteration", 0)),
            start_time_total=float(resume_from.get("time_total_s", 0.0)),
            checkpoint_index=book.next_checkpoint_index,
            decision_timeout=float(config.get("decision-timeout")),
        )
        policy = self.spec.checkpoint
        self.backend.submit(spec, self._trainable_ref, self._param_refs,
                            (policy.frequency, policy.at_end), self.spec.resources)
        trial.status = TrialStatus.PENDING
        self._runs[run_id] = _Run(run_id, trial)

    def _run_of(self, trial: Trial) -> _Run | None:
        return next((r for r in self._runs.values() if r.trial is trial), None)

    def _apply_updates(self) -> None:
        """Carry out the scheduler's decisions about trials that are not reporting."""
        for trial, update in self.controller.take_updates(len(self._runs)):
            run = self._run_of(trial)
            if update.decision in (TrialDecision.STOP, TrialDecision.PAUSE) and run is not None:
                self._request(run, STOP if update.decision == TrialDecision.STOP else PAUSE)
            elif update.decision == TrialDecision.STOP and trial.status == TrialStatus.PAUSED:
                self.controller.end_paused(trial)
                self._books[trial.trial_id].recorder.finish()
                self._notify("on_trial_complete", trial)
            elif update.decision == TrialDecision.CONTINUE:
                self._prepare_resume(trial, update)

    def _prepare_resume(self, trial: Trial, update: Any) -> None:
        """Apply a new config and/or another trial's checkpoint before a paused trial resumes."""
        book = self._books[trial.trial_id]
        if update.checkpoint_from is not None:
            source = self._books.get(update.checkpoint_from)
            if source is None or not source.checkpoints:
                # Nothing to copy: a new config on top of the trial's own weights would be
                # neither trial's lineage. As in Ray Tune, the exploit is skipped.
                if not self._warned_no_checkpoint:
                    self._warned_no_checkpoint = True
                    other = self.controller.trial(update.checkpoint_from)
                    logger.warning(
                        "%s wanted trial %s to continue from trial %s's checkpoint, but trial "
                        "%s has reported none, so the trial keeps its own config. Report "
                        "checkpoints (tune.report(..., checkpoint=...)) for it to copy.",
                        type(self.controller.scheduler).__name__, trial, other, other)
                return
            target = os.path.join(trial.local_path, f"checkpoint_{book.next_checkpoint_index:06d}")
            path, metrics = source.checkpoints[-1]
            copy_checkpoint(path, target)
            # As in Ray Tune, the iteration count comes with the cloned checkpoint, and the
            # iterations after it are the new lineage's, recorded even if they step back.
            self._add_checkpoint(trial, target, dict(metrics))
            book.recorded_through = int(metrics.get("training_iteration", 0))
        if update.new_config is not None:
            append_jsonl(os.path.join(trial.local_path, "config_changes.jsonl"), {
                "training_iteration": trial.last_result.get("training_iteration", 0),
                "source_trial": update.checkpoint_from,
                "old_config": trial.config, "new_config": update.new_config,
            })
            trial.config = dict(update.new_config)
            policy_log = getattr(self.controller.scheduler, "policy_log", None)
            if callable(policy_log):  # PBT: the lineage that PopulationBasedTrainingReplay replays
                write_jsonl(os.path.join(trial.local_path, "pbt_policy.jsonl"),
                            policy_log(trial.trial_id))

    def _active_trials(self) -> int:
        return sum(1 for r in self._runs.values() if r.worker is not None)

    # -- events ------------------------------------------------------------
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

    def _handle(self, item: tuple[str, Any]) -> None:
        kind, payload = item
        if kind == "done":
            run = self._runs.get(payload)
            if run is not None:
                run.future_done = True
                self._maybe_finish(run)
            return
        run = self._runs.get(payload.get("run"))
        if run is None:
            return  # a late message of a run already finished
        what = payload["kind"]
        if what == "start":
            run.worker = payload["worker"]
            run.trial.status = TrialStatus.RUNNING
            self._notify("on_trial_start", run.trial)
            if run.requested:
                self.backend.deliver(run.worker, run.run_id, run.requested)
        elif what == "result":
            run.worker = payload["worker"]
            self._on_result(run, payload)
        elif what == "checkpoint":
            self._add_checkpoint(run.trial, payload["checkpoint"], run.trial.last_result)
        elif what == "end":
            run.outcome = payload["outcome"]
            self._maybe_finish(run)

    def _on_result(self, run: _Run, payload: dict[str, Any]) -> None:
        trial, result = run.trial, payload["result"]
        run.results += 1
        book = self._books[trial.trial_id]
        if result["training_iteration"] <= book.recorded_through and run.requested is None:
            # A resumed trial re-trains iterations after an older checkpoint: they are
            # already on record, so they are neither recorded twice nor decided again.
            if payload["wait"]:
                self.backend.deliver(run.worker, run.run_id, CONTINUE)  # type: ignore[arg-type]
            return
        if payload["checkpoint"]:
            self._add_checkpoint(trial, payload["checkpoint"], result)
        try:
            if run.requested == STOP:
                decision = TrialDecision.STOP
            else:  # a trial asked to pause (by a TrialUpdate) still reports, and may be stopped
                decision = self.controller.on_result(trial, result)
                if run.requested == PAUSE and decision != TrialDecision.STOP:
                    decision = TrialDecision.PAUSE
        except BaseException:
            self._record(book, result)  # keep what was computed, then end the experiment
            raise
        if decision in (TrialDecision.STOP, TrialDecision.PAUSE):
            result["done"] = decision == TrialDecision.STOP
            self._record(book, result)
            self._request(run, STOP if decision == TrialDecision.STOP else PAUSE)
        else:
            self._record(book, result)
            if payload["wait"]:
                self.backend.deliver(run.worker, run.run_id, CONTINUE)  # type: ignore[arg-type]
        self.console.result(trial, result)
        self._notify("on_trial_result", trial, result)

    @staticmethod
    def _record(book: _Book, result: dict[str, Any]) -> None:
        book.recorder.append(result)
        book.recorded_through = result["training_iteration"]

    def _request(self, run: _Run, decision: str) -> None:
        if run.requested == decision:
            return
        run.requested = decision
        if run.worker is not None:
            self.backend.deliver(run.worker, run.run_id, decision)

    def _add_checkpoint(self, trial: Trial, path: str, metrics: dict[str, Any]) -> None:
        book = self._books[trial.trial_id]
        book.checkpoints.append((path, dict(metrics)))
        book.next_checkpoint_index = max(
            book.next_checkpoint_index, int(os.path.basename(path).split("_")[-1]) + 1
        )
        trial.checkpoint_path = path
        self._apply_retention(book)

    def _apply_retention(self, book: _Book) -> None:
        keep = self.spec.checkpoint.num_to_keep
        if not keep or len(book.checkpoints) <= keep:
            return
        latest = book.checkpoints[-1]
        attr = self.spec.checkpoint.score_attribute
        if attr:
            sign = 1.0 if self.spec.checkpoint.score_order == "max" else -1.0

            def rank(position: int) -> tuple[float, int]:
                """Best first; a checkpoint without the score counts as the worst; ties: newest."""
                metrics = book.checkpoints[position][1]
                value = flatten(metrics).get(attr)
                if not is_finite_number(value):
                    self._warn_unscored(attr, metrics)
                    return float("-inf"), position
                return sign * float(value), position

            order = sorted(range(len(book.checkpoints)), key=rank, reverse=True)[:keep]
            kept = [book.checkpoints[i] for i in sorted(order)]
        else:
            kept = book.checkpoints[-keep:]
        if latest not in kept:
            kept.append(latest)  # always keep the newest, to resume from
        for entry in book.checkpoints:
            if entry not in kept:
                delete_checkpoint(entry[0])
        book.checkpoints = [c for c in book.checkpoints if c in kept]

    def _warn_unscored(self, attr: str, metrics: dict[str, Any]) -> None:
        if self._warned_unscored:
            return
        self._warned_unscored = True
        logger.warning(
            "CheckpointConfig(checkpoint_score_attribute=%r): a checkpoint's result has no "
            "number under that name, so it counts as the worst when checkpoints are pruned. "
            "Its result has: %s.", attr,
            ", ".join(sorted(k for k in flatten(metrics) if k not in AUTO_RESULT_FIELDS)))

    # -- ending runs -------------------------------------------------------
    def _maybe_finish(self, run: _Run) -> None:
        if not run.future_done:
            return
        if run.outcome is None:
            status = self.backend.future_status(run.run_id)
            if status in ("error", "cancelled", "lost"):
                cause = self.backend.fetch_outcome(run.run_id) if status == "error" else None
                self._finish_run(run, self._lost_outcome(run, repr(cause) if cause else status))
            elif run.deadline is None:
                run.deadline = time.monotonic() + _LATE_EVENT_GRACE_S
            return
        if run.results < run.outcome["num_reports"] and run.deadline is None:
            run.deadline = time.monotonic() + _LATE_EVENT_GRACE_S
            return
        if run.results >= run.outcome["num_reports"] or time.monotonic() >= (run.deadline or 0):
            self._finish_run(run, run.outcome)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.deadline is None or now < run.deadline:
                continue
            if run.outcome is None:
                fetched = self.backend.fetch_outcome(run.run_id)
                run.outcome = (fetched.__dict__ if not isinstance(fetched, BaseException)
                               else self._lost_outcome(run, repr(fetched)))
            self._finish_run(run, run.outcome)

    def _lost_outcome(self, run: _Run, status: str) -> dict[str, Any]:
        if status == "cancelled" or run.requested == STOP:
            return {"status": "stopped"}
        return {"status": "error", "error_type": "WorkerLost",
                "error": f"Trial {run.trial} ended without a result: its Dask task failed with "
                         f"{status}. Its worker process died while running it (out of memory, a "
                         "crash in native code, or killed); Dask retries such a task on other "
                         "workers a few times (distributed.scheduler.allowed-failures).\n"}

    def _finish_run(self, run: _Run, outcome: dict[str, Any]) -> None:
        self._runs.pop(run.run_id, None)
        self.backend.release(run.run_id)
        trial, status = run.trial, outcome["status"]
        if status == "paused" and run.requested == STOP:
            status = "stopped"  # a STOP sent while the run was pausing wins
        if status == "paused":
            for update in self.controller.on_paused(trial):
                self._prepare_resume(trial, update)
        elif status == "error":
            message = outcome.get("error") or "unknown error"
            self._books[trial.trial_id].recorder.write_error(message)
            self._books[trial.trial_id].exception = outcome.get("exception")
            if self.controller.on_error(trial, message):
                logger.warning("Trial %s failed (%s); retrying it (failure %d).",
                               trial, outcome.get("error_type"), trial.num_failures)
                self._retry.append(trial)
            else:
                self._notify("on_trial_error", trial)
            self.console.error(trial, outcome.get("error_type") or "error")
        else:
            self.controller.on_complete(trial)
            self._notify("on_trial_complete", trial)
        recorder = self._books[trial.trial_id].recorder
        recorder.finish() if trial.status == TrialStatus.TERMINATED else recorder.close()

    # -- the record ----------------------------------------------------------
    def _maybe_write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._state_written < 5.0:
            return
        self._state_written = now
        write_experiment_state(self.spec.experiment_path, {
            "name": self.spec.experiment_name,
            "metric": self.spec.metric,
            "mode": self.spec.mode,
            "trials": [
                {"trial_id": t.trial_id, "status": str(t.status), "dir": t.trial_name,
                 "config": t.config, "last_result": t.last_result,
                 "checkpoint": t.checkpoint_path, "num_failures": t.num_failures}
                for t in self.controller.trials
            ],
        })

    def _close(self) -> None:
        for book in self._books.values():
            book.recorder.close()
        try:
            self._maybe_write_state(force=True)
        finally:
            self.backend.close()

    def result_grid(self) -> ResultGrid:
        results = []
        for trial in self.controller.trials:
            book = self._books[trial.trial_id]
            results.append(Result(
                metrics=dict(trial.last_result),
                config=trial.config,
                path=trial.local_path,
                checkpoint=Checkpoint(book.checkpoints[-1][0]) if book.checkpoints else None,
                best_checkpoints=[(Checkpoint(p), m) for p, m in book.checkpoints],
                error=TrialError(trial.error_msg) if trial.status == TrialStatus.ERROR else None,
                _exception=book.exception if trial.status == TrialStatus.ERROR else None,
                status=str(trial.status),
                _rows=book.recorder.rows,
            ))
        return ResultGrid(results, self.spec.experiment_path, self.spec.metric, self.spec.mode)
