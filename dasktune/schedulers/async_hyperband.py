"""Asynchronous successive halving (ASHA), making the decisions Ray Tune makes.

Each bracket has rungs at ``grace_period * reduction_factor ** (k + s)``
(``s`` is the bracket's index).  When a trial first reaches a rung, its metric
value is compared with the ``1 - 1 / reduction_factor`` quantile of the values
that earlier trials recorded there; a trial below it is stopped.  The details
below follow Ray Tune's ``AsyncHyperBandScheduler`` so that a ported script gets
the same decisions:

* rungs are visited from the highest milestone down, and a result is recorded
  at one rung at most (the highest one reached and not yet recorded);
* with ``stop_last_trials=True`` a rung already recorded is skipped, so a trial
  whose ``time_attr`` jumped past several rungs fills in the lower ones at its
  following results; with ``stop_last_trials=False`` the visit ends at the first
  reached rung that is already recorded;
* for ``mode="min"`` the metric is negated before it is recorded;
* the quantile ignores NaN values (a rung holding only NaN has a NaN cutoff,
  which stops no one), and a NaN metric is recorded but never stopped;
* a completed trial's last result is recorded like any other result, and
  values recorded by trials that ended, failed or were removed stay in the rungs.

``mode_of_operation="promotion"`` (dasktune only) builds a
:class:`~dasktune.schedulers.asha_promotion.PromotionASHAScheduler`, the
promotion scheme of the ASHA paper (Li et al. 2020, Algorithm 2), with the same
brackets and arguments; see :mod:`dasktune.schedulers.asha_promotion`.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dasktune._validation import as_number, is_finite_number, is_integer
from dasktune._validation import invalid_argument as _invalid
from dasktune.decision_points import DecisionPoints
from dasktune.schedulers._common import (
    check_bool,
    check_metric,
    check_time_attr,
    sign_of,
)
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import Rung, TrialDecision
from dasktune.trial import Trial

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler"]


@dataclass
class _Rung:
    """A milestone of a bracket and the signed metric values recorded there, by trial id."""

    milestone: float
    recorded: dict[str, float] = field(default_factory=dict)


def _rung_milestones(min_t: float, max_t: float, reduction_factor: float, s: int) -> list[float]:
    """Milestones of bracket ``s``, highest first, computed exactly as Ray Tune does.

    The count comes from a floating-point logarithm, as in Ray, so for example
    ``max_t=243, grace_period=1, reduction_factor=3`` has no rung at 243.
    """
    count = int(np.log(max_t / min_t) / np.log(reduction_factor) - s + 1)
    return [min_t * reduction_factor ** (k + s) for k in reversed(range(count))]


class _Bracket:
    """The rungs of one bracket and the decisions taken at them."""

    def __init__(
        self, min_t: float, max_t: float, reduction_factor: float, s: int, stop_last_trials: bool
    ) -> None:
        self.reduction_factor = reduction_factor
        self.stop_last_trials = stop_last_trials
        self.rungs = [_Rung(m) for m in _rung_milestones(min_t, max_t, reduction_factor, s)]

    def cutoff(self, rung: _Rung) -> float | None:
        """The NaN-ignoring ``1 - 1/rf`` quantile of ``rung``; None if nothing is recorded."""
        if not rung.recorded:
            return None
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rungs, inf - inf
            quantile = np.nanpercentile(
                list(rung.recorded.values()), (1 - 1 / self.reduction_factor) * 100
            )
        return float(quantile)

    def on_result(self, trial_id: str, now: float, value: float) -> TrialDecision:
        """Record ``value`` (signed: higher is better) at the highest new rung reached."""
        for rung in self.rungs:
            reached = now >= rung.milestone
            seen = trial_id in rung.recorded
            if reached and seen and not self.stop_last_trials:
                break
            if not reached or seen:
                continue
            cutoff = self.cutoff(rung)
            rung.recorded[trial_id] = value
            if cutoff is not None and value < cutoff:
                return TrialDecision.STOP
            return TrialDecision.CONTINUE
        return TrialDecision.CONTINUE


class _Operation(str, enum.Enum):
    """How ASHA acts at a rung: Ray's early stopping, or the paper's promotions."""

    STOPPING = "stopping"
    PROMOTION = "promotion"


def _validate(
    time_attr: Any,
    metric: Any,
    max_t: Any,
    grace_period: Any,
    reduction_factor: Any,
    brackets: Any,
    stop_last_trials: Any,
) -> None:
    """Raise a ValueError naming the first invalid constructor argument."""
    check_time_attr(time_attr, "training_iteration")
    check_metric(metric)
    if not is_finite_number(max_t) or max_t <= 0:
        raise _invalid(
            "max_t",
            max_t,
            "it must be a finite number > 0",
            "Pass the most `time_attr` units a trial may train, such as max_t=100.",
        )
    if not is_finite_number(grace_period) or grace_period <= 0:
        raise _invalid(
            "grace_period",
            grace_period,
            "it must be a finite number > 0",
            "Pass the `time_attr` units a trial trains before it can be stopped, such as 1.",
        )
    if grace_period > max_t:
        raise _invalid(
            "grace_period",
            grace_period,
            f"it must be <= max_t ({max_t!r})",
            "Lower grace_period or raise max_t.",
        )
    if not is_finite_number(reduction_factor) or reduction_factor <= 1:
        raise _invalid(
            "reduction_factor",
            reduction_factor,
            "it must be a finite number > 1",
            "Pass reduction_factor=4 (keep the best quarter at each rung) or 2 or 3.",
        )
    if not is_integer(brackets) or brackets < 1:
        raise _invalid(
            "brackets", brackets, "it must be an integer >= 1", "Pass brackets=1 (the usual ASHA)."
        )
    check_bool(
        "stop_last_trials",
        stop_last_trials,
        "Pass True to stop trials at max_t or False to let them run on.",
    )


def _check_operation(mode_of_operation: Any, operation: _Operation, name: str) -> None:
    """Raise unless ``mode_of_operation`` names ``operation``, the algorithm of class ``name``."""
    if mode_of_operation not in {op.value for op in _Operation}:
        raise _invalid(
            "mode_of_operation",
            mode_of_operation,
            "it must be 'stopping' or 'promotion'",
            "Pass 'stopping' for Ray Tune's ASHA or 'promotion' to pause trials at rungs "
            "and promote the best ones (the ASHA paper).",
        )
    if mode_of_operation != operation.value:
        raise _invalid(
            "mode_of_operation",
            mode_of_operation,
            f"{name} runs {operation.value!r} ASHA",
            "Build AsyncHyperBandScheduler(mode_of_operation=...), which picks the class, "
            "or subclass PromotionASHAScheduler for promotions.",
        )


class AsyncHyperBandScheduler(FIFOScheduler):
    """Asynchronous successive halving (Li et al., https://arxiv.org/abs/1810.05934).

    Ray Tune's ``AsyncHyperBandScheduler`` (alias ``ASHAScheduler``), with the
    same arguments and the same decisions (see the module docstring).

    Args:
        time_attr: Result field measuring training progress; it must grow
            monotonically (``"training_iteration"``, ``"time_total_s"``...).
        metric: Result field to optimise.  If None, set it through
            ``TuneConfig(metric=...)`` (:meth:`set_search_properties`).
        mode: ``"min"`` or ``"max"``; None to take it from the ``TuneConfig``.
        max_t: Trials are stopped once ``result[time_attr] >= max_t`` (unless
            ``stop_last_trials`` is False).
        grace_period: The first rung; no trial is stopped by a rung before it.
        reduction_factor: Rungs are ``reduction_factor`` apart, and about
            ``1 / reduction_factor`` of the trials reaching a rung go on.
        brackets: Number of brackets; bracket ``s`` starts at
            ``grace_period * reduction_factor ** s``.  New trials are placed in a
            bracket at random with probability proportional to
            ``exp(number of rungs)``, as Ray Tune does.
        stop_last_trials: Whether to stop trials when they reach ``max_t``.
        seed: Seed for the bracket draw (dasktune only).  If None the draw uses
            NumPy's global generator, as Ray Tune does.  Unused with one bracket.
        mode_of_operation: ``"stopping"`` (Ray Tune's ASHA: stop trials below a
            rung's cutoff) or ``"promotion"`` (the ASHA paper: pause trials at
            rungs and promote the best; dasktune only), which builds a
            :class:`~dasktune.schedulers.asha_promotion.PromotionASHAScheduler`,
            a subclass.

    Raises:
        ValueError: If an argument is invalid; the message names it.

    Example:
        >>> from dasktune.trial import Trial
        >>> asha = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=8, reduction_factor=2)
        >>> asha.milestones
        ((8, 4, 2, 1),)
        >>> a, b = Trial("a", {}), Trial("b", {})
        >>> asha.on_trial_add(a); asha.on_trial_add(b)
        >>> str(asha.on_trial_result(a, {"training_iteration": 1, "acc": 0.5}))
        'CONTINUE'
        >>> str(asha.on_trial_result(b, {"training_iteration": 1, "acc": 0.4}))
        'STOP'
    """

    needs_metric = True

    _OPERATION = _Operation.STOPPING

    def __new__(cls, *args: Any, mode_of_operation: str = "stopping", **kwargs: Any) -> Any:
        """``mode_of_operation="promotion"`` builds a ``PromotionASHAScheduler``.

        That subclass (:mod:`dasktune.schedulers.asha_promotion`) holds the
        paper's promotion scheme, so that each class holds one algorithm while
        users keep Ray's one constructor.
        """
        if cls is AsyncHyperBandScheduler and mode_of_operation == _Operation.PROMOTION.value:
            from dasktune.schedulers.asha_promotion import PromotionASHAScheduler  # a subclass

            cls = PromotionASHAScheduler
        return super().__new__(cls)

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
        *,
        seed: int | None = None,
        mode_of_operation: str = "stopping",
    ) -> None:
        _validate(
            time_attr, metric, max_t, grace_period, reduction_factor, brackets, stop_last_trials
        )
        self._set_metric_and_mode(metric, mode)
        _check_operation(mode_of_operation, self._OPERATION, type(self).__name__)
        self._time_attr = time_attr
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [
            _Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
            for s in range(int(brackets))
        ]
        self._trial_info: dict[str, int] = {}  # trial id -> index of its bracket
        self._num_stopped = 0
        self._rng = np.random.RandomState(seed) if seed is not None else None

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def max_t(self) -> float:
        return self._max_t

    @property
    def mode_of_operation(self) -> str:
        """``"stopping"`` or ``"promotion"``."""
        return self._OPERATION.value

    @property
    def milestones(self) -> tuple[tuple[float, ...], ...]:
        """The rung milestones of each bracket, highest first (Ray Tune's order)."""
        return tuple(tuple(rung.milestone for rung in b.rungs) for b in self._brackets)

    def trial_bracket(self, trial_id: str) -> int | None:
        """Index of the bracket of a running trial; None if unknown or finished."""
        return self._trial_info.get(trial_id)

    def decision_points(self) -> DecisionPoints:
        """``DecisionPoints.at(time_attr, every rung of every bracket and max_t)``."""
        points = {rung.milestone for b in self._brackets for rung in b.rungs}
        points.add(self._max_t)
        return DecisionPoints.at(self._time_attr, points)

    def on_trial_add(self, trial: Trial) -> None:
        """Place ``trial`` in a bracket."""
        self._require_metric_and_mode()
        self._trial_info[trial.trial_id] = self._choose_bracket()

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Stop ``trial`` at ``max_t`` or when it is below the cutoff of a new rung.

        A result without a numeric ``time_attr`` or ``metric`` (missing, None
        or a bool) is ignored: the trial continues.
        """
        self._require_metric_and_mode()
        now, value = self._progress_and_value(result)
        if now is None or value is None:
            return TrialDecision.CONTINUE
        return self._decide(trial, now, value)

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """Record the trial's last result at its rungs, as Ray Tune does, and forget it."""
        self._require_metric_and_mode()
        now, value = self._progress_and_value(result or {})
        if now is None or value is None:
            return
        self._bracket_of(trial).on_result(trial.trial_id, now, value)
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, trial: Trial) -> None:
        """Forget ``trial``; values it recorded stay in the rungs."""
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        """The rungs of each bracket with their number of values and cutoff."""
        lines = [self._debug_header()]
        for index, bracket in enumerate(self._brackets):
            rungs = " | ".join(self._describe_rung(bracket, rung) for rung in bracket.rungs)
            lines.append(f"Bracket {index}: {rungs or 'no rungs'}")
        return "\n".join(lines)

    def rungs(self) -> tuple[Rung, ...]:
        """Each bracket's rungs, lowest first: the values recorded there and the cutoff."""
        sign = self._sign()
        return tuple(
            Rung(
                index,
                rung.milestone,
                {tid: sign * v for tid, v in rung.recorded.items()},
                None
                if (cut := self._rung_cutoff(bracket, rung)) is None or np.isnan(cut)
                else sign * cut,
            )
            for index, bracket in enumerate(self._brackets)
            for rung in reversed(bracket.rungs)
        )

    def _rung_cutoff(self, bracket: _Bracket, rung: _Rung) -> float | None:
        """The signed value a trial had to reach at ``rung`` to go on."""
        return bracket.cutoff(rung)

    def _decide(self, trial: Trial, now: float, value: float) -> TrialDecision:
        """The decision for a result with a time and a signed value (Ray's stopping rule)."""
        if now >= self._max_t and self._stop_last_trials:
            decision = TrialDecision.STOP
        else:
            decision = self._bracket_of(trial).on_result(trial.trial_id, now, value)
        if decision is TrialDecision.STOP:
            self._num_stopped += 1
        return decision

    def _debug_header(self) -> str:
        return (
            f"Using AsyncHyperBand: num_stopped={self._num_stopped}, "
            f"time_attr={self._time_attr}, max_t={self._max_t}, "
            f"metric={self._metric}, mode={self._mode}"
        )

    def _describe_rung(self, bracket: _Bracket, rung: _Rung) -> str:
        cutoff = bracket.cutoff(rung)
        shown = "None" if cutoff is None else f"{self._sign() * cutoff:.4g}"
        return (
            f"{self._time_attr} {rung.milestone:g}: {len(rung.recorded)} recorded, cutoff {shown}"
        )

    def _progress_and_value(self, result: dict[str, Any]) -> tuple[float | None, float | None]:
        """``result[time_attr]`` and the signed metric (higher is better), or None."""
        now = as_number(result.get(self._time_attr))
        value = as_number(result.get(self._metric)) if self._metric else None
        return now, None if value is None else self._sign() * value

    def _sign(self) -> float:
        return sign_of(self._mode)

    def _bracket_of(self, trial: Trial) -> _Bracket:
        index = self._trial_info.get(trial.trial_id)
        if index is None:  # a result of a trial never added, or arriving after removal
            index = self._trial_info[trial.trial_id] = self._choose_bracket()
        return self._brackets[index]

    def _choose_bracket(self) -> int:
        """A random bracket, with probability proportional to exp(number of rungs)."""
        if len(self._brackets) == 1:
            return 0
        sizes = np.array([len(b.rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        generator = self._rng if self._rng is not None else np.random
        return int(generator.choice(len(self._brackets), p=probs / probs.sum()))


ASHAScheduler = AsyncHyperBandScheduler
