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

    Ray Tune 0.x's names work too: ``_setup``, ``_train``, ``_save`` (which may return a
    file path inside the directory), ``_restore`` (given that path) and ``_stop``.
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
        legacy = getattr(self, "_setup", None)
        if legacy is not None:
            legacy(config, **params)

    def step(self) -> dict[str, Any]:
        """Train one iteration and return its metrics."""
        legacy = getattr(self, "_train", None)
        if legacy is not None:
            return legacy()
        raise NotImplementedError(
            f"{type(self).__name__}.step() is not implemented: a Trainable subclass must "
            "define step(self) -> dict that trains one iteration and returns its metrics."
        )

    def save_checkpoint(self, checkpoint_dir: str) -> Any:
        """Write the state needed to resume into ``checkpoint_dir``.

        As in Ray Tune, it may return a dict (handed back to :meth:`load_checkpoint`) or
        the path of a file it wrote in ``checkpoint_dir`` (handed back as that file's path
        where the checkpoint lies when it is restored)."""
        legacy = getattr(self, "_save", None)
        return legacy(checkpoint_dir) if legacy is not None else None

    def load_checkpoint(self, checkpoint_dir: Any) -> None:
        """Restore the state written by :meth:`save_checkpoint`."""
        legacy = getattr(self, "_restore", None)
        if legacy is not None:
            legacy(checkpoint_dir)

    def cleanup(self) -> None:
        """Release resources; called once when the trial ends."""
        legacy = getattr(self, "_stop", None)
        if legacy is not None:
            legacy()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this instance for a new config; return True if supported."""
        return False


def _context() -> _session.TrialContext:
    return _session.get_context()
