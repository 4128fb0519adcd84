"""The scheduler interface: results in, decisions out, no I/O."""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any

from dasktune._validation import MetricModeMixin
from dasktune.decision_points import DecisionPoints
from dasktune.trial import Trial


class TrialDecision(str, enum.Enum):
    """What a scheduler tells the coordinator to do with a running trial."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrialUpdate:
    """A decision about a trial that is not reporting right now (paused, or later).

    Schedulers that act across trials (HyperBand's rounds, PBT's exploits)
    queue these; the coordinator collects them with
    :meth:`TrialScheduler.pop_trial_updates` after every event and applies them.

    Args:
        trial_id: The trial to act on.
        decision: ``STOP`` ends the trial (running or paused); ``PAUSE`` pauses
            a running trial at its next report; ``CONTINUE`` makes a paused
            trial eligible to resume.
        new_config: Replace the trial's config before it resumes (PBT's explore).
        checkpoint_from: Resume from this other trial's checkpoint (PBT's exploit): the
            one it had when the scheduler decided, which the coordinator records as
            ``checkpoint_iteration`` (schedulers leave that field alone).
    """

    trial_id: str
    decision: TrialDecision
    new_config: dict[str, Any] | None = None
    checkpoint_from: str | None = None
    checkpoint_iteration: int | None = None


@dataclass(frozen=True)
class Rung:
    """One rung of a successive-halving scheduler, as :meth:`TrialScheduler.rungs` shows it.

    Args:
        bracket: Index of the rung's bracket.
        milestone: The ``time_attr`` value at which trials are compared.
        values: Trial id -> the metric value recorded there, as the trial reported it.
        cutoff: The value a trial had to beat to go on (None: nothing to compare with yet).
    """

    bracket: int
    milestone: float
    values: dict[str, float]
    cutoff: float | None


class TrialScheduler(MetricModeMixin):
    """Base class of trial schedulers.

    A scheduler sees trial events and returns decisions.  It never touches the
    cluster, the storage or the Tuner: the coordinator applies its decisions.
    Its ``metric`` and ``mode`` come from its constructor or from the
    TuneConfig (:meth:`set_search_properties`, from :class:`MetricModeMixin`).
    """

    CONTINUE = TrialDecision.CONTINUE
    PAUSE = TrialDecision.PAUSE
    STOP = TrialDecision.STOP
    NOOP = TrialDecision.NOOP

    #: Whether the scheduler compares trials by a metric, and so needs a metric and a mode.
    needs_metric = True

    def decision_points(self) -> DecisionPoints:
        """Where trials must wait for this scheduler's decision.

        The default is every result, which is always correct; schedulers that
        only act at known milestones override it so trials need not wait.
        """
        return DecisionPoints.always()

    def on_trial_add(self, trial: Trial) -> None:
        """A trial was created."""

    def on_trial_error(self, trial: Trial) -> None:
        """A trial failed; it will not report again."""

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """A running trial reported ``result``; return what it should do."""
        return TrialDecision.CONTINUE

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        """A trial finished normally (or was stopped); ``result`` is its last."""

    def on_trial_remove(self, trial: Trial) -> None:
        """A trial was stopped by something other than this scheduler."""

    def pop_trial_updates(self) -> list[TrialUpdate]:
        """Decisions about other trials made since the last call (default: none)."""
        return []

    def trial_records(self, trial_id: str) -> dict[str, list[dict[str, Any]]]:
        """Records of this scheduler to keep in the directory of ``trial_id``.

        The coordinator asks after applying a :class:`TrialUpdate` that changed
        the trial's config, and writes each list to the file it is keyed by, in
        the trial's directory, one JSON object per line, replacing what the
        file held: the lists are complete, not increments.  The scheduler
        itself does no I/O.

        Returns:
            File name -> JSON-serialisable records; the default is ``{}``
            (nothing to keep).  :class:`PopulationBasedTraining` returns
            ``{"pbt_policy.jsonl": self.policy_log(trial_id)}``, which
            :class:`PopulationBasedTrainingReplay` reads back.
        """
        return {}

    def experiment_records(self) -> dict[str, list[Any]]:
        """Records to keep in the experiment's directory, written when the experiment ends
        (or stops): file name -> complete list, one JSON value per line.

        The default is ``{}``; :class:`PopulationBasedTraining` writes Ray Tune's
        ``pbt_policy_<trial_id>.txt`` and ``pbt_global.txt`` there.
        """
        return {}

    def on_no_more_trials(self) -> None:
        """No new trial will be added for now (default: nothing to do).

        The coordinator calls this when it cannot add a trial: the searcher is
        exhausted, or it offers no trial while no trial is running.  Schedulers
        that hold paused trials until more trials arrive (HyperBand's rounds,
        promotion ASHA, PBT's time sharing, the median rule's yielding) release
        or stop them here, so that an experiment in which every trial is paused
        cannot hang.  Afterwards the coordinator calls :meth:`pop_trial_updates`
        and offers its free slots to :meth:`choose_trial_to_run` again.

        The call may be repeated; a trial added afterwards means that more
        trials did arrive, and schedulers treat later trials as usual.
        """

    def on_trials_waiting(self, waiting: bool) -> None:
        """Whether trials wait for a worker, paused ones aside (default: nothing to do).

        A trial waits if its run is queued (PENDING), or if it is a new trial the search
        would create now: the search is not over, :meth:`on_no_more_trials` was not
        called since the last trial was added, and the concurrency limit leaves room.
        That limit, ``TuneConfig(max_concurrent_trials)`` or the searcher's own (a
        :class:`~dasktune.search.ConcurrencyLimiter`), counts every trial that has not
        ended, paused ones included, as Ray Tune does: at the limit, a trial that pauses
        makes room for no new one.  Ray Tune creates such trials at once and they wait
        PENDING; dasktune creates them when a worker is free, so schedulers that give way
        to waiting trials (the median rule's yielding) learn of them here.

        The coordinator calls this before it asks for a decision
        (:meth:`on_trial_result`, :meth:`choose_trial_to_run`) if the answer changed
        since it last said, and only to schedulers that override it.
        """

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """Pick the next PENDING or PAUSED trial to start; None if none should start."""
        for trial in trials:
            if trial.status.value == "PENDING":
                return trial
        for trial in trials:
            if trial.status.value == "PAUSED":
                return trial
        return None

    def debug_string(self) -> str:
        return type(self).__name__

    def rungs(self) -> tuple[Rung, ...]:
        """The rungs and what was recorded at them, for people to look at (read-only).

        Successive-halving schedulers (ASHA, HyperBand) return their rungs, lowest
        milestone first in each bracket; the default is ``()``: no rungs.
        """
        return ()

    def get_state(self) -> dict[str, Any]:
        """Picklable state, for resuming an experiment.

        The state is a deep copy: changing the scheduler afterwards does not
        change a state taken earlier.
        """
        return copy.deepcopy(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`get_state` (a deep copy is taken)."""
        self.__dict__.update(copy.deepcopy(state))
