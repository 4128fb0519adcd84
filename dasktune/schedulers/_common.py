"""Argument checks and score helpers shared by the schedulers."""

from __future__ import annotations

import math
from typing import Any

from dasktune._validation import as_number, invalid_argument


def check_time_attr(time_attr: Any, example: str) -> None:
    """Raise unless ``time_attr`` is a non-empty str; ``example`` is the field the fix suggests."""
    if not isinstance(time_attr, str) or not time_attr:
        raise invalid_argument(
            "time_attr",
            time_attr,
            "it must be the non-empty name of a result field",
            f"Pass a field that grows during training, such as {example!r}.",
        )


def check_metric(metric: Any) -> None:
    """Raise unless ``metric`` is None or a non-empty str."""
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise invalid_argument(
            "metric",
            metric,
            "it must be None or the non-empty name of a result field",
            "Pass the name of the metric your trainable reports, such as metric='loss'.",
        )


def check_bool(argument: str, value: Any, fix: str) -> None:
    """Raise unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise invalid_argument(argument, value, "it must be True or False", fix)


def sign_of(mode: str | None) -> float:
    """1 for mode "max", -1 otherwise: a metric times it is higher when better."""
    return 1.0 if mode == "max" else -1.0


def signed(value: float, sign: float) -> float:
    """The metric with higher meaning better; NaN ranks below everything."""
    return -math.inf if math.isnan(value) else sign * value


def time_and_score(
    result: dict[str, Any], time_attr: str, metric: str | None, mode: str | None
) -> tuple[float, float] | None:
    """``result[time_attr]`` and the metric made higher-is-better (:func:`signed`).

    None when either field is missing or not a number (bools are not), or the
    time is NaN: schedulers ignore such results.
    """
    now = as_number(result.get(time_attr))
    value = as_number(result.get(metric)) if metric else None
    if now is None or value is None or math.isnan(now):
        return None
    return now, signed(value, sign_of(mode))
