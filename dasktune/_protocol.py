"""The messages between a trial running on a worker and the driver's coordinator.

Worker to driver, as Dask events on the experiment's topic (``Worker.log_event``):
:class:`RunStarted`, :class:`ResultReported`, :class:`CheckpointStored`,
:class:`AwaitingDecision` and :class:`RunEnded`, one per event or several in
order as a batch (:func:`batch_message`, :func:`read_messages`).  Dask's events carry only
plain data (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``,
checked by exact type), so each message travels as a dict made by
:meth:`to_wire` and is read back with :func:`from_wire`.

Driver to worker: a :class:`Decision` for one run, delivered into the run's
mailbox on its worker (see :func:`dasktune.trainable.session.deliver`).

A run ends with a :class:`RunOutcome` (the Dask task's return value), whose
``status`` is a :class:`RunStatus`.

This module is a leaf: both sides import it, and it imports nothing of dasktune.
"""

from __future__ import annotations

import enum
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

#: A result key a callback sets (``result[SHOULD_CHECKPOINT] = True`` in ``on_trial_result``)
#: to have a class trainable save a checkpoint after its next step, as in Ray Tune.
SHOULD_CHECKPOINT = "should_checkpoint"
#: Keys of the tasks that run trials ("dasktune-<run id>"), of those that load a
#: trainable on each worker ahead of its trials, and of the never-placed tasks that keep
#: scattered values on every worker.
TASK_PREFIX = "dasktune-"
WARM_UP_PREFIX = "dasktune-warm-"
PARKED_PREFIX = "dasktune-parked-"


def is_trial_key(key: object) -> bool:
    """Whether a Dask task key is a trial's run (not a warm-up, not a user's task)."""
    text = str(key)
    return text.startswith(TASK_PREFIX) and not text.startswith((WARM_UP_PREFIX, PARKED_PREFIX))


class Decision(str, enum.Enum):
    """What the driver tells a running trial after one of its results."""

    CONTINUE = "CONTINUE"
    STOP = "STOP"
    PAUSE = "PAUSE"
    #: Not about the run's course: save a checkpoint after the next step (a class trainable;
    #: Ray Tune's ``result["should_checkpoint"] = True`` from a callback).
    CHECKPOINT = "CHECKPOINT"

    def __str__(self) -> str:
        return self.value


class RunStatus(str, enum.Enum):
    """How one run of a trial ended on its worker."""

    FINISHED = "finished"  # the trainable returned
    STOPPED = "stopped"  # a STOP ended it inside tune.report
    PAUSED = "paused"  # a PAUSE ended it, after its checkpoint was stored
    ERROR = "error"  # the trainable raised
    # It found its Dask task released (the driver's connection dropped, or the driver left)
    # and stopped itself: not a STOP the driver asked for.
    CANCELLED = "cancelled"
    # Dask ran the task a second time (its first worker died): this run was already
    # claimed, so the second attempt did nothing. The driver treats it as a lost worker.
    DUPLICATE = "duplicate"

    def __str__(self) -> str:
        return self.value


@dataclass
class RunOutcome:
    """How a trial run ended, returned as the Dask task's result."""

    run_id: str
    status: RunStatus
    num_reports: int
    iteration: int
    error: str | None = None
    error_type: str | None = None
    exception: bytes | None = None  # the trial's exception, pickled, if it could be

    def to_wire(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "num_reports": self.num_reports,
            "iteration": self.iteration,
            "error": self.error,
            "error_type": self.error_type,
            "exception": self.exception,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RunOutcome:
        return cls(**{**data, "status": RunStatus(data["status"])})


@dataclass
class RunStarted:
    """The run began on ``worker``."""

    run: str
    worker: str
    kind = "start"

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "run": self.run, "worker": self.worker}


@dataclass
class ResultReported:
    """One ``tune.report``: the ``seq``-th result of the run (from 1).

    ``wait`` says that the trial now waits for a :class:`Decision` about it.
    ``result`` and ``checkpoint`` (the stored checkpoint's path) are plain data.
    """

    run: str
    worker: str
    seq: int
    result: dict[str, Any]
    checkpoint: str | None
    wait: bool
    kind = "result"

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run": self.run,
            "worker": self.worker,
            "seq": self.seq,
            "result": self.result,
            "checkpoint": self.checkpoint,
            "wait": self.wait,
        }


@dataclass
class CheckpointStored:
    """A checkpoint of the run's last result was stored after that result was reported
    (a class trainable's checkpoint at its end or at a pause)."""

    run: str
    worker: str
    checkpoint: str
    iteration: int
    kind = "checkpoint"

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run": self.run,
            "worker": self.worker,
            "checkpoint": self.checkpoint,
            "iteration": self.iteration,
        }


@dataclass
class AwaitingDecision:
    """The run still waits for the decision about its ``seq``-th result: sent again
    while it waits, so that a decision (or the result) lost on the way is sent again."""

    run: str
    worker: str
    seq: int
    kind = "waiting"

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "run": self.run, "worker": self.worker, "seq": self.seq}


@dataclass
class RunEnded:
    """The run ended on its worker with ``outcome``."""

    run: str
    worker: str
    outcome: RunOutcome
    kind = "end"

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run": self.run,
            "worker": self.worker,
            "outcome": self.outcome.to_wire(),
        }


Message = RunStarted | ResultReported | CheckpointStored | AwaitingDecision | RunEnded

#: Marks a value that travels pickled because it is not plain data (a datetime, a user object).
_PICKLED = "__dasktune_pickled__"
#: Set on a message that :func:`plain` converted, so the driver looks for pickled values.
_CONVERTED = "converted"


def plain(value: Any, where: str = "the message") -> Any:
    """``value`` as the plain data that Dask's events carry, converting what is not.

    Dask checks types exactly, so subclasses convert too: numpy's and torch's
    scalars become ``int``/``float``/``bool``, arrays and tensors lists, tuples and
    sets lists, dict keys strings.  Anything else (a datetime, a Decimal, a user's
    object) travels pickled and is rebuilt on the driver by :func:`unplain`.

    Raises:
        TypeError: naming ``where`` the value sits, if it can be neither converted
            nor pickled.

    Example:
        >>> import numpy as np
        >>> plain({"acc": np.float64(0.5), 3: np.arange(2), "ok": np.bool_(True)})
        {'acc': 0.5, '3': [0, 1], 'ok': True}
    """
    kind = type(value)
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    if isinstance(value, Mapping):
        return {
            k if type(k) is str else str(k): plain(v, f"{where}[{k!r}]") for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float):  # np.float64 and other float subclasses
        return float(value)
    if isinstance(value, int):  # IntEnum and other int subclasses (bool is exact above)
        return int(value)
    if isinstance(value, str):  # np.str_, str enums (whose str() is their name)
        return str.__str__(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, torch tensors, pandas
    if callable(tolist):
        try:
            converted = tolist()
        except Exception:  # a tolist that is not numpy's: treat the value as an object
            converted = value
        if converted is not value:
            return plain(converted, where)
    if isinstance(value, bytes):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return {_PICKLED: cloudpickle.dumps(value)}
    except Exception as exc:
        raise TypeError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}, which can be neither sent to "
            f"the driver as plain data nor pickled ({type(exc).__name__}: {exc}). Report a "
            "number, a string, a list or a dict there instead (for example str(value))."
        ) from None


def unplain(value: Any) -> Any:
    """Rebuild the pickled values in what :func:`plain` made."""
    if isinstance(value, dict):
        if len(value) == 1 and _PICKLED in value:
            return cloudpickle.loads(value[_PICKLED])
        return {k: unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unplain(v) for v in value]
    return value


def plain_message(message: Message) -> dict[str, Any]:
    """``message`` as event data, converting values that Dask's events refuse."""
    data = plain(message.to_wire(), "tune.report's metrics")
    data[_CONVERTED] = True
    return data


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain data as Dask's events take it (exact types: see :func:`plain`)."""
    kind = type(value)
    if value is None or kind in (str, float, int, bool, bytes):
        return True
    if kind is dict:
        return all(type(k) is str and is_plain(v) for k, v in value.items())
    if kind is list:
        return all(is_plain(v) for v in value)
    return False


def batch_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several messages' wire data as one event (see :func:`read_messages`)."""
    return {"kind": "batch", "messages": messages}


def read_messages(data: dict[str, Any]) -> list[Message]:
    """The messages in one event's data: one, or a batch."""
    if data.get("kind") == "batch":
        return [from_wire(m) for m in data["messages"]]
    return [from_wire(data)]


def without_messages(data: dict[str, Any], drop: Any) -> dict[str, Any] | None:
    """An event's data without the messages (their wire data) for which ``drop`` is true;
    None if nothing is left.  For injecting lost messages in tests and benchmarks."""
    if data.get("kind") != "batch":
        return None if drop(data) else data
    kept = [m for m in data["messages"] if not drop(m)]
    return {**data, "messages": kept} if kept else None


def from_wire(data: dict[str, Any]) -> Message:
    """The message that :meth:`to_wire` (or :func:`plain_message`) turned into ``data``."""
    kind = data["kind"]
    if kind == "result":
        result = unplain(data["result"]) if data.get(_CONVERTED) else data["result"]
        return ResultReported(
            data["run"], data["worker"], data["seq"], result, data["checkpoint"], data["wait"]
        )
    if kind == "start":
        return RunStarted(data["run"], data["worker"])
    if kind == "checkpoint":
        return CheckpointStored(data["run"], data["worker"], data["checkpoint"], data["iteration"])
    if kind == "waiting":
        return AwaitingDecision(data["run"], data["worker"], data["seq"])
    if kind == "end":
        return RunEnded(data["run"], data["worker"], RunOutcome.from_wire(data["outcome"]))
    raise ValueError(f"Unknown trial message kind {kind!r}: {data!r}")
