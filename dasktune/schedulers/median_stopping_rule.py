"""The median stopping rule, making the decisions of Ray Tune's ``MedianStoppingRule``.

From Google Vizier (Golovin et al., 2017): stop a trial whose best result is
worse than the median of the other trials' running averages.  Ray Tune's
details, which this module follows:

* a result counts only if it holds both ``time_attr`` and ``metric``; it is
  recorded before the rule is applied, and results before ``grace_period``
  are recorded too (the rule only applies from ``grace_period`` on);
* the trials compared with a trial at time ``t`` are all OTHER trials whose
  latest recorded result has ``time_attr >= t`` -- finished, stopped, paused
  or running (Ray's docstring says "completed trials", its code does this);
* a trial's running average at ``t`` is the mean of its recorded metric values
  with ``grace_period <= time_attr <= t``; only finite averages are samples (a
  trial with no result there, or a NaN or infinite one, is left out); the best
  result is taken over ALL of the trial's recorded results;
* the trial is stopped when its best is strictly worse than the median of
  the samples and there are at least ``min_samples_required`` of them; with
  ``hard_stop=False`` it is paused instead, and once resumed it is never judged
  again (it runs like under FIFO);
* with fewer samples the trial yields (PAUSE) when more than ``min_time_slice``
  has passed since it last yielded and other trials are waiting to run;
* ``on_trial_complete`` records the trial's last result once more.  A trial
  that ended by itself after its last result has that result recorded twice
  more: Ray's controller replays it to ``on_trial_result`` (with ``done``)
  before ``on_trial_complete``, and dasktune's coordinator does not, so this
  rule adds the replayed copy itself.  A trial stopped by this rule or by a
  stopper gets its last result recorded once, as in Ray.

"Other trials waiting to run" are, in Ray, PENDING or PAUSED trials.  Ray
creates trials as soon as the search and the concurrency limit allow, and they
wait PENDING for resources; dasktune's coordinator creates a trial only when a
worker is free.  So here they are: a trial this rule paused that has not run
again, a queued run, or a new trial the search would create now, which the
coordinator says through :meth:`MedianStoppingRule.on_trials_waiting` (and
:meth:`~MedianStoppingRule.on_no_more_trials`).  Under a concurrency limit
(``TuneConfig(max_concurrent_trials)``, a ``ConcurrencyLimiter``) paused trials
count as live, as in Ray: with the limit reached no new trial can come, so a
trial short of samples just continues, and a paused trial runs again before
any new one.  With ``max_concurrent_trials=1`` no trial ever yields.

NaN differs from Ray on purpose in one place: a trial's best value, which
Python's ``max`` makes depend on where a NaN falls (a NaN first hides every
later value).  Here a NaN metric value is the worst value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dasktune._validation import invalid_argument as _invalid
from dasktune._validation import is_finite_number, is_integer, is_number
from dasktune.decision_points import DecisionPoints
from dasktune.schedulers._common import (
    check_bool,
    check_metric,
    check_time_attr,
    time_and_score,
)
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialDecision
from dasktune.trial import Trial

__all__ = ["MedianStoppingRule"]


class MedianStoppingRule(FIFOScheduler):
    """Stop trials that do worse than the median of the others (Ray Tune's ``MedianStoppingRule``).

    Args:
        time_attr: Result field measuring training progress; it must grow monotonically.
        metric: Result field to optimise; None to take it from the ``TuneConfig``.
        mode: ``"min"`` or ``"max"``; None to take it from the ``TuneConfig``.
        grace_period: Only judge trials at ``time_attr >= grace_period``; running
            averages start there too.
        min_samples_required: How many other trials must have reached the same
            time for the median to be used.
        min_time_slice: With too few samples, a trial yields to waiting trials
            at most once per ``min_time_slice`` of ``time_attr``.
        hard_stop: Stop bad trials (True) or pause them (False); paused ones
            are resumed once no new trial may start, and never judged again.

    Raises:
        ValueError: If an argument is invalid; the message names it.

    Example:
        >>> from dasktune.trial import Trial
        >>> rule = MedianStoppingRule("training_iteration", "acc", "max",
        ...                           grace_period=1, min_samples_required=1)
        >>> a, b = Trial("a", {}), Trial("b", {})
        >>> rule.on_trial_add(a); rule.on_trial_add(b)
        >>> rule.on_trial_complete(a, {"training_iteration": 2, "acc": 0.8})
        >>> str(rule.on_trial_result(b, {"training_iteration": 2, "acc": 0.5}))
        'STOP'
    """

    needs_metric = True

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ) -> None:
        _validate(time_attr, metric, grace_period, min_samples_required, min_time_slice, hard_stop)
        self._set_metric_and_mode(metric, mode)
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        # trial id -> recorded (time, signed value: higher is better, NaN is -inf)
        self._results: dict[str, list[tuple[float, float]]] = {}
        self._stopped: set[str] = set()
        self._last_pause: dict[str, float] = {}
        self._paused: set[str] = set()  # yielded or paused by this rule, not resumed yet
        self._no_more_trials = False
        self._trials_wait = True  # on_trials_waiting: queued runs, or new trials to come

    def decision_points(self) -> DecisionPoints:
        """``always()``: the rule may act at any result past the grace period."""
        return DecisionPoints.always()

    def on_trial_add(self, trial: Trial) -> None:
        self._require_metric_and_mode()
        self._no_more_trials = False

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Record ``result``, then apply the rule (see the module docstring)."""
        self._require_metric_and_mode()
        record = time_and_score(result, self._time_attr, self._metric, self._mode)
        if record is None:
            return TrialDecision.CONTINUE
        tid = trial.trial_id
        self._paused.discard(tid)  # it runs
        if tid in self._stopped:  # resumed after a soft stop: FIFO from now on
            return TrialDecision.CONTINUE if not self._hard_stop else TrialDecision.STOP
        self._results.setdefault(tid, []).append(record)
        now = record[0]
        if now < self._grace_period:
            return TrialDecision.CONTINUE
        others = [o for o, rs in self._results.items() if o != tid and rs[-1][0] >= now]
        means = [m for m in (self._running_mean(o, now) for o in others) if math.isfinite(m)]
        if len(means) < self._min_samples_required:
            return self._on_insufficient_samples(tid, now)
        median = float(np.median(means))
        best = max(value for _, value in self._results[tid])
        if median > best:  # strictly worse than the median
            self._stopped.add(tid)
            if self._hard_stop:
                return TrialDecision.STOP
            self._paused.add(tid)
            return TrialDecision.PAUSE
        return TrialDecision.CONTINUE

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """Record the last result once more (three times for a trial that ended by itself)."""
        tid = trial.trial_id
        self._paused.discard(tid)
        record = time_and_score(result or {}, self._time_attr, self._metric, self._mode)
        if record is None:
            return
        history = self._results.setdefault(tid, [])
        ended_by_itself = tid not in self._stopped and bool(history) and history[-1] == record
        history.extend([record, record] if ended_by_itself else [record])

    def on_trial_error(self, trial: Trial) -> None:
        self._paused.discard(trial.trial_id)

    def on_trial_remove(self, trial: Trial) -> None:
        self._paused.discard(trial.trial_id)

    def on_no_more_trials(self) -> None:
        """Paused trials may now resume (no new trial goes first any more)."""
        self._no_more_trials = True

    def on_trials_waiting(self, waiting: bool) -> None:
        """Whether runs are queued or new trials may be created (the concurrency limit)."""
        self._trials_wait = waiting

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """Ray's FIFO order: waiting trials first (None while some do), then the first paused."""
        if self._others_wait():
            return None
        return trials[0] if trials else None

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped)}."

    # -- the rule ------------------------------------------------------------

    def _on_insufficient_samples(self, tid: str, now: float) -> TrialDecision:
        since = now - self._last_pause.get(tid, -math.inf)
        waiting = self._others_wait() or any(p != tid for p in self._paused)
        if since > self._min_time_slice and waiting:
            self._last_pause[tid] = now
            self._paused.add(tid)
            return TrialDecision.PAUSE
        return TrialDecision.CONTINUE

    def _others_wait(self) -> bool:
        """Whether trials other than the paused ones wait to run (Ray: PENDING trials)."""
        return self._trials_wait and not self._no_more_trials

    def _running_mean(self, tid: str, now: float) -> float:
        """The mean over ``[grace_period, now]``; NaN where there is no result there."""
        window = [v for t, v in self._results[tid] if self._grace_period <= t <= now]
        if not window:
            return math.nan
        with np.errstate(invalid="ignore"):  # inf + -inf
            return float(np.mean(window))


def _validate(
    time_attr: Any,
    metric: Any,
    grace_period: Any,
    min_samples_required: Any,
    min_time_slice: Any,
    hard_stop: Any,
) -> None:
    check_time_attr(time_attr, "time_total_s")
    check_metric(metric)
    if not is_finite_number(grace_period) or grace_period < 0:
        raise _invalid(
            "grace_period",
            grace_period,
            "it must be a finite number >= 0",
            "Pass the `time_attr` units a trial runs before it can be stopped, such as 60.",
        )
    if not is_integer(min_samples_required) or min_samples_required < 1:
        raise _invalid(
            "min_samples_required",
            min_samples_required,
            "it must be an integer >= 1",
            "Pass min_samples_required=3 (the default).",
        )
    if not is_number(min_time_slice) or math.isnan(min_time_slice) or min_time_slice < 0:
        raise _invalid(
            "min_time_slice",
            min_time_slice,
            "it must be a number >= 0 (math.inf: never yield)",
            "Pass min_time_slice=0 (the default) to yield whenever samples are missing.",
        )
    check_bool("hard_stop", hard_stop, "Pass True to stop bad trials or False to pause them.")
