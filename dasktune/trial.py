"""The driver's record of one trial: pure data, shared by schedulers and the coordinator."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any


class TrialStatus(str, enum.Enum):
    """Life cycle of a trial (Ray Tune's names)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


@dataclass(eq=False)
class Trial:
    """One configuration being evaluated.

    Schedulers and searchers read ``trial_id``, ``config``, ``status`` and
    ``last_result``; only the coordinator changes them.
    """

    trial_id: str
    config: dict[str, Any]
    trial_name: str = ""
    local_path: str = ""
    status: TrialStatus = TrialStatus.PENDING
    last_result: dict[str, Any] = field(default_factory=dict)
    num_failures: int = 0
    error_msg: str | None = None
    # Where the latest checkpoint of this trial lies, if any.
    checkpoint_path: str | None = None
    #: The trainable's name (Ray's ``Trial.trainable_name``, which name creators often use).
    trainable_name: str = ""

    # Ray Tune's other names for what callbacks and name creators read.
    @property
    def path(self) -> str:
        """The trial's directory (Ray 2.7+; ``local_path`` and ``logdir`` before)."""
        return self.local_path

    @property
    def logdir(self) -> str:
        return self.local_path

    @property
    def local_experiment_path(self) -> str:
        """The experiment's directory, which holds the trial's."""
        return os.path.dirname(self.local_path.rstrip(os.sep)) if self.local_path else ""

    @property
    def checkpoint(self) -> Any:
        """The trial's latest checkpoint (a :class:`dasktune.Checkpoint`), or None."""
        from dasktune.trainable.checkpoint import Checkpoint

        return Checkpoint(self.checkpoint_path) if self.checkpoint_path else None

    @property
    def evaluated_params(self) -> dict[str, Any]:
        """The config, flattened as ``a/b`` (Ray's sampled parameters, constants included)."""
        from dasktune._util import flatten

        return flatten(self.config)

    def __repr__(self) -> str:
        return f"Trial({self.trial_name or self.trial_id}, {self.status})"

    def __str__(self) -> str:
        return self.trial_name or self.trial_id
