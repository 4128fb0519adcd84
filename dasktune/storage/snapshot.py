"""Snapshots of the searcher's and the scheduler's state, for resuming an experiment.

Schedulers keep :class:`~dasktune.trial.Trial` objects in their state and compare
them by identity, so a snapshot stores each trial as a reference to its id and a
restore puts the restored experiment's own Trial objects back in its place.

A snapshot taken every few seconds replaces its file atomically (:func:`save`).
The searcher's is taken each time trials are drawn, thousands of times in a large
experiment, and creating and renaming a file each time cost more than the rest of
a trial's bookkeeping; so it goes to a :class:`SnapshotLog`: each snapshot is
appended as one record (magic, length, CRC-32, pickle), and a reader takes the last
whole record.  The log starts afresh (atomically) when it is opened and when it
grows large.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from typing import Any

import cloudpickle

from dasktune.storage.files import StorageError, atomic_write
from dasktune.trial import Trial

_MAGIC = b"DTSNAP01"
_HEADER = struct.Struct("<8sQI")  # magic, length of the pickle, its CRC-32
#: A log larger than this (and than a few of its records) starts afresh.
_COMPACT_BYTES = 4 * 2**20


class _Pickler(cloudpickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:  # pickle's hook
        if isinstance(obj, Trial):
            return ("dasktune-trial", obj.trial_id)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, trial: Callable[[str], Trial]) -> None:
        super().__init__(io.BytesIO(data))
        self._trial = trial

    def persistent_load(self, pid: Any) -> Any:  # pickle's hook
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
    """The snapshot in ``path``: the last whole record of a :class:`SnapshotLog`, or the
    one pickle that :func:`save` (or an older dasktune) wrote."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_MAGIC):
        return loads(data, trial)
    last = None
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, offset)
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
            break  # a record cut short when the driver died: the one before counts
        last = body
        offset += _HEADER.size + length
    if last is None:
        raise pickle.UnpicklingError(f"{path} holds no whole snapshot")
    return loads(last, trial)


class SnapshotLog:
    """Appends snapshots to one file, one write each; :func:`load` reads the last."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._size = 0

    def save(self, value: Any) -> None:
        body = dumps(value)
        record = _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body
        if self._fd < 0 or self._size > max(_COMPACT_BYTES, 8 * len(record)):
            self._start_afresh(record)
            return
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(28, "No space left on device (a partial write)")
        except OSError as exc:
            os.ftruncate(self._fd, self._size)  # the last whole record stays the last
            raise StorageError(self.path, exc) from exc
        self._size += len(record)

    def _start_afresh(self, record: bytes) -> None:
        """Replace the file, atomically, with one record; then append to it."""
        self.close()
        atomic_write(self.path, record)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise StorageError(self.path, exc) from exc
        self._size = len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
