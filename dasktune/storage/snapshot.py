"""Snapshots of the searcher's and the scheduler's state, for resuming an experiment.

Schedulers keep :class:`~dasktune.trial.Trial` objects in their state and compare
them by identity, so a snapshot stores each trial as a reference to its id and a
restore puts the restored experiment's own Trial objects back in its place.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle

from dasktune.storage.files import atomic_write
from dasktune.trial import Trial


class _Pickler(cloudpickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:  # noqa: D102 - pickle's hook
        if isinstance(obj, Trial):
            return ("dasktune-trial", obj.trial_id)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, trial: Callable[[str], Trial]) -> None:
        super().__init__(io.BytesIO(data))
        self._trial = trial

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle's hook
        kind, trial_id = pid
        if kind != "dasktune-trial":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._trial(trial_id)


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def loads(data: bytes, trial: Callable[[str], Trial]) -> Any:
    """Unpickle ``data``, with ``trial(trial_id)`` giving the Trial for each reference."""
    return _Unpickler(data, trial).load()


def save(path: str, value: Any) -> None:
    """Write a snapshot atomically: a reader finds the previous one or this one, whole."""
    atomic_write(path, dumps(value))


def load(path: str, trial: Callable[[str], Trial]) -> Any:
    with open(path, "rb") as f:
        return loads(f.read(), trial)
