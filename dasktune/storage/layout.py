"""The experiment directory's layout: every file and directory name, in one place.

Layout::

    storage_path/name/
        journal.jsonl               every state change, appended as it happens (storage/journal.py)
        experiment_state.json       the trials and their status (replaced atomically, for people)
        tuner.pkl                   the Tuner's settings, for Tuner.restore
        searcher-state.pkl          the searcher's state, appended whenever it draws trials
        scheduler-state.pkl         the scheduler's and stopper's state, saved every few seconds
        <trainable>_<index>/        one per trial, a short deterministic name
            params.json
            result.json             JSON lines, one per report
            progress.csv            one row per report; late metrics add columns
            checkpoint_000000/ ...
            config_changes.jsonl    config changes made by a scheduler (PBT's explore)
            <scheduler records>     e.g. pbt_policy.jsonl (TrialScheduler.trial_records)
            error.txt               on failure
            .run-<run id>.jsonl     each run's own spool of what it reported (storage/spool.py)

Workers write checkpoints into the trial's directory; the driver writes the rest.
"""

from __future__ import annotations

import os
import re

STATE_FILE = "experiment_state.json"
JOURNAL_FILE = "journal.jsonl"
TUNER_FILE = "tuner.pkl"
SEARCHER_STATE_FILE = "searcher-state.pkl"
SCHEDULER_STATE_FILE = "scheduler-state.pkl"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
ERROR_FILE = "error.txt"
CONFIG_CHANGES_FILE = "config_changes.jsonl"
_CHECKPOINT_PREFIX = "checkpoint_"


def trial_dir_name(trainable_name: str, index: int) -> str:
    """A short, deterministic, filesystem-safe directory name for a trial."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", trainable_name)[:40] or "trial"
    return f"{safe}_{index:05d}"


def checkpoint_dir_name(index: int) -> str:
    """The directory name of a trial's ``index``-th checkpoint.

    Example:
        >>> checkpoint_dir_name(3)
        'checkpoint_000003'
    """
    return f"{_CHECKPOINT_PREFIX}{index:06d}"


def checkpoint_index(path: str) -> int:
    """The index in a checkpoint directory's name (the inverse of :func:`checkpoint_dir_name`).

    Example:
        >>> checkpoint_index("/results/exp/train_00000/checkpoint_000012")
        12
    """
    return int(os.path.basename(os.path.normpath(path))[len(_CHECKPOINT_PREFIX) :])


def spool_file_name(run_id: str) -> str:
    """The file in which run ``run_id`` spools what it reports (:mod:`dasktune.storage.spool`)."""
    return f".run-{run_id}.jsonl"


def check_writable(path: str, argument: str = "RunConfig(storage_path=...)") -> None:
    """Raise a clear error unless ``path`` can be created and written."""
    probe = os.path.join(path, ".dasktune_write_test")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise ValueError(
            f"{argument}: cannot write to {path!r} ({type(exc).__name__}: {exc.strerror or exc}). "
            "Pass storage_path= a directory you can write; on a multi-machine cluster it must "
            "be a filesystem that every worker can reach."
        ) from None
