"""A run's own record of what it reported, written by the worker before it tells the driver.

Results travel to the driver as Dask events, which die with a killed worker (they
wait a few milliseconds in its send buffer) and are dropped while the driver's
connection is down.  So each run first appends every result, checkpoint and its
outcome to a spool file in the trial's directory, one unbuffered ``write`` per
line: a line on disk survives the worker's process.  The driver reads the spool
when a message is missing (a gap in the sequence numbers, a run that ended with
fewer results than it reported, a worker that died) and when an experiment is
restored after the driver itself died.

Creating the spool is also the run's claim: the file is created exclusively, so a
second attempt of the same run (Dask re-runs a task whose worker died) finds it
and does nothing, and the driver decides about retries, through FailureConfig.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dasktune.storage.files import to_json
from dasktune.storage.layout import spool_file_name


class RunAlreadyClaimed(Exception):
    """The run's spool exists: this is a second attempt of a run that already started."""


class SpoolWriter:
    """The worker's side: appends one JSON line per record, unbuffered."""

    def __init__(self, trial_dir: str, run_id: str) -> None:
        os.makedirs(trial_dir, exist_ok=True)
        self.path = os.path.join(trial_dir, spool_file_name(run_id))
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise RunAlreadyClaimed(self.path) from None

    def _write(self, record: dict[str, Any]) -> None:
        data = (to_json(record) + "\n").encode()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: never leave half a line behind
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_CUR) - written)
            raise OSError(f"could not write the run's spool {self.path} (disk full?)")

    def result(
        self, seq: int, result: dict[str, Any], checkpoint: str | None, wait: bool = False
    ) -> None:
        self._write({"seq": seq, "result": result, "checkpoint": checkpoint, "wait": wait})

    def checkpoint(self, path: str, iteration: int) -> None:
        self._write({"checkpoint_stored": path, "iteration": iteration})

    def end(self, outcome: dict[str, Any]) -> None:
        self._write({"end": {k: v for k, v in outcome.items() if k != "exception"}})

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class SpooledResult:
    """One ``tune.report`` as the run spooled it."""

    seq: int
    result: dict[str, Any]
    checkpoint: str | None
    wait: bool  # whether the run waited for a decision about it


@dataclass
class SpoolRecords:
    """What a reader found in a spool after ``offset``."""

    results: list[SpooledResult] = field(default_factory=list)
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    offset: int = 0


def read_spool(path: str, offset: int = 0) -> SpoolRecords:
    """The complete lines of the spool at ``path`` from byte ``offset`` on.

    A last line without its newline (the worker was writing it when it died) is
    left for a later read.  A spool that does not exist reads as empty.
    """
    records = SpoolRecords(offset=offset)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return records
    for line in _complete_lines(data):
        records.offset += len(line) + 1
        try:
            record = json.loads(line)
        except ValueError:  # cannot happen for a complete line; skip it rather than fail
            continue
        if "seq" in record:
            records.results.append(
                SpooledResult(
                    record["seq"],
                    record["result"],
                    record.get("checkpoint"),
                    record.get("wait", False),
                )
            )
        elif "checkpoint_stored" in record:
            records.checkpoints.append((record["checkpoint_stored"], record["iteration"]))
        elif "end" in record:
            records.end = record["end"]
    return records


def _complete_lines(data: bytes) -> Iterator[bytes]:
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        yield data[start:end]
        start = end + 1
