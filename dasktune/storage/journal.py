"""The experiment journal: an append-only record of every state change, for resuming.

One JSON line per change, written (and flushed to the operating system) in one
write per turn of the loop, and before anything that depends on it (a trial's first
run, a checkpoint's deletion), so that a driver killed at any moment leaves a
journal that says which trials exist, their configs, statuses and checkpoints; a
status it had not written yet only makes a restore run that trial on.  Paths are relative to the
experiment directory, so a moved directory still restores.  A last line cut short
by the kill is ignored.  The file is also the experiment directory's claim: it is
created exclusively, so two drivers never share one directory.

Records (``"event"`` names the kind)::

    experiment  name, trainable, metric, mode, trial_id_prefix      (the first line)
    resumed     when                                               (each restore)
    trial       id, index, name, dir, config                       (a new trial)
    status      id, status, failures, error                        (ended, paused, to run again)
    checkpoint  id, path, metrics  /  checkpoint_deleted  id, path
    config      id, config                                         (a scheduler changed it)
    end         status ("finished", "interrupted" or "failed"), reason

Results themselves are in each trial's result.json; what a run reported that the
driver never recorded is in the run's spool (see :mod:`dasktune.storage.spool`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dasktune.storage.files import to_json
from dasktune.storage.layout import JOURNAL_FILE

logger = logging.getLogger(__name__)

#: How often the journal is forced to the disk (fsync); every line reaches the OS at once.
_SYNC_INTERVAL_S = 1.0


class ExperimentDirTaken(FileExistsError):
    """Another experiment already claimed the directory."""


class Journal:
    """Appends records to ``<experiment>/journal.jsonl``."""

    def __init__(self, experiment_path: str, claim: bool) -> None:
        """Open the journal: claim a new directory (``claim=True``), or append to it (resume)."""
        self.path = os.path.join(experiment_path, JOURNAL_FILE)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        if claim:
            flags |= os.O_EXCL
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise ExperimentDirTaken(experiment_path) from None
        self._pending: list[str] = []  # records not yet written (see flush)
        self._dirty = False
        self._synced = time.monotonic()

    def write(self, event: str, **fields: Any) -> None:
        """Add a record; it reaches the file with the next :meth:`flush`."""
        self._pending.append(to_json({"event": event, **fields}) + "\n")

    def flush(self) -> None:
        """Write the pending records in one write: whole lines, or none of them."""
        if not self._pending or self._fd < 0:
            return
        data = "".join(self._pending).encode()
        self._pending = []
        position = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(28, "No space left on device (a partial write)")
        except OSError:
            os.ftruncate(self._fd, position)  # never leave half a line
            raise
        self._dirty = True

    def sync(self, force: bool = False) -> None:
        """Write what is pending and force the journal to the disk, at most every second
        unless ``force``."""
        self.flush()
        if not self._dirty or self._fd < 0:
            return
        now = time.monotonic()
        if force or now - self._synced >= _SYNC_INTERVAL_S:
            os.fsync(self._fd)
            self._dirty = False
            self._synced = now

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.sync(force=True)
            finally:
                os.close(self._fd)
                self._fd = -1


def read_journal(experiment_path: str) -> list[dict[str, Any]]:
    """The journal's records; a last line cut short (the driver died writing it) is left out."""
    path = os.path.join(experiment_path, JOURNAL_FILE)
    with open(path, "rb") as f:
        data = f.read()
    records = []
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if data.endswith(b"\n") or data.rstrip(b"\n").split(b"\n")[-1] != line:
                raise ValueError(f"{path}: line {number + 1} is not a JSON record") from None
            logger.info("Ignoring the last line of %s, cut short when it was written.", path)
    return records


@dataclass
class JournaledTrial:
    """One trial as the journal describes it."""

    trial_id: str
    index: int
    dir: str  # relative to the experiment directory
    config: dict[str, Any]
    status: str = "PENDING"
    failures: int = 0
    error: str | None = None
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # relative
    name: str = ""


@dataclass
class JournaledExperiment:
    """The experiment as its journal describes it."""

    name: str
    trainable: str
    metric: Any
    mode: Any
    trial_id_prefix: str
    trials: dict[str, JournaledTrial]
    end: dict[str, Any] | None  # the last "end" record, if the experiment ended

    @property
    def finished(self) -> bool:
        return self.end is not None and self.end.get("status") == "finished"


def load_journal(experiment_path: str) -> JournaledExperiment:
    """Fold the journal's records into the experiment's trials as they were last."""
    records = read_journal(experiment_path)
    if not records or records[0].get("event") != "experiment":
        raise ValueError(
            f"{os.path.join(experiment_path, JOURNAL_FILE)} does not start with "
            "an experiment record: it is not a dasktune journal."
        )
    head = records[0]
    trials: dict[str, JournaledTrial] = {}
    end = None
    for record in records[1:]:
        event = record.get("event")
        if event == "trial":
            trials[record["id"]] = JournaledTrial(
                record["id"],
                record["index"],
                record["dir"],
                record["config"],
                name=record.get("name", ""),
            )
            continue
        if event == "end":
            end = record
            continue
        if event == "resumed":
            end = None
            continue
        trial = trials.get(record.get("id", ""))
        if trial is None:
            continue
        if event == "status":
            trial.status = record["status"]
            trial.failures = record.get("failures", trial.failures)
            trial.error = record.get("error", trial.error)
        elif event == "checkpoint":
            trial.checkpoints.append((record["path"], record["metrics"]))
        elif event == "checkpoint_deleted":
            trial.checkpoints = [c for c in trial.checkpoints if c[0] != record["path"]]
        elif event == "config":
            trial.config = record["config"]
    return JournaledExperiment(
        head["name"],
        head.get("trainable", ""),
        head.get("metric"),
        head.get("mode"),
        head["trial_id_prefix"],
        trials,
        end,
    )


def relative(experiment_path: str, path: str) -> str:
    """``path`` relative to the experiment directory (as the journal keeps paths)."""
    return os.path.relpath(path, experiment_path)


def iter_trial_dirs(experiment: JournaledExperiment) -> Iterator[JournaledTrial]:
    return iter(sorted(experiment.trials.values(), key=lambda t: t.index))
