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

``mode_of_operation="promotion"`` (dasktune only) is the promotion scheme of
the ASHA paper (Li et al. 2020, Algorithm 2) instead of Ray's stopping scheme:

* a trial that reaches a rung is recorded there (at every rung it reached, if
  ``time_attr`` jumped) and PAUSES at the highest one;
* ``choose_trial_to_run`` promotes a paused trial that ranks in the top
  ``floor(n / reduction_factor)`` of the ``n`` values recorded at its rung and
  was not promoted from it yet, the highest rung first (ties: the earlier
  value); if none can be promoted it returns None, so that the coordinator
  starts a new trial.  A trial that is that next promotion when it reaches the
  rung continues without pausing;
* with ``stop_last_trials=True`` a trial stops at ``max_t`` and never pauses
  there; the last promotion lets a trial run to ``max_t``;
* after ``on_no_more_trials`` rungs are settled from the lowest up, once no
  trial can still arrive at them: a rung from which no trial was promoted
  promotes its best paused trial anyway, and the other paused trials of a
  settled rung are stopped (STOP updates), so the experiment ends;
* NaN values rank below every number; trials that end, fail or are removed
  keep their values in the rungs (and their place in the top ranks).

At low concurrency stopping ASHA lets its first trials pass every rung (the
rungs are empty when they arrive), while promotion ASHA only promotes the
best of each group of ``reduction_factor`` trials.
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dasktune._decision_points import DecisionPoints
from dasktune._validation import as_number, is_finite_number, is_integer
from dasktune._validation import invalid_argument as _invalid
from dasktune.schedulers._common import (
    check_bool,
    check_metric,
    check_time_attr,
    sign_of,
)
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
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


@dataclass
class _Promotions:
    """Promotion ASHA's bookkeeping; values stay in the brackets' rungs.

    ``ladders[b]`` lists the indices (into ``rungs``) of bracket ``b``'s rungs
    where trials pause, lowest milestone first; ``promoted`` and ``forced``
    hold, per ``(bracket, position in the ladder)``, the trials promoted from
    there and those promoted by ``on_no_more_trials`` without ranking high enough.
    """

    ladders: list[list[int]]
    promoted: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    forced: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)
    draining: bool = False


def _rank_value(value: float) -> float:
    return -math.inf if math.isnan(value) else value


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
    check_time_attr(time_attr, 'training_iteration')
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
    check_bool("stop_last_trials", stop_last_trials, "Pass True to stop trials at max_t or False to let them run on.")


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
            rungs and promote the best; dasktune only).  See the module docstring.

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
        if mode_of_operation not in {op.value for op in _Operation}:
            raise _invalid(
                "mode_of_operation",
                mode_of_operation,
                "it must be 'stopping' or 'promotion'",
                "Pass 'stopping' for Ray Tune's ASHA or 'promotion' to pause trials at rungs "
                "and promote the best ones (the ASHA paper).",
            )
        self._operation = _Operation(mode_of_operation)
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
        self._updates: list[TrialUpdate] = []
        self._promotions = _Promotions(
            ladders=[
                [
                    index
                    for index in reversed(range(len(b.rungs)))
                    if not (stop_last_trials and b.rungs[index].milestone >= max_t)
                ]
                for b in self._brackets
            ]
        )

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def max_t(self) -> float:
        return self._max_t

    @property
    def mode_of_operation(self) -> str:
        """``"stopping"`` or ``"promotion"``."""
        return self._operation.value

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
        if self._operation is _Operation.PROMOTION:
            self._promotions.running.add(trial.trial_id)
            self._promotions.draining = False

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Stop ``trial`` at ``max_t`` or when it is below the cutoff of a new rung.

        A result without a numeric ``time_attr`` or ``metric`` (missing, None
        or a bool) is ignored: the trial continues.
        """
        self._require_metric_and_mode()
        now, value = self._progress_and_value(result)
        if now is None or value is None:
            return TrialDecision.CONTINUE
        if self._operation is _Operation.PROMOTION:
            return self._promotion_result(trial, now, value)
        if now >= self._max_t and self._stop_last_trials:
            decision = TrialDecision.STOP
        else:
            decision = self._bracket_of(trial).on_result(trial.trial_id, now, value)
        if decision is TrialDecision.STOP:
            self._num_stopped += 1
        return decision

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """Record the trial's last result at its rungs, as Ray Tune does, and forget it."""
        self._require_metric_and_mode()
        now, value = self._progress_and_value(result or {})
        if self._operation is _Operation.PROMOTION:
            index = self._trial_info.get(trial.trial_id)
            if index is not None and now is not None and value is not None:
                self._record_at_rungs(index, trial.trial_id, now, value)
            self._forget(trial.trial_id)
            return
        if now is None or value is None:
            return
        self._bracket_of(trial).on_result(trial.trial_id, now, value)
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, trial: Trial) -> None:
        """Forget ``trial``; values it recorded stay in the rungs."""
        if self._operation is _Operation.PROMOTION:
            self._forget(trial.trial_id)

    def on_trial_remove(self, trial: Trial) -> None:
        """Forget ``trial``; values it recorded stay in the rungs."""
        if self._operation is _Operation.PROMOTION:
            self._forget(trial.trial_id)
            return
        self._trial_info.pop(trial.trial_id, None)

    def on_no_more_trials(self) -> None:
        """Promotion mode: settle the rungs that no trial can reach any more (module docstring)."""
        if self._operation is _Operation.PROMOTION:
            self._promotions.draining = True
            self._settle(current=None)

    def pop_trial_updates(self) -> list[TrialUpdate]:
        """Promotion mode: STOP for the paused trials of settled rungs (none in stopping mode)."""
        updates, self._updates = self._updates, []
        return updates

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """Promotion mode: the next promotion, highest rung first; None to start a new trial.

        Stopping mode never pauses trials; it resumes the first paused trial.
        """
        if self._operation is _Operation.STOPPING:
            return super().choose_trial_to_run(trials)
        paused = {t.trial_id: t for t in trials}
        job = self._next_promotion(set(paused) & self._promotions.paused)
        if job is None:
            return None
        self._promote(*job)
        return paused[job[2]]

    def debug_string(self) -> str:
        """The rungs of each bracket with their number of values and cutoff."""
        lines = [
            f"Using AsyncHyperBand: num_stopped={self._num_stopped}, "
            f"time_attr={self._time_attr}, max_t={self._max_t}, "
            f"metric={self._metric}, mode={self._mode}"
            + (", mode_of_operation=promotion" if self._operation is _Operation.PROMOTION else "")
        ]
        for index, bracket in enumerate(self._brackets):
            rungs = " | ".join(self._describe_rung(bracket, rung) for rung in bracket.rungs)
            lines.append(f"Bracket {index}: {rungs or 'no rungs'}")
        return "\n".join(lines)

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

    # -- promotion mode --------------------------------------------------------

    def _promotion_result(self, trial: Trial, now: float, value: float) -> TrialDecision:
        """Record ``value`` at the rungs ``trial`` reached; pause unless it is promoted now."""
        book, tid = self._promotions, trial.trial_id
        if tid in book.stopped:
            return TrialDecision.STOP
        self._bracket_of(trial)
        index = self._trial_info[tid]
        book.paused.discard(tid)
        book.running.add(tid)
        if now >= self._max_t and self._stop_last_trials:
            self._num_stopped += 1
            self._forget(tid)
            return TrialDecision.STOP
        if not self._record_at_rungs(index, tid, now, value):
            return TrialDecision.CONTINUE
        book.running.discard(tid)
        book.paused.add(tid)
        if self._settle(current=tid):
            return TrialDecision.STOP
        job = self._next_promotion(set(book.paused))
        if job is not None and job[2] == tid:
            self._promote(*job)
            return TrialDecision.CONTINUE
        return TrialDecision.PAUSE

    def _record_at_rungs(self, index: int, tid: str, now: float, value: float) -> bool:
        """Record ``value`` at every ladder rung reached for the first time; True if any."""
        bracket, ladder = self._brackets[index], self._promotions.ladders[index]
        reached = [
            position
            for position, rung_index in enumerate(ladder)
            if now >= bracket.rungs[rung_index].milestone
            and tid not in bracket.rungs[rung_index].recorded
        ]
        for position in reached:
            bracket.rungs[ladder[position]].recorded[tid] = value
        for position in range(max(reached, default=0)):  # it went past these rungs
            self._promotions.promoted.setdefault((index, position), set()).add(tid)
        return bool(reached)

    def _level(self, index: int, tid: str) -> int:
        """The ladder position of the highest rung where ``tid`` is recorded; -1 if none."""
        bracket, ladder = self._brackets[index], self._promotions.ladders[index]
        for position in reversed(range(len(ladder))):
            if tid in bracket.rungs[ladder[position]].recorded:
                return position
        return -1

    def _ranked(self, index: int, position: int) -> list[str]:
        """Trial ids recorded at a ladder rung, best first (ties: recorded earlier first)."""
        recorded = self._brackets[index].rungs[self._promotions.ladders[index][position]].recorded
        return sorted(recorded, key=lambda tid: -_rank_value(recorded[tid]))

    def _promotable(self, index: int, position: int) -> list[str]:
        """Unpromoted trials in the top ``floor(n / rf)`` of a rung (or forced), best first."""
        ranked = self._ranked(index, position)
        quota = math.floor(len(ranked) / self._reduction_factor)
        chosen = set(ranked[:quota]) | self._promotions.forced.get((index, position), set())
        done = self._promotions.promoted.get((index, position), set())
        return [tid for tid in ranked if tid in chosen and tid not in done]

    def _next_promotion(self, allowed: set[str]) -> tuple[int, int, str] | None:
        """``(bracket, position, trial)`` of the best promotable trial at the highest rung."""
        best: tuple[int, int, str] | None = None
        best_milestone = -math.inf
        for index, ladder in enumerate(self._promotions.ladders):
            for position in reversed(range(len(ladder))):
                milestone = self._brackets[index].rungs[ladder[position]].milestone
                if milestone <= best_milestone:
                    break
                found = next(
                    (
                        tid
                        for tid in self._promotable(index, position)
                        if tid in allowed and self._level(index, tid) == position
                    ),
                    None,
                )
                if found is not None:
                    best, best_milestone = (index, position, found), milestone
                    break
        return best

    def _promote(self, index: int, position: int, tid: str) -> None:
        self._promotions.promoted.setdefault((index, position), set()).add(tid)
        self._promotions.paused.discard(tid)
        self._promotions.running.add(tid)

    def _forget(self, tid: str) -> None:
        """``tid`` ended: it will neither run nor be promoted; its values stay."""
        book = self._promotions
        book.paused.discard(tid)
        book.running.discard(tid)
        self._trial_info.pop(tid, None)
        self._settle(current=None)

    def _settle(self, current: str | None) -> bool:
        """After ``on_no_more_trials``: settle rungs no trial can reach any more, lowest first.

        A settled rung that promoted no trial promotes its best paused trial;
        its other paused trials are stopped (STOP updates).  Returns True if
        ``current`` (the reporting trial) is one of them: it gets STOP instead.
        """
        book = self._promotions
        if not book.draining:
            return False
        stopped_current = False
        for index, ladder in enumerate(self._promotions.ladders):
            alive = [t for t in book.running | book.paused if self._trial_info.get(t) == index]
            for position in range(len(ladder)):
                if self._can_still_arrive(index, position, alive):
                    break
                promotable = set(self._promotable(index, position))
                waiting = [
                    t
                    for t in self._ranked(index, position)
                    if t in book.paused
                    and self._level(index, t) == position
                    and t not in book.promoted.get((index, position), set())
                ]
                if not waiting:
                    continue
                keep = {t for t in waiting if t in promotable}
                if not keep and not book.promoted.get((index, position)):
                    book.forced.setdefault((index, position), set()).add(waiting[0])
                    keep = {waiting[0]}
                for t in waiting:
                    if t in keep:
                        continue
                    book.paused.discard(t)
                    book.stopped.add(t)
                    self._num_stopped += 1
                    if t == current:
                        stopped_current = True
                    else:
                        self._updates.append(TrialUpdate(t, TrialDecision.STOP))
        return stopped_current

    def _can_still_arrive(self, index: int, position: int, alive: list[str]) -> bool:
        """Whether a live trial of the bracket may still reach ladder rung ``position``."""
        book = self._promotions
        for tid in alive:
            level = self._level(index, tid)
            if level >= position:
                continue
            if tid in book.running:
                return True
            if tid in book.paused and tid in self._promotable(index, level):
                return True
        return False

    def _choose_bracket(self) -> int:
        """A random bracket, with probability proportional to exp(number of rungs)."""
        if len(self._brackets) == 1:
            return 0
        sizes = np.array([len(b.rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        generator = self._rng if self._rng is not None else np.random
        return int(generator.choice(len(self._brackets), p=probs / probs.sum()))



ASHAScheduler = AsyncHyperBandScheduler
