"""The first-in-first-out scheduler: every trial runs until it ends or is stopped."""

from __future__ import annotations

from typing import Any

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialScheduler
from dasktune.trial import Trial


class FIFOScheduler(TrialScheduler):
    """Run trials in the order they were added and never stop them early.

    This is the default scheduler (Ray Tune's ``FIFOScheduler``).  Because it
    never acts on a result, no trial ever waits for its decision.

    Example:
        >>> from dasktune.trial import Trial
        >>> FIFOScheduler().on_trial_result(Trial("t0", {}), {"loss": 1.0})
        <TrialDecision.CONTINUE: 'CONTINUE'>
    """

    needs_metric = False

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Always let the trial continue."""
        return TrialDecision.CONTINUE

    def decision_points(self) -> DecisionPoints:
        """FIFO never decides anything, so trials never wait: ``DecisionPoints.never()``."""
        return DecisionPoints.never()

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."
