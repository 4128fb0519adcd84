"""A searcher wrapper that runs each suggested config several times (Ray Tune's Repeater).

Noisy objectives (random initialisation, data order) rank configs by luck; repeating
each config and telling the searcher the mean ranks them by the config.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from dasktune._validation import is_finite_number, is_integer
from dasktune.search.searcher import Searcher, WrappingSearcher

__all__ = ["TRIAL_INDEX", "Repeater"]

logger = logging.getLogger(__name__)

#: The config key that holds a repeated trial's index within its group (0, 1, ...).
TRIAL_INDEX = "__trial_index__"


class Repeater(WrappingSearcher):
    """Run each config the wrapped searcher suggests ``repeat`` times.

    The first trial of a group asks the wrapped searcher for a config; the next
    ``repeat - 1`` trials get the same config.  When every trial of a group has
    completed, the wrapped searcher hears of the group once, under its first
    trial's id, with the mean of the group's ``metric`` (trials that failed or did
    not report the metric are left out of the mean).

    Set ``num_samples`` to a multiple of ``repeat``: 15 with ``repeat=5`` gives 3
    configs.  A last group that ``num_samples`` cuts short runs, but the wrapped
    searcher does not hear of it (as in Ray Tune).  Around a
    searcher that decides the number of trials itself (a grid, or
    :class:`~dasktune.search.BasicVariantGenerator`), every config it makes runs
    ``repeat`` times.  An early-stopping scheduler compares the repeats of a config
    with each other and with other configs' trials alike, so the mean mixes trials
    stopped at different points; use one only knowingly.

    Args:
        searcher: The searcher to wrap.
        repeat: Trials per config; at least 1.
        set_index: Put each trial's index within its group into its config under
            :data:`TRIAL_INDEX` (``"__trial_index__"``), say as a seed.

    Example:
        >>> from dasktune.search.variant_generator import BasicVariantGenerator
        >>> from dasktune.search.sample import grid_search
        >>> repeater = Repeater(BasicVariantGenerator(), repeat=2)
        >>> repeater.set_search_properties(None, None, {"x": grid_search([1, 2])})
        True
        >>> [repeater.suggest(f"t{i}") for i in range(4)]  # doctest: +NORMALIZE_WHITESPACE
        [{'x': 1, '__trial_index__': 0}, {'x': 1, '__trial_index__': 1},
         {'x': 2, '__trial_index__': 0}, {'x': 2, '__trial_index__': 1}]
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        if not is_integer(repeat) or repeat < 1:
            raise ValueError(
                f"The value of `repeat` is {repeat!r}, but it must be an int >= 1: the number "
                "of trials each config runs."
            )
        super().__init__(searcher, "Repeater")
        self.repeat = int(repeat)
        self.set_index = bool(set_index)
        # Each group: {"first": trial id, "config": ..., "trials": [ids], "scores": {id: score}}
        self._groups: list[dict[str, Any]] = []
        self._group_of: dict[str, int] = {}

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # the wrapped searcher sees groups, not trials: ConcurrencyLimiter counts

    # -- events ---------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """The current group's config, or a new config from the wrapped searcher."""
        if trial_id in self._group_of:
            raise ValueError(
                f"The value of `trial_id` is {trial_id!r}, but Repeater already gave a config "
                "to a trial with this id; trial ids must be unique."
            )
        group = self._groups[-1] if self._groups else None
        if group is None or len(group["trials"]) >= self.repeat:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            group = {"first": trial_id, "config": copy.deepcopy(config), "trials": [], "scores": {}}
            self._groups.append(group)
        index = len(group["trials"])
        group["trials"].append(trial_id)
        self._group_of[trial_id] = len(self._groups) - 1
        config = copy.deepcopy(group["config"])
        if self.set_index:
            config[TRIAL_INDEX] = index
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate results stay here: the wrapped searcher hears of groups only."""

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Note the trial's score; when its group is complete, tell the wrapped searcher."""
        number = self._group_of.get(trial_id)
        if number is None:  # not suggested here (an experiment restored from elsewhere)
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        group = self._groups[number]
        if trial_id in group["scores"]:
            return
        group["scores"][trial_id] = None if error or not result else result.get(self.metric or "")
        if len(group["scores"]) < self.repeat:
            return
        scores = [float(s) for s in group["scores"].values() if is_finite_number(s)]
        if not scores:  # every repeat failed or reported no metric
            self.searcher.on_trial_complete(group["first"], result=None, error=True)
            return
        mean = sum(scores) / len(scores)
        self.searcher.on_trial_complete(group["first"], result={self.metric or "": mean})

    # -- state ----------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """This wrapper's groups plus the wrapped searcher's state."""
        own = {key: value for key, value in self.__dict__.items() if key != "searcher"}
        return {"repeater": copy.deepcopy(own), "searcher": self.searcher.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state["repeater"]))
        self.searcher.set_state(state["searcher"])
