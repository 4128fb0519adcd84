"""The driver's record of an experiment: one :class:`TrialStore` per trial.

Storage is passive: it writes what the coordinator tells it to and decides
nothing.  Which checkpoints to keep is :meth:`CheckpointConfig.retained`'s
decision; a store only carries it out.  The directory layout is in
:mod:`dasktune.storage.layout`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from dasktune._util import AUTO_RESULT_FIELDS, flatten
from dasktune.storage.files import (
    TrialRecorder,
    append_jsonl,
    copy_checkpoint,
    delete_checkpoint,
    write_experiment_state,
    write_jsonl,
)
from dasktune.storage.layout import CONFIG_CHANGES_FILE, checkpoint_dir_name, checkpoint_index
from dasktune.trial import Trial
from dasktune.tune_config import CheckpointConfig, CheckpointEntry

logger = logging.getLogger(__name__)


class TrialStore:
    """The files and checkpoints of one trial."""

    def __init__(self, trial_dir: str, experiment: ExperimentStore) -> None:
        self.trial_dir = trial_dir
        self._experiment = experiment
        self.recorder = TrialRecorder(trial_dir)
        self.checkpoints: list[CheckpointEntry] = []
        self.next_checkpoint_index = 0
        # The last iteration on record of the trial's current lineage: a resumed run that
        # trains iterations again from an older checkpoint of its own does not record them twice.
        self.recorded_through = 0
        self.exception: bytes | None = None  # the last failure's exception, pickled

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded result, flattened, oldest first."""
        return self.recorder.rows

    @property
    def latest_checkpoint(self) -> CheckpointEntry | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def record(self, result: dict[str, Any]) -> None:
        """Append one result to the trial's result files."""
        self.recorder.append(result)
        self.recorded_through = result["training_iteration"]

    def add_checkpoint(self, path: str, metrics: Mapping[str, Any]) -> None:
        """A checkpoint was stored at ``path``; prune older ones as the policy says."""
        self.checkpoints.append((path, dict(metrics)))
        self.next_checkpoint_index = max(self.next_checkpoint_index, checkpoint_index(path) + 1)
        retention = self._experiment.checkpoint_config.retained(self.checkpoints)
        if retention.unscored is not None:
            self._experiment.warn_unscored(retention.unscored)
        for entry in self.checkpoints:
            if entry not in retention.kept:
                delete_checkpoint(entry[0])
        self.checkpoints = retention.kept

    def clone_checkpoint(self, source: CheckpointEntry) -> None:
        """Copy another trial's checkpoint (PBT's exploit) in as this trial's newest.

        As in Ray Tune the iteration count comes with the cloned checkpoint, and the
        iterations after it are the new lineage's, recorded even if they step back.
        """
        path, metrics = source
        target = os.path.join(self.trial_dir, checkpoint_dir_name(self.next_checkpoint_index))
        copy_checkpoint(path, target)
        self.add_checkpoint(target, metrics)
        self.recorded_through = int(metrics.get("training_iteration", 0))

    def record_config_change(self, iteration: int, source_trial: str | None,
                             old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        append_jsonl(os.path.join(self.trial_dir, CONFIG_CHANGES_FILE), {
            "training_iteration": iteration, "source_trial": source_trial,
            "old_config": dict(old), "new_config": dict(new),
        })

    def write_records(self, records: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the trial's record files (``TrialScheduler.trial_records``), by file name."""
        for name, lines in records.items():
            write_jsonl(os.path.join(self.trial_dir, name), lines)

    def record_error(self, text: str, exception: bytes | None) -> None:
        self.recorder.write_error(text)
        self.exception = exception

    def finish(self) -> None:
        """The trial is over: mark its last result done on disk, and close its files."""
        self.recorder.finish()

    def close(self) -> None:
        """The trial's run ended but the trial may run again: close its files."""
        self.recorder.close()


class ExperimentStore:
    """The experiment directory and a :class:`TrialStore` for each trial."""

    def __init__(self, path: str, name: str, checkpoint_config: CheckpointConfig) -> None:
        self.path = path
        self.name = name
        self.checkpoint_config = checkpoint_config
        self._trials: dict[str, TrialStore] = {}
        self._warned_unscored = False

    def add_trial(self, trial: Trial) -> TrialStore:
        """Create the trial's directory and record its config."""
        store = self._trials[trial.trial_id] = TrialStore(trial.local_path, self)
        store.recorder.write_params(trial.config)
        return store

    def trial(self, trial_id: str) -> TrialStore:
        return self._trials[trial_id]

    def get(self, trial_id: str) -> TrialStore | None:
        return self._trials.get(trial_id)

    def write_state(self, trials: Iterable[Trial], metric: Any, mode: Any) -> None:
        """Replace experiment_state.json with the trials as they are now."""
        write_experiment_state(self.path, {
            "name": self.name,
            "metric": metric,
            "mode": mode,
            "trials": [
                {"trial_id": t.trial_id, "status": str(t.status), "dir": t.trial_name,
                 "config": t.config, "last_result": t.last_result,
                 "checkpoint": t.checkpoint_path, "num_failures": t.num_failures}
                for t in trials
            ],
        })

    def close(self) -> None:
        for store in self._trials.values():
            store.close()

    def warn_unscored(self, metrics: Mapping[str, Any]) -> None:
        if self._warned_unscored:
            return
        self._warned_unscored = True
        logger.warning(
            "CheckpointConfig(checkpoint_score_attribute=%r): a checkpoint's result has no "
            "number under that name, so it counts as the worst when checkpoints are pruned. "
            "Its result has: %s.", self.checkpoint_config.checkpoint_score_attribute,
            ", ".join(sorted(k for k in flatten(metrics) if k not in AUTO_RESULT_FIELDS)))
