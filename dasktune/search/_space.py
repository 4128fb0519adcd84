"""Search-space helpers shared by the HyperOpt and Optuna integrations.

Both searchers walk a dasktune space (dicts, lists and tuples of domains and
constants) the same way: label parameters by their path, merge the Tuner's
``param_space`` into the searcher's ``space``, check ``points_to_evaluate``
against the space and quantize sampled values.  The library-specific parts
(hyperopt expressions, Optuna distributions) come in as arguments.  The
searchers' shared state and configuration live in
:class:`~dasktune.search._library_searcher.LibrarySearcher`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from dasktune._validation import is_integer, is_number
from dasktune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    _multiples_within,
    _snap_float,
    is_grid_search,
)

__all__ = [
    "MISSING",
    "Path",
    "check_container",
    "check_new_trial_id",
    "check_points",
    "check_ready",
    "check_seed",
    "check_sequence",
    "checked_number",
    "entry",
    "equal",
    "fits",
    "float_multiples",
    "has_searchable",
    "int_multiples",
    "label",
    "located",
    "match",
    "merge",
    "metric_value",
    "quantize",
    "same_search",
    "snap_float",
    "space_changed_error",
    "space_twice_error",
]

Path = tuple[Any, ...]

#: A key that a point to evaluate leaves out.
MISSING: Any = object()

snap_float = _snap_float


# -- checks of the arguments ------------------------------------------------------------


def check_seed(value: Any, argument: str) -> int | None:
    if value is None:
        return None
    if not is_integer(value) or value < 0:
        raise ValueError(
            f"The value of `{argument}` is {value!r}, but it must be an int >= 0 or None."
        )
    return int(value)


def check_points(points: Any) -> list[dict[str, Any]]:
    if points is None:
        return []
    if not isinstance(points, (list, tuple)) or not all(
        isinstance(point, dict) for point in points
    ):
        raise TypeError(
            f"The value of `points_to_evaluate` is {points!r}, but it must be a list of config "
            "dicts, such as [{'lr': 0.01, 'activation': 'relu'}]."
        )
    return [copy.deepcopy(point) for point in points]


def space_twice_error(searcher: str) -> ValueError:
    """The error for a ``space`` argument and a ``param_space`` that both define hyperparameters."""
    return ValueError(
        f"{searcher} got a search space twice: as {searcher}(space=...) and as the "
        "Tuner's param_space, which defines hyperparameters too. Pass one or the other: "
        "either drop `space` and keep param_space, or move the param_space entries into "
        "`space` (constants may stay in param_space)."
    )


def space_changed_error(searcher: str) -> ValueError:
    """The error for a new ``param_space`` after suggestions were made."""
    return ValueError(
        f"{searcher} already made suggestions for another param_space; its search "
        "space cannot change now. Pass the same param_space, or create a new "
        f"{searcher} for the new space."
    )


def check_ready(searcher: str, metric: Any, mode: Any, space: Any) -> None:
    """Raise unless metric, mode and the search space are set."""
    if not metric or not mode:
        raise RuntimeError(
            f"{searcher} cannot suggest: metric={metric!r} and mode={mode!r}, but both "
            f"must be set so that results can guide the search. Pass {searcher}(metric=..., "
            "mode=...) or TuneConfig(metric='mean_accuracy', mode='max')."
        )
    if space is None:
        raise RuntimeError(
            f"{searcher} cannot suggest: it has no search space. Pass {searcher}(space=...) "
            "or a param_space with hyperparameters to the Tuner."
        )


def check_new_trial_id(trial_id: str, live: dict[str, Any]) -> None:
    if trial_id in live:
        raise ValueError(
            f"The value of `trial_id` is {trial_id!r}, but a live trial already has this id; "
            "trial ids must be unique. Pass a new id for every suggest() call."
        )


def metric_value(
    trial_id: str, result: dict[str, Any] | None, metric: str, searcher: str, log: logging.Logger
) -> float | None:
    """``result[metric]`` as a float; None (with a warning on ``log``) if it is not a number."""
    value = (result or {}).get(metric)
    if not is_number(value) or math.isnan(value):
        log.warning(
            "Trial %s completed with %s=%r, not a number; %s records it as failed.",
            trial_id,
            metric,
            value,
            searcher,
        )
        return None
    return float(value)


# -- the space --------------------------------------------------------------------------


def label(path: Path) -> str:
    return "/".join(str(key) for key in path)


def entry(argument: str, path: Path) -> str:
    return f"`{argument}` entry {label(path)!r}"


def has_searchable(obj: Any, native: type | tuple[type, ...]) -> bool:
    """Whether ``obj`` holds a domain, a grid search or a ``native`` space object."""
    if isinstance(obj, (Categorical, Float, Integer, Function, native)) or is_grid_search(obj):
        return True
    if isinstance(obj, dict):
        return any(has_searchable(value, native) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(has_searchable(value, native) for value in obj)
    return False


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s entries on top, merging nested dicts."""
    merged = dict(base)
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and not is_grid_search(value)
        ):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def same_search(a: Any, b: Any) -> bool:
    """Whether two spaces search the same hyperparameters; their constants may differ.

    A restored searcher holds unpickled copies of the constants, which need not
    compare equal to the caller's (arrays, plain objects): only the domains and
    the shape must match, and the caller's space, constants included, is used.
    """
    if isinstance(a, Categorical) and isinstance(b, Categorical):
        return len(a.categories) == len(b.categories) and all(
            same_search(x, y) for x, y in zip(a.categories, b.categories, strict=True)
        )
    if isinstance(a, Domain) or isinstance(b, Domain):
        return type(a) is type(b) and equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_search(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_search, a, b))
    return not isinstance(a, (dict, list, tuple)) and not isinstance(b, (dict, list, tuple))


def equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # objects whose == is not a bool (arrays)
        return a is b


def int_multiples(domain: Integer) -> tuple[int, int, int]:
    """``(k_min, k_max, q)``: ``domain``'s values are ``k * q`` for ``k_min <= k <= k_max``."""
    q = domain.q or 1
    k_min, k_max = _multiples_within(domain.lower, domain.upper, q, upper_inclusive=False)
    return k_min, k_max, q


def float_multiples(domain: Float) -> tuple[int, int]:
    """The smallest and largest ``k`` with ``k * domain.q`` inside the (inclusive) bounds."""
    assert domain.q is not None and domain.lower is not None and domain.upper is not None
    return _multiples_within(domain.lower, domain.upper, domain.q, upper_inclusive=True)


def quantize(domain: Float | Integer, raw: Any) -> int | float:
    """``raw`` rounded to a multiple of ``domain.q`` (kept inside the bounds if any)."""
    if isinstance(domain, Integer):
        k_min, k_max, q = int_multiples(domain)
        return int(min(max(round(float(raw) / q), k_min), k_max) * q)
    assert domain.q is not None
    k = round(float(raw) / domain.q)
    if domain.lower is not None and domain.upper is not None:
        k_min, k_max = float_multiples(domain)
        k = min(max(k, k_min), k_max)
    return _snap_float(k, domain.q)


# -- points to evaluate -----------------------------------------------------------------


def located(where: str, path: Path) -> str:
    """``where`` followed by the subscripts of ``path``: ``points_to_evaluate[0]['model']``."""
    return where + "".join(f"[{key!r}]" for key in path)


def check_container(space: dict[Any, Any], value: Any, path: Path, where: str) -> dict[Any, Any]:
    """``value`` (a dict whose keys are all in ``space``), or ``{}`` if it is MISSING."""
    if value is MISSING:
        return {}
    if not isinstance(value, dict):
        raise ValueError(
            f"The value of `{located(where, path)}` is {value!r}, but the search space has "
            "a dict there. Pass a dict with the same keys."
        )
    unknown = [key for key in value if key not in space]
    if unknown:
        raise ValueError(
            f"`{located(where, path)}` has the keys {unknown!r}, which are not in the "
            f"search space (its keys there are {list(space)!r}). Fix the spelling or remove them."
        )
    return value


def check_sequence(space: Any, value: Any, path: Path, where: str) -> list[Any]:
    """``value`` as a list as long as ``space``, or MISSING for each item if it is MISSING."""
    if value is MISSING:
        return [MISSING] * len(space)
    if not isinstance(value, (list, tuple)) or len(value) != len(space):
        raise ValueError(
            f"The value of `{located(where, path)}` is {value!r}, but the search space has a "
            f"sequence of {len(space)} items there. Pass a list of that length."
        )
    return list(value)


def checked_number(domain: Float | Integer, value: Any, where: str) -> Any:
    """``value`` if ``domain`` can produce it (integral floats accepted for Integer, as ints)."""
    candidate = value
    if isinstance(domain, Integer) and isinstance(value, float) and value.is_integer():
        candidate = int(value)
    if not domain.contains(candidate):
        raise ValueError(
            f"The value of `{where}` is {value!r}, but it is not a value of {domain!r}. Pass a "
            "value inside the search space, or leave the key out to have it sampled."
        )
    return candidate


def _itself(option: Any) -> Any:
    return option


def match(
    options: Sequence[Any],
    value: Any,
    fits: Callable[[Any, Any], bool],
    constant: Callable[[Any], Any] = _itself,
) -> int | None:
    """The index of the first option equal to ``value`` (same type first), else the first that fits.

    ``constant`` gives the value an option stands for when compared (a
    library's literal node holds its value).
    """
    for i, option in enumerate(options):
        literal = constant(option)
        if type(literal) is type(value) and equal(literal, value):
            return i
    for i, option in enumerate(options):
        if fits(option, value):
            return i
    return None


def fits(
    obj: Any,
    value: Any,
    native: type | tuple[type, ...],
    fits_native: Callable[[Any, Any], bool],
) -> bool:
    """Whether the space ``obj`` can produce ``value`` (shape and constants).

    ``native`` space objects (a library's own expressions) are judged by ``fits_native``.
    """
    if isinstance(obj, Categorical):
        return any(fits(category, value, native, fits_native) for category in obj.categories)
    if isinstance(obj, Integer) and isinstance(value, float) and value.is_integer():
        return obj.contains(int(value))  # 11.0 for an integer domain, as JSON may write it
    if isinstance(obj, (Float, Integer)):
        return obj.contains(value)
    if isinstance(obj, native):
        return fits_native(obj, value)
    if isinstance(obj, dict):
        return (
            isinstance(value, dict)
            and all(key in obj for key in value)
            and all(fits(obj[key], item, native, fits_native) for key, item in value.items())
        )
    if isinstance(obj, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(obj)
            and all(fits(o, v, native, fits_native) for o, v in zip(obj, value, strict=True))
        )
    return equal(obj, value)
