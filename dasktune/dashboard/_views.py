"""Pure helpers of the page: table rows, the trial filter, parallel-coordinate axes.

Kept apart from Bokeh so that they are tested without a browser or a server.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dasktune.dashboard._model import TrialView

__all__ = ["Axis", "config_keys", "normalise", "parallel_axes", "parse_filter", "table_row"]

#: The most config columns the table and the parallel coordinates show.
MAX_CONFIG_KEYS = 12
_MAX_CATEGORIES = 30


def config_keys(trials: Sequence[TrialView], limit: int = MAX_CONFIG_KEYS) -> list[str]:
    """The config keys to show: those that vary between trials first, then the rest."""
    seen: dict[str, set[str]] = {}
    for trial in trials:
        for key, value in trial.config.items():
            seen.setdefault(key, set()).add(repr(value))
    varying = [k for k, values in seen.items() if len(values) > 1]
    constant = [k for k, values in seen.items() if len(values) <= 1]
    return (varying + constant)[:limit]


def _number(value: float | None) -> float:
    return float("nan") if value is None else value


def table_row(
    trial: TrialView, metric: str | None, mode: str | None, keys: Sequence[str]
) -> dict[str, Any]:
    """One row of the trial table (config values as shown: numbers stay numbers)."""
    row: dict[str, Any] = {
        "id": trial.trial_id,
        "trial": trial.name,
        "status": trial.status,
        "iter": trial.iteration,
        "last": _number(trial.last.get(metric)) if metric else float("nan"),
        "best": _number(trial.best(metric, mode)) if metric else float("nan"),
    }
    for key in keys:
        value = trial.config.get(key)
        row[f"config/{key}"] = (
            value
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else ("" if value is None else str(value))
        )
    return row


# -- the filter -----------------------------------------------------------------
_COMPARISON = re.compile(r"^(?P<key>[^<>=!]+?)(?P<op>>=|<=|!=|=|<|>)(?P<value>.+)$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}


def parse_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate on table rows from a filter such as ``lr<0.01 RUNNING width=64``.

    Every word must hold: ``key<op>value`` compares a column (``lr`` or
    ``config/lr``, ``iter``, ``last``, ``best``, ``status``; numbers as numbers),
    any other word must appear in the row's text (case-insensitive).
    """
    tests = [_word_test(word) for word in text.split()]
    return lambda row: all(test(row) for test in tests)


def _word_test(word: str) -> Callable[[dict[str, Any]], bool]:
    match = _COMPARISON.match(word)
    if match is None:
        needle = word.lower()
        return lambda row: any(needle in str(v).lower() for k, v in row.items() if k != "id")
    key, compare, wanted = match["key"], _OPERATORS[match["op"]], match["value"]
    try:
        target: Any = float(wanted)
    except ValueError:
        target = wanted.lower()

    def test(row: dict[str, Any]) -> bool:
        value = row.get(key, row.get(f"config/{key}"))
        if value is None or value == "":
            return False
        if isinstance(target, float):
            try:
                return bool(compare(float(value), target))
            except (TypeError, ValueError):
                return False
        return bool(compare(str(value).lower(), target))

    return test


# -- parallel coordinates ---------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One vertical axis: a config key or the metric, and how values map onto [0, 1]."""

    name: str
    kind: str  # "linear", "log" or "category"
    low: float = 0.0
    high: float = 1.0
    categories: tuple[str, ...] = ()

    def position(self, value: Any) -> float:
        """Where ``value`` lies on the axis, 0 (bottom) to 1 (top); NaN if it cannot."""
        if self.kind == "category":
            text = str(value)
            if text not in self.categories:
                return float("nan")
            n = len(self.categories)
            return 0.5 if n == 1 else self.categories.index(text) / (n - 1)
        if not _is_number(value):
            return float("nan")
        x = float(value)
        if self.kind == "log":
            if x <= 0:
                return float("nan")
            x = math.log10(x)
        if self.high == self.low:
            return 0.5
        return (x - self.low) / (self.high - self.low)

    def label(self, at_top: bool) -> str:
        """The value shown at the top or the bottom of the axis."""
        if self.kind == "category":
            if not self.categories:
                return ""
            return self.categories[-1] if at_top else self.categories[0]
        value = self.high if at_top else self.low
        return f"{10**value:.3g}" if self.kind == "log" else f"{value:.4g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _axis(name: str, values: Sequence[Any]) -> Axis | None:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return None
    if all(_is_number(v) for v in present):
        numbers = [float(v) for v in present]
        low, high = min(numbers), max(numbers)
        if low > 0 and high / low >= 100:
            return Axis(name, "log", math.log10(low), math.log10(high))
        return Axis(name, "linear", low, high)
    categories = tuple(sorted({str(v) for v in present}))
    if len(categories) > _MAX_CATEGORIES:
        return None
    return Axis(name, "category", categories=categories)


def parallel_axes(
    trials: Sequence[TrialView], keys: Sequence[str], metric: str | None
) -> list[Axis]:
    """The axes: each config key with something to show, then the metric's last value."""
    axes = []
    for key in keys:
        axis = _axis(key, [t.config.get(key) for t in trials])
        if axis is not None and not (_constant(axis) and len(keys) > 1):
            axes.append(axis)
    if metric:
        axis = _axis(metric, [t.last.get(metric) for t in trials])
        if axis is not None:
            axes.append(axis)
    return axes


def _constant(axis: Axis) -> bool:
    return len(axis.categories) < 2 if axis.kind == "category" else axis.low == axis.high


def normalise(trial: TrialView, axes: Sequence[Axis], metric: str | None) -> list[float]:
    """The trial's position on each axis (the last axis is the metric)."""
    out = []
    for axis in axes:
        value = trial.last.get(axis.name) if axis.name == metric else trial.config.get(axis.name)
        out.append(axis.position(value))
    return out
