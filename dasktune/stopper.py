"""Stoppers: end single trials, or the whole experiment, from their results.

The names and semantics are Ray Tune's (``ray.tune.stopper``), so ported
scripts only change their imports.  A stopper is called with every result of
every trial, in the order the results arrive, and is pure logic: no I/O.

Each stopper also says where a trial must wait for its verdict
(:meth:`Stopper.decision_points`): a tuple of :class:`DecisionPoints`, empty
when the stopper never acts on a single result.  The coordinator merges it with
the scheduler's points, for example with
``merge_decision_points([scheduler.decision_points(), *stopper.decision_points()])``.
"""

from __future__ import annotations

import abc
import datetime
import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dasktune._validation import MetricModeMixin, is_finite_number, is_integer, is_number
from dasktune._validation import invalid_argument as _invalid
from dasktune.decision_points import DecisionPoints, merge_decision_points

__all__ = [
    "MONOTONIC_RESULT_KEYS",
    "CombinedStopper",
    "DictStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "Stopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
    "as_stopper",
]

#: Result fields that never decrease during a run of a trial, so that a
#: threshold on them is crossed exactly once and a trial can wait just there.
MONOTONIC_RESULT_KEYS: frozenset[str] = frozenset(
    {
        "training_iteration",
        "iterations_since_restore",
        "time_total_s",
        "time_since_restore",
        "timestamp",
        "timesteps_total",
        "episodes_total",
    }
)

_ALWAYS: tuple[DecisionPoints, ...] = (DecisionPoints.always(),)


def _check_metric_name(metric: Any) -> None:
    if not isinstance(metric, str) or not metric:
        raise _invalid(
            "metric",
            metric,
            "it must be the non-empty name of a result field",
            "Pass the name of a metric your trainable reports, such as metric='loss'.",
        )


class Stopper(abc.ABC):
    """Base class of stoppers.

    Subclasses implement :meth:`__call__` (stop one trial?) and may override
    :meth:`stop_all` (stop the whole experiment?) and :meth:`decision_points`.

    Example:
        >>> class StopAtLoss(Stopper):
        ...     def __call__(self, trial_id, result):
        ...         return result["loss"] < 0.1
        >>> StopAtLoss()("t0", {"loss": 0.05})
        True
    """

    @abc.abstractmethod
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Whether the trial ``trial_id`` should stop after ``result``."""

    def stop_all(self) -> bool:
        """Whether the whole experiment should stop now (polled by the coordinator)."""
        return False

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """Where a trial must wait for this stopper's verdict.

        The default waits at every result, since a custom stopper may act on
        any of them.  An empty tuple means the stopper never stops a trial.
        """
        return _ALWAYS


class NoopStopper(Stopper):
    """Never stops anything (Ray Tune's placeholder stopper).

    Example:
        >>> NoopStopper()("t0", {"loss": 0.0}), NoopStopper().stop_all()
        (False, False)
    """

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """None: it never stops a trial, so no trial waits for it."""
        return ()


class MaximumIterationStopper(Stopper):
    """Stop each trial once it has reported ``max_iter`` results.

    As in Ray Tune, the stopper counts the results it is called with (one per
    training iteration), not the value of ``training_iteration``.

    Args:
        max_iter: Number of results after which a trial stops; an integer >= 1.

    Example:
        >>> stopper = MaximumIterationStopper(2)
        >>> [stopper("t0", {}), stopper("t0", {}), stopper("t1", {})]
        [False, True, False]
    """

    def __init__(self, max_iter: int) -> None:
        if not is_integer(max_iter) or max_iter < 1:
            raise _invalid(
                "max_iter",
                max_iter,
                "it must be an integer >= 1",
                "Pass the number of iterations each trial may run, such as max_iter=10.",
            )
        self._max_iter = int(max_iter)
        self._iter: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self._iter[trial_id] = self._iter.get(trial_id, 0) + 1
        return self._iter[trial_id] >= self._max_iter

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """``at("training_iteration", [max_iter])``: one result is one iteration."""
        return (DecisionPoints.at("training_iteration", [self._max_iter]),)


class TrialPlateauStopper(MetricModeMixin, Stopper):
    """Stop a trial when its metric stops changing.

    A trial stops when, after at least ``grace_period`` results, the standard
    deviation of its last ``num_results`` values of ``metric`` is below ``std``
    (and, with a ``metric_threshold``, its latest value is at least as good as
    the threshold).  Missing, None or NaN values never let a trial plateau.

    Args:
        metric: The result field to watch.
        std: Standard deviation under which the metric has plateaued; > 0.
        num_results: How many of the latest results to consider; >= 1.
        grace_period: Results a trial reports before it may be stopped; >= 0.
        metric_threshold: If given, the latest value must be <= it (mode
            ``"min"``) or >= it (mode ``"max"``) for the trial to stop.
        mode: ``"min"`` or ``"max"``; required with ``metric_threshold``.

    Example:
        >>> stopper = TrialPlateauStopper("loss", num_results=2, grace_period=2)
        >>> [stopper("t0", {"loss": v}) for v in (1.0, 0.5, 0.5)]
        [False, False, True]
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: float | None = None,
        mode: str | None = None,
    ) -> None:
        _check_metric_name(metric)
        _check_plateau_numbers(std, num_results, grace_period, metric_threshold)
        self._set_metric_and_mode(metric, mode)
        if metric_threshold is not None and mode is None:
            raise _invalid(
                "mode",
                mode,
                "it must be 'min' or 'max' when `metric_threshold` is given",
                "Pass mode='min' if the metric must fall below the threshold, 'max' if above.",
            )
        self._std = float(std)
        self._num_results = int(num_results)
        self._grace_period = int(grace_period)
        self._metric_threshold = metric_threshold
        self._iter: dict[str, int] = {}
        self._trial_results: dict[str, deque[Any]] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value: Any = result.get(self._metric)
        window = self._trial_results.setdefault(trial_id, deque(maxlen=self._num_results))
        window.append(value)
        self._iter[trial_id] = self._iter.get(trial_id, 0) + 1
        if self._iter[trial_id] < self._grace_period or len(window) < self._num_results:
            return False
        if not all(is_number(v) for v in window) or not self._past_threshold(float(value)):
            return False
        return bool(np.std(np.asarray(window, dtype=float)) < self._std)

    def _past_threshold(self, value: float) -> bool:
        if self._metric_threshold is None:
            return True
        if self._mode == "min":
            return value <= self._metric_threshold
        return value >= self._metric_threshold


def _check_plateau_numbers(
    std: Any, num_results: Any, grace_period: Any, metric_threshold: Any
) -> None:
    if not is_finite_number(std) or std <= 0:
        raise _invalid(
            "std",
            std,
            "it must be a finite number > 0",
            "Pass the standard deviation under which the metric has plateaued, such as 0.01.",
        )
    if not is_integer(num_results) or num_results < 1:
        raise _invalid(
            "num_results",
            num_results,
            "it must be an integer >= 1",
            "Pass how many recent results to compare, such as num_results=4.",
        )
    if not is_integer(grace_period) or grace_period < 0:
        raise _invalid(
            "grace_period",
            grace_period,
            "it must be an integer >= 0",
            "Pass how many results a trial reports before it may be stopped, such as 4.",
        )
    if metric_threshold is not None and not is_finite_number(metric_threshold):
        raise _invalid(
            "metric_threshold",
            metric_threshold,
            "it must be None or a finite number",
            "Pass the value the metric must reach before the trial may stop, or None.",
        )


class TimeoutStopper(Stopper):
    """Stop the whole experiment once ``timeout`` has elapsed.

    As in Ray Tune, the clock starts at the first call of :meth:`stop_all`
    (so that setting up the experiment does not count), and the time between a
    :meth:`get_state`-style pickle and its restore does not count either.  It
    never stops a single trial, so trials never wait for it; the coordinator
    must poll :meth:`stop_all`.

    Args:
        timeout: Seconds (a number > 0) or a ``datetime.timedelta``.
        clock: Source of seconds (dasktune only; for tests).  Defaults to
            ``time.monotonic``.
    """

    def __init__(
        self,
        timeout: float | datetime.timedelta,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
        if not is_finite_number(seconds) or seconds <= 0:
            raise _invalid(
                "timeout",
                timeout,
                "it must be a number of seconds > 0 or a positive datetime.timedelta",
                "Pass for example timeout=3600 or timeout=datetime.timedelta(hours=1).",
            )
        self._timeout_seconds = float(seconds)
        self._budget = float(seconds)
        self._clock = clock
        self._last_check: float | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        now = self._clock()
        if self._last_check is not None:
            self._budget -= now - self._last_check
        self._last_check = now
        return self._budget <= 0

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """Empty: the timeout acts through :meth:`stop_all`, asynchronously."""
        return ()

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_last_check"] = None  # the time while the experiment was down is free
        self.__dict__.update(state)


class ExperimentPlateauStopper(MetricModeMixin, Stopper):
    """Stop the whole experiment when the best results have plateaued.

    Keeps the ``top`` best values of ``metric`` over all results of all
    trials.  Once there are ``top`` of them and their standard deviation is at
    most ``std`` for more than ``patience`` consecutive results, the
    experiment stops (and the trial that reported the result with it).
    Results whose metric is missing, None or NaN are ignored.

    Args:
        metric: The result field to watch.
        std: Standard deviation of the top values at or under which they have
            plateaued; > 0.
        top: Number of best values to consider; an integer >= 2.
        mode: ``"min"`` or ``"max"``: whether lower or higher values are best.
        patience: Consecutive plateaued results to wait before stopping; >= 0.

    Example:
        >>> stopper = ExperimentPlateauStopper("loss", top=2)
        >>> [stopper("t0", {"loss": 0.3}), stopper("t1", {"loss": 0.3})]
        [False, True]
        >>> stopper.stop_all()
        True
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.001,
        top: int = 10,
        mode: str = "min",
        patience: int = 0,
    ) -> None:
        _check_metric_name(metric)
        if mode not in ("min", "max"):
            raise _invalid(
                "mode",
                mode,
                "it must be 'min' or 'max'",
                "Pass mode='min' if lower values are better, mode='max' if higher are.",
            )
        if not is_integer(top) or top < 2:
            raise _invalid(
                "top",
                top,
                "it must be an integer >= 2",
                "Pass how many of the best results to compare, such as top=10.",
            )
        if not is_integer(patience) or patience < 0:
            raise _invalid(
                "patience",
                patience,
                "it must be an integer >= 0",
                "Pass how many plateaued results to wait before stopping, such as 0.",
            )
        if not is_finite_number(std) or std <= 0:
            raise _invalid(
                "std",
                std,
                "it must be a finite number > 0",
                "Pass the standard deviation of the top results that counts as a plateau.",
            )
        self._set_metric_and_mode(metric, mode)
        self._std = float(std)
        self._top = int(top)
        self._patience = int(patience)
        self._iterations = 0
        self._top_values: list[float] = []

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value: Any = result.get(self._metric)
        if not is_number(value) or math.isnan(value):
            return self.stop_all()
        ranked = sorted([*self._top_values, float(value)])
        self._top_values = ranked[: self._top] if self._mode == "min" else ranked[-self._top :]
        self._iterations = self._iterations + 1 if self.has_plateaued() else 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """Whether the ``top`` best values are known and within ``std`` of each other."""
        return len(self._top_values) == self._top and bool(np.std(self._top_values) <= self._std)

    def stop_all(self) -> bool:
        return self.has_plateaued() and self._iterations >= self._patience


class CombinedStopper(Stopper):
    """Stop when any of ``stoppers`` says so.

    As in Ray Tune, the stoppers are asked in order and asking stops at the
    first that says yes, so later stoppers do not see that result.

    Args:
        *stoppers: :class:`Stopper` instances.

    Example:
        >>> stopper = CombinedStopper(MaximumIterationStopper(3), TimeoutStopper(60))
        >>> stopper.decision_points()
        (DecisionPoints(attr='training_iteration', milestones=(3.0,), every_result=False),)
    """

    def __init__(self, *stoppers: Stopper) -> None:
        for position, stopper in enumerate(stoppers):
            if not isinstance(stopper, Stopper):
                raise TypeError(
                    f"Argument {position} of CombinedStopper is {stopper!r} of type "
                    f"{type(stopper).__name__}, but every argument must be a dasktune.stopper."
                    "Stopper. Wrap a function with FunctionStopper(fn) and a dict with "
                    "DictStopper(criteria)."
                )
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return any(stopper(trial_id, result) for stopper in self._stoppers)

    def stop_all(self) -> bool:
        return any(stopper.stop_all() for stopper in self._stoppers)

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """The merged points of all ``stoppers``."""
        return merge_decision_points(p for s in self._stoppers for p in s.decision_points())


class FunctionStopper(Stopper):
    """Stop a trial when ``function(trial_id, result)`` is true.

    Args:
        function: A callable ``(trial_id, result) -> bool``.

    Example:
        >>> FunctionStopper(lambda trial_id, result: result["loss"] < 0.1)("t0", {"loss": 1.0})
        False
    """

    def __init__(self, function: Callable[[str, dict[str, Any]], bool]) -> None:
        if not self.is_valid_function(function):
            raise TypeError(
                f"The value of `function` is {function!r}, but it must be a callable "
                "(trial_id, result) -> bool that is not a Stopper. Pass a function, "
                "or pass a Stopper directly where a stopper is expected."
            )
        self._fn = function

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self._fn(trial_id, result))

    @classmethod
    def is_valid_function(cls, fn: Any) -> bool:
        """Whether ``fn`` is a plain callable (not a Stopper) usable as a stopper.

        Raises:
            TypeError: If ``fn`` looks like a stopper (it has ``stop_all``) but
                does not subclass :class:`Stopper`, as in Ray Tune.
        """
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise TypeError(
                f"{fn!r} has a `stop_all` method but does not subclass "
                "dasktune.stopper.Stopper, so its stop_all would be ignored. "
                "Make its class subclass dasktune.stopper.Stopper."
            )
        return is_function


class DictStopper(Stopper):
    """Stop a trial once ``result[key] >= value`` for any ``key: value`` of ``criteria``.

    This is what Ray Tune does with ``RunConfig(stop={...})``.  Nested
    criteria (``{"val": {"acc": 0.9}}``) are flattened to ``"val/acc"``, which
    matches either a flattened result key or the nested result field.

    A stop key missing from a result is an error, unless the trial reported it
    before (metrics reported only every few iterations) or the result is the
    trial's last one (``done``).

    Args:
        criteria: Result fields and the values at which trials stop.

    Raises:
        ValueError: If a key is not a non-empty string or a value is not a number.

    Example:
        >>> stopper = DictStopper({"training_iteration": 10, "mean_accuracy": 0.98})
        >>> stopper("t0", {"training_iteration": 3, "mean_accuracy": 0.99})
        True
    """

    def __init__(self, criteria: Mapping[str, Any]) -> None:
        if not isinstance(criteria, Mapping):
            raise TypeError(
                f"The value of `criteria` is {criteria!r}, but it must be a dict such as "
                "{'training_iteration': 10}."
            )
        self._criteria = _flatten_criteria(criteria)
        self._seen: dict[str, set[str]] = {}

    @property
    def criteria(self) -> dict[str, float]:
        """The flattened criteria."""
        return dict(self._criteria)

    def __repr__(self) -> str:
        return f"DictStopper({self._criteria!r})"

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Check the criteria in order; True at the first one reached."""
        seen = self._seen.setdefault(trial_id, set())
        for key, threshold in self._criteria.items():
            value = _lookup(result, key)
            if value is _MISSING:
                if key not in seen and not result.get("done"):
                    raise _missing_key_error(key, result)
                continue
            seen.add(key)
            if _reached(key, value, threshold):
                return True
        return False

    def decision_points(self) -> tuple[DecisionPoints, ...]:
        """``at(key, [value])`` for monotonic keys (:data:`MONOTONIC_RESULT_KEYS`),
        every result as soon as any other key is a criterion."""
        if any(key not in MONOTONIC_RESULT_KEYS for key in self._criteria):
            return _ALWAYS
        return merge_decision_points(
            DecisionPoints.at(key, [value]) for key, value in self._criteria.items()
        )


_MISSING = object()


def _flatten_criteria(criteria: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in criteria.items():
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"The stop criterion key {key!r} is not a non-empty string. Use the name "
                "of a result field, such as 'training_iteration'."
            )
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_criteria(value, prefix=f"{name}/"))
        elif isinstance(value, numbers.Real) and not math.isnan(value):
            # Bools count, as in Ray: {"solved": True} stops once result["solved"] >= True.
            flat[name] = float(value)
        else:
            raise ValueError(
                f"The stop criterion `{name}` has the value {value!r}, but it must be a "
                f"number: a trial stops once result[{name!r}] >= that number."
            )
    return flat


def _lookup(result: Mapping[str, Any], key: str) -> Any:
    """``result[key]``, or the nested field ``a/b`` names; ``_MISSING`` if absent."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _reached(key: str, value: Any, threshold: float) -> bool:
    if not isinstance(value, numbers.Real):  # bools included, as for the criteria
        raise ValueError(
            f"The stop criterion `{key}` needs a number in each result, but the result has "
            f"{key}={value!r}. Report a number for {key!r} or remove it from `stop`."
        )
    return bool(float(value) >= threshold)


def _missing_key_error(key: str, result: Mapping[str, Any]) -> ValueError:
    return ValueError(
        f"The stop criterion `{key}` is not in the trial's result, whose keys are "
        f"{sorted(map(str, result))}. Report {key!r} with tune.report(), or remove it "
        "from the `stop` argument of RunConfig."
    )


def as_stopper(
    stop: Mapping[str, Any] | Callable[[str, dict[str, Any]], bool] | Stopper | None,
) -> Stopper | None:
    """Turn the ``stop`` argument of ``RunConfig`` into a :class:`Stopper`.

    Args:
        stop: None or an empty dict (no stopper), a dict of criteria
            (:class:`DictStopper`), a :class:`Stopper`, or a function
            ``(trial_id, result) -> bool`` (:class:`FunctionStopper`).

    Raises:
        TypeError: For any other value.

    Example:
        >>> as_stopper({"training_iteration": 5})
        DictStopper({'training_iteration': 5.0})
    """
    if stop is None or isinstance(stop, Stopper):
        return stop
    if isinstance(stop, Mapping):
        return DictStopper(stop) if stop else None
    if FunctionStopper.is_valid_function(stop):
        return FunctionStopper(stop)
    raise TypeError(
        f"The value of `stop` is {stop!r} of type {type(stop).__name__}, but it must be "
        "None, a dict such as {'training_iteration': 10}, a dasktune.stopper.Stopper, or "
        "a function (trial_id, result) -> bool."
    )
