"""What a simulated experiment returns: its reports, decisions and trials."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.trial import Trial


class Stalled(RuntimeError):
    """The experiment cannot go on: nothing runs, and nothing will.

    Raised where the real loop raises: trials sit PAUSED and the scheduler
    resumes none (``Controller.check_stuck``), or the searcher keeps offering no
    trial while none runs (``Controller.check_stalled``).  The message is the
    Controller's.
    """


@dataclass(frozen=True)
class Report:
    """One result the coordinator handled, and what it did with the trial then."""

    trial_id: str
    iteration: int
    score: float
    decision: TrialDecision  # CONTINUE, PAUSE or STOP: what the loop carried out
    time: float  # on the simulator's clock


@dataclass
class Outcome:
    """A simulated experiment, seen from the coordinator.

    Args:
        trials: Every trial, by id, in the order the searcher made them.
        reports: Every result the coordinator handled, in order.
        iterations: Training iterations run in all (the budget used), failed ones too.
        updates: The scheduler's TrialUpdates that the Controller handed to the loop, in
            that order (a CONTINUE held until its trial paused comes when it paused;
            updates for finished trials, which the Controller drops, are not here).
        time: The simulator's clock when the experiment ended.
        stop_reason: Why the experiment stopped early (a budget, a stopper), if it did.
    """

    trials: dict[str, Trial]
    reports: list[Report]
    iterations: int
    updates: list[TrialUpdate] = field(default_factory=list)
    time: float = 0.0
    stop_reason: str | None = None

    def best(self, mode: str = "max") -> float:
        """The best score any trial reported (NaN aside)."""
        scores = [r.score for r in self.reports if not math.isnan(r.score)]
        return max(scores) if mode == "max" else min(scores)

    def stopped_at(self) -> dict[str, int | None]:
        """The iteration of each trial's STOP decision (None: not stopped by a decision)."""
        out: dict[str, int | None] = {tid: None for tid in self.trials}
        for report in self.reports:
            if report.decision is TrialDecision.STOP:
                out[report.trial_id] = report.iteration
        return out

    def decisions(self, trial_id: str) -> list[tuple[int, TrialDecision]]:
        """``(iteration, decision)`` for each of the trial's reports."""
        return [(r.iteration, r.decision) for r in self.reports if r.trial_id == trial_id]

    def iterations_of(self, trial_id: str) -> int:
        """How many results the trial reported."""
        return sum(1 for r in self.reports if r.trial_id == trial_id)
