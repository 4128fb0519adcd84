"""Logger callbacks (Ray Tune's ``ray.tune.logger``): per-trial logs written on the driver.

:class:`LoggerCallback` is the base class Ray scripts subclass: it turns the
:class:`~dasktune.Callback` hooks into ``log_trial_start``, ``log_trial_result``
and ``log_trial_end``.  Three loggers come with it:

* :class:`CSVLoggerCallback` and :class:`JsonLoggerCallback` write Ray's file
  formats.  dasktune's storage already keeps its own record in every trial
  directory, whatever the callbacks: ``params.json``, ``result.json`` (JSON
  lines) and ``progress.csv`` (one row per result, nested metrics as ``a/b``,
  widened when a metric appears late).  So that a ported script which adds
  these loggers explicitly cannot overwrite that record, they write to
  ``logger_``-prefixed names: ``logger_progress.csv``; ``logger_result.json``,
  ``logger_params.json`` and ``logger_params.pkl``.  Their content is Ray's:
  the CSV's columns are fixed by the trial's first result (as Ray's are), and
  each JSON line carries the trial's ``config`` as Ray's result rows do.
* :class:`TBXLoggerCallback` writes TensorBoard event files: every numeric
  metric of every result as a scalar named ``dasktune/<metric>`` (nested dicts as
  ``dasktune/<parent>/<child>``) against ``training_iteration``, and, when the
  trial ends, its config and last metrics for TensorBoard's HParams tab.  The
  Tuner adds it to every experiment where tensorboardX or tensorboard is
  installed (``dasktune.tensorboard: false`` opts out); then
  ``tensorboard --logdir <storage_path>/<experiment>``.  It writes the event
  files itself (TFRecord framing, hand-encoded protobuf), buffered per trial, so
  it imports neither tensorboardX nor torch.

:class:`ResultsTableCallback`, added to every experiment, keeps one table of
every result of every trial in ``<experiment>/results.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import numbers
import os
import queue
import socket
import struct
import threading
import time
from importlib.util import find_spec
from typing import Any

from dasktune._util import flatten, is_auto_field
from dasktune._validation import is_finite_number
from dasktune.callback import Callback
from dasktune.storage.files import to_json
from dasktune.trial import Trial

__all__ = [
    "CSVLoggerCallback",
    "JsonLoggerCallback",
    "LoggerCallback",
    "ResultsTableCallback",
    "TBXLoggerCallback",
    "pretty_print",
]

logger = logging.getLogger(__name__)

#: The files the loggers write in each trial directory (never dasktune's own record's names).
CSV_FILE = "logger_progress.csv"
JSON_RESULT_FILE = "logger_result.json"
JSON_PARAMS_FILE = "logger_params.json"
PARAMS_PICKLE_FILE = "logger_params.pkl"


class LoggerCallback(Callback):
    """Base class of loggers: override the ``log_*`` methods you need.

    The hooks map onto them as in Ray Tune: ``on_trial_start`` calls
    :meth:`log_trial_start`, ``on_trial_result`` :meth:`log_trial_result`,
    ``on_trial_complete`` and ``on_trial_error`` :meth:`log_trial_end` (with
    ``failed=False`` and ``True``).  A paused trial is started again when it
    resumes, so ``log_trial_start`` may come more than once per trial; close
    what a trial holds open in ``log_trial_end``, and in ``on_experiment_end``
    what is still open then (trials still paused, or an interrupted run).

    """

    def log_trial_start(self, trial: Trial) -> None:
        """A run of ``trial`` began (again after a pause or a retried failure)."""

    def log_trial_restore(self, trial: Trial) -> None:
        """A run of ``trial`` began from a checkpoint."""

    def log_trial_save(self, trial: Trial) -> None:
        """``trial`` stored a checkpoint."""

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """``trial`` reported ``result``; ``iteration`` counts the experiment's loop turns."""

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """``trial`` ended: finished or stopped (``failed=False``), or failed for good."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        self.log_trial_result(iteration, trial, result)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.log_trial_end(trial, failed=True)


class _FileLogger(LoggerCallback):
    """Shared by the CSV and JSON loggers: one open file per running trial, appended to."""

    def __init__(self) -> None:
        self._files: dict[str, io.TextIOWrapper] = {}

    def _open(self, trial: Trial, name: str) -> io.TextIOWrapper:
        self._close(trial)
        os.makedirs(trial.local_path, exist_ok=True)
        handle = self._files[trial.trial_id] = open(  # closed in log_trial_end
            os.path.join(trial.local_path, name), "a", newline=""
        )
        return handle

    def _close(self, trial: Trial) -> None:
        handle = self._files.pop(trial.trial_id, None)
        if handle is not None:
            handle.close()

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial in trials:
            self._close(trial)


class CSVLoggerCallback(_FileLogger):
    """Write each trial's results to ``logger_progress.csv`` in its directory, Ray's way.

    Nested metrics are flattened to ``a/b`` columns and the ``config`` key is
    left out. As in Ray Tune, the columns are those of the trial's first result
    (after a pause the file is continued with the same columns): a metric that
    appears only later is not in this file, but is in dasktune's own
    ``progress.csv``.
    """

    def __init__(self) -> None:
        self._writers: dict[str, csv.DictWriter] = {}
        super().__init__()

    def log_trial_start(self, trial: Trial) -> None:
        self._open(trial, CSV_FILE)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if trial.trial_id not in self._files:
            self.log_trial_start(trial)
        row = flatten({k: v for k, v in result.items() if k != "config"})
        writer = self._writers.get(trial.trial_id)
        if writer is None:
            handle = self._files[trial.trial_id]
            columns = self._columns_on_file(trial) or list(row)
            writer = self._writers[trial.trial_id] = csv.DictWriter(
                handle, fieldnames=columns, restval="", extrasaction="ignore"
            )
            if handle.tell() == 0:
                writer.writeheader()
        writer.writerow(row)
        self._files[trial.trial_id].flush()

    @staticmethod
    def _columns_on_file(trial: Trial) -> list[str]:
        """The header of a file this logger started in an earlier run of the trial."""
        path = os.path.join(trial.local_path, CSV_FILE)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return []
        with open(path, newline="") as f:
            return next(csv.reader(f), [])

    def _close(self, trial: Trial) -> None:
        self._writers.pop(trial.trial_id, None)
        super()._close(trial)


class JsonLoggerCallback(_FileLogger):
    """Write each trial's results as JSON lines to ``logger_result.json``, Ray's way.

    Every line is a result with the trial's ``config`` added, as Ray Tune's
    result rows have it. The config also goes to ``logger_params.json`` (indented,
    keys sorted) and ``logger_params.pkl`` (cloudpickle) whenever the trial
    starts, so a config that PBT changed is written again when the trial resumes.
    """

    def log_trial_start(self, trial: Trial) -> None:
        self.update_config(trial, trial.config)
        self._open(trial, JSON_RESULT_FILE)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if trial.trial_id not in self._files:
            self.log_trial_start(trial)
        handle = self._files[trial.trial_id]
        handle.write(to_json({**result, "config": trial.config}) + "\n")
        handle.flush()

    def update_config(self, trial: Trial, config: dict[str, Any]) -> None:
        """Write ``config`` to the trial's ``logger_params.json`` and ``logger_params.pkl``."""
        import cloudpickle

        os.makedirs(trial.local_path, exist_ok=True)
        with open(os.path.join(trial.local_path, JSON_PARAMS_FILE), "w") as f:
            f.write(json.dumps(json.loads(to_json(config)), indent=2, sort_keys=True))
        with open(os.path.join(trial.local_path, PARAMS_PICKLE_FILE), "wb") as f:
            cloudpickle.dump(config, f)


def pretty_print(result: dict[str, Any], exclude: set[str] | None = None) -> str:
    """A result as readable YAML, without its ``config``, ``hist_stats`` and None values.

    Example:
        >>> print(pretty_print({"loss": 0.5, "eval": {"acc": 0.9}, "config": {"lr": 1}}), end="")
        eval:
          acc: 0.9
        loss: 0.5
    """
    import yaml

    shown = {
        key: value
        for key, value in result.items()
        if key not in ("config", "hist_stats")
        and value is not None
        and (exclude is None or key not in exclude)
    }
    return yaml.safe_dump(json.loads(to_json(shown)), default_flow_style=False)


# -- TensorBoard event files, written directly --------------------------------------------
#: Result fields that are bookkeeping, not curves worth a chart (the step is the iteration).
_NOT_LOGGED = frozenset(
    {"training_iteration", "timestamp", "pid", "hostname", "trial_id", "done", "config"}
)
_PREFIX = "dasktune"
_HPARAMS_TAGS = (
    "_hparams_/experiment",
    "_hparams_/session_start_info",
    "_hparams_/session_end_info",
)


def tensorboard_installed() -> bool:
    """Whether TensorBoard's files have a reader here (tensorboardX, or tensorboard for
    torch's writer), found without importing anything."""
    return find_spec("tensorboardX") is not None or find_spec("tensorboard") is not None


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def _masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
    """One TFRecord: length, its checksum, the data, its checksum."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _masked_crc(length))
        + data
        + struct.pack("<I", _masked_crc(data))
    )


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as protobuf encodes it
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, data: bytes | str) -> bytes:
    """A length-delimited protobuf field (string, bytes or message)."""
    raw = data.encode() if isinstance(data, str) else data
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _enum(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def _event(
    summary_values: list[bytes],
    step: int | None = None,
    file_version: str | None = None,
    wall_time: float | None = None,
) -> bytes:
    """A ``tensorflow.Event``: wall time (now unless given), step, and a summary of
    ``Summary.Value``s."""
    event = _double(1, time.time() if wall_time is None else wall_time)
    if step is not None:
        event += _enum(2, int(step))
    if file_version is not None:
        event += _field(3, file_version)
    if summary_values:
        event += _field(5, b"".join(_field(1, value) for value in summary_values))
    return _record(event)


def _scalar(tag: str, value: float) -> bytes:
    """``Summary.Value`` with a ``simple_value``."""
    head = _SCALAR_HEADS.get(tag)
    if head is None:  # the tag's bytes are the same in every event: encoded once
        head = _field(1, tag) + _varint(2 << 3 | 5)
        if len(_SCALAR_HEADS) < 10_000:  # (not for keys that change every report)
            _SCALAR_HEADS[tag] = head
    return head + struct.pack("<f", value)


_SCALAR_HEADS: dict[str, bytes] = {}


def _hparams_values(config: dict[str, Any], metrics: list[str]) -> list[bytes]:
    """The three ``Summary.Value``s of TensorBoard's HParams plugin (tag, plugin data)."""
    hparams, infos = b"", b""
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, bool):
            kind, proto_value = 2, _varint(4 << 3) + _varint(int(value))
        elif isinstance(value, (int, float)):
            kind, proto_value = 3, _double(2, float(value))
        else:
            kind, proto_value = 1, _field(3, str(value))
        hparams += _field(1, _field(1, key) + _field(2, proto_value))  # map<string, Value>
        infos += _field(4, _field(1, key) + _enum(4, kind))  # HParamInfo(name, type)
    metric_infos = b"".join(_field(5, _field(1, _field(2, tag))) for tag in metrics)
    contents = (
        _field(2, infos + metric_infos),  # experiment
        _field(3, hparams),  # session_start_info
        _field(4, _enum(1, 1)),
    )  # session_end_info(status=SUCCESS)
    values = []
    for tag, content in zip(_HPARAMS_TAGS, contents, strict=True):
        plugin_data = _field(1, "hparams") + _field(2, _enum(1, 0) + content)
        values.append(_field(1, tag) + _field(9, _field(1, plugin_data)))
    return values


#: A result's event not yet encoded, (wall time, step, {tag: value}), or a trial's hparams
#: entry, (config, metric tags).
_RawEvent = tuple[float, int | None, dict[str, float]] | tuple[dict[str, Any], list[str]]


def _encode(event: _RawEvent) -> bytes:
    """The TFRecord of one event the driver kept (done in the writer thread)."""
    if len(event) == 2:
        config, metrics = event
        return _event(_hparams_values(config, metrics))
    wall_time, step, scalars = event
    return _event(
        [_scalar(f"{_PREFIX}/{key}", value) for key, value in scalars.items()],
        step=step,
        wall_time=wall_time,
    )


def _hparam(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard's HParams tab can show it."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return repr(value)


class TBXLoggerCallback(LoggerCallback):
    """Write each trial's results as TensorBoard scalars, and its config as hparams.

    The events go to one file per trial in the trial's directory
    (``events.out.tfevents.*``), written by dasktune itself: no tensorboardX or
    torch import.  Events wait in memory and are appended every ``flush_secs``
    seconds (one open, write and close per trial with news), and when their
    trial ends, so no file stays open while trials are paused.

    Args:
        flush_secs: how often events are written out while trials run, so that
            TensorBoard shows running trials live.
    """

    def __init__(self, flush_secs: float = 5.0) -> None:
        if not is_finite_number(flush_secs) or flush_secs <= 0:
            raise ValueError(
                f"The value of `TBXLoggerCallback(flush_secs=...)` is {flush_secs!r}, but it must "
                "be a positive number of seconds. Pass e.g. flush_secs=5."
            )
        self._flush_secs = float(flush_secs)
        self._files: dict[str, str] = {}  # trial id -> its event file
        # Per trial, what its next write holds, not yet encoded: (wall time, step, scalars)
        # per result, then (config, metric tags) for its hparams entry when it ended.
        self._pending: dict[str, list[_RawEvent]] = {}
        self._last: dict[str, dict[str, float]] = {}
        self._flushed = time.monotonic()
        self._host = socket.gethostname()
        # Events are encoded and files written by a thread of their own: creating a file
        # costs the driver 0.2-0.7 ms on some disks, and encoding a fifth of its time per
        # result, time in which it could be handling other trials.
        self._jobs: queue.SimpleQueue[tuple[str, list[_RawEvent]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        step = result.get("training_iteration")
        scalars = {
            key: float(value)
            for key, value in flatten(
                {k: v for k, v in result.items() if k not in _NOT_LOGGED}
            ).items()
            if is_finite_number(value)
        }
        self._pending.setdefault(trial.trial_id, []).append(
            (time.time(), step if isinstance(step, int) else None, scalars)
        )
        self._last[trial.trial_id] = scalars
        if trial.trial_id not in self._files:
            self._files[trial.trial_id] = self._new_file(trial)
        now = time.monotonic()
        if now - self._flushed >= self._flush_secs:
            self._flushed = now
            for trial_id in list(self._pending):
                self._write(trial_id)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial in trials:
            self._close(trial)
        writer, self._writer = self._writer, None
        if writer is not None:  # every event on disk when fit returns
            self._jobs.put(None)
            writer.join()

    def _new_file(self, trial: Trial) -> str:
        name = f"events.out.tfevents.{int(time.time())}.{self._host}.{os.getpid()}.{trial.trial_id}"
        return os.path.join(trial.local_path, name)

    def _write(self, trial_id: str) -> None:
        events = self._pending.pop(trial_id, None)
        path = self._files.get(trial_id)
        if not events or path is None:
            return
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_files,
                args=(self._jobs,),
                name="dasktune-tensorboard",
                daemon=True,
            )
            self._writer.start()
        self._jobs.put((path, events))

    @staticmethod
    def _write_files(jobs: queue.SimpleQueue[tuple[str, list[_RawEvent]] | None]) -> None:
        """The writer thread: encode each job's events and append them to its file, until
        ``None``."""
        created: set[str] = set()
        while (job := jobs.get()) is not None:
            path, events = job
            data = b"".join(_encode(event) for event in events)
            if path not in created:  # each file is new: this process named it
                data = _event([], file_version="brain.Event:2") + data
            try:
                try:
                    f = open(path, "ab")
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    f = open(path, "ab")
                with f:
                    f.write(data)
                created.add(path)
            except OSError as exc:  # a view of the results: never stop the experiment for it
                logger.warning("Could not write TensorBoard events to %s: %s", path, exc)

    def _close(self, trial: Trial) -> None:
        """Add the trial's hparams entry and write its events out."""
        if trial.trial_id not in self._files:
            return
        config = {key: _hparam(value) for key, value in flatten(trial.config).items()}
        metrics = [
            f"{_PREFIX}/{key}"
            for key, value in self._last.pop(trial.trial_id, {}).items()
            if math.isfinite(value)
        ]
        # Into the trial's own event file (tensorboardX's add_hparams would start a sub-run).
        self._pending.setdefault(trial.trial_id, []).append((config, metrics))
        self._write(trial.trial_id)
        self._files.pop(trial.trial_id, None)


# -- one table of every result ---------------------------------------------------------------
RESULTS_TABLE_FILE = "results.csv"
_TABLE_BUFFER = 1 << 16  # characters of rows formatted before they are written anyway
_TABLE_LEAD = ("trial_id", "trial", "training_iteration")
_TABLE_TAIL = ("time_total_s", "timestamp")
_OTHER = "other"


class ResultsTableCallback(Callback):
    """Append every result of every trial to ``<experiment>/results.csv``, one row each.

    Readable at any time with ``pd.read_csv(path)``: rows are appended whole, each
    turn of the driver's loop in one write, and the header never changes.  Its columns are
    fixed by the experiment's first result: ``trial_id``, ``trial``,
    ``training_iteration``, that result's metrics (nested ones as ``a/b``),
    ``time_total_s``, ``timestamp``, the first trial's config as ``config/<key>``,
    and ``other``: a JSON object of whatever a row has beyond them (a metric that
    appeared later, a config key another trial has), empty when nothing.  A
    resumed experiment continues the same file with the same header.
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self._file: io.FileIO | None = None
        self._rows = io.StringIO(newline="")  # a row formatted, before it is written
        self._offset = 0  # the file's size: where the next row starts
        self._writer: Any = None
        self._columns: list[str] = []

    def setup(self, **info: Any) -> None:
        experiment = info.get("experiment_path")
        if experiment:
            self.path = os.path.join(experiment, RESULTS_TABLE_FILE)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if self.path is None:
            return
        row = {key: value for key, value in flatten(result).items() if key != "config"}
        row.update(flatten({"config": trial.config}))
        row["trial_id"], row["trial"] = trial.trial_id, trial.trial_name
        offset = None
        try:
            if self._writer is None:
                self._open(row)
            offset = self._offset
            extra = {k: v for k, v in row.items() if k not in self._columns}
            cells = {k: _cell(v) for k, v in row.items() if k in self._columns}
            cells[_OTHER] = to_json(extra) if extra else ""
            self._writer.writerow(cells)
            if len(self._rows.getvalue()) > _TABLE_BUFFER:
                self._write_out()
        except OSError as exc:
            self._failed(exc, offset)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self._writer is not None and self._rows.tell():
            offset = self._offset
            try:
                self._write_out()
            except OSError as exc:
                self._failed(exc, offset)

    def _failed(self, exc: OSError, offset: int | None) -> None:
        # A view of the results: never stop the experiment for it.
        logger.warning("Could not write %s: %s; it stops here.", self.path, exc)
        path, self.path = self.path, None
        self._close()
        if offset is not None and path is not None:  # no row cut in half (a full disk)
            with contextlib.suppress(OSError):
                os.truncate(path, offset)

    def _write_out(self) -> None:
        """The rows formatted so far (a loop turn's), in one write: a reader never sees
        half a row."""
        data = self._rows.getvalue().encode()
        self._rows.seek(0)
        self._rows.truncate()
        assert self._file is not None
        written = self._file.write(data)
        if written != len(data):
            raise OSError(28, "No space left on device (a partial write)")
        self._offset += len(data)

    def _open(self, row: dict[str, Any]) -> None:
        assert self.path is not None
        self._columns = self._header_on_file()
        fresh = not self._columns
        if fresh:
            config = [k for k in row if k.startswith("config/")]
            metrics = [
                k
                for k in row
                if k not in (*_TABLE_LEAD, *_TABLE_TAIL, *config) and k in _user_or_progress(row)
            ]
            self._columns = [*_TABLE_LEAD, *metrics, *_TABLE_TAIL, *config, _OTHER]
        self._file = open(self.path, "ab", buffering=0)  # closed at the end
        self._offset = self._file.seek(0, os.SEEK_END)
        self._rows = io.StringIO(newline="")
        self._writer = csv.DictWriter(self._rows, fieldnames=self._columns, restval="")
        if fresh:
            self._writer.writeheader()
            self._write_out()

    def _header_on_file(self) -> list[str]:
        if self.path is None or not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            return next(csv.reader(f), [])

    def _close(self) -> None:
        file, self._file, self._writer = self._file, None, None
        if file is not None:
            with contextlib.suppress(OSError):  # its buffer may not be writable (a full disk)
                file.close()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.on_step_end(0, trials)
        self._close()


def _user_or_progress(row: dict[str, Any]) -> set[str]:
    """The keys of a result worth a column: the user's metrics, not the other bookkeeping."""

    return {k for k in row if not is_auto_field(k)}


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return to_json(value)
