"""Promotion ASHA: the ASHA paper's promotions instead of Ray Tune's early stopping.

``AsyncHyperBandScheduler(mode_of_operation="promotion")`` (or
``ASHAScheduler(...)``; dasktune only) builds a :class:`PromotionASHAScheduler`,
which keeps the brackets, rungs and arguments of
:class:`~dasktune.schedulers.async_hyperband.AsyncHyperBandScheduler` but acts
at a rung as in Li et al. 2020, Algorithm 2:

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

import math
from dataclasses import dataclass, field
from typing import Any

from dasktune.schedulers.async_hyperband import AsyncHyperBandScheduler, _Operation
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.trial import Trial

__all__ = ["PromotionASHAScheduler"]


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


class PromotionASHAScheduler(AsyncHyperBandScheduler):
    """ASHA that pauses trials at rungs and promotes the best (see the module docstring).

    Build it as ``AsyncHyperBandScheduler(mode_of_operation="promotion", ...)``;
    it takes the arguments of
    :class:`~dasktune.schedulers.async_hyperband.AsyncHyperBandScheduler`.

    Example:
        >>> from dasktune.trial import Trial
        >>> asha = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=8,
        ...                                reduction_factor=2, mode_of_operation="promotion")
        >>> type(asha).__name__, asha.mode_of_operation
        ('PromotionASHAScheduler', 'promotion')
        >>> a, b = Trial("a", {}), Trial("b", {})
        >>> asha.on_trial_add(a); asha.on_trial_add(b)
        >>> str(asha.on_trial_result(a, {"training_iteration": 1, "acc": 0.5}))
        'PAUSE'
        >>> str(asha.on_trial_result(b, {"training_iteration": 1, "acc": 0.9}))
        'CONTINUE'
    """

    _OPERATION = _Operation.PROMOTION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mode_of_operation", _Operation.PROMOTION.value)
        super().__init__(*args, **kwargs)
        self._updates: list[TrialUpdate] = []
        self._promotions = _Promotions(
            ladders=[
                [
                    index
                    for index in reversed(range(len(b.rungs)))
                    if not (self._stop_last_trials and b.rungs[index].milestone >= self._max_t)
                ]
                for b in self._brackets
            ]
        )

    def on_trial_add(self, trial: Trial) -> None:
        """Place ``trial`` in a bracket; more trials keep the rungs open."""
        super().on_trial_add(trial)
        self._promotions.running.add(trial.trial_id)
        self._promotions.draining = False

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """Record the trial's last result at the rungs it reached, and forget it."""
        self._require_metric_and_mode()
        now, value = self._progress_and_value(result or {})
        index = self._trial_info.get(trial.trial_id)
        if index is not None and now is not None and value is not None:
            self._record_at_rungs(index, trial.trial_id, now, value)
        self._forget(trial.trial_id)

    def on_trial_error(self, trial: Trial) -> None:
        """Forget ``trial``; values it recorded stay in the rungs."""
        self._forget(trial.trial_id)

    def on_trial_remove(self, trial: Trial) -> None:
        """Forget ``trial``; values it recorded stay in the rungs."""
        self._forget(trial.trial_id)

    def on_no_more_trials(self) -> None:
        """Settle the rungs that no trial can reach any more (module docstring)."""
        self._promotions.draining = True
        self._settle(current=None)

    def pop_trial_updates(self) -> list[TrialUpdate]:
        """STOP for the paused trials of settled rungs."""
        updates, self._updates = self._updates, []
        return updates

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """The next promotion, highest rung first; None to start a new trial."""
        paused = {t.trial_id: t for t in trials}
        job = self._next_promotion(set(paused) & self._promotions.paused)
        if job is None:
            return None
        self._promote(*job)
        return paused[job[2]]

    def _debug_header(self) -> str:
        return super()._debug_header() + ", mode_of_operation=promotion"

    def _decide(self, trial: Trial, now: float, value: float) -> TrialDecision:
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

    # -- promotions ------------------------------------------------------------

    def _rung_cutoff(self, bracket: Any, rung: Any) -> float | None:
        """The lowest value among the top ``floor(n / rf)`` recorded: the promotion line."""
        ranked = sorted((_rank_value(v) for v in rung.recorded.values()), reverse=True)
        quota = math.floor(len(ranked) / self._reduction_factor)
        return ranked[quota - 1] if quota and math.isfinite(ranked[quota - 1]) else None

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
