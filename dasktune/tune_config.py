"""The configuration objects of an experiment, and the checkpoint-retention policy.

``TuneConfig`` says how to search, ``RunConfig`` where results go and when trials
stop, ``CheckpointConfig`` which checkpoints to keep and ``FailureConfig`` what to
do when a trial fails.  All are plain data checked on creation; the retention
policy (:meth:`CheckpointConfig.retained`) is a pure function of a trial's
checkpoints, applied by the storage layer.

Every argument of Ray Tune 2.x's classes of the same names is accepted, so that
a ported script runs unchanged.  Those that mean nothing on Dask are listed in
each class's docstring; passing one logs, once per process, that it has no
effect here.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dasktune._util import flatten
from dasktune._validation import is_finite_number, validate_mode

if TYPE_CHECKING:
    from dasktune.schedulers.trial_scheduler import TrialScheduler
    from dasktune.search.searcher import Searcher
    from dasktune.trial import Trial

logger = logging.getLogger(__name__)

#: The arguments already reported as having no effect in this process.
_NOTED: set[str] = set()


def note_no_effect(argument: str, why: str, level: int = logging.INFO) -> None:
    """Log once per process that ``argument`` (``"RunConfig(sync_config)"``) does nothing here."""
    if argument in _NOTED:
        return
    _NOTED.add(argument)
    logger.log(level, "%s has no effect in dasktune: %s", argument, why)


def _check_callable(value: Any, argument: str, example: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"The value of `{argument}` is {value!r}, but it must be a function that takes "
            f"the Trial and returns a string, such as {example}, or None."
        )


def _check_optional_bool(value: Any, argument: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(
            f"The value of `{argument}` is {value!r}, but it must be True, False or None."
        )


@dataclass
class TuneConfig:
    """How to search: the metric, how many trials, which searcher and scheduler.

    Args:
        metric, mode: The metric to optimise and whether to minimise (``"min"``)
            or maximise (``"max"``) it; passed on to the searcher and scheduler.
        num_samples: How many configurations to try (a grid is repeated this
            many times); -1 for no limit, with ``time_budget_s`` or a stopper.
        scheduler: A :class:`~dasktune.schedulers.TrialScheduler` (FIFO by default).
        search_alg: A :class:`~dasktune.search.Searcher` (random and grid search by default).
        max_concurrent_trials: At most this many trials at once; None or 0 for
            as many as the cluster fits.
        time_budget_s: Seconds (or a ``datetime.timedelta``) after which every
            trial is stopped.
        seed: Makes the sampled configs reproducible (dasktune's addition).
        reuse_actors: A hint that trials may share a trainable instance
            (Ray's actors). Dask's worker processes run trial after trial
            anyway, so nothing is started per trial.
        trial_name_creator: ``f(trial) -> str``: the trial's name, as shown in
            the console and the results.
        trial_dirname_creator: ``f(trial) -> str``: the name of the trial's
            directory under the experiment (a name, not a path).
        chdir_to_trial_dir: Whether a trial runs with its directory as the
            working directory (None: dasktune's default). Ray 2.8 deprecated
            this argument for the ``RAY_CHDIR_TO_TRIAL_DIR`` variable.
    """

    metric: str | None = None
    mode: str | None = None
    num_samples: int = 1
    scheduler: TrialScheduler | None = None
    search_alg: Searcher | None = None
    max_concurrent_trials: int | None = None
    time_budget_s: float | datetime.timedelta | None = None  # a float after __post_init__
    seed: int | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Callable[[Trial], str] | None = None
    trial_dirname_creator: Callable[[Trial], str] | None = None
    chdir_to_trial_dir: bool | None = None

    def __post_init__(self) -> None:
        validate_mode(self.mode, "TuneConfig(mode=...)")
        _check_optional_bool(self.reuse_actors, "TuneConfig(reuse_actors=...)")
        _check_optional_bool(self.chdir_to_trial_dir, "TuneConfig(chdir_to_trial_dir=...)")
        _check_callable(
            self.trial_name_creator,
            "TuneConfig(trial_name_creator=...)",
            "lambda trial: f'{trial.trial_id}_lr'",
        )
        _check_callable(
            self.trial_dirname_creator,
            "TuneConfig(trial_dirname_creator=...)",
            "lambda trial: f'trial_{trial.trial_id}'",
        )
        if not isinstance(self.num_samples, int) or self.num_samples == 0 or self.num_samples < -1:
            raise ValueError(
                f"TuneConfig(num_samples={self.num_samples!r}): num_samples must be a positive "
                "integer (or -1 for no limit, with time_budget_s or a stopper to end the run)."
            )
        if self.max_concurrent_trials is not None and (
            not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 0
        ):
            raise ValueError(
                f"TuneConfig(max_concurrent_trials={self.max_concurrent_trials!r}): it must be an "
                "integer >= 1, or None (or 0) to run as many trials at once as the cluster fits."
            )
        if isinstance(self.time_budget_s, datetime.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s is not None and (
            not is_finite_number(self.time_budget_s) or self.time_budget_s <= 0
        ):
            raise ValueError(
                f"TuneConfig(time_budget_s={self.time_budget_s!r}): the budget must be a positive "
                "number of seconds (or a datetime.timedelta), or None for no budget."
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints to keep, and how often class trainables save one.

    Args:
        num_to_keep: Keep at most this many checkpoints per trial (None: all);
            the newest is always kept as well.
        checkpoint_score_attribute: Rank checkpoints by this metric of the
            result they came with (default: keep the newest).
        checkpoint_score_order: ``"max"`` or ``"min"``: which scores are best.
        checkpoint_frequency: A class trainable saves a checkpoint every this
            many iterations (0: never).
        checkpoint_at_end: A class trainable saves one when it ends.

    Accepted for Ray's sake, with no effect here: ``_checkpoint_keep_all_ranks``
    and ``_checkpoint_upload_from_workers`` (Ray Train's multi-worker options;
    a trial here is one process, and workers write checkpoints themselves).
    """

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None
    _checkpoint_keep_all_ranks: bool | None = None
    _checkpoint_upload_from_workers: bool | None = None

    def __post_init__(self) -> None:
        for name in ("_checkpoint_keep_all_ranks", "_checkpoint_upload_from_workers"):
            if getattr(self, name) is not None:
                note_no_effect(
                    f"CheckpointConfig({name})",
                    "a trial is a single process that stores its own checkpoints.",
                )
        _check_optional_bool(self.checkpoint_at_end, "CheckpointConfig(checkpoint_at_end=...)")
        if self.num_to_keep is not None and (
            not isinstance(self.num_to_keep, int) or self.num_to_keep < 1
        ):
            raise ValueError(
                f"CheckpointConfig(num_to_keep={self.num_to_keep!r}): keep at least 1 checkpoint, "
                "or pass None to keep them all."
            )
        validate_mode(self.checkpoint_score_order, "CheckpointConfig(checkpoint_score_order=...)")
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(
                f"CheckpointConfig(checkpoint_frequency={self.checkpoint_frequency!r}): it must be "
                "an integer >= 0 (0 turns periodic checkpoints off)."
            )

    def retained(self, checkpoints: Sequence[CheckpointEntry]) -> Retention:
        """Which of a trial's ``checkpoints`` (oldest first) to keep; the rest may be deleted.

        Keeps all of them without ``num_to_keep``; else the ``num_to_keep`` best by
        ``checkpoint_score_attribute`` (ties: the newest; a checkpoint without the
        score counts as the worst), or the newest without one.  The newest is always
        kept as well, since a retried or resumed trial continues from it.

        Example:
            >>> config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
            >>> config.retained([("c0", {"acc": 0.9}), ("c1", {"acc": 0.5})]).kept
            [('c0', {'acc': 0.9}), ('c1', {'acc': 0.5})]
        """
        keep = self.num_to_keep
        if not keep or len(checkpoints) <= keep:
            return Retention(list(checkpoints))
        attr = self.checkpoint_score_attribute
        unscored: Mapping[str, Any] | None = None
        if attr:
            sign = 1.0 if self.checkpoint_score_order == "max" else -1.0

            def rank(position: int) -> tuple[float, int]:
                nonlocal unscored
                metrics = checkpoints[position][1]
                value = flatten(metrics).get(attr)
                if not is_finite_number(value):
                    unscored = metrics
                    return float("-inf"), position
                return sign * float(value), position

            best = sorted(range(len(checkpoints)), key=rank, reverse=True)[:keep]
            kept = [checkpoints[i] for i in sorted(best)]
        else:
            kept = list(checkpoints[-keep:])
        if checkpoints[-1] not in kept:
            kept.append(checkpoints[-1])
        return Retention(kept, unscored)


#: A stored checkpoint: its directory and the metrics of the result it was reported with.
CheckpointEntry = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Retention:
    """What :meth:`CheckpointConfig.retained` decided."""

    kept: list[CheckpointEntry]
    #: The metrics of a checkpoint that lacks the score attribute, if any (worth a warning).
    unscored: Mapping[str, Any] | None = None


@dataclass
class FailureConfig:
    """What to do when a trial raises: retry it, and/or end the experiment.

    Args:
        max_failures: Retry a failed trial this many times, from its latest
            checkpoint (0: never, -1: without limit).
        fail_fast: True ends the experiment when a trial has failed for good;
            ``"raise"`` also raises that trial's own exception from ``fit()``.
            Unlike Ray, it may be combined with ``max_failures``: it applies
            once the retries are spent.
    """

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if isinstance(self.fail_fast, str) and self.fail_fast.lower() == "raise":
            self.fail_fast = "raise"  # Ray accepts any case
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(
                f"FailureConfig(fail_fast={self.fail_fast!r}): use True, False or 'raise'."
            )
        if (
            not isinstance(self.max_failures, int)
            or isinstance(self.max_failures, bool)
            or self.max_failures < -1
        ):
            raise ValueError(
                f"FailureConfig(max_failures={self.max_failures!r}): it must be an integer: how "
                "many times a failed trial is retried (0: never, -1: without limit)."
            )


_NO_SYNC = (
    "trials write straight to storage_path; on a multi-machine cluster make it a "
    "filesystem every worker can reach."
)


@dataclass
class SyncConfig:
    """Accepted so that Ray scripts run; dasktune has nothing to synchronise.

    Ray copies trial directories from its nodes to ``storage_path``; dasktune's
    driver and workers write straight to ``storage_path``, which on a
    multi-machine cluster must be a filesystem every worker reaches. Every
    argument of Ray's ``SyncConfig`` is accepted and ignored.
    """

    upload_dir: str | None = None
    syncer: Any = None
    sync_period: float = 300
    sync_timeout: float = 1800
    sync_artifacts: bool = False
    sync_artifacts_on_checkpoint: bool = True
    sync_on_checkpoint: bool | None = None

    def __post_init__(self) -> None:
        note_no_effect("SyncConfig", _NO_SYNC)


@dataclass
class RunConfig:
    """Where results go, when trials stop, and how much is printed.

    Args:
        name: The experiment's directory under ``storage_path`` (default: the
            trainable's name and the time).
        storage_path: Where experiments go (default ``~/dasktune_results``, the
            setting ``dasktune.storage-path``). On a multi-machine cluster, a
            filesystem every worker can reach.
        stop: When trials stop: a dict of thresholds, a function
            ``f(trial_id, result) -> bool``, or a :class:`~dasktune.stopper.Stopper`.
        checkpoint_config, failure_config: See those classes (None: defaults).
        callbacks: :class:`~dasktune.Callback` instances, called on the driver.
        verbose: 0 silent, 1 status lines and a final table (the default, also
            for None), 2 and 3 also a line per result; False and True are 0 and 1.
        progress_reporter: What is printed while it runs, instead of the status
            line and final table: a :class:`~dasktune.CLIReporter` (its columns,
            rows and pace), a :class:`~dasktune.JupyterNotebookReporter`, or your
            own :class:`~dasktune.ProgressReporter`.
        log_to_file: Write what each trial prints into files in its directory:
            True for ``stdout`` and ``stderr``, a file name for both streams
            together, or a ``(stdout_name, stderr_name)`` pair; False writes
            nothing. See :meth:`log_file_names`.
        local_dir: Ray's older name for ``storage_path``, used when
            ``storage_path`` is not given.

    Accepted for Ray's sake, with no effect here (each logs so, once):
    ``storage_filesystem`` (results go to ``storage_path`` on the local or
    shared filesystem), ``sync_config`` (nothing to synchronise, see
    :class:`SyncConfig`).
    """

    name: str | None = None
    storage_path: str | os.PathLike[str] | None = None  # a str after __post_init__
    stop: Mapping[str, Any] | Callable[[str, dict[str, Any]], bool] | Any | None = None
    checkpoint_config: CheckpointConfig | None = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig | None = field(default_factory=FailureConfig)
    callbacks: list[Any] | None = None
    verbose: int | None = 1
    log_to_file: bool | str | tuple[str, str] = False
    storage_filesystem: Any = None
    sync_config: Any = None
    progress_reporter: Any = None
    local_dir: str | os.PathLike[str] | None = None
    #: "auto": when the same script runs again (a requeued batch job), continue the
    #: unfinished experiment of the same name (or, without a name, the newest unfinished
    #: one of the same trainable) instead of starting a new one. Default: dasktune.resume.
    resume: str | None = None

    def __post_init__(self) -> None:
        self.checkpoint_config = _config_object(
            self.checkpoint_config, CheckpointConfig, "checkpoint_config"
        )
        self.failure_config = _config_object(self.failure_config, FailureConfig, "failure_config")
        if self.verbose is None:
            self.verbose = 1
        if isinstance(self.verbose, bool):  # Ray's examples pass verbose=False
            self.verbose = int(self.verbose)
        if not isinstance(self.verbose, int) or not 0 <= self.verbose <= 3:
            raise ValueError(
                f"The value of `RunConfig(verbose=...)` is {self.verbose!r}, but it must be 0 "
                "(silent), 1 (status lines, the default), 2 or 3 (also a line per result)."
            )
        if isinstance(self.storage_path, os.PathLike):
            self.storage_path = os.fspath(self.storage_path)
        if self.local_dir is not None:
            local_dir = os.fspath(self.local_dir)
            if self.storage_path is not None and self.storage_path != local_dir:
                raise ValueError(
                    f"RunConfig(storage_path={self.storage_path!r}, local_dir={local_dir!r}): "
                    "local_dir is Ray's older name for storage_path. Pass storage_path only."
                )
            self.storage_path = local_dir
        self.log_file_names()  # checks log_to_file
        if self.storage_filesystem is not None:
            note_no_effect(
                "RunConfig(storage_filesystem)",
                "results go to storage_path on a filesystem the driver and workers "
                "share (a mounted bucket, NFS...).",
                logging.WARNING,
            )
        if self.sync_config is not None:
            note_no_effect("RunConfig(sync_config)", _NO_SYNC)
        from dasktune.reporters import check_reporter

        check_reporter(self.progress_reporter, "RunConfig(progress_reporter=...)")

    def log_file_names(self) -> tuple[str, str] | None:
        """The files (relative to the trial directory) for a trial's stdout and stderr, if any.

        Example:
            >>> RunConfig(log_to_file=True).log_file_names()
            ('stdout', 'stderr')
            >>> RunConfig(log_to_file="output.log").log_file_names()
            ('output.log', 'output.log')
        """
        value = self.log_to_file
        if value is False or value is None:
            return None
        if value is True:
            return ("stdout", "stderr")
        if isinstance(value, (str, os.PathLike)):
            names: tuple[Any, ...] = (value, value)
        elif isinstance(value, Sequence) and len(value) == 2:
            names = tuple(value)
        else:
            names = ()
        if not names or not all(isinstance(n, (str, os.PathLike)) and os.fspath(n) for n in names):
            raise ValueError(
                f"The value of `RunConfig(log_to_file=...)` is {value!r}, but it must be True, "
                "False, a file name for stdout and stderr together, or a (stdout_name, "
                "stderr_name) pair, such as ('out.txt', 'err.txt')."
            )
        stdout, stderr = (os.fspath(n) for n in names)
        for name in (stdout, stderr):
            if os.path.isabs(name) or os.path.normpath(name).startswith(os.pardir):
                raise ValueError(
                    f"RunConfig(log_to_file={value!r}): {name!r} must be a name inside the trial's "
                    "directory, not an absolute path or one that leaves it. Pass e.g. 'out.txt'."
                )
        return stdout, stderr


def _config_object(value: Any, cls: type, argument: str) -> Any:
    """``value`` if it is a ``cls``, a default ``cls()`` for None, else a clear error."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(
            f"The value of `RunConfig({argument}=...)` is {value!r}, but it must be a "
            f"{cls.__name__}, such as tune.{cls.__name__}(...), or None for the defaults."
        )
    return value
