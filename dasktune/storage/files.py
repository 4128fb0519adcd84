"""The files of one trial as the driver writes them, and small atomic-write helpers."""

from __future__ import annotations

import contextlib
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

__all__ = [
    "StorageError",
    "TrialRecorder",
    "append_jsonl",
    "atomic_write",
    "copy_checkpoint",
    "delete_checkpoint",
    "to_json",
    "write_experiment_state",
    "write_jsonl",
]


class StorageError(OSError):
    """Writing under the storage path failed (a full disk, lost permissions, a broken mount).

    The message names the file and the fix; the experiment stops, keeping what was
    computed (``exc.result_grid``), and no file is left with half a line.
    """

    def __init__(self, path: str, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        super().__init__(
            cause.errno,
            (
                f"Could not write {path}: {reason}. "
                + (
                    "The disk under the storage path is full: free space there, or pass "
                    "RunConfig(storage_path=...) a filesystem with room. "
                    if cause.errno == 28
                    else "Check that the storage path is writable and mounted "
                    "(RunConfig(storage_path=...)). "
                )
                + "The experiment stopped; the results so far are in the exception's result_grid, "
                "and on disk up to the last complete line (Tuner.restore(path) continues it)."
            ),
            path,
        )
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
    """Writes one trial's files.

    Its rows stay in memory while the trial may still report (progress.csv is
    rewritten from them when a metric appears late); once the trial finished they
    are dropped and :attr:`rows` reads them back from result.json, so that the
    driver's memory follows the trials in flight, not every result of the experiment.
    The last row stays in memory (:attr:`last_row`).

    Results are written into the files' buffers and reach the disk with :meth:`flush`,
    which the driver calls once per turn of its loop (a turn handles every message
    that arrived meanwhile), and when the trial's files close: a system call per
    result cost the driver more than the result's own handling.
    """

    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = trial_dir
        self._rows: list[dict[str, Any]] | None = []  # None: dropped, on disk only
        self._count = 0  # results recorded
        self._last_row: dict[str, Any] | None = None
        self._columns: list[str] = []
        self._json: Any = None  # result.json, binary and buffered
        self._csv: Any = None  # progress.csv, binary and buffered
        self._csv_text = io.StringIO(newline="")  # rows formatted by the csv module
        self._json_pending: list[bytes] = []  # lines of result.json not yet written
        self._csv_row_start = -1  # where the last row starts in _csv_text (-1: written out)
        self._writer: Any = None  # the csv writer, onto _csv_text
        self._json_size = 0  # bytes of result.json written, buffered or not
        self._json_flushed = 0  # bytes of result.json that reached the file
        self._csv_size = 0
        self._last_offset = 0  # where the last line of result.json starts
        self._csv_last_offset = 0  # where the last row of progress.csv starts
        self._last_result: dict[str, Any] | None = None
        self.unflushed = False  # written since the last flush

    def write_params(self, config: Mapping[str, Any]) -> None:
        """Create the trial's directory and write params.json in it (one file creation:
        a driver making thousands of trials spends its time creating files)."""
        path = os.path.join(self.trial_dir, PARAMS_FILE)
        data = to_json(dict(config)).encode()
        try:
            try:
                os.mkdir(self.trial_dir)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(self.trial_dir, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(28, "No space left on device (a partial write)")
            finally:
                os.close(fd)
        except OSError as exc:
            _remove_quietly(path)
            raise StorageError(
                path if os.path.isdir(self.trial_dir) else self.trial_dir, exc
            ) from exc

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self._last_result

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded result, flattened, oldest first (read back from result.json
        once the trial finished)."""
        if self._rows is None:
            return self.read_rows()
        return self._rows

    @property
    def last_row(self) -> dict[str, Any] | None:
        """The last recorded result, flattened: ``rows[-1]`` without reading the file."""
        return self._last_row

    def read_rows(self) -> list[dict[str, Any]]:
        """The rows of result.json (its complete lines), flattened."""
        try:
            with open(os.path.join(self.trial_dir, RESULT_FILE), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        return [flatten(json.loads(line)) for line in complete.split(b"\n") if line.strip()]

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
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            os.truncate(path, len(complete))
        offset = 0
        rows = []
        for line in complete.split(b"\n")[:-1]:
            if line.strip():
                self._last_offset = offset
                self._last_result = json.loads(line)
                row = flatten(self._last_result)
                rows.append(row)
                self._columns.extend(k for k in row if k not in self._columns)
            offset += len(line) + 1
        self._rows = rows
        self._count = len(rows)
        self._last_row = rows[-1] if rows else None

    def append(self, result: Mapping[str, Any]) -> None:
        """Record one result in result.json and progress.csv, and flush them.

        The result is kept in memory first, so a failed write still leaves it in
        the ResultGrid; on disk a failed write is undone, never left half a line.
        """
        self.remember(result)
        self.write_last()
        self.flush()

    def remember(self, result: Mapping[str, Any]) -> None:
        """Keep ``result`` in memory only (its files could not be written)."""
        if self._rows is None:  # recording again after the trial finished (a restart)
            self._rows = self.read_rows()
        self._last_result = dict(result)
        self._last_row = flatten(result)
        self._rows.append(self._last_row)
        self._count += 1

    def write_last(self) -> None:
        """Write the result last remembered to result.json and progress.csv (into their
        buffers: :meth:`flush` writes them out)."""
        row = self._last_row
        assert row is not None
        path = os.path.join(self.trial_dir, RESULT_FILE)
        line = (to_json(self._last_result) + "\n").encode()
        try:
            if self._json is None:
                # A trial's first write starts the file afresh; after a pause it appends.
                self._open_json(path, "ab" if self._count > 1 else "wb")
            self._last_offset = self._json_size
            self._json_pending.append(line)  # written by flush(): one system call a turn
            self._json_size += len(line)
        except OSError as exc:
            self._undo(path, exc)
        self.unflushed = True
        new = [k for k in row if k not in self._columns]
        try:
            if new or self._writer is None:
                self._columns.extend(new)
                self._rewrite_csv()
            else:
                self._csv_row_start = self._csv_text.tell()
                self._writer.writerow(row)
        except OSError as exc:
            self._close_quietly()
            raise StorageError(os.path.join(self.trial_dir, PROGRESS_FILE), exc) from exc

    def flush(self) -> None:
        """Write out what :meth:`write_last` buffered; a failure leaves whole lines only."""
        if not self.unflushed:
            return
        self.unflushed = False
        if self._json is not None:
            try:
                self._write_json_pending()
                self._json.flush()
            except OSError as exc:
                self._undo(os.path.join(self.trial_dir, RESULT_FILE), exc)
            self._json_flushed = self._json_size
        if self._csv is not None:
            try:
                self._csv_write_out()
                self._csv.flush()
            except OSError as exc:
                self._close_quietly()
                raise StorageError(os.path.join(self.trial_dir, PROGRESS_FILE), exc) from exc

    def _write_json_pending(self) -> None:
        """Move the lines :meth:`write_last` kept into result.json's buffer."""
        if self._json_pending:
            data = b"".join(self._json_pending)
            self._json_pending = []
            self._json.write(data)

    def _open_json(self, path: str, mode: str) -> None:
        self._json = _open_in_dir(path, mode)
        self._json_size = self._json_flushed = self._json.seek(0, os.SEEK_END)

    def _csv_write_out(self) -> None:
        """Move the rows the csv module formatted into progress.csv's buffer."""
        text = self._csv_text.getvalue()
        if self._csv_row_start >= 0 and text:  # where the last row will start in the file
            self._csv_last_offset = self._csv_size + len(text[: self._csv_row_start].encode())
        self._csv_row_start = -1
        if not text:
            return
        data = text.encode()
        self._csv_text.seek(0)
        self._csv_text.truncate()
        self._csv.write(data)
        self._csv_size += len(data)

    def _undo(self, path: str, cause: OSError) -> None:
        """A write of result.json failed: cut the file back to its last complete line
        on disk (the results are still in memory, and in the ResultGrid)."""
        keep = min(self._json_flushed, self._last_offset)
        self._close_quietly()
        try:
            os.truncate(path, keep)
        except OSError:
            pass
        raise StorageError(path, cause) from cause

    def close_without_writing(self) -> None:
        """Close the files, dropping what is not written yet (after a storage error)."""
        self._close_quietly()

    def _close_quietly(self) -> None:
        for handle in (self._json, self._csv):
            if handle is not None:
                try:
                    handle.close()
                except OSError:  # its buffer cannot be written either; drop it
                    pass
        self._json = self._csv = self._writer = None
        self._csv_text = io.StringIO(newline="")
        self._json_pending = []
        self._csv_row_start = -1

    def _rewrite_csv(self) -> None:
        """A metric appeared for the first time: rewrite the CSV with the wider header."""
        if self._csv is not None:
            self._csv.close()
        rows = self.rows
        self._csv_text = io.StringIO(newline="")
        self._csv = open(os.path.join(self.trial_dir, PROGRESS_FILE), "wb")
        self._csv_size = 0
        self._writer = csv.DictWriter(self._csv_text, fieldnames=self._columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(rows[:-1])
        self._csv_write_out()
        self._csv_last_offset = self._csv_size
        if rows:
            self._writer.writerow(rows[-1])
            self._csv_write_out()

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
        """The trial ended normally: mark its last result ``done`` on disk too, then close.

        Only the last line of result.json and the last row of progress.csv are
        rewritten; the trial's rows then leave memory (:attr:`rows` reads them back).
        """
        last = self._last_result
        path = os.path.join(self.trial_dir, RESULT_FILE)
        if last is not None and not last.get("done"):
            last["done"] = True
            assert self._last_row is not None
            self._last_row["done"] = True
            line = (to_json(last) + "\n").encode()
            try:
                if self._json_pending:  # the last line has not been written: change it here
                    self._json_pending[-1] = line
                    self._write_json_pending()
                    self._json.flush()
                else:
                    if self._json is None:
                        self._open_json(path, "ab")
                    self._json.flush()
                    self._json.truncate(self._last_offset)
                    self._json_size = self._json_flushed = self._last_offset
                    self._json.seek(self._last_offset)  # (append mode writes at the end anyway)
                    self._json.write(line)
                    self._json.flush()
                self._json_size = self._json_flushed = self._last_offset + len(line)
            except OSError as exc:
                self._undo(path, exc)
            try:
                if self._writer is not None and "done" in self._columns:
                    if self._csv_row_start >= 0:  # the last row is still in the text: redo it
                        self._csv_text.seek(self._csv_row_start)
                        self._csv_text.truncate()
                    else:
                        self._csv.flush()
                        self._csv.truncate(self._csv_last_offset)
                        self._csv.seek(self._csv_last_offset)
                        self._csv_size = self._csv_last_offset
                    self._writer.writerow(self._last_row)
                    self._csv_write_out()
                else:
                    self._columns.extend(k for k in self._last_row if k not in self._columns)
                    self._rewrite_csv()
                self._csv.flush()
            except OSError as exc:
                self._close_quietly()
                raise StorageError(os.path.join(self.trial_dir, PROGRESS_FILE), exc) from exc
        self.close()
        self._rows = None

    def release_rows(self) -> None:
        """Leave the rows on disk only (a finished trial of a restored experiment)."""
        if self._json is None and self._csv is None:
            self._rows = None

    def close(self) -> None:
        """Flush and close the files."""
        try:
            if self._json is not None:
                self._write_json_pending()
            if self._csv is not None:
                self._csv_write_out()
        except OSError as exc:  # a full disk: whole lines only, as in flush()
            self._undo(os.path.join(self.trial_dir, RESULT_FILE), exc)
        json_file, csv_file = self._json, self._csv
        self._json = self._csv = self._writer = None
        self.unflushed = False
        for handle, name in ((json_file, RESULT_FILE), (csv_file, PROGRESS_FILE)):
            if handle is not None:
                try:
                    handle.close()
                except OSError as exc:  # its last buffered write failed (a full disk)
                    if name == RESULT_FILE:  # whole lines only
                        with contextlib.suppress(OSError):
                            os.truncate(os.path.join(self.trial_dir, name), self._json_flushed)
                    raise StorageError(os.path.join(self.trial_dir, name), exc) from exc
        self._json_flushed = self._json_size


def _open_in_dir(path: str, mode: str) -> Any:
    """``open(path, mode)``, making its directory first if it is missing."""
    try:
        return open(path, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode)


def delete_checkpoint(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def copy_checkpoint(source: str, target: str) -> None:
    """Copy a checkpoint directory (another trial's, for PBT's exploit) to ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def write_jsonl(path: str, records: Iterable[Any]) -> None:
    """Replace ``path`` with one JSON line per record (a mapping or any JSON value),
    atomically."""
    lines = (to_json(dict(r) if isinstance(r, Mapping) else r) + "\n" for r in records)
    atomic_write(path, "".join(lines).encode())


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
