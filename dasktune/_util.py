"""Small pure helpers shared across the package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The fields dasktune adds to every result, as Ray Tune does (the rest are the user's
#: metrics): ``tune.report`` adds all but ``config``, the trial's config, which the
#: driver adds (flattened, it is the ``config/<key>`` columns).
AUTO_RESULT_FIELDS = frozenset(
    {
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "date",
        "trial_id",
        "done",
        "pid",
        "hostname",
        "node_ip",
        "time_since_restore",
        "iterations_since_restore",
        "config",
    }
)


def is_auto_field(key: str) -> bool:
    """Whether ``key`` of a result, flattened or not, is bookkeeping rather than a metric.

    >>> [is_auto_field(k) for k in ("loss", "pid", "config", "config/lr")]
    [False, True, True, True]
    """
    return key in AUTO_RESULT_FIELDS or key.startswith("config/")


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


def last_line(traceback_text: str, limit: int = 300) -> str:
    """The last non-empty line of a traceback (``ValueError: bad lr``), shortened.

    >>> last_line("Traceback (most recent call last):\\n  ...\\nValueError: bad lr\\n")
    'ValueError: bad lr'
    """
    lines = [line.strip() for line in str(traceback_text).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."
