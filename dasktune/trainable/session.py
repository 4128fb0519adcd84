"""What runs on a worker: the trial session behind ``tune.report`` and friends.

A session lives for one run of one trial on one worker.  ``report`` turns the
user's metrics into a result, publishes it to the driver without waiting, and
waits for the driver's decision only at a decision point (a rung of ASHA, a
stop threshold).  Decisions reach the worker through a mailbox in this
process (see :func:`deliver`), so checking for a STOP costs a dict lookup.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import functools
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dasktune._protocol import (
    AwaitingDecision,
    CheckpointStored,
    Decision,
    Message,
    ResultReported,
)
from dasktune.decision_points import DecisionPointTracker
from dasktune.storage.layout import checkpoint_dir_name
from dasktune.storage.spool import SpoolWriter
from dasktune.trainable.checkpoint import Checkpoint

CONTINUE, STOP, PAUSE = Decision.CONTINUE, Decision.STOP, Decision.PAUSE

_HOSTNAME = socket.gethostname()


@functools.lru_cache(maxsize=8)
def _node_ip(address: str) -> str:
    """``tcp://10.0.0.5:40123`` -> ``10.0.0.5``; ``127.0.0.1`` for no address."""
    host = urllib.parse.urlsplit(address).hostname if "://" in address else None
    return host or "127.0.0.1"


class StopTrial(BaseException):
    """Raised inside ``tune.report`` to end a trial the driver stopped.

    A BaseException so that a trainable's ``except Exception`` does not swallow it.
    """

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision)
        self.decision = decision


class TrialDone(StopTrial):
    """Raised inside ``tune.report`` after a result with ``done=True``: the trial has
    finished, as a class trainable's does when ``step`` returns ``done=True``."""

    def __init__(self) -> None:
        super().__init__(Decision.CONTINUE)


class DecisionTimeoutError(BaseException):
    """No decision reached a waiting trial within ``dasktune.decision-timeout``.

    A BaseException, like :class:`StopTrial`, so that the trainable cannot swallow it.
    """


class _Mailbox:
    """Decisions for one run of a trial, written by :func:`deliver`."""

    __slots__ = ("event", "decision", "continued", "checkpoint_wanted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.decision: Decision | None = None  # a STOP or PAUSE, once sent
        self.continued = 0  # the latest result (by sequence number) told to CONTINUE
        self.checkpoint_wanted = False  # a CHECKPOINT request not yet carried out

    def answered(self, seq: int) -> bool:
        """Whether the decision about result ``seq`` is here (a STOP or PAUSE answers all)."""
        return self.decision is not None or self.continued >= seq


_MAILBOXES: dict[str, _Mailbox] = {}
_MAILBOX_LOCK = threading.Lock()
# Runs that ended here recently: decisions that arrive late are dropped.
_CLOSED: collections.deque[str] = collections.deque(maxlen=4096)


def _mailbox(run_id: str) -> _Mailbox:
    with _MAILBOX_LOCK:
        box = _MAILBOXES.get(run_id)
        if box is None:
            box = _MAILBOXES[run_id] = _Mailbox()
        return box


def deliver(run_id: str, decision: Decision, seq: int = 0) -> None:
    """Hand ``decision`` to the trial run ``run_id`` in this worker process.

    Called on the worker by the driver (through ``Client.run``).  A CONTINUE
    answers the run's result number ``seq`` (and earlier ones); a STOP or PAUSE
    answers every result and sticks: a later CONTINUE cannot undo it.  The driver
    may send a decision twice (when the trial asks again); that is harmless.
    """
    if run_id in _CLOSED:
        return
    box = _mailbox(run_id)
    if decision == Decision.CHECKPOINT:  # answers nothing: the run saves after its next step
        box.checkpoint_wanted = True
        return
    if decision == CONTINUE:
        box.continued = max(box.continued, seq)
    elif box.decision is None or decision == STOP:  # a STOP overrides a PAUSE on its way
        box.decision = decision
    box.event.set()


@dataclass
class TrialContext:
    """What a trial knows about itself (``tune.get_context()``)."""

    trial_id: str
    trial_name: str
    trial_dir: str
    experiment_name: str
    experiment_path: str
    resources: dict[str, float] = field(default_factory=dict)

    def get_trial_id(self) -> str:
        return self.trial_id

    def get_trial_name(self) -> str:
        return self.trial_name

    def get_trial_dir(self) -> str:
        return self.trial_dir

    def get_experiment_name(self) -> str:
        return self.experiment_name

    def get_experiment_path(self) -> str:
        return self.experiment_path

    def get_trial_resources(self) -> TrialResources:
        """The resources the trial asked for (``{"CPU": 2}``), a dict that also answers
        as Ray's placement group factory does (``.bundles``, ``.required_resources``)."""
        return TrialResources(self.resources)


class TrialResources(dict):
    """A trial's resources: a dict, and Ray's ``PlacementGroupFactory`` names for it
    (one bundle: what a trial asks of a Dask worker).

    >>> resources = TrialResources({"CPU": 2.0})
    >>> resources.bundles, resources.required_resources, resources.head_cpus
    ([{'CPU': 2.0}], {'CPU': 2.0}, 2.0)
    """

    @property
    def bundles(self) -> list[dict[str, float]]:
        return [dict(self)]

    @property
    def required_resources(self) -> dict[str, float]:
        return dict(self)

    @property
    def head_cpus(self) -> float:
        return float(self.get("CPU", 1.0))

    @property
    def head_bundle_is_empty(self) -> bool:
        return False


@dataclass
class RunSpec:
    """Everything a worker needs to run one trial (sent with the task)."""

    run_id: str
    context: TrialContext
    config: dict[str, Any]
    topic: str
    decision_points: tuple[Any, ...]
    checkpoint_path: str | None = None
    start_iteration: int = 0
    start_time_total: float = 0.0
    checkpoint_index: int = 0
    decision_timeout: float = 3600.0
    decision_resend: float = 2.0  # how often a waiting trial asks again for its decision
    #: Run in the trial's directory: True, False, or None for Ray's default (yes, where the
    #: worker runs one trial at a time, since the working directory is the process's).
    chdir: bool | None = None
    #: (stdout, stderr) file names in the trial's directory for what the trial prints.
    log_files: tuple[str, str] | None = None


class Session:
    """The state of one trial run on a worker."""

    def __init__(
        self,
        spec: RunSpec,
        emit: Callable[[Message], None],
        cancelled: Callable[[], bool] = lambda: False,
        spool: SpoolWriter | None = None,
    ) -> None:
        self.spec = spec
        self.context = spec.context
        self._emit = emit
        self._spool = spool
        self._cancelled = cancelled
        self._tracker = DecisionPointTracker(tuple(spec.decision_points))
        self._box = _mailbox(spec.run_id)
        self.iteration = spec.start_iteration
        self.checkpoint_index = spec.checkpoint_index
        self.checkpoint = Checkpoint(spec.checkpoint_path) if spec.checkpoint_path else None
        #: Written in ``with tune.checkpoint_dir():`` (Ray 1.x), for the next report to carry.
        self.pending_checkpoint: str | None = None
        self._start = time.time()
        self._last = self._start
        self._time_total_offset = spec.start_time_total
        self._ended: Decision | None = None  # the STOP or PAUSE that ended the trial's run
        self.num_reports = 0
        self.worker = ""  # the worker's address, set by the task that runs the session
        # Whether the run stopped because its Dask task was released (cancelled), rather
        # than because the driver sent a STOP: the driver tells the two apart.
        self.task_released = False

    # -- reporting -------------------------------------------------------
    @property
    def node_ip(self) -> str:
        """The host of the worker's address (Ray Tune's ``node_ip``), else this machine's."""
        return _node_ip(self.worker)

    def report(self, metrics: Any, checkpoint: Checkpoint | None = None) -> Decision:
        """Publish one result; return the decision (CONTINUE unless stopped)."""
        if not isinstance(metrics, dict):
            raise TypeError(
                f"tune.report(metrics={metrics!r}): metrics must be a dict such as "
                "{'mean_accuracy': 0.9}, or given as keywords: tune.report(mean_accuracy=0.9)."
            )
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"tune.report(checkpoint={checkpoint!r}): expected a dasktune Checkpoint; "
                "make one with tune.Checkpoint.from_directory(path)."
            )
        if self._ended is not None:  # a trainable that caught StopTrial and reports on
            return self._ended
        now = time.time()
        self.iteration += 1
        result = dict(metrics)
        result.update(
            training_iteration=self.iteration,
            time_this_iter_s=now - self._last,
            time_total_s=self._time_total_offset + (now - self._start),
            time_since_restore=now - self._start,
            iterations_since_restore=self.iteration - self.spec.start_iteration,
            timestamp=int(now),
            trial_id=self.context.trial_id,
            done=False,
            pid=os.getpid(),
            hostname=_HOSTNAME,
            node_ip=self.node_ip,
            date=datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d_%H-%M-%S"),
        )
        self._last = now
        checkpoint_path = self._persist(checkpoint) if checkpoint is not None else None
        # A trial already told to stop or pause has nothing to wait for. The event is cleared
        # before the decision is read: a STOP delivered in between must not be erased.
        wait = self._tracker.needs_decision(result)
        if wait:
            self._box.event.clear()
            wait = self._box.decision is None
        self.num_reports += 1
        seq = self.num_reports
        if self._spool is not None:  # on disk before the driver hears of it: never lost
            self._spool.result(seq, result, checkpoint_path, wait)
        self._emit(
            ResultReported(self.spec.run_id, self.worker, seq, result, checkpoint_path, wait)
        )
        if wait:
            self._wait_for_decision(seq)
            decision = self._box.decision or CONTINUE
        else:
            decision = self.pending_decision() or CONTINUE
        if decision != CONTINUE:
            self._ended = decision
        return decision

    def _wait_for_decision(self, seq: int) -> None:
        """Wait for the decision about result ``seq``; ask again while none comes.

        Asking again makes a lost result or a lost decision cost seconds, not the
        whole ``decision-timeout``, after which the run fails (and FailureConfig
        decides whether it is retried) rather than passing for stopped.
        """
        start = time.monotonic()
        ask_again = start + self.spec.decision_resend
        while not self._box.answered(seq):
            self._box.event.wait(0.5)
            self._box.event.clear()
            if self._box.answered(seq):
                return
            if self._cancelled():
                self.task_released = True
                self._box.decision = STOP
                return
            now = time.monotonic()
            if now - start > self.spec.decision_timeout:
                raise DecisionTimeoutError(
                    f"Trial {self.context.trial_name} waited {self.spec.decision_timeout:g} s "
                    f"(dasktune.decision-timeout) for the driver's decision about its result "
                    f"{seq} and got none: the driver is gone or cannot reach this worker."
                )
            if now >= ask_again:
                ask_again = now + self.spec.decision_resend
                self._emit(AwaitingDecision(self.spec.run_id, self.worker, seq))

    def _persist(self, checkpoint: Checkpoint) -> str:
        """Copy a checkpoint into the trial directory; return the stored path.

        The copy is made under a temporary name and renamed into place, so a
        checkpoint directory is never half written (a worker killed mid-copy
        leaves only the temporary), and never written over: if another run of
        the trial (one the driver lost touch with) took the name, the next is used.
        """
        while True:
            target = os.path.join(
                self.context.trial_dir, checkpoint_dir_name(self.checkpoint_index)
            )
            self.checkpoint_index += 1
            if os.path.abspath(checkpoint.path) == os.path.abspath(target):
                break  # the trainable saved straight into its place
            partial = f"{target}.partial-{self.spec.run_id}"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint.path, partial)
            try:
                os.rename(partial, target)
                break
            except OSError:  # the name is taken by a checkpoint of another run
                shutil.rmtree(partial, ignore_errors=True)
                if not os.path.isdir(target):
                    raise
        if checkpoint._temporary:  # Checkpoint.from_dict's own directory: stored now
            shutil.rmtree(checkpoint.path, ignore_errors=True)
        self.checkpoint = Checkpoint(target)
        return target

    def attach_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint of the last reported result (class trainables' checkpoint_at_end)."""
        path = self._persist(checkpoint)
        if self._spool is not None:
            self._spool.checkpoint(path, self.iteration)
        self._emit(CheckpointStored(self.spec.run_id, self.worker, path, self.iteration))

    def take_checkpoint_request(self) -> bool:
        """Whether the driver asked for a checkpoint since the last call (Ray Tune's
        ``result["should_checkpoint"]``, set by a callback)."""
        wanted, self._box.checkpoint_wanted = self._box.checkpoint_wanted, False
        return wanted

    def pending_decision(self) -> Decision | None:
        """A STOP or PAUSE sent without a decision point, or a cancelled future."""
        decision = self._box.decision
        if decision in (STOP, PAUSE):
            return decision
        if self._cancelled():
            self.task_released = True
            return STOP
        return None

    def close(self) -> None:
        if self.pending_checkpoint is not None:  # written after the last report: no result
            shutil.rmtree(self.pending_checkpoint, ignore_errors=True)
            self.pending_checkpoint = None
        with _MAILBOX_LOCK:
            _MAILBOXES.pop(self.spec.run_id, None)
            _CLOSED.append(self.spec.run_id)


_local = threading.local()
# Every session running in this process, whichever thread runs its trial.
_RUNNING: list[Session] = []


def _current() -> Session | None:
    """This thread's trial; from a helper thread of a trial, the process's only trial.

    Ray Tune's session belongs to the process, so ported code may report from a
    thread it started. A worker with several threads runs several trials at
    once; a helper thread there cannot tell which one is its own.
    """
    session = getattr(_local, "session", None)
    if session is None and len(_RUNNING) == 1:
        return _RUNNING[0]
    return session


def set_session(session: Session | None) -> None:
    with _MAILBOX_LOCK:
        previous = getattr(_local, "session", None)
        if previous is not None and previous in _RUNNING:
            _RUNNING.remove(previous)
        if session is not None:
            _RUNNING.append(session)
    _local.session = session


def _require(name: str) -> Session:
    session = _current()
    if session is None:
        raise RuntimeError(
            f"tune.{name}() was called outside a dasktune trial. Call it inside the "
            "trainable function that you pass to tune.Tuner(...)."
        )
    return session


def report(
    metrics: dict[str, Any] | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    **kwargs: Any,
) -> None:
    """Report metrics (and optionally a checkpoint) for the current iteration.

    Returns at once unless a scheduler or stopper may act on this result; then
    it waits for the decision.  If the trial is stopped, ``report`` ends the
    trainable (it raises an exception that dasktune catches), so no iteration
    runs past the result that stopped it.

    Ray Tune's older form works too: ``tune.report(mean_loss=0.1, accuracy=0.9)``
    (keywords, merged into ``metrics`` when both are given).  As in Ray, a result with
    ``"done": True`` is the trial's last: ``report`` records it and ends the trial.
    """
    session = _require("report")
    if kwargs:
        if metrics is None:
            metrics = kwargs
        elif isinstance(metrics, dict):
            metrics = {**metrics, **kwargs}
    done = False
    if isinstance(metrics, dict) and "done" in metrics:
        metrics = dict(metrics)
        done = bool(metrics.pop("done"))
    if checkpoint is None and session.pending_checkpoint is not None:
        checkpoint = Checkpoint(session.pending_checkpoint)
        checkpoint._temporary = True  # moved into the trial when stored
        session.pending_checkpoint = None
    decision = session.report(metrics, checkpoint)
    if decision != CONTINUE:
        raise StopTrial(decision)
    if done:
        raise TrialDone()


@contextlib.contextmanager
def checkpoint_dir(step: Any = None) -> Iterator[str]:
    """Ray Tune 1.x's checkpoints: write the trial's state into the directory this yields;
    the next ``tune.report`` stores it as the trial's checkpoint (``step`` is accepted
    and not needed).  A function ``train(config, checkpoint_dir=None)`` gets the
    directory of the checkpoint to resume from as ``checkpoint_dir``.

    Example (Ray 1.x's shape, which runs as it is)::

        def train(config, checkpoint_dir=None):
            start = 0
            if checkpoint_dir:
                with open(os.path.join(checkpoint_dir, "step")) as f:
                    start = int(f.read()) + 1
            for step in range(start, 10):
                with tune.checkpoint_dir(step=step) as directory:
                    with open(os.path.join(directory, "step"), "w") as f:
                        f.write(str(step))
                tune.report(loss=1 / (step + 1))

    New code reports ``checkpoint=tune.Checkpoint.from_directory(path)`` instead.
    """
    session = _require("checkpoint_dir")
    if session.pending_checkpoint is not None:  # two in a row: the newer one counts
        shutil.rmtree(session.pending_checkpoint, ignore_errors=True)
        session.pending_checkpoint = None
    path = tempfile.mkdtemp(prefix="dasktune-checkpoint-")
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    session.pending_checkpoint = path


def get_checkpoint() -> Checkpoint | None:
    """The trial's latest checkpoint: the one to resume from after a failure or
    pause, or the last one reported in this run; None if there is none."""
    session = _current()
    return session.checkpoint if session is not None else None


def get_context() -> TrialContext:
    """Facts about the running trial: id, name, directory, experiment path."""
    return _require("get_context").context
