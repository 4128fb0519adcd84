"""Follow an experiment directory as it grows: the page's records, read from the files.

The driver appends to ``journal.jsonl`` and to each trial's ``result.json``;
the follower keeps an offset per file and reads only what was added since its
last poll, whole lines only, without locking anything, so it can watch an
experiment that another process is running.  Two details of the writer matter:

* when a trial finishes, the driver rewrites the last line of its
  ``result.json`` (to mark it ``done``), so the follower re-reads the last line
  it has seen before it goes on;
* a trial's status is journaled after its results, so in each poll the
  follower reads the results first and applies the journal's status records
  after them.

Where a run stopped or paused is read from the end record of the run's spool
(``.run-<run>.jsonl``, written by the worker), once the run is over.  The
scheduler's rungs come from ``scheduler_rungs.json``, which the driver's
:class:`~dasktune.dashboard.DashboardCallback` writes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dasktune._util import flatten, is_auto_field
from dasktune.dashboard._model import ExperimentModel, finished_status
from dasktune.storage.layout import JOURNAL_FILE, RESULT_FILE

__all__ = ["ExperimentFollower", "RUNGS_FILE", "numeric_metrics", "plain_config"]

#: Written by the driver's DashboardCallback when the scheduler has rungs.
RUNGS_FILE = "scheduler_rungs.json"
_SPOOL = re.compile(r"^\.run-(?P<trial>.+)-(?P<run>\d+)\.jsonl$")
_SPOOL_TAIL_BYTES = 64 * 1024


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a result reports (flattened), without the bookkeeping fields but time."""
    out = {}
    for key, value in flatten(result).items():
        if is_auto_field(key) and key not in ("time_total_s", "time_this_iter_s"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def plain_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config flattened to ``a/b`` keys with JSON scalars (anything else as its repr)."""
    return {
        key: value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
        for key, value in flatten(config).items()
    }


def result_record(trial_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "result",
        "id": trial_id,
        "iteration": float(result.get("training_iteration") or 0),
        "metrics": numeric_metrics(result),
        "time": result.get("timestamp"),
    }


@dataclass
class _Tail:
    """How far one JSON-lines file has been read."""

    path: str
    offset: int = 0  # the end of the last complete line read
    last_start: int = -1  # where that last line starts
    last_line: bytes = b""

    def read(self) -> Iterator[tuple[bytes, bool]]:
        """New complete lines, each with whether it replaces the last line seen."""
        try:
            with open(self.path, "rb") as f:
                if f.seek(0, os.SEEK_END) < self.last_start:  # rewritten from scratch
                    self.last_start, self.last_line, self.offset = -1, b"", 0
                start = max(self.last_start, 0)
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        lines = data[:end].split(b"\n")
        position = start
        for number, line in enumerate(lines):
            line_start, position = position, position + len(line) + 1
            if number == 0 and self.last_start >= 0:
                if line == self.last_line:
                    continue  # the line already seen, unchanged
                self._remember(line_start, line)
                yield line, True
                continue
            self._remember(line_start, line)
            yield line, False
        self.offset = position

    def _remember(self, start: int, line: bytes) -> None:
        self.last_start, self.last_line = start, line


@dataclass
class _FollowedTrial:
    trial_id: str
    dir: str
    results: _Tail
    status: str = "PENDING"
    done: bool = False  # finished, and read once more after that
    spools_read: set[str] = field(default_factory=set)


class ExperimentFollower:
    """Reads an experiment directory into an :class:`ExperimentModel`, poll by poll."""

    def __init__(
        self,
        path: str,
        model: ExperimentModel | None = None,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Fill ``model`` (a new one by default), or hand each record to ``sink`` instead."""
        self.path = os.path.abspath(path)
        self.model = model or ExperimentModel(os.path.basename(self.path), self.path)
        self._apply = sink or self.model.apply
        self._names: dict[str, str] = {}
        self._journal = _Tail(os.path.join(self.path, JOURNAL_FILE))
        self._trials: dict[str, _FollowedTrial] = {}
        self._rungs_mtime = 0.0

    def poll(self) -> int:
        """Read what was added since the last poll; return the model's version."""
        self._check_truncated()
        held: list[dict[str, Any]] = []
        for line, _ in self._journal.read():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short: the driver died writing it
            self._journal_record(record, held)
        for trial in self._trials.values():
            if not trial.done:
                self._read_results(trial)
        for record in held:
            self._apply(record)
            changed = self._trials.get(record.get("id", ""))
            if changed is not None and record.get("kind") == "status":
                self._status_changed(changed, record["status"])
        self._read_rungs()
        return self.model.version

    def _check_truncated(self) -> None:
        """A journal shorter than what was read is a new experiment in the same place."""
        try:
            size = os.path.getsize(self._journal.path)
        except OSError:
            return
        if size < self._journal.offset:
            self._journal = _Tail(self._journal.path)
            self._trials.clear()

    def _journal_record(self, record: dict[str, Any], held: list[dict[str, Any]]) -> None:
        event = record.get("event")
        if event == "experiment":
            self._apply(
                {
                    "kind": "experiment",
                    "name": record.get("name"),
                    "path": self.path,
                    "metric": record.get("metric"),
                    "mode": record.get("mode"),
                    "started": _mtime(os.path.join(self.path, "tuner.pkl")),
                }
            )
        elif event == "trial":
            trial_dir = os.path.join(self.path, record["dir"])
            self._trials[record["id"]] = _FollowedTrial(
                record["id"], trial_dir, _Tail(os.path.join(trial_dir, RESULT_FILE))
            )
            self._names[record["id"]] = os.path.basename(record["dir"])
            self._apply(
                {
                    "kind": "trial",
                    "id": record["id"],
                    "name": os.path.basename(record["dir"]),
                    "index": record["index"],
                    "config": plain_config(record["config"]),
                }
            )
        elif event == "config":
            self._apply(
                {
                    "kind": "trial",
                    "id": record["id"],
                    "name": self._names.get(record["id"], record["id"]),
                    "config": plain_config(record["config"]),
                }
            )
        elif event == "status":
            held.append({"kind": "status", "id": record["id"], "status": record["status"]})
        elif event == "end":
            held.append(
                {"kind": "end", "status": record.get("status"), "reason": record.get("reason")}
            )
        elif event == "resumed":  # after the end record it follows, which is held too
            held.append({"kind": "experiment"})

    def _read_results(self, trial: _FollowedTrial) -> None:
        for line, _ in trial.results.read():
            try:
                result = json.loads(line)
            except ValueError:
                continue
            self._apply(result_record(trial.trial_id, result))
        if finished_status(trial.status):
            trial.done = True

    def _status_changed(self, trial: _FollowedTrial, status: str) -> None:
        trial.status = status
        if status in ("PAUSED", "TERMINATED"):
            self._read_spools(trial)
        if finished_status(status):
            self._read_results(trial)  # the last line, rewritten as done

    def _read_spools(self, trial: _FollowedTrial) -> None:
        """Mark where each ended run of the trial was stopped or paused."""
        try:
            names = os.listdir(trial.dir)
        except OSError:
            return
        for name in sorted(names):
            match = _SPOOL.match(name)
            if match is None or match["trial"] != trial.trial_id or name in trial.spools_read:
                continue
            end = _spool_end(os.path.join(trial.dir, name))
            if end is None:
                continue
            trial.spools_read.add(name)
            status, iteration = end
            if status in ("stopped", "paused") and iteration is not None:
                self._apply(
                    {"kind": "mark", "id": trial.trial_id, "iteration": iteration, "what": status}
                )

    def _read_rungs(self) -> None:
        path = os.path.join(self.path, RUNGS_FILE)
        mtime = _mtime(path)
        if mtime is None or mtime == self._rungs_mtime:
            return
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return  # being replaced; the next poll reads it
        self._rungs_mtime = mtime
        self._apply({"kind": "rungs", **data})


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _spool_end(path: str) -> tuple[str, float | None] | None:
    """(how the run ended, the iteration of its last result), if the run has ended."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _SPOOL_TAIL_BYTES))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    end, iteration = None, None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if end is None and "end" in record:
            end = record["end"].get("status")
        elif "result" in record:
            iteration = record["result"].get("training_iteration")
            break
    return None if end is None else (end, iteration)
