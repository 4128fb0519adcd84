"""The part of HyperOptSearch and OptunaSearch that does not depend on the library.

Both searchers search either their own ``space`` argument or the Tuner's
``param_space``, take points to evaluate and a seed, track the suggestions
still waiting for a result, and save their state with cloudpickle.
:class:`LibrarySearcher` owns that state and logic; a subclass adds the
library: how a space is checked and converted (:meth:`~LibrarySearcher._convert_space`),
whether suggestions were made, and what its state holds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import cloudpickle

from dasktune._validation import validate_mode
from dasktune.search import _space
from dasktune.search.searcher import Searcher

__all__ = ["LibrarySearcher"]

SpaceArgument = dict[str, Any] | Callable[..., Any]


class LibrarySearcher(Searcher):
    """Base class of searchers that drive an optimisation library through ask and tell.

    Args:
        metric: The metric to optimise, or None to take the Tuner's.
        mode: ``"min"`` or ``"max"``, or None to take the Tuner's.
        points_to_evaluate: Configs (full or partial) to try first, in order.
        seed: Seed of the library's sampling; if None, the Tuner's
            ``TuneConfig(seed=...)`` is used when given.
        seed_argument: The name of ``seed`` in the subclass's signature, for errors.

    Subclasses call :meth:`_take_space_argument` at the end of their
    ``__init__``, once their library's state exists.
    """

    #: The library's own space objects (hyperopt expressions, Optuna distributions):
    #: a ``param_space`` holding one of them next to a ``space`` argument is refused.
    _native_space: ClassVar[type | tuple[type, ...]] = ()
    #: Attributes :meth:`get_state` deep-copies, so that the state is a snapshot.
    _copied_state: ClassVar[tuple[str, ...]] = ("_points", "_live")
    #: Attributes :meth:`get_state` leaves out (:meth:`set_state` rebuilds them).
    _rebuilt_state: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        metric: str | None,
        mode: str | None,
        *,
        points_to_evaluate: list[dict[str, Any]] | None,
        seed: int | None,
        seed_argument: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self._seed = _space.check_seed(seed, seed_argument)
        self._points = _space.check_points(points_to_evaluate)
        # The space searched, and where it came from: "space" (the argument)
        # or "param_space" (the Tuner).  _user_space is the argument as given.
        self._space: SpaceArgument | None = None
        self._space_source: str | None = None
        self._user_space: SpaceArgument | None = None
        self._param_space: dict[str, Any] | None = None
        # trial_id -> the library's id of suggestions without a result yet.
        self._live: dict[str, int] = {}

    @property
    def _started(self) -> bool:
        """Whether suggestions were made: the searched space can no longer change."""
        raise NotImplementedError

    @property
    def _seed_used(self) -> bool:
        """Whether the library's random state exists: the seed can no longer change."""
        return self._started

    def _convert_space(self, space: Any, argument: str) -> None:
        """Check ``space`` (named ``argument`` in errors) and the points against it, and
        build what the library needs to search it; raise if it cannot be searched."""
        raise NotImplementedError

    def _use_space(self, space: Any, argument: str) -> None:
        """Search ``space``, which came from ``argument`` ("space" or "param_space")."""
        self._convert_space(space, argument)
        self._space = space
        self._space_source = self._space_source or argument

    def _take_space_argument(self, space: SpaceArgument) -> None:
        """Search the constructor's ``space``, unless it is empty (then the Tuner's)."""
        if callable(space) or space:
            self._user_space = space
            self._use_space(space, "space")

    # -- configuration ---------------------------------------------------------

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Take the Tuner's metric, mode, ``param_space`` and ``seed``.

        The ``param_space`` is searched when the searcher has no ``space`` of
        its own; otherwise its constants join that space.

        Returns:
            False if ``metric`` or ``mode`` differ from the searcher's own.

        Raises:
            ValueError: If both the searcher's ``space`` and ``param_space``
                define hyperparameters, ``param_space`` holds something the
                library cannot search (``grid_search``, ``sample_from``...), or
                suggestions were made for another ``param_space``.
        """
        validate_mode(mode)
        if self._conflicts_with(metric, mode):
            return False
        param_space = config or {}
        if not isinstance(param_space, dict):
            raise TypeError(
                f"The value of `param_space` is {param_space!r}, but it must be a dict."
            )
        if self._space_source == "space":
            if param_space and _space.has_searchable(param_space, self._native_space):
                raise _space.space_twice_error(type(self).__name__)
            if param_space:
                self._add_constants(param_space)
        elif param_space and self._param_space is not param_space:
            self._take_param_space(param_space)
        seed = spec.get("seed")
        if self._seed is None and seed is not None and not self._seed_used:
            self._seed = _space.check_seed(seed, "seed")
        self._fill_metric_and_mode(metric, mode)
        return True

    def _add_constants(self, param_space: dict[str, Any]) -> None:
        """Add the constants of the Tuner's ``param_space`` to the ``space`` argument."""
        assert self._user_space is not None and not callable(self._user_space)
        self._use_space(_space.merge(param_space, self._user_space), "space")

    def _take_param_space(self, param_space: dict[str, Any]) -> None:
        """Search the Tuner's ``param_space``.

        Before the first suggestion the space is converted; after it (or after
        a restore) it must search the same hyperparameters, and the caller's
        constants replace the copies a restored searcher holds.
        """
        if self._started:
            if not _space.same_search(param_space, self._param_space):
                raise _space.space_changed_error(type(self).__name__)
            self._space = self._param_space = param_space
        else:
            self._use_space(param_space, "param_space")
            self._space_source = "param_space"
            self._param_space = param_space

    # -- suggestions and results -------------------------------------------------

    def _check_can_suggest(self, trial_id: str) -> None:
        """Raise unless metric, mode and a space are set and ``trial_id`` is new."""
        _space.check_ready(type(self).__name__, self._metric, self._mode, self._space)
        _space.check_new_trial_id(trial_id, self._live)

    def _metric_values(self, trial_id: str, result: dict[str, Any] | None) -> list[float] | None:
        """The value of each metric in ``result``; None (logged) if one is not a number."""
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        log = logging.getLogger(type(self).__module__)
        values = []
        for metric in metrics:
            value = _space.metric_value(trial_id, result, metric, type(self).__name__, log)
            if value is None:
                return None
            values.append(value)
        return values

    # -- state -------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The searcher's state: settings, space, the library's state; a snapshot."""
        state = {
            key: value for key, value in self.__dict__.items() if key not in self._rebuilt_state
        }
        for key in self._copied_state:
            state[key] = copy.deepcopy(state[key])
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s output; the search continues where it was."""
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Write the state to ``checkpoint_path`` (cloudpickle: spaces may hold lambdas)."""
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)
