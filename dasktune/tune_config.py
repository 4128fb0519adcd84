"""The configuration objects of an experiment, and the checkpoint-retention policy.

``TuneConfig`` says how to search, ``RunConfig`` where results go and when trials
stop, ``CheckpointConfig`` which checkpoints to keep and ``FailureConfig`` what to
do when a trial fails.  All are plain data checked on creation; the retention
policy (:meth:`CheckpointConfig.retained`) is a pure function of a trial's
checkpoints, applied by the storage layer.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dasktune._util import flatten
from dasktune._validation import is_finite_number, validate_mode

if TYPE_CHECKING:
    from dasktune.schedulers.trial_scheduler import TrialScheduler
    from dasktune.search.searcher import Searcher

@dataclass
class TuneConfig:
    """How to search: the metric, how many trials, which searcher and scheduler."""

    metric: str | None = None
    mode: str | None = None
    num_samples: int = 1
    scheduler: TrialScheduler | None = None
    search_alg: Searcher | None = None
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        validate_mode(self.mode, "TuneConfig(mode=...)")
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
        if self.time_budget_s is not None and (not is_finite_number(self.time_budget_s)
                                               or self.time_budget_s <= 0):
            raise ValueError(
                f"TuneConfig(time_budget_s={self.time_budget_s!r}): the budget must be a positive "
                "number of seconds (or a datetime.timedelta), or None for no budget."
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints to keep, and how often class trainables save one."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or self.num_to_keep < 1):
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
    """What to do when a trial raises: retry it, and/or end the experiment."""

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(
                f"FailureConfig(fail_fast={self.fail_fast!r}): use True, False or 'raise'."
            )
        if (not isinstance(self.max_failures, int) or isinstance(self.max_failures, bool)
                or self.max_failures < -1):
            raise ValueError(
                f"FailureConfig(max_failures={self.max_failures!r}): it must be an integer: how "
                "many times a failed trial is retried (0: never, -1: without limit)."
            )


@dataclass
class RunConfig:
    """Where results go, when trials stop, and how much is printed."""

    name: str | None = None
    storage_path: str | None = None
    stop: Mapping[str, Any] | Callable[[str, dict[str, Any]], bool] | Any | None = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    callbacks: list[Any] | None = None
    verbose: int = 1
    #: "auto": when the same script runs again (a requeued batch job), continue the
    #: unfinished experiment of the same name (or, without a name, the newest unfinished
    #: one of the same trainable) instead of starting a new one. Default: dasktune.resume.
    resume: str | None = None
