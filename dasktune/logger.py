"""TensorBoard logging of every trial, through tensorboardX (Ray Tune's ``TBXLoggerCallback``).

Each trial's directory gets an event file: every numeric metric of every
result as a scalar named ``dasktune/<metric>`` (nested dicts as
``dasktune/<parent>/<child>``) against ``training_iteration``, and, when the
trial ends, its config and last metrics for TensorBoard's HParams tab.

    from dasktune.logger import TBXLoggerCallback
    tune.RunConfig(callbacks=[TBXLoggerCallback()])

or, for every experiment, ``dasktune.tensorboard: true`` in dask.config. Then
``tensorboard --logdir <storage_path>/<experiment>``.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

from dasktune._util import flatten
from dasktune._validation import is_finite_number
from dasktune.callback import Callback
from dasktune.trial import Trial

logger = logging.getLogger(__name__)

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


class TBXLoggerCallback(Callback):
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

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
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

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
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
