"""Argument checks shared by the whole package: numbers, modes, metric and mode.

A leaf module: it imports only the standard library, so that every subpackage
(``search``, ``schedulers``, ``execution``...) can use it without importing
another.

What counts as a number, one rule per helper:

==========================  ===================================================
helper                      True for
==========================  ===================================================
:func:`is_number`           a real number that is not a bool (``int``,
                            ``float``, numpy scalars, ``Fraction``);
                            NaN and ±inf included
:func:`is_finite_number`    a number that is neither NaN nor ±inf
:func:`is_integer`          an integral number that is not a bool (``int``,
                            numpy integers); ``2.0`` is not one
:func:`as_number`           ``float(value)`` when :func:`is_number`, else None
==========================  ===================================================

Bools are never numbers here, although Python counts ``True`` as ``1``: a
result field or an argument holding ``True`` is a flag, not a measurement.
For type checkers the predicates narrow to ``float`` and ``int``, which the
numeric tower stands for (numpy scalars and ``Fraction`` behave alike).
Where a NaN must be refused but an infinity is fine (progress such as
``training_iteration``, a metric a library is told), call sites write
``is_number(value) and not math.isnan(value)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeGuard

__all__ = [
    "MetricModeMixin",
    "as_number",
    "invalid_argument",
    "is_finite_number",
    "is_integer",
    "is_number",
    "validate_mode",
]


def invalid_argument(argument: str, value: Any, rule: str, fix: str) -> ValueError:
    """An error in Optuna's style: the argument, its value, the rule and the fix.

    Example:
        >>> invalid_argument("max_t", -1, "it must be > 0", "Pass max_t=100.")
        ValueError('The value of `max_t` is -1, but it must be > 0. Pass max_t=100.')
    """
    return ValueError(f"The value of `{argument}` is {value!r}, but {rule}. {fix}")


def is_number(value: Any) -> TypeGuard[float]:
    """A real number that is not a bool; NaN and ±inf included.

    Example:
        >>> [is_number(v) for v in (1, 2.5, float("nan"), True, "1", None)]
        [True, True, True, False, False, False]
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value: Any) -> TypeGuard[float]:
    """A real number that is not a bool, NaN or ±inf.

    Example:
        >>> [is_finite_number(v) for v in (1, 2.5, float("nan"), float("inf"), True)]
        [True, True, False, False, False]
    """
    kind = type(value)  # the common cases first: it runs for every metric of every result
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        return True
    return is_number(value) and math.isfinite(value)


def is_integer(value: Any) -> TypeGuard[int]:
    """An integral number (``int``, numpy integers) that is not a bool; ``2.0`` is not one.

    Example:
        >>> [is_integer(v) for v in (3, 3.0, True, "3")]
        [True, False, False, False]
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_number(value: Any) -> float | None:
    """``value`` as a float if :func:`is_number` (NaN stays NaN), else None.

    Example:
        >>> as_number(3), as_number(True), as_number(None)
        (3.0, None, None)
    """
    return float(value) if is_number(value) else None


def validate_mode(mode: Any, argument: str = "mode") -> None:
    """Raise unless ``mode`` is None, ``"min"`` or ``"max"``.

    Args:
        mode: The value to check.
        argument: How the error names it, such as ``"TuneConfig(mode=...)"``.

    Raises:
        ValueError: Naming ``argument``, its value and the two valid modes.
    """
    if mode is not None and mode not in ("min", "max"):
        raise invalid_argument(
            argument,
            mode,
            "it must be 'min' or 'max'",
            f"Pass {argument}='max' to maximise the metric or {argument}='min' to minimise it.",
        )


class MetricModeMixin:
    """The ``metric`` and ``mode`` of a scheduler, a searcher or a stopper.

    Either may be given to the constructor (:meth:`_set_metric_and_mode`) or
    later by the Tuner's ``TuneConfig`` (:meth:`set_search_properties`), which
    fills in only what is not set yet and reports a conflict.

    Example:
        >>> class Rule(MetricModeMixin):
        ...     def __init__(self, metric=None, mode=None):
        ...         self._set_metric_and_mode(metric, mode)
        >>> rule = Rule(metric="loss")
        >>> rule.set_search_properties("loss", "min"), rule.mode
        (True, 'min')
        >>> rule.set_search_properties("accuracy", None)
        False
    """

    _metric: Any = None
    _mode: Any = None

    @property
    def metric(self) -> str | None:
        """The result field to optimise; None until set."""
        return self._metric

    @property
    def mode(self) -> str | None:
        """``"min"`` or ``"max"``; None until set."""
        return self._mode

    def _set_metric_and_mode(self, metric: str | None, mode: str | None) -> None:
        """Keep the constructor's ``metric`` and ``mode`` (None: not set yet).

        Raises:
            ValueError: If ``mode`` is not None, ``"min"`` or ``"max"``.
        """
        validate_mode(mode)
        self._metric = metric
        self._mode = mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Fill in ``metric`` and ``mode`` from the TuneConfig where not set.

        Args:
            metric: The TuneConfig's metric, or None.
            mode: The TuneConfig's mode, or None.
            **spec: Other settings of the experiment (unused here).

        Returns:
            False, changing nothing, if a value already set differs from the
            one given; True otherwise.

        Raises:
            ValueError: If ``mode`` is not None, ``"min"`` or ``"max"``.
        """
        validate_mode(mode)
        if self._conflicts_with(metric, mode):
            return False
        self._fill_metric_and_mode(metric, mode)
        return True

    def _conflicts_with(self, metric: Any, mode: Any) -> bool:
        """Whether ``metric`` or ``mode`` differs from a value already set."""
        metric_differs = bool(self._metric and metric and metric != self._metric)
        return metric_differs or bool(self._mode and mode and mode != self._mode)

    def _fill_metric_and_mode(self, metric: Any, mode: Any) -> None:
        """Take ``metric`` and ``mode`` where none is set yet."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode

    def _require_metric_and_mode(self) -> None:
        """Raise unless metric and mode are set (by the constructor or the TuneConfig)."""
        if self._metric and self._mode:
            return
        name = type(self).__name__
        raise ValueError(
            f"{name} needs a `metric` and a `mode`, but metric={self._metric!r} "
            f"and mode={self._mode!r}. Pass them to {name}(metric=..., mode=...) "
            "or to tune.TuneConfig(metric=..., mode=...)."
        )
