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
* :class:`TBXLoggerCallback` writes TensorBoard event files through tensorboardX:
  every numeric metric of every result as a scalar named ``dasktune/<metric>``
  (nested dicts as ``dasktune/<parent>/<child>``) against
  ``training_iteration``, and, when the trial ends, its config and last
  metrics for TensorBoard's HParams tab.  It is off by default::

      from dasktune.logger import TBXLoggerCallback
      tune.RunConfig(callbacks=[TBXLoggerCallback()])

  or, for every experiment, ``dasktune.tensorboard: true`` in dask.config. Then
  ``tensorboard --logdir <storage_path>/<experiment>``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import numbers
import os
from typing import Any

from dasktune._util import flatten
from dasktune._validation import is_finite_number
from dasktune.callback import Callback
from dasktune.storage.files import to_json
from dasktune.trial import Trial

__all__ = [
    "CSVLoggerCallback",
    "JsonLoggerCallback",
    "LoggerCallback",
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

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: list[Trial], trial: Trial,
                      **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        self.log_trial_result(iteration, trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self.log_trial_end(trial, failed=True)


class _FileLogger(LoggerCallback):
    """Shared by the CSV and JSON loggers: one open file per running trial, appended to."""

    def __init__(self) -> None:
        self._files: dict[str, io.TextIOWrapper] = {}

    def _open(self, trial: Trial, name: str) -> io.TextIOWrapper:
        self._close(trial)
        os.makedirs(trial.local_path, exist_ok=True)
        handle = self._files[trial.trial_id] = open(  # noqa: SIM115 (closed in log_trial_end)
            os.path.join(trial.local_path, name), "a", newline="")
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
                handle, fieldnames=columns, restval="", extrasaction="ignore")
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

    shown = {key: value for key, value in result.items()
             if key not in ("config", "hist_stats") and value is not None
             and (exclude is None or key not in exclude)}
    return yaml.safe_dump(json.loads(to_json(shown)), default_flow_style=False)


#: Result fields that are bookkeeping, not curves worth a chart (the step is the iteration).
_NOT_LOGGED = frozenset({"training_iteration", "timestamp", "pid", "hostname", "trial_id",
                         "done", "config"})
_PREFIX = "dasktune"


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

    Args:
        flush_secs: how often the event files are written out while trials run,
            so that TensorBoard shows running trials live. Each file is also
            written out when its trial ends.
    """

    def __init__(self, flush_secs: float = 5.0) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TBXLoggerCallback needs tensorboardX: pip install 'dasktune[tensorboard]'"
            ) from exc
        if not is_finite_number(flush_secs) or flush_secs <= 0:
            raise ValueError(
                f"The value of `TBXLoggerCallback(flush_secs=...)` is {flush_secs!r}, but it must "
                "be a positive number of seconds. Pass e.g. flush_secs=5."
            )
        self._writer_class = SummaryWriter
        self._flush_secs = flush_secs
        self._writers: dict[str, Any] = {}
        self._last: dict[str, dict[str, Any]] = {}

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        writer = self._writers.get(trial.trial_id)
        if writer is None:
            writer = self._writers[trial.trial_id] = self._writer_class(
                trial.local_path, flush_secs=self._flush_secs)
        step = result.get("training_iteration")
        scalars = {key: value for key, value in flatten(result).items()
                   if key not in _NOT_LOGGED and is_finite_number(value)}
        for key, value in scalars.items():
            writer.add_scalar(f"{_PREFIX}/{key}", float(value), global_step=step)
        self._last[trial.trial_id] = scalars

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial in trials:
            self._close(trial)

    def _close(self, trial: Trial) -> None:
        """Add the trial's hparams entry and write its event file out."""
        writer = self._writers.pop(trial.trial_id, None)
        if writer is None:
            return
        from tensorboardX.summary import hparams

        config = {key: _hparam(value) for key, value in flatten(trial.config).items()}
        metrics = {f"{_PREFIX}/{key}": float(value)
                   for key, value in self._last.pop(trial.trial_id, {}).items()
                   if math.isfinite(float(value))}
        # Into the trial's own event file: SummaryWriter.add_hparams would start a sub-run.
        for summary in hparams(config, metrics):
            writer.file_writer.add_summary(summary)
        writer.close()
