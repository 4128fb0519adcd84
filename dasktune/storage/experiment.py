"""The driver's record of an experiment: one :class:`TrialStore` per trial, and the journal.

Storage is passive: it writes what the coordinator tells it to and decides
nothing.  Which checkpoints to keep is :meth:`CheckpointConfig.retained`'s
decision; a store only carries it out.  Every state change also goes to the
experiment's journal (:mod:`dasktune.storage.journal`), from which
:meth:`ExperimentStore.reopen` rebuilds the record after the driver died.
The directory layout is in :mod:`dasktune.storage.layout`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dasktune._util import flatten, is_auto_field
from dasktune.storage import snapshot
from dasktune.storage.files import (
    StorageError,
    TrialRecorder,
    append_jsonl,
    copy_checkpoint,
    delete_checkpoint,
    write_experiment_state,
    write_jsonl,
)
from dasktune.storage.journal import (
    ExperimentDirTaken,
    Journal,
    JournaledExperiment,
    JournaledTrial,
    load_journal,
    relative,
)
from dasktune.storage.layout import (
    CONFIG_CHANGES_FILE,
    SCHEDULER_STATE_FILE,
    SEARCHER_STATE_FILE,
    checkpoint_dir_name,
    checkpoint_index,
    trial_dir_name,
)
from dasktune.storage.spool import read_spool
from dasktune.trial import Trial, TrialStatus
from dasktune.tune_config import CheckpointConfig, CheckpointEntry

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^checkpoint_\d{6}$")
_SPOOL_NAME = re.compile(r"^\.run-(?P<trial>.+)-(?P<run>\d+)\.jsonl$")


class TrialStore:
    """The files and checkpoints of one trial."""

    def __init__(self, trial_id: str, trial_dir: str, experiment: ExperimentStore) -> None:
        self.trial_id = trial_id
        self.trial_dir = trial_dir
        self._experiment = experiment
        self.recorder = TrialRecorder(trial_dir)
        self.checkpoints: list[CheckpointEntry] = []
        self.next_checkpoint_index = 0
        # The last iteration on record of the trial's current lineage: a resumed run that
        # trains iterations again from an older checkpoint of its own does not record them twice.
        self.recorded_through = 0
        self.exception: bytes | None = None  # the last failure's exception, pickled
        self.runs = 0  # runs submitted so far (their spools are .run-<trial id>-<n>.jsonl)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded result, flattened, oldest first (a finished trial's are read
        back from its result.json)."""
        return self.recorder.rows

    @property
    def last_row(self) -> dict[str, Any] | None:
        """The last recorded result, flattened (``rows[-1]``, kept in memory)."""
        return self.recorder.last_row

    def read_rows(self) -> list[dict[str, Any]]:
        """:attr:`rows`, as a function to call later (what a ResultGrid reads lazily)."""
        return self.recorder.rows

    @property
    def latest_checkpoint(self) -> CheckpointEntry | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def checkpoint_at(self, iteration: int | None) -> CheckpointEntry | None:
        """The newest checkpoint from at most ``iteration`` (the latest for None)."""
        if iteration is None:
            return self.latest_checkpoint
        older = [c for c in self.checkpoints if c[1].get("training_iteration", 0) <= iteration]
        return older[-1] if older else None

    def record(self, result: dict[str, Any]) -> None:
        """Append one result to the trial's result files."""
        self.recorded_through = result["training_iteration"]
        self.recorder.remember(result)
        self._experiment.guard(self.recorder.write_last)
        self._experiment.unflushed.append(self.recorder)

    def add_checkpoint(self, path: str, metrics: Mapping[str, Any]) -> None:
        """A checkpoint was stored at ``path``; prune older ones as the policy says."""
        self.checkpoints.append((path, dict(metrics)))
        self.next_checkpoint_index = max(self.next_checkpoint_index, checkpoint_index(path) + 1)
        self._experiment.journal_write(
            "checkpoint",
            id=self.trial_id,
            path=relative(self._experiment.path, path),
            metrics=dict(metrics),
        )
        retention = self._experiment.checkpoint_config.retained(self.checkpoints)
        if retention.unscored is not None:
            self._experiment.warn_unscored(retention.unscored)
        # Checkpoints that another trial's exploit is about to copy stay until it has.
        pinned = self._experiment.pinned.get(self.trial_id, set())
        kept = [
            entry
            for entry in self.checkpoints
            if entry in retention.kept or entry[1].get("training_iteration") in pinned
        ]
        for entry in self.checkpoints:
            if entry not in kept:
                self._experiment.journal_write(
                    "checkpoint_deleted",
                    id=self.trial_id,
                    path=relative(self._experiment.path, entry[0]),
                )
                self._experiment.flush()  # the journal says so before the files go
                delete_checkpoint(entry[0])
        self.checkpoints = kept

    def clone_checkpoint(self, source: CheckpointEntry) -> None:
        """Copy another trial's checkpoint (PBT's exploit) in as this trial's newest.

        As in Ray Tune the iteration count comes with the cloned checkpoint, and the
        iterations after it are the new lineage's, recorded even if they step back.
        """
        path, metrics = source
        target = os.path.join(self.trial_dir, checkpoint_dir_name(self.next_checkpoint_index))
        self._experiment.guard(copy_checkpoint, path, target)
        self.add_checkpoint(target, metrics)
        self.recorded_through = int(metrics.get("training_iteration", 0))

    def record_config_change(
        self,
        iteration: int,
        source_trial: str | None,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
    ) -> None:
        self._experiment.guard(
            append_jsonl,
            os.path.join(self.trial_dir, CONFIG_CHANGES_FILE),
            {
                "training_iteration": iteration,
                "source_trial": source_trial,
                "old_config": dict(old),
                "new_config": dict(new),
            },
        )
        self._experiment.journal_write("config", id=self.trial_id, config=dict(new))

    def write_records(self, records: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the trial's record files (``TrialScheduler.trial_records``), by file name."""
        self._experiment.write_records(records, self.trial_dir)

    def record_error(self, text: str, exception: bytes | None) -> None:
        self.exception = exception
        self._experiment.guard(self.recorder.write_error, text)

    def finish(self) -> None:
        """The trial is over: mark its last result done on disk, and close its files."""
        self._experiment.guard(self.recorder.finish)

    def close(self) -> None:
        """The trial's run ended but the trial may run again: close its files.

        After a storage error the lines still unwritten are dropped (the results stay in
        memory and in the run's spool): the experiment is stopping, and whole lines only
        are left on disk."""
        if self._experiment.failure is not None:
            self.recorder.close_without_writing()
            return
        self._experiment.guard(self.recorder.close)

    # -- restoring ------------------------------------------------------------
    def restart(self) -> None:
        """Start the trial again from scratch (``Tuner.restore(restart_errored=True)``):
        its results so far are dropped, its checkpoints are kept on disk but unused."""
        self.recorder.close()
        self.recorder = TrialRecorder(self.trial_dir)
        self.checkpoints = []
        self.recorded_through = 0

    def restore(self, journaled: JournaledTrial) -> None:
        """Rebuild the record from the files, the journal, and the runs' spools."""
        self.recorder.load()
        rows = self.recorder.rows
        self.recorded_through = int(rows[-1].get("training_iteration", 0)) if rows else 0
        names = os.listdir(self.trial_dir) if os.path.isdir(self.trial_dir) else []
        indices = [checkpoint_index(n) for n in names if _CHECKPOINT_NAME.match(n)]
        self.next_checkpoint_index = max(indices, default=-1) + 1
        self.checkpoints = [
            (path, metrics)
            for rel, metrics in journaled.checkpoints
            if os.path.isdir(path := os.path.join(self._experiment.path, rel))
        ]
        spools = sorted((int(m["run"]), n) for n in names if (m := _SPOOL_NAME.match(n)))
        self.runs = max((run for run, _ in spools), default=0)
        for _, name in spools:
            self._recover_spool(os.path.join(self.trial_dir, name))

    def _recover_spool(self, path: str) -> None:
        """Record what a run reported but the driver, which died, never recorded."""
        records = read_spool(path)
        known = {os.path.basename(p) for p, _ in self.checkpoints}
        for spooled in records.results:
            result = spooled.result
            if result.get("training_iteration", 0) > self.recorded_through:
                self.record(result)
            if spooled.checkpoint and os.path.basename(spooled.checkpoint) not in known:
                self._adopt_checkpoint(spooled.checkpoint, result, known)
        for stored, _ in records.checkpoints:
            if os.path.basename(stored) not in known:
                self._adopt_checkpoint(stored, self.recorder.last_result or {}, known)

    def _adopt_checkpoint(self, path: str, metrics: Mapping[str, Any], known: set[str]) -> None:
        # The spool has the path the worker wrote; the directory may have moved since.
        local = os.path.join(self.trial_dir, os.path.basename(path))
        if os.path.isdir(local):
            known.add(os.path.basename(local))
            self.add_checkpoint(local, metrics)


class ExperimentStore:
    """The experiment directory, its journal, and a :class:`TrialStore` for each trial."""

    def __init__(
        self,
        path: str,
        name: str,
        checkpoint_config: CheckpointConfig,
        journal: Journal,
        trainable_name: str = "trial",
    ) -> None:
        self.path = path
        self.name = name
        self.trainable_name = trainable_name
        self.checkpoint_config = checkpoint_config
        self._journal = journal
        self._trials: dict[str, TrialStore] = {}
        self.unflushed: list[TrialRecorder] = []  # trials with results in their buffers
        self._warned_unscored = False
        self.failure: StorageError | None = None  # the first storage error; writes stop then
        self._search_log: snapshot.SnapshotLog | None = None
        #: Checkpoints to keep whatever the retention policy says (trial id -> iterations):
        #: an exploit waiting to be carried out will copy them.
        self.pinned: dict[str, set[int]] = {}

    # -- creating and reopening -------------------------------------------------
    @classmethod
    def create(
        cls, root: str, name: str, checkpoint_config: CheckpointConfig, header: Mapping[str, Any]
    ) -> ExperimentStore:
        """Claim a new experiment directory ``root/name`` (or ``name_2``... if taken).

        The claim is the exclusive creation of the journal, so two drivers that
        start at the same moment (a job array, two notebook cells) never share one.
        """
        candidate, n = name, 1
        while True:
            path = os.path.join(root, candidate)
            try:
                os.makedirs(root, exist_ok=True)
                try:
                    os.mkdir(path)
                except FileExistsError:
                    if os.listdir(path):  # an experiment (of this or an older version) is there
                        raise ExperimentDirTaken(path) from None
                journal = Journal(path, claim=True)
                break
            except ExperimentDirTaken:
                n += 1
                candidate = f"{name}_{n}"
            except OSError as exc:
                raise ValueError(
                    f"RunConfig(storage_path={root!r}): cannot write to {path!r} "
                    f"({type(exc).__name__}: {exc.strerror or exc}). Pass storage_path= a "
                    "directory you can write; on a multi-machine cluster it must be a "
                    "filesystem that every worker can reach."
                ) from None
        if candidate != name:
            logger.warning(
                "An experiment already lies in %s; this one goes to %s.",
                os.path.join(root, name),
                path,
            )
        store = cls(path, candidate, checkpoint_config, journal, header.get("trainable", "trial"))
        store.journal_write("experiment", name=candidate, **header)
        store.flush()
        return store

    @classmethod
    def reopen(
        cls, path: str, checkpoint_config: CheckpointConfig
    ) -> tuple[ExperimentStore, JournaledExperiment]:
        """Open an experiment directory to continue it; returns the store and its journal."""
        journaled = load_journal(path)
        store = cls(
            path,
            os.path.basename(os.path.normpath(path)),
            checkpoint_config,
            Journal(path, claim=False),
            journaled.trainable or "trial",
        )
        store.journal_write("resumed")
        store.flush()
        return store, journaled

    # -- trials ----------------------------------------------------------------
    def name_trial(self, index: int) -> tuple[str, str]:
        """The name and directory of the experiment's ``index``-th trial."""
        name = trial_dir_name(self.trainable_name, index)
        return name, os.path.join(self.path, name)

    def custom_trial_dir(self, name: str) -> str:
        """The directory for a trial named by ``TuneConfig(trial_dirname_creator=...)``."""
        if (
            os.sep in name
            or (os.altsep and os.altsep in name)
            or name in (".", "..")
            or name.startswith(".")
        ):
            raise ValueError(
                f"TuneConfig(trial_dirname_creator=...) returned {name!r}: it must be a plain "
                "directory name (no path separators, not starting with '.'), such as "
                'f"{trial.trainable_name}_{trial.trial_id}".'
            )
        path = os.path.join(self.path, name)
        if any(store.trial_dir == path for store in self._trials.values()):
            raise ValueError(
                f"TuneConfig(trial_dirname_creator=...) returned {name!r} for two trials: "
                "each trial needs a directory of its own; include trial.trial_id in the name."
            )
        return path

    def add_trial(self, trial: Trial, index: int) -> TrialStore:
        """Create the trial's directory and record its config."""
        store = self._trials[trial.trial_id] = TrialStore(trial.trial_id, trial.local_path, self)
        self.journal_write(
            "trial",
            id=trial.trial_id,
            index=index,
            name=trial.trial_name,
            dir=relative(self.path, trial.local_path),
            config=trial.config,
        )
        self.guard(store.recorder.write_params, trial.config)
        return store

    def restore_trial(self, trial: Trial, journaled: JournaledTrial) -> TrialStore:
        store = self._trials[trial.trial_id] = TrialStore(trial.trial_id, trial.local_path, self)
        store.restore(journaled)
        return store

    def trial(self, trial_id: str) -> TrialStore:
        return self._trials[trial_id]

    def get(self, trial_id: str) -> TrialStore | None:
        return self._trials.get(trial_id)

    def trial_status(self, trial: Trial, error: str | None = None) -> None:
        """Journal a trial's new status (ended, paused, or waiting to run again)."""
        fields: dict[str, Any] = {
            "id": trial.trial_id,
            "status": str(trial.status),
            "failures": trial.num_failures,
        }
        if error is not None:
            fields["error"] = error
        self.journal_write("status", **fields)

    # -- the searcher's and scheduler's state -----------------------------------
    def save_search_state(self, state: Any) -> None:
        """Append the searcher's state to its log (taken each time trials are drawn)."""
        if self._search_log is None:
            self._search_log = snapshot.SnapshotLog(os.path.join(self.path, SEARCHER_STATE_FILE))
        self.guard(self._search_log.save, state)

    def save_scheduler_state(self, state: Any) -> None:
        self.guard(snapshot.save, os.path.join(self.path, SCHEDULER_STATE_FILE), state)

    def load_state(self, file_name: str, trial: Any) -> Any:
        """A snapshot written by :meth:`save_search_state` or :meth:`save_scheduler_state`."""
        path = os.path.join(self.path, file_name)
        return snapshot.load(path, trial) if os.path.exists(path) else None

    # -- the experiment as a whole -----------------------------------------------
    def write_state(self, trials: Iterable[Trial], metric: Any, mode: Any) -> None:
        """Replace experiment_state.json with the trials as they are now."""
        self.guard(
            write_experiment_state,
            self.path,
            {
                "name": self.name,
                "metric": metric,
                "mode": mode,
                "trials": [
                    {
                        "trial_id": t.trial_id,
                        "status": str(t.status),
                        "dir": os.path.basename(t.local_path),
                        "name": t.trial_name,
                        "config": t.config,
                        "last_result": t.last_result,
                        "checkpoint": t.checkpoint_path,
                        "num_failures": t.num_failures,
                    }
                    for t in trials
                ],
            },
        )

    def end(self, status: str, reason: str | None) -> None:
        self.journal_write("end", status=status, reason=reason)

    def journal_write(self, event: str, **fields: Any) -> None:
        """Add a record to the journal: written with the next :meth:`flush`."""
        self.guard(self._journal.write, event, **fields)

    def flush(self) -> None:
        """Write the trials' buffered results, then the journal's pending records.

        The loop calls it once per turn, and before a trial it journaled starts
        to run, so that no run writes files for a trial the journal does not know.
        """
        self._flush_trials()
        self.guard(self._journal.flush)

    def sync(self) -> None:
        """:meth:`flush`, and force the journal to the disk (at most once a second)."""
        self._flush_trials()
        self.guard(self._journal.sync)

    def _flush_trials(self) -> None:
        recorders, self.unflushed = self.unflushed, []
        for recorder in recorders:
            self.guard(recorder.flush)

    def close(self) -> None:
        """Close every file; a failure to (a full disk) is logged, never stops the closing."""
        for store in self._trials.values():
            try:
                store.close()
            except OSError as exc:
                logger.warning("Could not close the files of trial %s: %s", store.trial_id, exc)
        try:
            self._journal.close()
        except OSError as exc:
            logger.warning("Could not close the journal of %s: %s", self.path, exc)
        if self._search_log is not None:
            self._search_log.close()

    def write_records(
        self, records: Mapping[str, Iterable[Any]], directory: str | None = None
    ) -> None:
        """Replace scheduler record files, by file name, in ``directory`` (the experiment's
        own, ``TrialScheduler.experiment_records``, unless a trial's is given)."""
        for name, lines in records.items():
            self.guard(write_jsonl, os.path.join(directory or self.path, name), lines)

    def guard(self, write: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one write; after the first storage error, skip writes (the experiment stops).

        The first error propagates, so the experiment stops; once it is stopping, later
        writes are skipped, so that winding down and collecting the results that are
        still in memory can finish.
        """
        if self.failure is not None:
            return None
        try:
            return write(*args, **kwargs)
        except StorageError as exc:
            self.failure = exc
            raise
        except OSError as exc:
            self.failure = StorageError(getattr(exc, "filename", None) or self.path, exc)
            raise self.failure from exc

    def warn_unscored(self, metrics: Mapping[str, Any]) -> None:
        if self._warned_unscored:
            return
        self._warned_unscored = True
        logger.warning(
            "CheckpointConfig(checkpoint_score_attribute=%r): a checkpoint's result has no "
            "number under that name, so it counts as the worst when checkpoints are pruned. "
            "Its result has: %s.",
            self.checkpoint_config.checkpoint_score_attribute,
            ", ".join(sorted(k for k in flatten(metrics) if not is_auto_field(k))),
        )


def trial_from_journal(experiment_path: str, journaled: JournaledTrial) -> Trial:
    """A Trial object for a journaled trial, before its store is restored."""
    return Trial(
        trial_id=journaled.trial_id,
        config=journaled.config,
        trial_name=journaled.name or os.path.basename(journaled.dir),
        local_path=os.path.join(experiment_path, journaled.dir),
        status=TrialStatus(journaled.status),
        num_failures=journaled.failures,
        error_msg=journaled.error,
    )
