"""Helpers shared by the tests of the HyperOpt and Optuna searchers."""

from __future__ import annotations

from typing import Any

from dasktune.search.searcher import Searcher

from .searcher_contract import METRIC, objective


class Marker:
    """A constant that must come back as the very same object."""


MARKER = Marker()


def drive(searcher: Searcher, count: int, score: Any, prefix: str = "t") -> list[dict[str, Any]]:
    """Suggest and complete ``count`` trials sequentially, scoring each config with ``score``."""
    configs = []
    for i in range(count):
        config = searcher.suggest(f"{prefix}{i}")
        assert isinstance(config, dict)
        searcher.on_trial_complete(f"{prefix}{i}", {"y": score(config)})
        configs.append(config)
    return configs


def drive_contract(searcher: Searcher, count: int, prefix: str = "t") -> list[dict[str, Any]]:
    """Suggest and complete ``count`` trials, scored with the contract's objective."""
    configs = []
    for i in range(count):
        config = searcher.suggest(f"{prefix}{i}")
        searcher.on_trial_complete(f"{prefix}{i}", {METRIC: objective(config)})
        configs.append(config)
    return configs


def assert_points_pick_the_category_whose_bounds_hold_them(make: Any) -> None:
    """A point fits the second of two categories that differ only in their bounds."""
    from dasktune.search import sample as tune

    space = {"m": tune.choice([{"lr": tune.uniform(0, 1)}, {"lr": tune.uniform(5, 10)}]),
             "k": tune.choice([tune.randint(0, 3), tune.randint(10, 13)])}
    for point, key in (({"m": {"lr": 7.0}}, "m"), ({"k": 11}, "k"), ({"k": 11.0}, "k")):
        searcher = make(point)
        searcher.set_search_properties(None, None, space)
        config = searcher.suggest("t0")
        assert config[key] == point[key]


def assert_a_restored_searcher_takes_the_caller_s_constants(make: Any, tmp_path: Any) -> None:
    """After restore, the same space with constants that do not compare equal to the
    unpickled copies (an array, a plain object) is accepted, and the caller's objects are
    what trials get; a changed domain is still refused."""
    import numpy as np
    import pytest

    from dasktune.search import sample as tune

    for constant in (Marker(), np.arange(3)):
        space = {"x": tune.uniform(0, 1), "data": constant}
        first = make()
        first.set_search_properties(None, None, space)
        first.on_trial_complete("t0", {"y": 1.0, **first.suggest("t0")})
        path = str(tmp_path / "state.pkl")
        first.save(path)
        restored = make()
        restored.restore(path)
        restored.set_search_properties(None, None, space)
        assert restored.suggest("t1")["data"] is constant
        again = make()
        again.restore(path)
        with pytest.raises(ValueError, match="already made suggestions for another param_space"):
            again.set_search_properties(None, None, {"x": tune.uniform(0, 2), "data": constant})
