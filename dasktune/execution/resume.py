"""Resuming an experiment: trials from the journal, searcher and scheduler from their snapshots.

No Dask here: this turns what :mod:`dasktune.storage` kept into the trials, the
searcher's and scheduler's state, and the list of trials to run again, which the
loop then carries on with as if it had never stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dasktune.schedulers.trial_scheduler import TrialScheduler
from dasktune.search.searcher import Searcher
from dasktune.storage.experiment import ExperimentStore, trial_from_journal
from dasktune.storage.journal import JournaledExperiment, iter_trial_dirs
from dasktune.storage.layout import SCHEDULER_STATE_FILE, SEARCHER_STATE_FILE
from dasktune.trial import Trial, TrialStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeOptions:
    """What ``Tuner.restore`` does with each kind of trial (Ray Tune's arguments)."""

    resume_unfinished: bool = True  # running, pending and paused trials continue
    resume_errored: bool = False  # failed trials continue from their latest checkpoint
    restart_errored: bool = False  # failed trials start again from scratch


@dataclass
class Resumed:
    """The experiment as it continues."""

    trials: list[Trial]
    to_run: list[Trial]  # submitted first, from their latest checkpoints
    search_finished: bool
    stopper: Any


def search_state(
    searcher: Searcher, search_finished: bool, drawn: list[tuple[str, int, dict[str, Any]]]
) -> dict[str, Any]:
    """What :meth:`ExperimentStore.save_search_state` keeps, each time trials are drawn.

    ``drawn`` are the trials drawn in this turn: saved with the state, they are
    restored even if the driver died before it journaled them.
    """
    return {"searcher": searcher.get_state(), "search_finished": search_finished, "drawn": drawn}


def scheduler_state(scheduler: TrialScheduler, stopper: Any, trials: list[Trial]) -> dict[str, Any]:
    """What :meth:`ExperimentStore.save_scheduler_state` keeps, every few seconds."""
    return {
        "scheduler": scheduler.get_state(),
        "stopper": stopper,
        "trials": [t.trial_id for t in trials],
    }


def resume(
    store: ExperimentStore,
    journaled: JournaledExperiment,
    searcher: Searcher,
    scheduler: TrialScheduler,
    stopper: Any,
    options: ResumeOptions,
) -> Resumed:
    """Rebuild the trials and the searcher's and scheduler's state; say which trials run."""
    trials: list[Trial] = []
    by_id: dict[str, Trial] = {}

    def trial(trial_id: str) -> Trial:
        return by_id[trial_id]

    for journaled_trial in iter_trial_dirs(journaled):
        restored = trial_from_journal(store.path, journaled_trial)
        restored.trainable_name = store.trainable_name
        record = store.restore_trial(restored, journaled_trial)
        restored.last_result = dict(record.recorder.last_result or {})
        restored.checkpoint_path = record.latest_checkpoint[0] if record.latest_checkpoint else None
        trials.append(restored)
        by_id[restored.trial_id] = restored

    searched = store.load_state(SEARCHER_STATE_FILE, trial)
    search_finished = False
    if searched is None:
        logger.warning(
            "%s has no saved searcher state; the searcher starts afresh and may "
            "suggest configs again.",
            store.path,
        )
    else:
        searcher.set_state(searched["searcher"])
        search_finished = bool(searched["search_finished"])
        for trial_id, index, config in searched["drawn"]:
            if trial_id not in by_id:  # drawn, but the driver died before it journaled it
                drawn = Trial(trial_id, config)
                drawn.trial_name, drawn.local_path = store.name_trial(index)
                store.add_trial(drawn, index)
                trials.append(drawn)
                by_id[trial_id] = drawn

    scheduled = store.load_state(SCHEDULER_STATE_FILE, lambda tid: by_id.get(tid) or Trial(tid, {}))
    known: set[str] = set()
    if scheduled is not None:
        scheduler.set_state(scheduled["scheduler"])
        stopper = scheduled["stopper"] if scheduled["stopper"] is not None else stopper
        known = set(scheduled["trials"])
    for restored in trials:
        if restored.trial_id not in known:  # added after the scheduler's last snapshot
            scheduler.on_trial_add(restored)

    to_run = []
    for restored in trials:
        status = _resumed_status(restored.status, options)
        if status is None:
            continue
        if restored.status == TrialStatus.ERROR and options.restart_errored:
            store.trial(restored.trial_id).restart()
            restored.last_result, restored.checkpoint_path = {}, None
        restored.status = status
        restored.error_msg = None if status != TrialStatus.ERROR else restored.error_msg
        store.trial_status(restored)
        if status == TrialStatus.PENDING:
            to_run.append(restored)
    for restored in trials:
        if restored.status.is_finished:  # their rows stay on disk until someone reads them
            store.trial(restored.trial_id).recorder.release_rows()
    return Resumed(trials, to_run, search_finished, stopper)


def _resumed_status(status: TrialStatus, options: ResumeOptions) -> TrialStatus | None:
    """A trial's status as the experiment continues; None: it stays as it is."""
    if status == TrialStatus.TERMINATED:
        return None
    if status == TrialStatus.ERROR:
        if options.resume_errored or options.restart_errored:
            return TrialStatus.PENDING
        return None
    if not options.resume_unfinished:
        return TrialStatus.TERMINATED
    return TrialStatus.PAUSED if status == TrialStatus.PAUSED else TrialStatus.PENDING
