"""A searcher wrapper that caps how many of its suggestions run at once."""

from __future__ import annotations

import copy
import logging
from typing import Any

from dasktune._validation import is_integer
from dasktune.search.searcher import Searcher, WrappingSearcher

__all__ = ["ConcurrencyLimiter"]

logger = logging.getLogger(__name__)


class ConcurrencyLimiter(WrappingSearcher):
    """Let at most ``max_concurrent`` suggested trials be live at a time.

    :meth:`suggest` returns None (ask again later) while ``max_concurrent``
    trials it suggested have not completed.  Model-based searchers suggest
    better configs when fewer trials run blind, so wrapping them trades
    parallelism for sample efficiency.

    With ``batch=True`` the wrapped searcher works in rounds: a new round of
    ``max_concurrent`` suggestions starts only when every trial of the current
    round completed, and the round's results reach the wrapped searcher's
    :meth:`on_trial_complete` together, in completion order, when the last one
    arrives.

    If the wrapped searcher has a ``set_max_concurrency(n)`` method that
    returns True, it limits itself and this wrapper only forwards calls.

    Args:
        searcher: The searcher to wrap.
        max_concurrent: Most trials live at once; at least 1.
        batch: Work in rounds as described above.

    Example:
        >>> from dasktune.search.variant_generator import BasicVariantGenerator
        >>> from dasktune.search.sample import uniform
        >>> limiter = ConcurrencyLimiter(BasicVariantGenerator(random_state=0), max_concurrent=1)
        >>> limiter.set_search_properties(None, None, {"x": uniform(0, 1)}, num_samples=3)
        True
        >>> isinstance(limiter.suggest("t1"), dict), limiter.suggest("t2")
        (True, None)
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if not is_integer(max_concurrent) or max_concurrent < 1:
            raise ValueError(
                f"The value of `max_concurrent` is {max_concurrent!r}, but it must be an int >= 1. "
                "Pass max_concurrent=1 for strictly sequential trials, or leave the searcher "
                "unwrapped for no limit."
            )
        super().__init__(searcher, "ConcurrencyLimiter")
        self.max_concurrent = int(max_concurrent)
        self.batch = bool(batch)
        self._live: set[str] = set()
        self._unfinished = 0
        self._cached: dict[str, tuple[dict[str, Any] | None, bool]] = {}
        self._limit = not self._searcher_limits_itself()

    def _searcher_limits_itself(self) -> bool:
        setter = getattr(self.searcher, "set_max_concurrency", None)
        return bool(setter(self.max_concurrent)) if callable(setter) else False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Change the limit; returns True (this wrapper enforces it)."""
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Forward the Tuner's settings to the wrapped searcher."""
        self._limit = not self._searcher_limits_itself()
        return super().set_search_properties(metric, mode, config, **spec)

    # -- events ---------------------------------------------------------------

    @property
    def live_trials(self) -> frozenset[str]:
        """Trials suggested through this wrapper and not yet released."""
        return frozenset(self._live)

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """A config from the wrapped searcher, or None at the limit."""
        if not self._limit:
            return self.searcher.suggest(trial_id)
        if trial_id in self._live:
            raise ValueError(
                f"The value of `trial_id` is {trial_id!r}, but a live trial already has this id; "
                "trial ids must be unique. Pass a new id for every suggest() call."
            )
        if len(self._live) >= self.max_concurrent:
            logger.debug(
                "No suggestion for %s: %d/%d trials live.",
                trial_id,
                len(self._live),
                self.max_concurrent,
            )
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and suggestion != Searcher.FINISHED:
            self._live.add(trial_id)
            self._unfinished += 1
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Release the trial's place; in batch mode, pass on the round when it is complete.

        Trials this wrapper did not hand out (for example ones suggested before
        an experiment was restored) go straight to the wrapped searcher.
        """
        if not self._limit or trial_id not in self._live:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if not self.batch:
            self._live.discard(trial_id)
            self._unfinished -= 1
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id in self._cached:
            return
        self._cached[trial_id] = (result, error)
        self._unfinished -= 1
        if self._unfinished > 0:
            return
        cached, self._cached = self._cached, {}
        for finished_id, (finished_result, finished_error) in cached.items():
            self._live.discard(finished_id)
            self.searcher.on_trial_complete(
                finished_id, result=finished_result, error=finished_error
            )
        self._unfinished = 0

    # -- state ----------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """This wrapper's bookkeeping plus the wrapped searcher's state."""
        own = {key: value for key, value in self.__dict__.items() if key != "searcher"}
        return {"limiter": copy.deepcopy(own), "searcher": self.searcher.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state["limiter"]))
        self.searcher.set_state(state["searcher"])
