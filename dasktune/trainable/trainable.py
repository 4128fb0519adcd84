"""Class trainables: ``setup``/``step``/``save_checkpoint``/``load_checkpoint``."""

from __future__ import annotations

from typing import Any

from dasktune.trainable import session as _session


class Trainable:
    """Base class for trainables written as a class (Ray Tune's interface).

    dasktune calls ``setup(config)`` once, then ``step()`` repeatedly; each
    returned dict is reported as one iteration.  ``save_checkpoint(dir)`` and
    ``load_checkpoint(dir)`` save and restore state, as often as
    ``CheckpointConfig(checkpoint_frequency=..., checkpoint_at_end=...)`` asks.
    Return ``{"done": True, ...}`` from ``step`` to end the trial.
    """

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        self.config = dict(config or {})
        self._iteration = 0
        self.setup(self.config, **params)

    # Ray Tune's accessors for the trial running this instance.
    @property
    def trial_id(self) -> str:
        return _context().trial_id

    @property
    def trial_name(self) -> str:
        return _context().trial_name

    @property
    def logdir(self) -> str:
        """The trial's directory."""
        return _context().trial_dir

    @property
    def trial_resources(self) -> dict[str, float]:
        return dict(_context().resources)

    def get_config(self) -> dict[str, Any]:
        return self.config

    @property
    def iteration(self) -> int:
        """How many steps have been reported, across restores."""
        return self._iteration

    @property
    def training_iteration(self) -> int:
        return self._iteration

    def setup(self, config: dict[str, Any], **params: Any) -> None:
        """Build models and load data; ``params`` are those of ``tune.with_parameters``."""

    def step(self) -> dict[str, Any]:
        """Train one iteration and return its metrics."""
        raise NotImplementedError(
            f"{type(self).__name__}.step() is not implemented: a Trainable subclass must "
            "define step(self) -> dict that trains one iteration and returns its metrics."
        )

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | None:
        """Write the state needed to resume into ``checkpoint_dir``."""
        return None

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore the state written by :meth:`save_checkpoint`."""

    def cleanup(self) -> None:
        """Release resources; called once when the trial ends."""

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this instance for a new config; return True if supported."""
        return False


def _context() -> _session.TrialContext:
    return _session.get_context()
