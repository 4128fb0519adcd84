"""Replay of the config schedule that Population Based Training found for one trial.

:class:`PopulationBasedTrainingReplay` (Ray Tune's name) reads a policy log,
as :meth:`PopulationBasedTraining.policy_log
<dasktune.schedulers.pbt.PopulationBasedTraining.policy_log>` returns it or
the coordinator writes it to a trial's ``pbt_policy.jsonl``, or a Ray
``pbt_policy_*.txt`` file, and makes one trial go through the same config
changes at the same steps, each time resuming from its own checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dasktune._validation import is_number
from dasktune.decision_points import DecisionPoints
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.trial import Trial

__all__ = ["PopulationBasedTrainingReplay"]


class PopulationBasedTrainingReplay(FIFOScheduler):
    """Replay the config schedule PBT found for one trial (Ray's ``PopulationBasedTrainingReplay``).

    The one trial of the experiment starts with the config of the oldest
    entry of the policy and, at each recorded step, pauses and resumes from
    its own checkpoint with the next config (``TrialUpdate(CONTINUE,
    new_config=...)``, no ``checkpoint_from``).

    Args:
        policy: A list of entries as returned by
            :meth:`PopulationBasedTraining.policy_log`, or the path of a JSON-lines
            file of them.  Rows of Ray's ``pbt_policy_*.txt`` files
            (``[target tag, source tag, target step, source step, old config,
            new config]``) are accepted too.  Only the last unbroken chain of
            entries (each one's source is the previous one's trial) is replayed.
        time_attr: The result field the steps refer to; by default the one
            recorded in the policy, else ``"training_iteration"``.

    Raises:
        ValueError: If the file is missing or unreadable, or an entry is malformed.
    """

    def __init__(
        self,
        policy: Sequence[Mapping[str, Any] | Sequence[Any]] | str | os.PathLike[str],
        time_attr: str | None = None,
    ) -> None:
        entries = [_entry(row) for row in _load_policy(policy)]
        self._initial_config, self._changes = _chain(entries)
        recorded = {e["time_attr"] for e in entries if e.get("time_attr")}
        if time_attr is None:
            time_attr = recorded.pop() if len(recorded) == 1 else "training_iteration"
        self._time_attr = time_attr
        self._trial_id: str | None = None
        self._next_change = 0
        self._num_perturbations = 0
        self._updates: list[TrialUpdate] = []

    @property
    def initial_config(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._initial_config)

    @property
    def changes(self) -> list[tuple[float, dict[str, Any]]]:
        """``(step, config)`` pairs: the config that applies from each step on."""
        return copy.deepcopy(self._changes)

    def decision_points(self) -> DecisionPoints:
        """The recorded steps: the trial waits only where its config changes."""
        return DecisionPoints.at(self._time_attr, [step for step, _ in self._changes])

    def on_trial_add(self, trial: Trial) -> None:
        """Accept the one trial and give it the policy's initial config (in place, as Ray does)."""
        if self._trial_id is not None and self._trial_id != trial.trial_id:
            raise ValueError(
                "PopulationBasedTrainingReplay replays one schedule on one trial, but a second "
                f"trial ({trial.trial_id}) was added. Pass tune.TuneConfig(num_samples=1)."
            )
        self._trial_id = trial.trial_id
        if self._initial_config is None:
            if not trial.config:
                raise ValueError(
                    "The replay policy is empty and the trial has no config. Pass a param_space "
                    "to the Tuner, or a non-empty policy."
                )
            return
        if trial.config and trial.config != self._initial_config:
            warnings.warn(
                "The trial's config was replaced by the initial config of the replayed policy.",
                stacklevel=2,
            )
        trial.config.clear()
        trial.config.update(copy.deepcopy(self._initial_config))

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """PAUSE at a recorded step, with an update carrying the config from that step on."""
        step = result.get(self._time_attr)
        if not is_number(step) or math.isnan(step):
            return TrialDecision.CONTINUE
        config = None
        while self._next_change < len(self._changes):
            change_at, new_config = self._changes[self._next_change]
            if step < change_at:
                break
            config = new_config
            self._next_change += 1
        if config is None:
            return TrialDecision.CONTINUE
        self._num_perturbations += 1
        self._updates.append(
            TrialUpdate(trial.trial_id, TrialDecision.CONTINUE, new_config=copy.deepcopy(config))
        )
        return TrialDecision.PAUSE

    def pop_trial_updates(self) -> list[TrialUpdate]:
        updates, self._updates = self._updates, []
        return updates

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """The replayed trial, whenever it is paused."""
        return next((t for t in trials if t.trial_id == self._trial_id), None)

    def debug_string(self) -> str:
        return (
            f"PopulationBasedTraining replay: {self._num_perturbations} of "
            f"{len(self._changes)} config changes applied"
        )


def _load_policy(policy: Any) -> list[Any]:
    if isinstance(policy, (str, os.PathLike)):
        path = Path(policy).expanduser()
        if not path.is_file():
            raise ValueError(
                f"The PBT policy file {path.as_posix()!r} does not exist. Pass the path of a file "
                "written from PopulationBasedTraining.policy_log(), one JSON entry per line."
            )
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"Line {number} of the PBT policy file {path.as_posix()!r} is not JSON "
                    f"({error.msg}). Each line must be one policy entry."
                ) from None
        return rows
    return list(policy)


_ENTRY_KEYS = ("trial_id", "source", "step", "source_step", "old_config", "new_config")


def _entry(row: Any) -> dict[str, Any]:
    """A policy entry as a dict, from a dasktune dict or a row of a Ray policy file."""
    if isinstance(row, Mapping):
        missing = [key for key in _ENTRY_KEYS if key not in row]
        if not missing:
            return dict(row)
    elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 6:
        return {**dict(zip(_ENTRY_KEYS, row, strict=True)), "time_attr": "training_iteration"}
    raise ValueError(
        f"A PBT policy entry is {row!r}, but it must be a dict with the keys {list(_ENTRY_KEYS)} "
        "(as PopulationBasedTraining.policy_log() returns) or a 6-item row of a Ray policy file."
    )


def _chain(
    entries: list[dict[str, Any]],
) -> tuple[dict[str, Any] | None, list[tuple[float, dict[str, Any]]]]:
    """The initial config and the config changes of the last unbroken chain (Ray's reading)."""
    changes: list[tuple[float, dict[str, Any]]] = []
    initial: dict[str, Any] | None = None
    expected_trial: Any = None
    for entry in reversed(entries):
        if expected_trial is not None and entry["trial_id"] != expected_trial:
            break
        expected_trial = entry["source"]
        initial = copy.deepcopy(entry["old_config"])
        changes.append((float(entry["source_step"]), copy.deepcopy(entry["new_config"])))
    return initial, list(reversed(changes))
