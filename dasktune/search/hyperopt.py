"""HyperOpt's Tree-structured Parzen Estimator as a dasktune searcher.

:class:`HyperOptSearch` drives hyperopt through its ask/tell pieces: a
:class:`hyperopt.base.Domain` describes the space, a :class:`hyperopt.Trials`
holds every suggestion and its loss, and :func:`hyperopt.tpe.suggest` proposes
the next point.  No ``fmin`` loop runs: the Tuner calls :meth:`suggest` and
:meth:`on_trial_complete` as trials start and end, so many suggestions may be
pending at once.

The space is either hyperopt's own (``hp.uniform("lr", ...)`` nodes in a dict)
or dasktune domains (``tune.uniform`` ...), which are converted.  Configs are
built by this module from hyperopt's raw values, so integers are ``int``,
``choice`` gives the chosen value (not its index) and constants come back as
the very objects of the space.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dasktune._validation import is_integer, is_number
from dasktune.search import _space
from dasktune.search._library_searcher import LibrarySearcher
from dasktune.search.sample import (
    Categorical,
    Float,
    Function,
    Integer,
    SamplingKind,
    is_grid_search,
)

try:
    import hyperopt
    from hyperopt import hp, pyll, tpe
    from hyperopt.pyll import stochastic
except ImportError as _error:  # pragma: no cover - exercised by a test that hides hyperopt
    raise ImportError(
        "HyperOptSearch needs the hyperopt package: pip install 'dasktune[hyperopt]'"
    ) from _error

__all__ = ["HyperOptSearch"]

Path = _space.Path
# Draws one raw hyperopt value for a label (a point left it out).
Draw = Callable[[str], Any]

_MISSING = _space.MISSING
# Apply nodes that pass their only argument through unchanged (hp.uniform wraps
# its parameter in float(), hp.randint in int()).
_PASS_THROUGH = ("float", "int", "identity")


class HyperOptSearch(LibrarySearcher):
    """Suggest configs with HyperOpt's TPE (Ray Tune's ``HyperOptSearch``).

    The first ``n_initial_points`` suggestions are random; later ones come
    from TPE, which models good and bad regions from all results so far.
    Suggestions still running count as bad points, so :meth:`suggest` always
    returns a new config, however many trials are pending.

    Args:
        space: A dict whose leaves are hyperopt expressions
            (``{"lr": hp.loguniform("lr", -10, -1)}``), dasktune domains or
            constants.  Leave it out to search the Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs (full or partial) to try first, in order.
            ``choice`` parameters take the chosen value, not an index.
            Missing parameters are sampled.  Their results train TPE too.
        n_initial_points: Random suggestions before TPE starts (hyperopt's
            ``n_startup_jobs``); points and pending trials count.
        random_state_seed: Seed for reproducible suggestions; if None, the
            Tuner's ``TuneConfig(seed=...)`` is used when given.
        gamma: Fraction of the (square root of the) observations that TPE
            treats as good.

    Example:
        >>> from hyperopt import hp
        >>> searcher = HyperOptSearch(
        ...     {"lr": hp.loguniform("lr", -10, -1), "momentum": hp.uniform("momentum", 0.1, 0.9)},
        ...     metric="mean_accuracy", mode="max", random_state_seed=0)
        >>> config = searcher.suggest("trial_1")
        >>> sorted(config)
        ['lr', 'momentum']
        >>> searcher.on_trial_complete("trial_1", {"mean_accuracy": 0.9})
    """

    _native_space = pyll.Apply
    _copied_state = ("_trials", "_rng", "_points", "_live")
    _rebuilt_state = ("_domain",)

    def __init__(
        self,
        space: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        n_initial_points: int = 20,
        random_state_seed: int | None = None,
        gamma: float = 0.25,
    ) -> None:
        _check_metric(metric)
        super().__init__(
            metric,
            mode,
            points_to_evaluate=points_to_evaluate,
            seed=random_state_seed,
            seed_argument="random_state_seed",
        )
        self._n_initial_points = _check_n_initial_points(n_initial_points)
        self._gamma = _check_gamma(gamma)
        self._domain: hyperopt.Domain | None = None
        self._rng: np.random.Generator | None = None
        self._trials = hyperopt.Trials()
        if space is not None:
            if not isinstance(space, dict):
                raise TypeError(
                    f"The value of `space` is {space!r}, but HyperOptSearch takes a dict of "
                    "hyperopt expressions such as {'lr': hp.loguniform('lr', -10, -1)}. Wrap "
                    "the expression in a dict, or leave `space` out and pass the Tuner a "
                    "param_space."
                )
            self._take_space_argument(space)

    # -- configuration ---------------------------------------------------------

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        config: dict[str, Any] | None = None,
        **spec: Any,
    ) -> bool:
        """Take the Tuner's metric (one name), mode, ``param_space`` and ``seed``.

        See :meth:`LibrarySearcher.set_search_properties
        <dasktune.search._library_searcher.LibrarySearcher.set_search_properties>`.
        """
        _check_metric(metric)
        return super().set_search_properties(metric, mode, config, **spec)

    def _convert_space(self, space: dict[str, Any], argument: str) -> None:
        """Convert ``space``, build the hyperopt Domain, and check the points against it."""
        nodes = _skeleton(space, (), argument)
        if not nodes:
            raise ValueError(
                f"The `{argument}` given to HyperOptSearch holds only constants, so there is "
                "nothing to search. Add a hyperparameter such as tune.uniform(0, 1) or "
                "hp.uniform('x', 0, 1), or drop search_alg to run the constants once."
            )
        domain = _make_domain(nodes)
        for index, point in enumerate(self._points):
            _assign(space, point, (), {}, None, f"points_to_evaluate[{index}]")
        self._domain = domain

    @property
    def _started(self) -> bool:
        return len(self._trials.trials) > 0

    @property
    def _seed_used(self) -> bool:
        return self._rng is not None

    # -- suggestions -------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """A new config for ``trial_id``: the next point to evaluate, or TPE's pick.

        Raises:
            RuntimeError: If metric, mode or the search space are not set.
            ValueError: If ``trial_id`` is already live.
        """
        self._check_can_suggest(trial_id)
        assert self._domain is not None and self._space is not None
        rng = self._generator()
        tid = self._trials.new_trial_ids(1)[0]
        if self._points:
            doc = self._point_doc(tid, self._points.pop(0), rng)
        else:
            seed = int(rng.integers(2**31 - 1))
            doc = tpe.suggest(
                [tid],
                self._domain,
                self._trials,
                seed,
                n_startup_jobs=self._n_initial_points,
                gamma=self._gamma,
                verbose=False,
            )[0]
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        stored = self._doc(tid)
        stored["state"] = hyperopt.JOB_STATE_RUNNING
        self._live[trial_id] = tid
        return self._config(stored["misc"])

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return self._rng

    def _point_doc(
        self, tid: int, point: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, Any]:
        """A hyperopt trial document for a point to evaluate; missing values are sampled."""
        assert self._domain is not None and self._space is not None
        params = self._domain.params

        def draw(label: str) -> Any:
            return _python_scalars(stochastic.sample(params[label], rng=rng))

        values: dict[str, Any] = {}
        _assign(self._space, point, (), values, draw, "points_to_evaluate")
        misc = {
            "tid": tid,
            "cmd": self._domain.cmd,
            "workdir": self._domain.workdir,
            "idxs": {label: [tid] if label in values else [] for label in params},
            "vals": {label: [values[label]] if label in values else [] for label in params},
        }
        return self._trials.new_trial_docs([tid], [None], [self._domain.new_result()], [misc])[0]

    def _doc(self, tid: int) -> dict[str, Any]:
        for doc in reversed(self._trials.trials):
            if doc["tid"] == tid:
                return doc
        raise KeyError(tid)

    def _config(self, misc: dict[str, Any]) -> dict[str, Any]:
        assert self._domain is not None and self._space is not None
        values = {
            label: _python_scalars(value)
            for label, value in hyperopt.base.spec_from_misc(misc).items()
        }
        memo: dict[Any, Any] = {}
        for node in pyll.dfs(self._domain.expr):
            if node.name == "hyperopt_param":
                memo[node] = values.get(node.arg["label"].obj, pyll.base.GarbageCollected)
        return _build(self._space, (), values, memo)

    # -- results -----------------------------------------------------------------

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Report the trial's loss to hyperopt, or a failure.

        A trial that errored, or whose result lacks the metric or has NaN, is
        stored as ``STATUS_FAIL``: TPE then treats its config as a bad one.
        """
        tid = self._live.pop(trial_id, None)
        if tid is None:
            return
        doc = self._doc(tid)
        loss = None if error else self._loss(trial_id, result)
        if loss is None:
            doc["result"] = {"status": hyperopt.STATUS_FAIL}
        else:
            doc["result"] = {"status": hyperopt.STATUS_OK, "loss": loss}
        doc["state"] = hyperopt.JOB_STATE_DONE
        self._trials.refresh()

    def _loss(self, trial_id: str, result: dict[str, Any] | None) -> float | None:
        values = self._metric_values(trial_id, result)
        if values is None:
            return None
        return -values[0] if self._mode == "max" else values[0]

    # -- state -------------------------------------------------------------------

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s output; the search continues where it was."""
        super().set_state(state)
        self._domain = (
            _make_domain(_skeleton(self._space, (), "space")) if self._space is not None else None
        )


# -- checks of the arguments ------------------------------------------------------------


def _check_metric(metric: Any) -> None:
    if metric is not None and not isinstance(metric, str):
        raise ValueError(
            f"The value of `metric` is {metric!r}, but HyperOptSearch optimises one metric, "
            "given by its name. Pass metric='loss', or use OptunaSearch for several objectives."
        )


def _check_n_initial_points(value: Any) -> int:
    if not is_integer(value) or value < 0:
        raise ValueError(
            f"The value of `n_initial_points` is {value!r}, but it must be an int >= 0. "
            "Pass the number of random suggestions before TPE starts, such as 20."
        )
    return int(value)


def _check_gamma(value: Any) -> float:
    if not is_number(value) or not 0 < value <= 1:
        raise ValueError(
            f"The value of `gamma` is {value!r}, but it must be a number in (0, 1]. "
            "Pass the default gamma=0.25 unless you know TPE well."
        )
    return float(value)


# -- the space --------------------------------------------------------------------------


def _unsupported(obj: Any, path: Path, argument: str) -> ValueError | None:
    if isinstance(obj, Function):
        return ValueError(
            f"HyperOptSearch cannot search {_space.entry(argument, path)} = sample_from(...): "
            "its value comes from your function, which TPE cannot model. Replace it with a "
            "domain such as tune.uniform(...) or tune.choice([...]), or compute the value "
            "inside the trainable from the other hyperparameters."
        )
    if is_grid_search(obj):
        return ValueError(
            f"HyperOptSearch cannot search {_space.entry(argument, path)} = "
            f"grid_search({obj['grid_search']!r}): TPE picks every value itself and does not "
            f"enumerate grids. Use tune.choice({obj['grid_search']!r}) to let it choose among "
            "the values, or drop search_alg to run the grid with the default "
            "BasicVariantGenerator."
        )
    return None


def _skeleton(obj: Any, path: Path, argument: str) -> list[Any]:
    """The hyperopt expressions of ``obj``'s hyperparameters (constants left out).

    Each dasktune domain becomes one hyperopt parameter labelled with its path
    (``"model/lr"``); a ``choice`` becomes ``hp.choice`` whose options hold the
    parameters inside each category, so TPE sees the conditional structure.
    """
    error = _unsupported(obj, path, argument)
    if error is not None:
        raise error
    if isinstance(obj, Categorical):
        options = [
            pyll.as_apply(_skeleton(c, path + (i,), argument)) for i, c in enumerate(obj.categories)
        ]
        return [hp.choice(_space.label(path), options)]
    if isinstance(obj, (Float, Integer)):
        return [_hp_parameter(obj, _space.label(path))]
    if isinstance(obj, pyll.Apply):
        return [obj]
    if isinstance(obj, dict):
        return [
            node for key, value in obj.items() for node in _skeleton(value, path + (key,), argument)
        ]
    if isinstance(obj, (list, tuple)):
        return [
            node for i, value in enumerate(obj) for node in _skeleton(value, path + (i,), argument)
        ]
    return []


def _hp_parameter(domain: Float | Integer, label: str) -> Any:
    """The hyperopt parameter whose raw values :func:`_finish` turns into ``domain``'s values."""
    if isinstance(domain, Integer):
        # Multiples k*q in range, each owning the interval of width q around it.
        k_min, k_max, q = _space.int_multiples(domain)
        low, high = (k_min - 0.5) * q, (k_max + 0.5) * q
        if domain.kind is SamplingKind.LOGUNIFORM:
            return hp.qloguniform(label, math.log(low), math.log(high), q)
        return hp.quniform(label, low, high, q)
    if domain.kind is SamplingKind.NORMAL:
        if domain.q is None:
            return hp.normal(label, domain.mean, domain.sd)
        return hp.qnormal(label, domain.mean, domain.sd, domain.q)
    assert domain.lower is not None and domain.upper is not None
    if domain.kind is SamplingKind.LOGUNIFORM:
        low, high = math.log(domain.lower), math.log(domain.upper)
        if domain.q is None:
            return hp.loguniform(label, low, high)
        return hp.qloguniform(label, low, high, domain.q)
    if domain.q is None:
        return hp.uniform(label, domain.lower, domain.upper)
    return hp.quniform(label, domain.lower, domain.upper, domain.q)


def _make_domain(nodes: list[Any]) -> hyperopt.Domain:
    try:
        return hyperopt.Domain(_objective_placeholder, pyll.as_apply(nodes))
    except hyperopt.exceptions.DuplicateLabel as error:
        raise ValueError(
            f"The hyperopt label {error.args[0]!r} names two parameters of the search space, but "
            "labels must be unique. Rename one (dasktune domains are labelled by their path, "
            "such as 'model/lr')."
        ) from None


def _objective_placeholder(config: Any) -> float:  # pragma: no cover - never called
    """The Domain's objective: unused, as trials run in the Tuner (module level to pickle)."""
    raise NotImplementedError


def _finish(domain: Float | Integer, raw: Any) -> int | float:
    """``domain``'s value for hyperopt's raw value: rounded, kept in range, cast."""
    if isinstance(domain, Float) and domain.q is None:
        return float(raw)
    return _space.quantize(domain, raw)


def _build(obj: Any, path: Path, values: dict[str, Any], memo: dict[Any, Any]) -> Any:
    """The config for hyperopt's ``values`` (label -> raw value) in the space ``obj``."""
    if isinstance(obj, Categorical):
        index = int(values[_space.label(path)])
        return _build(obj.categories[index], path + (index,), values, memo)
    if isinstance(obj, (Float, Integer)):
        return _finish(obj, values[_space.label(path)])
    if isinstance(obj, pyll.Apply):
        return _python_scalars(pyll.rec_eval(obj, memo=memo))
    if isinstance(obj, dict):
        return {key: _build(value, path + (key,), values, memo) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_build(value, path + (i,), values, memo) for i, value in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_build(value, path + (i,), values, memo) for i, value in enumerate(obj))
    return obj


def _python_scalars(value: Any) -> Any:
    """``value`` with numpy scalars (and 0-d arrays) turned into Python ones, recursively."""
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, dict):
        return {key: _python_scalars(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_python_scalars(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_python_scalars(item) for item in value)
    return value


# -- points to evaluate -----------------------------------------------------------------


def _assign(
    obj: Any, value: Any, path: Path, out: dict[str, Any], draw: Draw | None, where: str
) -> None:
    """Fill ``out`` (label -> raw value) with the point ``value`` in the space ``obj``.

    Parameters the point leaves out are drawn with ``draw``; with ``draw``
    None the point is only checked.
    """
    if isinstance(obj, Categorical):
        label = _space.label(path)
        if value is _MISSING:
            if draw is None:
                return
            index = int(draw(label))
        else:
            found = _match(obj.categories, value, _fits)
            if found is None:
                raise ValueError(
                    f"The value of `{_space.located(where, path)}` is {value!r}, but it must "
                    f"be one of the categories {obj.categories!r}. Pass the value itself (not "
                    "its index), or leave the key out to let HyperOpt choose."
                )
            index = found
        out[label] = index
        _assign(obj.categories[index], value, path + (index,), out, draw, where)
    elif isinstance(obj, (Float, Integer)):
        label = _space.label(path)
        if value is _MISSING:
            if draw is not None:
                out[label] = draw(label)
        else:
            out[label] = float(_space.checked_number(obj, value, _space.located(where, path)))
    elif isinstance(obj, pyll.Apply):
        _assign_hyperopt(obj, value, path, out, draw, where)
    elif isinstance(obj, dict):
        items = _space.check_container(obj, value, path, where)
        for key, child in obj.items():
            _assign(child, items.get(key, _MISSING), path + (key,), out, draw, where)
    elif isinstance(obj, (list, tuple)):
        elements = _space.check_sequence(obj, value, path, where)
        for i, child in enumerate(obj):
            _assign(child, elements[i], path + (i,), out, draw, where)


def _assign_hyperopt(
    node: Any, value: Any, path: Path, out: dict[str, Any], draw: Draw | None, where: str
) -> None:
    """:func:`_assign` for a hyperopt expression (a native space)."""
    if isinstance(node, pyll.Literal):
        return
    if node.name in _PASS_THROUGH and len(node.pos_args) == 1:
        _assign_hyperopt(node.pos_args[0], value, path, out, draw, where)
    elif node.name == "hyperopt_param":
        label = node.arg["label"].obj
        if value is not _MISSING:
            if not is_number(value):
                raise ValueError(
                    f"The value of `{_space.located(where, path)}` is {value!r}, but the "
                    f"hyperopt parameter {label!r} takes a number. Pass a number in its range, "
                    "or leave the key out."
                )
            out[label] = _python_scalars(value)
        elif draw is not None:
            out[label] = draw(label)
    elif node.name == "switch" and node.pos_args[0].name == "hyperopt_param":
        label = node.pos_args[0].arg["label"].obj
        options = node.pos_args[1:]
        if value is _MISSING:
            if draw is None:
                return
            index = int(draw(label))
        else:
            found = _match(options, value, _fits_hyperopt)
            if found is None:
                raise ValueError(
                    f"The value of `{_space.located(where, path)}` is {value!r}, but it is "
                    f"none of the options of hp.choice({label!r}, ...). Pass one of the option "
                    "values (not its index), or leave the key out to let HyperOpt choose."
                )
            index = found
        out[label] = index
        _assign_hyperopt(options[index], value, path, out, draw, where)
    elif node.name == "dict" and not node.pos_args:
        children = dict(node.named_args)
        items = _space.check_container(children, value, path, where)
        for key, child in children.items():
            _assign_hyperopt(child, items.get(key, _MISSING), path + (key,), out, draw, where)
    elif node.name == "pos_args":
        elements = _space.check_sequence(node.pos_args, value, path, where)
        for i, child in enumerate(node.pos_args):
            _assign_hyperopt(child, elements[i], path + (i,), out, draw, where)
    elif value is _MISSING:
        for child in node.inputs():
            _assign_hyperopt(child, _MISSING, path, out, draw, where)
    else:
        raise ValueError(
            f"`{_space.located(where, path)}` sets a value for the hyperopt expression "
            f"{node.name}(...), which HyperOptSearch cannot map back to its parameters. Leave "
            "the key out of the point to let HyperOpt sample it."
        )


def _fits(obj: Any, value: Any) -> bool:
    """Whether the dasktune space ``obj`` can produce ``value`` (shape and constants)."""
    return _space.fits(obj, value, pyll.Apply, _fits_hyperopt)


def _match(options: list[Any], value: Any, fits: Callable[[Any, Any], bool]) -> int | None:
    """The index of the first option equal to ``value`` (same type first), else of the first
    that fits."""
    return _space.match(options, value, fits, _literal)


def _literal(option: Any) -> Any:
    return option.obj if isinstance(option, pyll.Literal) else option


def _fits_hyperopt(node: Any, value: Any) -> bool:
    """:func:`_fits` for a hyperopt expression."""
    if isinstance(node, pyll.Literal):
        return _space.equal(node.obj, value)
    if node.name == "switch":
        return any(_fits_hyperopt(option, value) for option in node.pos_args[1:])
    if node.name == "dict" and not node.pos_args:
        children = dict(node.named_args)
        return (
            isinstance(value, dict)
            and all(key in children for key in value)
            and all(_fits_hyperopt(children[key], item) for key, item in value.items())
        )
    if node.name == "pos_args":
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(node.pos_args)
            and all(_fits_hyperopt(o, v) for o, v in zip(node.pos_args, value, strict=True))
        )
    return not isinstance(value, (dict, list, tuple, str))
