"""Small pure helpers shared across the package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The fields ``tune.report`` adds to every result (the rest are the user's metrics).
AUTO_RESULT_FIELDS = frozenset(
    {
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "trial_id",
        "done",
        "pid",
        "hostname",
        "time_since_restore",
        "iterations_since_restore",
    }
)


#: Value types that are never nested: ``flatten`` skips the Mapping check for them (it
#: runs several times per result on the driver).
_LEAF_TYPES = frozenset({float, int, str, bool, type(None)})


def flatten(result: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Flatten nested dicts into ``parent/child`` keys (as Ray Tune does in its CSVs).

    Example:
        >>> flatten({"loss": 0.5, "config": {"lr": 0.1, "net": {"depth": 2}}})
        {'loss': 0.5, 'config/lr': 0.1, 'config/net/depth': 2}
    """
    out: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if type(value) in _LEAF_TYPES:
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out
