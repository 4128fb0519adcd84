"""Callbacks: user hooks into an experiment's events, called on the driver (Ray Tune's names)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dasktune.trial import Trial


class Callback:
    """Subclass and override the hooks you need; pass instances as ``RunConfig(callbacks=[...])``.

    ``iteration`` counts the coordinator's loop turns; ``trials`` is every trial so
    far. Hooks run on the driver, between results: keep them quick. An exception in
    a hook ends the experiment (every result so far is already on disk).
    """

    def setup(self, **info: Any) -> None:
        """Called once before the first trial starts."""

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """A turn of the coordinator's loop begins."""

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """A turn of the coordinator's loop ended: its results are on disk."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A run of ``trial`` began on a worker (again after a pause or a failure)."""

    def on_trial_restore(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A run of ``trial`` began from a checkpoint (after a pause, a failure or a resume)."""

    def on_trial_save(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """``trial`` stored a checkpoint (``trial.checkpoint_path``)."""

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """``trial`` reported ``result`` (recorded; its files reach the disk by the
        turn's ``on_step_end``)."""

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """``trial`` finished or was stopped."""

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """``trial`` failed for good (no retries left)."""

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """The experiment is over (also after an error)."""


class CallbackList:
    """The experiment's callbacks, called in order on the driver."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = tuple(callbacks)

    def setup(self, **info: Any) -> None:
        for callback in self.callbacks:
            callback.setup(**info)

    def notify(self, hook: str, iteration: int, trials: list[Trial], *args: Any) -> None:
        """Call ``hook`` (``"on_trial_result"``, ...) on every callback."""
        for callback in self.callbacks:
            getattr(callback, hook)(iteration, trials, *args)

    def on_experiment_end(self, trials: list[Trial]) -> None:
        for callback in self.callbacks:
            callback.on_experiment_end(trials)
