"""Schedulers and searchers by Ray Tune's names: ``tune.create_scheduler("async_hyperband")``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["SCHEDULERS", "SEARCHERS", "create_scheduler", "create_searcher"]

#: Ray Tune's names of the schedulers dasktune has, and where they live.
SCHEDULERS: Mapping[str, tuple[str, str]] = {
    "fifo": ("dasktune.schedulers", "FIFOScheduler"),
    "async_hyperband": ("dasktune.schedulers", "AsyncHyperBandScheduler"),
    "asynchyperband": ("dasktune.schedulers", "AsyncHyperBandScheduler"),
    "median_stopping_rule": ("dasktune.schedulers", "MedianStoppingRule"),
    "medianstopping": ("dasktune.schedulers", "MedianStoppingRule"),
    "hyperband": ("dasktune.schedulers", "HyperBandScheduler"),
    "pbt": ("dasktune.schedulers", "PopulationBasedTraining"),
    "pbt_replay": ("dasktune.schedulers", "PopulationBasedTrainingReplay"),
    "pb2": ("dasktune.schedulers", "PB2"),
}
#: Ray Tune's names of the searchers dasktune has.
SEARCHERS: Mapping[str, tuple[str, str]] = {
    "variant_generator": ("dasktune.search", "BasicVariantGenerator"),
    "random": ("dasktune.search", "BasicVariantGenerator"),
    "hyperopt": ("dasktune.search.hyperopt", "HyperOptSearch"),
    "optuna": ("dasktune.search.optuna", "OptunaSearch"),
}


def create_scheduler(scheduler: str, **kwargs: Any) -> Any:
    """The scheduler Ray Tune calls ``scheduler`` (``"async_hyperband"``, ``"pbt"``...),
    made with ``kwargs``: ``create_scheduler("async_hyperband", max_t=100)``."""
    return create_by_name(scheduler, SCHEDULERS, "tune.create_scheduler", "scheduler", kwargs)


def create_searcher(search_alg: str, **kwargs: Any) -> Any:
    """The searcher Ray Tune calls ``search_alg`` (``"hyperopt"``, ``"optuna"``,
    ``"random"``), made with ``kwargs``:
    ``create_searcher("optuna", metric="loss", mode="min")``."""
    return create_by_name(search_alg, SEARCHERS, "tune.create_searcher", "search_alg", kwargs)


def create_by_name(
    value: str,
    table: Mapping[str, tuple[str, str]],
    caller: str,
    argument: str,
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """``table[value]`` made with ``kwargs``; a name not in ``table`` raises, naming them."""
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise ValueError(
            f"The value of `{caller}({argument}=...)` is {value!r}, which dasktune does not "
            f"have. Pass one of {', '.join(sorted(table))}, or an instance."
        )
    module, name = table[key]
    return getattr(importlib.import_module(module), name)(**(kwargs or {}))
