"""Where a running trial must wait for the driver's decision.

A trial publishes its results without waiting, except at the results where a
scheduler or stopper may act on it (a rung of ASHA, a stop threshold).  At
those, ``tune.report`` blocks for one round trip so that a stopped trial never
trains past the result that stopped it.  Schedulers and stoppers describe these
points with :class:`DecisionPoints`; the worker evaluates them locally.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DecisionPoints:
    """A set of results at which a trial waits for a decision.

    Args:
        attr: The result field that the milestones refer to (for example
            ``"training_iteration"``).  Ignored when ``every_result`` is true.
        milestones: Thresholds, in any order.  A trial waits at the first
            result whose ``attr`` is at or past a milestone it has not passed yet.
        every_result: Wait at every result (the safe default for schedulers
            and stoppers that cannot say in advance when they will act).
    """

    attr: str | None = None
    milestones: tuple[float, ...] = ()
    every_result: bool = False

    def __post_init__(self) -> None:
        # The tracker bisects milestones: keep them sorted whatever the caller passed.
        object.__setattr__(self, "milestones", tuple(sorted(float(m) for m in self.milestones)))

    @classmethod
    def never(cls) -> DecisionPoints:
        """No result needs a synchronous decision."""
        return cls()

    @classmethod
    def always(cls) -> DecisionPoints:
        """Every result needs a synchronous decision."""
        return cls(every_result=True)

    @classmethod
    def at(cls, attr: str, milestones: Iterable[float]) -> DecisionPoints:
        """Wait when ``result[attr]`` first reaches each of ``milestones``."""
        return cls(attr=attr, milestones=tuple(sorted(float(m) for m in milestones)))


@dataclass
class DecisionPointTracker:
    """Per-trial state on the worker: which milestones the trial has passed."""

    points: tuple[DecisionPoints, ...]
    _passed: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._passed = [0] * len(self.points)

    def needs_decision(self, result: Mapping[str, Any]) -> bool:
        """Whether ``result`` is a decision point; advances past reached milestones."""
        wait = False
        for i, point in enumerate(self.points):
            if point.every_result:
                wait = True
                continue
            if point.attr is None or not point.milestones:
                continue
            value = result.get(point.attr)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
                continue
            reached = bisect.bisect_right(point.milestones, float(value))
            if reached > self._passed[i]:
                self._passed[i] = reached
                wait = True
        return wait


def merge_decision_points(points: Iterable[DecisionPoints]) -> tuple[DecisionPoints, ...]:
    """Normalise several decision-point sets into the fewest equivalent ones.

    The result waits at exactly the results where any of ``points`` waits:
    ``(DecisionPoints.always(),)`` if any of them is ``always()``; otherwise one
    :class:`DecisionPoints` per attribute with the union of its milestones.
    Sets that never wait are dropped, so an empty tuple means "never wait".

    Args:
        points: The decision points of schedulers and stoppers, in any order.

    Returns:
        A tuple suitable for :class:`DecisionPointTracker`.

    Example:
        >>> [(p.attr, p.milestones) for p in merge_decision_points([
        ...     DecisionPoints.at("training_iteration", [4, 1]),
        ...     DecisionPoints.never(),
        ...     DecisionPoints.at("training_iteration", [4, 16]),
        ... ])]
        [('training_iteration', (1.0, 4.0, 16.0))]
    """
    by_attr: dict[str, set[float]] = {}
    for point in points:
        if point.every_result:
            return (DecisionPoints.always(),)
        if point.attr is None or not point.milestones:
            continue
        by_attr.setdefault(point.attr, set()).update(point.milestones)
    return tuple(DecisionPoints.at(attr, milestones) for attr, milestones in by_attr.items())
