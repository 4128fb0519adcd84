"""The files of one trial as the driver writes them, and small atomic-write helpers."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dasktune._util import flatten
from dasktune.storage.layout import ERROR_FILE, PARAMS_FILE, PROGRESS_FILE, RESULT_FILE, STATE_FILE

__all__ = ["StorageError", "TrialRecorder", "append_jsonl", "atomic_write", "copy_checkpoint",
           "delete_checkpoint", "to_json", "write_experiment_state", "write_jsonl"]


class StorageError(OSError):
    """Writing under the storage path failed (a full disk, lost permissions, a broken mount).

    The message names the file and the fix; the experiment stops, keeping what was
    computed (``exc.result_grid``), and no file is left with half a line.
    """

    def __init__(self, path: str, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        super().__init__(cause.errno, (
            f"Could not write {path}: {reason}. "
            + ("The disk under the storage path is full: free space there, or pass "
               "RunConfig(storage_path=...) a filesystem with room. "
               if cause.errno == 28 else
               "Check that the storage path is writable and mounted (RunConfig(storage_path=...)). ")
            + "The experiment stopped; the results so far are in the exception's result_grid, "
            "and on disk up to the last complete line (Tuner.restore(path) continues it)."
        ), path)
        self.path = path


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never half."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise StorageError(path, exc) from exc


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


class TrialRecorder:
    """Writes one trial's files; keeps rows in memory for its metrics dataframe."""

    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = trial_dir
        self.rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._json: io.TextIOWrapper | None = None
        self._csv: io.TextIOWrapper | None = None
        self._writer: Any = None
        self._last_offset = 0
        self._last_result: dict[str, Any] | None = None

    def write_params(self, config: Mapping[str, Any]) -> None:
        path = os.path.join(self.trial_dir, PARAMS_FILE)
        try:
            os.makedirs(self.trial_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(self.trial_dir, exc) from exc
        atomic_write(path, to_json(dict(config)).encode())

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self._last_result

    def load(self) -> None:
        """Read back the results already in result.json (an experiment being restored).

        A last line cut short (the driver died writing it) is removed from the file.
        """
        path = os.path.join(self.trial_dir, RESULT_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            os.truncate(path, len(complete))
        offset = 0
        for line in complete.split(b"\n")[:-1]:
            if line.strip():
                self._last_offset = offset
                self._last_result = json.loads(line)
                row = flatten(self._last_result)
                self.rows.append(row)
                self._columns.extend(k for k in row if k not in self._columns)
            offset += len(line) + 1

    def append(self, result: Mapping[str, Any]) -> None:
        """Record one result in result.json and progress.csv, at once.

        The result is kept in memory first, so a failed write still leaves it in
        the ResultGrid; on disk a failed write is undone, never left half a line.
        """
        self.remember(result)
        self.write_last()

    def remember(self, result: Mapping[str, Any]) -> None:
        """Keep ``result`` in memory only (its files could not be written)."""
        self._last_result = dict(result)
        self.rows.append(flatten(result))

    def write_last(self) -> None:
        """Write the result last remembered to result.json and progress.csv."""
        row = self.rows[-1]
        path = os.path.join(self.trial_dir, RESULT_FILE)
        try:
            if self._json is None:
                os.makedirs(self.trial_dir, exist_ok=True)
                # A trial's first write starts the file afresh; after a pause it appends.
                self._json = open(path, "a" if len(self.rows) > 1 else "w")
            self._last_offset = self._json.tell()
            self._json.write(to_json(self._last_result) + "\n")
            self._json.flush()
        except OSError as exc:
            self._undo(path, exc)
        new = [k for k in row if k not in self._columns]
        try:
            if new or self._writer is None:
                self._columns.extend(new)
                self._rewrite_csv()
            else:
                self._writer.writerow(row)
                self._csv.flush()  # type: ignore[union-attr]
        except OSError as exc:
            self._close_quietly()
            raise StorageError(os.path.join(self.trial_dir, PROGRESS_FILE), exc) from exc

    def _undo(self, path: str, cause: OSError) -> None:
        """A write of result.json failed: cut the file back to its last complete line."""
        self._close_quietly()
        try:
            os.truncate(path, self._last_offset)
        except OSError:
            pass
        raise StorageError(path, cause) from cause

    def _close_quietly(self) -> None:
        for handle in (self._json, self._csv):
            if handle is not None:
                try:
                    handle.close()
                except OSError:  # its buffer cannot be written either; drop it
                    pass
        self._json = self._csv = self._writer = None

    def _rewrite_csv(self) -> None:
        """A metric appeared for the first time: rewrite the CSV with the wider header."""
        if self._csv is not None:
            self._csv.close()
        self._csv = open(os.path.join(self.trial_dir, PROGRESS_FILE), "w", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=self._columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(self.rows)
        self._csv.flush()

    def write_error(self, text: str) -> str:
        path = os.path.join(self.trial_dir, ERROR_FILE)
        try:
            os.makedirs(self.trial_dir, exist_ok=True)
            with open(path, "a") as f:
                f.write(text)
        except OSError as exc:
            raise StorageError(path, exc) from exc
        return path

    def finish(self) -> None:
        """The trial ended normally: mark its last result ``done`` on disk too, then close."""
        last = self._last_result
        path = os.path.join(self.trial_dir, RESULT_FILE)
        if last is not None and not last.get("done"):
            last["done"] = True
            self.rows[-1]["done"] = True
            try:
                if self._json is None:
                    self._json = open(path, "a")
                self._json.truncate(self._last_offset)
                self._json.seek(self._last_offset)  # (in append mode writes go to the end anyway)
                self._json.write(to_json(last) + "\n")
                self._json.flush()
                self._rewrite_csv()
            except OSError as exc:
                self._undo(path, exc)
        self.close()

    def close(self) -> None:
        json_file, csv_file = self._json, self._csv
        self._json = self._csv = self._writer = None
        for handle, name in ((json_file, RESULT_FILE), (csv_file, PROGRESS_FILE)):
            if handle is not None:
                try:
                    handle.close()
                except OSError as exc:  # its last buffered write failed (a full disk)
                    raise StorageError(os.path.join(self.trial_dir, name), exc) from exc


def delete_checkpoint(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def copy_checkpoint(source: str, target: str) -> None:
    """Copy a checkpoint directory (another trial's, for PBT's exploit) to ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def write_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` with one JSON line per record, atomically."""
    atomic_write(path, "".join(to_json(dict(r)) + "\n" for r in records).encode())


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path``, in one write: never half a line."""
    data = (to_json(dict(record)) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(path, exc) from exc
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "No space left on device (a partial write)")
        except OSError as exc:
            os.ftruncate(fd, start)
            raise StorageError(path, exc) from exc
    finally:
        os.close(fd)


def write_experiment_state(experiment_path: str, state: Mapping[str, Any]) -> None:
    """Atomically replace experiment_state.json."""
    atomic_write(os.path.join(experiment_path, STATE_FILE), to_json(dict(state)).encode())
