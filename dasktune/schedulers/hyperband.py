"""Synchronous HyperBand, with the brackets and milestones of Ray Tune's ``HyperBandScheduler``.

HyperBand (Li et al., https://arxiv.org/abs/1603.06560) runs successive halving
in brackets of different aggressiveness.  As in Ray Tune:

* there are ``s_max_1 = round(log(max_t) / log(eta)) + 1`` bracket kinds per
  band; bracket ``s`` holds ``n0(s) = ceil(s_max_1 / (s + 1) * eta ** s)``
  trials and its first milestone is ``r0(s) = int(max_t * eta ** -s)``; each
  halving keeps ``n = ceil(n / eta)`` trials and moves the milestone to
  ``int(min(r * eta, max_t))`` (the last milestone can be below ``max_t``:
  81 for ``max_t=100, eta=3``);
* new trials fill the newest bracket, bracket kinds ``s = 0, 1, ...`` in turn
  (a kind with ``r0(s) == 0`` is skipped), then a new band starts; a bracket
  is full once ``n0(s)`` trials joined it (Ray counts its live trials);
* a trial that reaches its bracket's milestone pauses until every live trial
  of the bracket has reached it; then the bracket keeps the best ``n`` by the
  metric at the milestone (ties: the trial added later wins, as Ray's stable
  sort does) and stops the others.

dasktune's coordinator creates trials only when a worker is free, where Ray
creates a bracket's trials ahead.  So a round cannot complete while its
bracket is still filling: it completes once the bracket is full, a newer
bracket has started, or the coordinator calls :meth:`on_no_more_trials`.
Trials added after a bracket's first halving go to a new bracket.  Other
choices, where Ray pauses a trial only to stop it later:

* a trial stops as soon as it reaches ``max_t``, or the last milestone of its
  bracket in the final round (Ray pauses it there until the round is over,
  then stops it); with ``stop_last_trials=False`` final-round trials run on;
* a NaN metric ranks below every number; a trial that ends, fails or is
  removed leaves its round, which may then complete.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dasktune._validation import invalid_argument as _invalid
from dasktune._validation import is_finite_number
from dasktune.decision_points import DecisionPoints
from dasktune.schedulers._common import (
    check_bool,
    check_metric,
    check_time_attr,
    sign_of,
    time_and_score,
)
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import Rung, TrialDecision, TrialUpdate
from dasktune.trial import Trial

__all__ = ["HyperBandScheduler"]


@dataclass
class _Progress:
    """The latest result of a trial: its time and its signed metric (higher is better)."""

    time: float
    value: float


@dataclass
class _Bracket:
    """One successive-halving run: its trials, its current milestone and its rounds."""

    band: int
    s: int
    size: int  # Ray's ``_n``: how many trials the current round keeps
    milestone: float  # Ray's ``_cumul_r``
    halvings_left: int
    total_work: float
    live: dict[str, _Progress | None] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # reached the milestone, paused or pausing
    resumable: set[str] = field(default_factory=set)  # told to continue, not resumed yet
    added: int = 0
    halvings_done: int = 0
    closed: bool = False  # no new trial joins (on_no_more_trials)
    progress: float = 0.0
    # (milestone, signed values there, signed cutoff) of each halving done, for rungs()
    halvings: list[tuple[float, dict[str, float], float | None]] = field(default_factory=list)

    def round_reached(self) -> bool:
        """Whether every live trial has reached the milestone."""
        return all(p is not None and p.time >= self.milestone for p in self.live.values())

    def completion(self) -> float:
        return min(self.progress / self.total_work, 1.0) if self.total_work > 0 else 1.0


def _milestones(max_t: float, eta: float, s: int) -> list[int]:
    """The milestones of bracket ``s``: ``r0`` and one per halving, as Ray computes them."""
    r = int(max_t * eta ** (-s))
    milestones = [r]
    for _ in range(s):
        r = int(min(r * eta, max_t))
        milestones.append(r)
    return milestones


def _sizes(s_max_1: int, eta: float, s: int) -> list[int]:
    """How many trials each round of bracket ``s`` holds (``n0``, then ``ceil(n / eta)``)."""
    n = int(np.ceil(s_max_1 / (s + 1) * eta**s))
    sizes = [n]
    for _ in range(s):
        n = int(np.ceil(n / eta))
        sizes.append(n)
    return sizes


class HyperBandScheduler(FIFOScheduler):
    """Synchronous HyperBand (Ray Tune's ``HyperBandScheduler``), see the module docstring.

    Args:
        time_attr: Result field measuring training progress; it must grow
            monotonically (``"training_iteration"``, ``"time_total_s"``...).
        metric: Result field to optimise.  If None, set it through
            ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; None to take it from the ``TuneConfig``.
        max_t: The most ``time_attr`` units a trial trains.
        reduction_factor: ``eta``: each halving keeps ``1 / eta`` of a bracket.
        stop_last_trials: Whether to stop the trials of a bracket's final round
            at its last milestone (else they run on until something else stops them).

    Raises:
        ValueError: If an argument is invalid; the message names it.

    Example:
        >>> hb = HyperBandScheduler(metric="acc", mode="max", max_t=9)
        >>> [(s, sizes, milestones) for s, sizes, milestones in hb.brackets]
        [(0, [3], [9]), (1, [5, 2], [3, 9]), (2, [9, 3, 1], [1, 3, 9])]
    """

    needs_metric = True

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ) -> None:
        _validate(time_attr, metric, max_t, reduction_factor, stop_last_trials)
        self._set_metric_and_mode(metric, mode)
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(np.round(np.log(max_t) / np.log(reduction_factor))) + 1
        self._brackets: list[_Bracket] = []
        self._band_slots: list[int] = []  # bracket kinds used per band (skipped ones too)
        self._trial_info: dict[str, int] = {}  # trial id -> index in _brackets
        self._stopped: set[str] = set()
        self._updates: list[TrialUpdate] = []
        self._num_stopped = 0

    # -- description -----------------------------------------------------

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def max_t(self) -> float:
        return self._max_t

    @property
    def brackets(self) -> list[tuple[int, list[int], list[int]]]:
        """``(s, round sizes, milestones)`` of each bracket kind of a band (but r0 == 0 ones)."""
        kinds = []
        for s in range(self._s_max_1):
            milestones = _milestones(self._max_t, self._eta, s)
            if milestones[0] > 0:
                kinds.append((s, _sizes(self._s_max_1, self._eta, s), milestones))
        return kinds

    def trial_bracket(self, trial_id: str) -> tuple[int, int] | None:
        """``(band, s)`` of the bracket of ``trial_id``; None if unknown."""
        index = self._trial_info.get(trial_id)
        if index is None:
            return None
        bracket = self._brackets[index]
        return bracket.band, bracket.s

    def decision_points(self) -> DecisionPoints:
        """Every milestone of every bracket kind, and ``max_t``."""
        points = {float(m) for _, _, milestones in self.brackets for m in milestones}
        points.add(float(self._max_t))
        return DecisionPoints.at(self._time_attr, points)

    # -- events ------------------------------------------------------------

    def on_trial_add(self, trial: Trial) -> None:
        """Put ``trial`` in the newest bracket, or in a new one if that one is not open."""
        self._require_metric_and_mode()
        self._place(trial.trial_id)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Continue below the milestone; pause at it until the round completes; stop at the end.

        A result without a numeric ``time_attr`` or ``metric`` is ignored.
        """
        self._require_metric_and_mode()
        progress = time_and_score(result, self._time_attr, self._metric, self._mode)
        if progress is None:
            return TrialDecision.CONTINUE
        now, value = progress
        tid = trial.trial_id
        if tid in self._stopped:
            return TrialDecision.STOP
        if tid not in self._trial_info:
            self._place(tid)
        bracket = self._brackets[self._trial_info[tid]]
        if tid not in bracket.live:  # it left the bracket (removed), yet reports
            return TrialDecision.CONTINUE
        previous = bracket.live[tid]
        bracket.progress += now - (previous.time if previous is not None else 0.0)
        bracket.live[tid] = _Progress(now, value)
        bracket.resumable.discard(tid)
        if self._stop_last_trials and now >= self._max_t:
            return self._stop_reporting_trial(bracket, tid)
        if bracket.halvings_left == 0:
            if self._stop_last_trials and now >= bracket.milestone:
                return self._stop_reporting_trial(bracket, tid)
            return TrialDecision.CONTINUE
        if now < bracket.milestone:
            return TrialDecision.CONTINUE
        bracket.waiting.add(tid)
        decision = self._process(bracket, current=tid)
        return TrialDecision.PAUSE if decision is None else decision

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """The trial leaves its round (which may complete now)."""
        self._leave(trial.trial_id)

    def on_trial_error(self, trial: Trial) -> None:
        """The trial leaves its round (which may complete now)."""
        self._leave(trial.trial_id)

    def on_trial_remove(self, trial: Trial) -> None:
        """The trial leaves its round (which may complete now)."""
        self._leave(trial.trial_id)

    def on_no_more_trials(self) -> None:
        """Close every bracket to new trials and complete the rounds that wait only for them."""
        for bracket in self._brackets:
            bracket.closed = True
            self._process(bracket, current=None)

    def pop_trial_updates(self) -> list[TrialUpdate]:
        """CONTINUE for the paused winners of a round, STOP for its paused losers."""
        updates, self._updates = self._updates, []
        return updates

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """A paused trial that won its round; the least complete bracket of the oldest band first.

        None when no paused trial may resume: the coordinator then starts a new trial.
        """
        paused = {t.trial_id: t for t in trials}
        ordered = sorted(self._brackets, key=lambda b: (b.band, b.completion()))
        for bracket in ordered:
            for tid in bracket.live:
                if tid in bracket.resumable and tid in paused:
                    return paused[tid]
        return None

    def debug_string(self) -> str:
        """Brackets per band with their size, milestone, completion and trial counts."""
        lines = [
            f"Using HyperBand: num_stopped={self._num_stopped} total_brackets={len(self._brackets)}"
        ]
        for band in range(len(self._band_slots)):
            lines.append(f"Round #{band}:")
            for b in self._brackets:
                if b.band == band:
                    lines.append(
                        f"  Bracket(Max Size (n)={b.size}, Milestone (r)={b.milestone:g}, "
                        f"completed={b.completion():.1%}): {{live: {len(b.live)}, "
                        f"waiting: {len(b.waiting)}, added: {b.added}}}"
                    )
        return "\n".join(lines)

    def rungs(self) -> tuple[Rung, ...]:
        """Each bracket's halvings so far: the values at the milestone and the worst kept."""
        sign = sign_of(self._mode)
        found = []
        for index, bracket in enumerate(self._brackets):
            for milestone, values, cutoff in getattr(bracket, "halvings", []):
                shown = {tid: sign * v for tid, v in values.items() if np.isfinite(v)}
                found.append(
                    Rung(
                        index,
                        milestone,
                        shown,
                        None if cutoff is None or not np.isfinite(cutoff) else sign * cutoff,
                    )
                )
        return tuple(found)

    # -- brackets -----------------------------------------------------------

    def _place(self, tid: str) -> None:
        current = self._brackets[-1] if self._brackets else None
        if current is None or not self._is_open(current):
            current = self._new_bracket()
        current.live[tid] = None
        current.added += 1
        self._trial_info[tid] = len(self._brackets) - 1

    def _new_bracket(self) -> _Bracket:
        """The next bracket kind of the band (a new band when it is full), as Ray fills them."""
        while True:
            if not self._band_slots or self._band_slots[-1] == self._s_max_1:
                self._band_slots.append(0)
            s = self._band_slots[-1]
            self._band_slots[-1] += 1
            milestones = _milestones(self._max_t, self._eta, s)
            if milestones[0] > 0:
                break
        sizes = _sizes(self._s_max_1, self._eta, s)
        steps = [b - a for a, b in itertools.pairwise([0, *milestones])]
        bracket = _Bracket(
            band=len(self._band_slots) - 1,
            s=s,
            size=sizes[0],
            milestone=milestones[0],
            halvings_left=s,
            total_work=float(sum(n * r for n, r in zip(sizes, steps, strict=True))),
        )
        self._brackets.append(bracket)
        return bracket

    def _is_open(self, bracket: _Bracket) -> bool:
        """Whether new trials join ``bracket``: the newest one, until ``n0`` trials joined.

        Ray counts the live trials, so a trial that ends makes room for a new
        one; here trials are created one by one, so a bracket whose first
        trials already ended would then never fill: joins are counted instead.
        """
        return (
            bracket is self._brackets[-1]
            and not bracket.closed
            and bracket.halvings_done == 0
            and bracket.added < bracket.size
        )

    def _process(self, bracket: _Bracket, current: str | None) -> TrialDecision | None:
        """Halve ``bracket`` while its rounds are complete; the decision for ``current``.

        Returns None if ``current`` is None or still has to wait (PAUSE).
        """
        decision: TrialDecision | None = None
        while (
            bracket.live
            and bracket.halvings_left > 0
            and not self._is_open(bracket)
            and bracket.round_reached()
        ):
            good, bad = self._halve(bracket)
            self._num_stopped += len(bad)
            for tid in bad:
                decision = self._stop(bracket, tid, current) or decision
            for tid in good:
                progress = bracket.live[tid]
                assert progress is not None
                if progress.time >= bracket.milestone:
                    if bracket.halvings_left > 0:
                        continue  # already at the next milestone: it waits there
                    if self._stop_last_trials:
                        decision = self._stop(bracket, tid, current) or decision
                        continue
                bracket.waiting.discard(tid)
                if tid == current:
                    decision = TrialDecision.CONTINUE
                else:
                    bracket.resumable.add(tid)
                    self._updates.append(TrialUpdate(tid, TrialDecision.CONTINUE))
        return decision

    def _halve(self, bracket: _Bracket) -> tuple[list[str], list[str]]:
        """Keep the best ``ceil(size / eta)`` live trials; advance the milestone (as Ray does)."""
        bracket.halvings_left -= 1
        bracket.halvings_done += 1
        bracket.size = int(np.ceil(bracket.size / self._eta))
        reached = bracket.milestone
        bracket.milestone = int(min(bracket.milestone * self._eta, self._max_t))
        # Stable sort, worst first: among equal values the trial added later ranks higher.
        ranked = sorted(bracket.live, key=lambda tid: bracket.live[tid].value)  # type: ignore[union-attr]
        keep = min(bracket.size, len(ranked))
        values = {tid: bracket.live[tid].value for tid in ranked}  # type: ignore[union-attr]
        cutoff = values[ranked[len(ranked) - keep]] if keep else None
        bracket.halvings.append((float(reached), values, cutoff))
        return ranked[len(ranked) - keep :], ranked[: len(ranked) - keep]

    def _stop(self, bracket: _Bracket, tid: str, current: str | None) -> TrialDecision | None:
        """Remove ``tid`` from ``bracket``; STOP for the reporting trial, an update for others."""
        bracket.live.pop(tid, None)
        bracket.waiting.discard(tid)
        bracket.resumable.discard(tid)
        self._stopped.add(tid)
        if tid == current:
            return TrialDecision.STOP
        self._updates.append(TrialUpdate(tid, TrialDecision.STOP))
        return None

    def _stop_reporting_trial(self, bracket: _Bracket, tid: str) -> TrialDecision:
        """Stop the reporting trial at the end of its training; its round may complete."""
        self._stop(bracket, tid, tid)
        self._process(bracket, current=None)
        return TrialDecision.STOP

    def _leave(self, tid: str) -> None:
        index = self._trial_info.get(tid)
        if index is None:
            return
        bracket = self._brackets[index]
        if tid in bracket.live:
            bracket.live.pop(tid)
            bracket.waiting.discard(tid)
            bracket.resumable.discard(tid)
            self._process(bracket, current=None)


def _validate(
    time_attr: Any, metric: Any, max_t: Any, reduction_factor: Any, stop_last_trials: Any
) -> None:
    check_time_attr(time_attr, "training_iteration")
    check_metric(metric)
    if not is_finite_number(max_t) or max_t < 1:
        raise _invalid(
            "max_t",
            max_t,
            "it must be a finite number >= 1",
            "Pass the most `time_attr` units a trial may train, such as max_t=81.",
        )
    if not is_finite_number(reduction_factor) or reduction_factor <= 1:
        raise _invalid(
            "reduction_factor",
            reduction_factor,
            "it must be a finite number > 1",
            "Pass reduction_factor=3 (keep the best third at each halving).",
        )
    check_bool(
        "stop_last_trials",
        stop_last_trials,
        "Pass True to stop trials at max_t or False to let the last ones run on.",
    )
