"""The searcher interface: suggest configs, learn from results, no I/O but save/restore."""

from __future__ import annotations

import pickle
from typing import Any

from dasktune._validation import MetricModeMixin


class Searcher(MetricModeMixin):
    """Base class of search algorithms.

    ``suggest`` returns a config dict, ``None`` when it cannot suggest one right
    now (try again later), or :attr:`Searcher.FINISHED` when the search is over.
    """

    FINISHED = "FINISHED"

    #: True when the searcher itself decides how many trials there are (a grid times
    #: ``num_samples``); otherwise the Tuner stops asking after ``num_samples`` trials.
    ends_search_itself = False
    #: True when the searcher learns from results, and so needs a metric and a mode.
    learns_from_results = True

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        self._set_metric_and_mode(metric, mode)

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Fill in metric, mode and the search space from the Tuner.

        ``metric`` and ``mode`` fill in only what the searcher lacks; ``config``
        is the Tuner's ``param_space`` (this base class has no use for it) and
        ``spec`` may hold ``num_samples`` and ``seed``.

        Returns:
            False, changing nothing, if the searcher already has a different
            metric or mode (the Tuner then raises); True otherwise.
        """
        return super().set_search_properties(metric, mode, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """An intermediate result of a trial that this searcher suggested."""

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """A trial finished; ``result`` is its last result, ``error`` whether it failed."""

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Limit the searcher's own concurrency; False if it cannot (ConcurrencyLimiter will)."""
        return False

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Any = None,
    ) -> None:
        """Teach the searcher a config evaluated elsewhere (Ray Tune's interface)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot learn from points evaluated outside the experiment; "
            "pass them as points_to_evaluate instead."
        )

    def get_state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's state to ``checkpoint_path``."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Read state written by :meth:`save`."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class WrappingSearcher(Searcher):
    """A searcher around another (``self.searcher``): metric, mode and the Tuner's
    settings are the wrapped searcher's, and its state is saved and restored."""

    def __init__(self, searcher: Searcher, wrapper: str) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"The value of `searcher` is {searcher!r}, but {wrapper} wraps dasktune "
                "Searcher objects only. Pass a Searcher such as BasicVariantGenerator(), "
                "HyperOptSearch() or OptunaSearch()."
            )
        super().__init__(metric=None, mode=None)
        self.searcher = searcher

    @property
    def ends_search_itself(self) -> bool:  # type: ignore[override]
        return self.searcher.ends_search_itself

    @property
    def learns_from_results(self) -> bool:  # type: ignore[override]
        return self.searcher.learns_from_results

    @property
    def metric(self) -> str | None:
        return self.searcher.metric

    @property
    def mode(self) -> str | None:
        return self.searcher.mode

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Forward the Tuner's settings to the wrapped searcher."""
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def save(self, checkpoint_path: str) -> None:
        """Save the wrapped searcher (as Ray Tune does; the wrapper's own bookkeeping is not
        kept)."""
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Restore the wrapped searcher from :meth:`save`'s file."""
        self.searcher.restore(checkpoint_path)
