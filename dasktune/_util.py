"""Small pure helpers shared across the package."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any


#: The fields ``tune.report`` adds to every result (the rest are the user's metrics).
AUTO_RESULT_FIELDS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "trial_id", "done",
    "pid", "hostname", "time_since_restore", "iterations_since_restore",
})


def flatten(result: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Flatten nested dicts into ``parent/child`` keys (as Ray Tune does in its CSVs)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def invalid_argument(argument: str, value: Any, rule: str, fix: str) -> ValueError:
    """An error in Optuna's style: the argument, its value, the rule and the fix."""
    return ValueError(f"The value of `{argument}` is {value!r}, but {rule}. {fix}")


def is_real(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
