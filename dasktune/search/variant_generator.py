"""The default search algorithm: grid search crossed with random sampling.

A param space is a dict whose values may be constants, nested dicts, lists or
tuples of further values, :class:`~dasktune.search.sample.Domain` objects, or
``{"grid_search": [...]}`` markers.  Resolving a space means replacing every
domain by a sampled value and every grid marker by one of its values.

Grid order.  The grid keys are taken depth-first in the space's insertion
order and combined like :func:`itertools.product`: the LAST grid key varies
fastest.  For ``{"x": grid_search([10, 20]), "y": grid_search(["a", "b"])}``
the variants are ``(10, "a"), (10, "b"), (20, "a"), (20, "b")``, the order
Ray Tune's documentation shows.  (Ray's implementation sorts the key paths
and varies the first one fastest; ports that depend on trial numbering should
not rely on either.)  With ``num_samples=n`` the whole grid is produced ``n``
times in this order, every repetition sampling the random domains afresh.

Resolution order within one variant.  Grid values are assigned first, then
all plain domains are sampled (depth-first, insertion order), then the
``sample_from`` functions are called, in passes, until all are resolved: a
function that reads a value produced by another function waits for the next
pass.  A function reading a value that can never resolve (a cycle) raises a
``ValueError`` naming both places.  Values a domain or function returns that
contain domains themselves (``choice([{"lr": uniform(0, 1)}, ...])``) are
resolved in turn.

Constants are passed through by reference: containers (dict, list, tuple)
are copied, leaves are not, so large objects in the space are not duplicated.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cloudpickle
import numpy as np

from dasktune._validation import is_integer
from dasktune.search._space import fits, space_changed_error
from dasktune.search.sample import GRID_SEARCH_KEY, Categorical, Domain, is_grid_search
from dasktune.search.searcher import Searcher

__all__ = ["BasicVariantGenerator", "count_variants", "generate_variants", "resolve"]

logger = logging.getLogger(__name__)

Path = tuple[Any, ...]

# Resolution gives up after this many passes without finishing; only reached
# by functions or categories that keep returning new domains.
_MAX_PASSES = 100


# ----------------------------------------------------------------- structure


def _format_path(path: Path) -> str:
    return "/".join(str(key) for key in path) or "<root>"


def _unresolved(obj: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Domains and grid markers in ``obj``, depth-first in insertion order."""
    if isinstance(obj, Domain) or is_grid_search(obj):
        yield path, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _unresolved(value, path + (key,))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _unresolved(value, path + (index,))


def _rebuild_tuple(original: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    if hasattr(original, "_fields"):  # a namedtuple
        return type(original)(*items)
    return type(original)(items)


def _copy_containers(obj: Any) -> Any:
    """Copy dicts, lists and tuples recursively; share every other object."""
    if isinstance(obj, dict) and not is_grid_search(obj):
        return {key: _copy_containers(value) for key, value in obj.items()}
    if is_grid_search(obj):
        return {GRID_SEARCH_KEY: list(obj[GRID_SEARCH_KEY])}
    if isinstance(obj, list):
        return [_copy_containers(value) for value in obj]
    if isinstance(obj, tuple):
        return _rebuild_tuple(obj, [_copy_containers(value) for value in obj])
    return obj


def _get(container: Any, path: Path) -> Any:
    for key in path:
        container = container[key]
    return container


def _set(container: Any, path: Path, value: Any) -> Any:
    """Assign ``value`` at ``path``; returns ``container`` (rebuilt if a tuple)."""
    key, rest = path[0], path[1:]
    child = _set(container[key], rest, value) if rest else value
    if isinstance(container, tuple):
        items = list(container)
        items[key] = child
        return _rebuild_tuple(container, items)
    container[key] = child
    return container


def _python_scalar(value: Any) -> Any:
    """numpy scalars as Python scalars; everything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------- the spec object


class _UnresolvedAccess(Exception):
    """A sample_from function read a value that is not resolved yet."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"`{_format_path(path)}` is not resolved yet")
        self.path = path


def _guard(value: Any, path: Path) -> Any:
    if isinstance(value, Domain) or is_grid_search(value):
        raise _UnresolvedAccess(path)
    if isinstance(value, dict):
        return _ConfigView(value, path)
    if isinstance(value, (list, tuple)):
        if any(True for _ in _unresolved(value)):
            return _SequenceView(value, path)
        return _copy_containers(value)
    return value


class _ConfigView(Mapping[Any, Any]):
    """Read-only attribute and item access to a partly resolved config."""

    def __init__(self, data: dict[Any, Any], path: Path = ()) -> None:
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_path", path)

    def __getitem__(self, key: Any) -> Any:
        if key not in self._data:
            known = ", ".join(repr(k) for k in self._data) or "none"
            where = f" under `{_format_path(self._path)}`" if self._path else ""
            raise KeyError(f"The config has no key {key!r}{where}; its keys are: {known}.")
        return _guard(self._data[key], self._path + (key,))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(error.args[0]) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("The config seen by sample_from is read-only; return a value instead.")

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class _SequenceView(Sequence[Any]):
    """Read-only access to a list or tuple that still holds unresolved values."""

    def __init__(self, data: Sequence[Any], path: Path) -> None:
        self._data = data
        self._path = path

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._data)))]
        if index < 0:
            index += len(self._data)
        return _guard(self._data[index], self._path + (index,))

    def __len__(self) -> int:
        return len(self._data)


class _Spec(_ConfigView):
    """What a ``sample_from`` function receives.

    ``spec.config`` (or ``spec["config"]``) is the trial's config as resolved
    so far.  Other keys read the config directly, for functions written in the
    newer Ray style ``lambda config: config["a"]``.
    """

    def __getitem__(self, key: Any) -> Any:
        if key == "config":
            return _ConfigView(self._data)
        return super().__getitem__(key)


# ----------------------------------------------------------------- resolving


def _check_space(param_space: Any, argument: str = "param_space") -> dict[str, Any]:
    if param_space is None:
        return {}
    if not isinstance(param_space, dict):
        raise ValueError(
            f"The value of `{argument}` is {param_space!r}, but it must be a dict of "
            "hyperparameters; wrap a single value as {'name': value}."
        )
    for path, value in _unresolved(param_space):
        if is_grid_search(value):
            values = value[GRID_SEARCH_KEY]
            if (
                isinstance(values, (str, bytes, dict))
                or not isinstance(values, Sequence)
                or not values
            ):
                raise ValueError(
                    f"The grid search at `{_format_path(path)}` is {value!r}, but its "
                    "'grid_search' entry must be a non-empty list; use grid_search([...])."
                )
            for index, item in enumerate(values):
                if any(is_grid_search(v) for _, v in _unresolved(item)):
                    raise ValueError(
                        f"The grid search at `{_format_path(path)}` has a grid_search inside "
                        f"its value #{index}; nested grids are not supported. Put each grid "
                        "under its own key so they combine as a cross product."
                    )
    return param_space


def _resolve_in_place(
    config: dict[str, Any], rng: np.random.Generator, *, allow_pending: bool = False
) -> dict[str, Any]:
    """Sample every domain in ``config`` (which holds no grid markers unless ``allow_pending``).

    With ``allow_pending``, grid markers and the functions that depend on them
    are left in place instead of raising.
    """
    for _ in range(_MAX_PASSES):
        pending = [(p, v) for p, v in _unresolved(config)]
        domains = [(p, v) for p, v in pending if isinstance(v, Domain)]
        grids = [p for p, v in pending if not isinstance(v, Domain)]
        if grids and not allow_pending:
            raise ValueError(
                f"The space has a grid_search at `{_format_path(grids[0])}`; resolve() draws "
                "one random config and cannot expand grids. Use generate_variants() or "
                "BasicVariantGenerator for spaces with grid_search."
            )
        if not domains:
            return config
        plain = [(p, d) for p, d in domains if not d.is_function]
        if plain:
            for path, domain in plain:
                config = _set(config, path, domain.sample(rng))
            continue
        blocked: dict[Path, Path] = {}
        for path, domain in domains:
            try:
                value = domain.sample(rng, _Spec(config))
            except _UnresolvedAccess as error:
                blocked[path] = error.path
                continue
            except Exception as error:  # rethrown with its location
                raise ValueError(
                    f"The sample_from function at `{_format_path(path)}` raised "
                    f"{type(error).__name__}: {error}"
                ) from error
            config = _set(config, path, _python_scalar(value))
        if len(blocked) == len(domains):
            if allow_pending:
                return config
            raise _stuck_error(blocked)
    raise ValueError(
        f"The search space did not resolve in {_MAX_PASSES} passes: sample_from functions or "
        "choices keep returning new domains. Make them return plain values."
    )


def _stuck_error(blocked: dict[Path, Path]) -> ValueError:
    reads = ", ".join(
        f"`{_format_path(path)}` reads `{_format_path(needed)}`" for path, needed in blocked.items()
    )
    return ValueError(
        f"Cannot resolve the search space: these sample_from functions read values that never "
        f"become resolved: {reads}. They depend on each other in a cycle; make one of them "
        "compute its value without reading the others."
    )


def resolve(param_space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Draw one config from a space without grid searches.

    Args:
        param_space: The space; it is not modified.
        rng: The random generator all domains draw from.

    Returns:
        A new dict with every domain replaced by a sampled plain value.

    Raises:
        ValueError: If the space holds a grid search, or sample_from functions
            depend on each other in a cycle.

    Example:
        >>> import numpy as np
        >>> from dasktune.search.sample import randint
        >>> resolve({"a": randint(0, 1), "b": 3}, np.random.default_rng(0))
        {'a': 0, 'b': 3}
    """
    space = _check_space(param_space)
    return _resolve_in_place(_copy_containers(space), rng)


def _grid_axes(space: dict[str, Any]) -> list[tuple[Path, list[Any]]]:
    return [
        (path, list(value[GRID_SEARCH_KEY]))
        for path, value in _unresolved(space)
        if is_grid_search(value)
    ]


def _grid_size(axes: list[tuple[Path, list[Any]]]) -> int:
    return math.prod(len(values) for _, values in axes)


def _grid_point(axes: list[tuple[Path, list[Any]]], index: int) -> list[tuple[Path, Any]]:
    """The ``index``-th grid combination, the last axis varying fastest."""
    chosen: list[tuple[Path, Any]] = []
    for path, values in reversed(axes):
        index, position = divmod(index, len(values))
        chosen.append((path, values[position]))
    chosen.reverse()
    return chosen


def generate_variants(
    param_space: dict[str, Any], rng: np.random.Generator, constant_grid_search: bool = False
) -> Iterator[dict[str, Any]]:
    """Every grid variant of a space, once, with the random domains sampled.

    Args:
        param_space: The space; it is not modified.
        rng: The random generator all domains draw from.
        constant_grid_search: Sample the random domains once and reuse the
            values for every grid variant (where they do not depend on grid
            values), instead of sampling them for each variant.

    Yields:
        Resolved configs, in grid order (the last grid key varies fastest).

    Example:
        >>> import numpy as np
        >>> from dasktune.search.sample import grid_search
        >>> space = {"x": grid_search([1, 2]), "y": grid_search(["a", "b"])}
        >>> [(c["x"], c["y"]) for c in generate_variants(space, np.random.default_rng(0))]
        [(1, 'a'), (1, 'b'), (2, 'a'), (2, 'b')]
    """
    space = _check_space(param_space)
    unit = _start_unit(space, rng, constant_grid_search)
    for index in range(_grid_size(_grid_axes(unit))):
        yield _unit_variant(unit, index, rng)


def _start_unit(
    space: dict[str, Any], rng: np.random.Generator, constant_grid_search: bool
) -> dict[str, Any]:
    """The spec one sample expands from (random values pre-drawn if constant)."""
    unit = _copy_containers(space)
    if constant_grid_search:
        unit = _resolve_in_place(unit, rng, allow_pending=True)
    return unit


def _unit_variant(unit: dict[str, Any], index: int, rng: np.random.Generator) -> dict[str, Any]:
    axes = _grid_axes(unit)
    config = _copy_containers(unit)
    for path, value in _grid_point(axes, index):
        config = _set(config, path, _copy_containers(value))
    return _resolve_in_place(config, rng)


def _merge_point(space: dict[str, Any], point: Any, index: int) -> dict[str, Any]:
    """``space`` with the values of ``point`` (a possibly partial config) fixed."""
    if not isinstance(point, dict):
        raise ValueError(
            f"`points_to_evaluate[{index}]` is {point!r}, but each point must be a dict "
            "of hyperparameter values, such as {'lr': 0.01}."
        )
    merged = _copy_containers(space)

    def assign(target: dict[str, Any], values: dict[str, Any], path: Path) -> None:
        for key, value in values.items():
            if key not in target:
                known = ", ".join(repr(k) for k in target) or "none"
                raise ValueError(
                    f"`points_to_evaluate[{index}]` sets `{_format_path(path + (key,))}`, "
                    f"which is not in the param space (keys there: {known}). Add it to the "
                    "param space or remove it from the point."
                )
            current = target[key]
            if (
                isinstance(value, dict)
                and isinstance(current, dict)
                and not is_grid_search(current)
            ):
                assign(current, value, path + (key,))
                continue
            if isinstance(current, Categorical) and isinstance(value, dict):
                # A (partial) point for one of a choice of dicts: fix its values inside that
                # category, whose other keys are then sampled as usual.
                category = next(
                    (
                        c
                        for c in current.categories
                        if isinstance(c, dict) and fits(c, value, (), lambda obj, v: False)
                    ),
                    None,
                )
                if category is not None:
                    target[key] = _copy_containers(category)
                    assign(target[key], value, path + (key,))
                    continue
            domain = current
            if is_grid_search(current):
                if not any(value == v for v in current[GRID_SEARCH_KEY]):
                    logger.warning(
                        "points_to_evaluate[%d] sets `%s` to %r, which is not one of its grid "
                        "values %r.",
                        index,
                        _format_path(path + (key,)),
                        value,
                        current[GRID_SEARCH_KEY],
                    )
            elif isinstance(domain, Domain) and not domain.contains(value):
                logger.warning(
                    "points_to_evaluate[%d] sets `%s` to %r, which is outside its domain %r.",
                    index,
                    _format_path(path + (key,)),
                    value,
                    domain,
                )
            target[key] = _copy_containers(value)

    assign(merged, point, ())
    return merged


def count_variants(
    param_space: dict[str, Any] | None,
    num_samples: int = 1,
    points_to_evaluate: Sequence[dict[str, Any]] | None = None,
) -> int | None:
    """How many configs :class:`BasicVariantGenerator` produces for a space.

    Each point to evaluate replaces one of the ``num_samples`` samples and
    expands into the grid over the grid keys it leaves open.

    Args:
        param_space: The space.
        num_samples: Samples of the space; -1 for an endless search.
        points_to_evaluate: Configs to try first.

    Returns:
        The number of configs, or None if ``num_samples`` is -1.

    Example:
        >>> from dasktune.search.sample import grid_search, uniform
        >>> count_variants({"a": grid_search([1, 2, 3]), "b": uniform(0, 1)}, num_samples=2)
        6
    """
    _check_num_samples(num_samples)
    if num_samples == -1:
        return None
    space = _check_space(param_space)
    points = list(points_to_evaluate or [])
    total = sum(_grid_size(_grid_axes(_merge_point(space, p, i))) for i, p in enumerate(points))
    return total + max(num_samples - len(points), 0) * _grid_size(_grid_axes(space))


def _same_space(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays as constants
        return False


def _check_num_samples(num_samples: Any) -> int:
    if not is_integer(num_samples) or (num_samples < 1 and num_samples != -1):
        raise ValueError(
            f"The value of `num_samples` is {num_samples!r}, but it must be a positive int, "
            "or -1 to sample until the run is stopped. Pass num_samples=1 for one pass "
            "over the grid."
        )
    return int(num_samples)


def _make_rng(random_state: Any, argument: str) -> np.random.Generator | None:
    """The searcher's generator; None for no seed (see :meth:`BasicVariantGenerator._generator`)."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    if is_integer(random_state) and random_state >= 0:
        return np.random.default_rng(random_state)
    raise ValueError(
        f"The value of `{argument}` is {random_state!r}, but it must be None, a non-negative "
        "int seed or a numpy.random.Generator; pass e.g. 42 for reproducible runs."
    )


# ------------------------------------------------------------- the searcher


class BasicVariantGenerator(Searcher):
    """Grid search crossed with random search; dasktune's default search algorithm.

    Every one of ``num_samples`` samples expands into the full grid (the cross
    product of all ``grid_search`` values, the last grid key varying fastest),
    and every variant samples the random domains afresh.  ``num_samples=-1``
    repeats forever.  The search is over when all variants were suggested:
    :meth:`suggest` then returns :attr:`Searcher.FINISHED`.

    Args:
        points_to_evaluate: Configs to try first, each possibly partial: keys
            it leaves out are filled from the space.  As in Ray Tune, each point
            replaces one of the ``num_samples`` samples, and a point that leaves
            grid keys open expands into their grid.
        max_concurrent: If positive, :meth:`suggest` returns None while this
            many suggested trials have not completed.  0 means no limit.
        random_state: Seed (int) or :class:`numpy.random.Generator`; takes
            precedence over the ``seed`` passed by the Tuner.  If both are None
            the search is seeded from numpy's global generator, as Ray Tune's
            draws from it: ``np.random.seed(...)`` beforehand repeats the configs.
        constant_grid_search: Sample the random domains once per sample and
            keep them constant across that sample's grid variants.

    Example:
        >>> from dasktune.search.sample import grid_search, randint
        >>> searcher = BasicVariantGenerator(random_state=0)
        >>> space = {"a": grid_search([1, 2]), "b": 5}
        >>> searcher.set_search_properties(None, None, space, num_samples=1)
        True
        >>> [searcher.suggest(str(i)) for i in range(3)]
        [{'a': 1, 'b': 5}, {'a': 2, 'b': 5}, 'FINISHED']
    """

    ends_search_itself = True
    learns_from_results = False

    def __init__(
        self,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        max_concurrent: int = 0,
        random_state: int | np.random.Generator | None = None,
        constant_grid_search: bool = False,
    ) -> None:
        super().__init__(metric=None, mode=None)
        if not is_integer(max_concurrent) or max_concurrent < 0:
            raise ValueError(
                f"The value of `max_concurrent` is {max_concurrent!r}, but it must be an int >= 0; "
                "pass 0 for no limit."
            )
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise ValueError(
                f"The value of `points_to_evaluate` is {points_to_evaluate!r}, but it must be a "
                "list of config dicts, such as [{'lr': 0.01}]."
            )
        self._points: list[dict[str, Any]] = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self.max_concurrent = int(max_concurrent)
        self._constant_grid_search = bool(constant_grid_search)
        self._seeded = random_state is not None
        self._rng = _make_rng(random_state, "random_state")
        self._space: dict[str, Any] | None = None
        self._num_samples = 1
        # Progress: points started, samples of the space started, current unit.
        self._points_started = 0
        self._samples_started = 0
        self._unit: dict[str, Any] | None = None
        self._unit_size = 0
        self._unit_position = 0
        self._finished = False
        self._live: set[str] = set()

    # -- configuration ------------------------------------------------------

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Receive the param space and run settings from the Tuner.

        Args:
            metric: Ignored by this searcher, kept for the interface.
            mode: Ignored likewise.
            config: The param space.
            **spec: ``num_samples`` (int, -1 for endless; default and None mean 1) and
                ``seed`` (int or None; used unless ``random_state`` was given).

        Returns:
            True.

        Raises:
            ValueError: suggestions from a different space were already made.
        """
        super().set_search_properties(metric, mode, config, **spec)
        space = _check_space(config, "config")
        if self._space is not None and self._started() and not _same_space(space, self._space):
            raise space_changed_error(type(self).__name__)
        requested = spec.get("num_samples")
        num_samples = _check_num_samples(1 if requested is None else requested)
        points = [_merge_point(space, p, i) for i, p in enumerate(self._points)]  # validates early
        del points
        self._space = space
        self._num_samples = num_samples
        if not self._seeded and spec.get("seed") is not None:
            self._rng = _make_rng(spec["seed"], "seed")
            self._seeded = True
        self._generator()
        return True

    def _generator(self) -> np.random.Generator:
        """Without a seed, a generator seeded from numpy's global one, once, when the Tuner
        hands over the search space: Ray Tune draws from numpy's global generator, so
        ``np.random.seed(1234)`` before the Tuner (as Ray's FAQ recommends) repeats the
        same configs."""
        if self._rng is None:
            self._rng = np.random.default_rng(np.random.randint(0, 2**32, size=4))
        return self._rng

    def _started(self) -> bool:
        return self._points_started > 0 or self._samples_started > 0

    @property
    def total_samples(self) -> int | None:
        """How many configs this search produces in all; None if endless or no space yet."""
        if self._space is None:
            return None
        return count_variants(self._space, self._num_samples, self._points)

    def is_finished(self) -> bool:
        """Whether every config was suggested."""
        return self._finished

    # -- suggesting ---------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """The next config, None at the concurrency limit, or FINISHED."""
        if self._space is None:
            raise RuntimeError(
                "BasicVariantGenerator.suggest() was called before the param space was set. "
                "Call set_search_properties(metric, mode, param_space, num_samples=...) first "
                "(the Tuner does this)."
            )
        if self._finished:
            return Searcher.FINISHED
        if self.max_concurrent > 0 and len(self._live) >= self.max_concurrent:
            return None
        while self._unit is None or self._unit_position >= self._unit_size:
            if not self._start_next_unit():
                self._finished = True
                return Searcher.FINISHED
        assert self._unit is not None
        config = _unit_variant(self._unit, self._unit_position, self._generator())
        self._unit_position += 1
        self._live.add(trial_id)
        return config

    def _start_next_unit(self) -> bool:
        assert self._space is not None
        if self._points_started < len(self._points):
            spec = _merge_point(
                self._space, self._points[self._points_started], self._points_started
            )
            self._points_started += 1
        elif self._num_samples == -1 or (
            self._samples_started < self._num_samples - len(self._points)
        ):
            spec = self._space
            self._samples_started += 1
        else:
            return False
        self._unit = _start_unit(spec, self._generator(), self._constant_grid_search)
        self._unit_size = _grid_size(_grid_axes(self._unit))
        self._unit_position = 0
        return True

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Free the trial's place under ``max_concurrent``."""
        self._live.discard(trial_id)

    # -- state --------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue the sequence exactly (space included)."""
        state = dict(self.__dict__)
        state["_rng"] = copy.deepcopy(self._rng)
        state["_live"] = set(self._live)
        state["_points"] = list(self._points)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rng = copy.deepcopy(state["_rng"])
        self._live = set(state["_live"])

    def save(self, checkpoint_path: str) -> None:
        """Write the state; uses cloudpickle, since spaces may hold lambdas."""
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)
