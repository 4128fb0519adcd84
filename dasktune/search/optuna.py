"""Optuna's samplers as a dasktune searcher.

:class:`OptunaSearch` uses Optuna's ask/tell interface: :meth:`suggest` asks
the study for a trial and samples the space through it, and
:meth:`on_trial_complete` tells the study the trial's value(s).  Several trials
may be pending: :meth:`suggest` never waits for results.  Optuna 5's default
``TPESampler`` steers away from pending trials (``constant_liar``); on older
Optuna pass ``sampler=TPESampler(constant_liar=True)`` for the same.

The space is a dict of Optuna distributions, a define-by-run function
``fn(trial) -> dict | None`` or dasktune domains (``tune.uniform`` ...),
converted parameter by parameter.  Several metrics with one mode each make a
multi-objective study; :meth:`OptunaSearch.pareto_front` lists its best trials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dasktune._validation import is_number, validate_mode
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
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.trial import TrialState
except ImportError as _error:  # pragma: no cover - exercised by a test that hides optuna
    raise ImportError(
        "OptunaSearch needs the optuna package: pip install 'dasktune[optuna]'"
    ) from _error

__all__ = ["OptunaSearch"]

logger = logging.getLogger(__name__)

Path = _space.Path
Metric = str | list[str]
DefineByRun = Callable[["optuna.Trial"], "dict[str, Any] | None"]

_MISSING = _space.MISSING
# Values Optuna's CategoricalDistribution stores as they are.
_OPTUNA_CHOICE_TYPES = (type(None), bool, int, float, str)


class OptunaSearch(LibrarySearcher):
    """Suggest configs with an Optuna sampler (Ray Tune's ``OptunaSearch``).

    Args:
        space: A dict of Optuna distributions (``{"lr":
            FloatDistribution(1e-4, 1e-1, log=True)}``, nested dicts allowed)
            or of dasktune domains; or a define-by-run function that calls
            ``trial.suggest_*`` and returns None or a dict of constants to add
            to the config.  Leave it out to search the Tuner's ``param_space``.
        metric: The result key to optimise, or a list of keys for a
            multi-objective search.
        mode: ``"min"`` or ``"max"``, or a list of them, one per metric.
        points_to_evaluate: Configs (full or partial) to try first, in order
            (Optuna's ``enqueue_trial``).  ``choice`` parameters take the
            chosen value.  Optuna samples what a point leaves out.
        sampler: An Optuna sampler; by default ``TPESampler(seed=seed)``.
        seed: Seed of the default sampler; if None, the Tuner's
            ``TuneConfig(seed=...)`` is used when given.

    Example:
        >>> from optuna.distributions import FloatDistribution
        >>> searcher = OptunaSearch(
        ...     {"a": FloatDistribution(6, 8), "b": FloatDistribution(1e-4, 1e-2, log=True)},
        ...     metric="loss", mode="min", seed=0)
        >>> sorted(searcher.suggest("trial_1"))
        ['a', 'b']
        >>> searcher.on_trial_complete("trial_1", {"loss": 0.5})
    """

    _native_space = BaseDistribution
    _copied_state = ("_study", "_sampler", "_points", "_live", "_suggested")

    def __init__(
        self,
        space: dict[str, Any] | DefineByRun | None = None,
        metric: Metric | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        seed: int | None = None,
    ) -> None:
        _check_objectives(metric, mode)
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            raise TypeError(
                f"The value of `sampler` is {sampler!r}, but it must be an Optuna sampler such as "
                "optuna.samplers.TPESampler(seed=0), or None for that default."
            )
        if sampler is not None and seed is not None:
            logger.warning(
                "OptunaSearch ignores seed=%r because a sampler was passed; seed the sampler.", seed
            )
        super().__init__(
            None, None, points_to_evaluate=points_to_evaluate, seed=seed, seed_argument="seed"
        )
        self._metric, self._mode = _copy_list(metric), _copy_list(mode)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._sampler = sampler
        # Constants of the Tuner's param_space, added to define-by-run configs.
        self._constants: dict[str, Any] = {}
        self._study: optuna.Study | None = None
        # Optuna trial number -> (trial_id, config), for pareto_front().
        self._suggested: dict[int, tuple[str, dict[str, Any]]] = {}
        if space is not None:
            if not callable(space) and not isinstance(space, dict):
                raise TypeError(
                    f"The value of `space` is {space!r}, but OptunaSearch takes a dict of "
                    "Optuna distributions, a define-by-run function fn(trial) -> dict | None, "
                    "or None to use the Tuner's param_space."
                )
            self._take_space_argument(space)

    @property
    def metric(self) -> Any:
        """The metric, or the list of metrics of a multi-objective search."""
        return self._metric

    @property
    def mode(self) -> Any:
        """The mode, or the list of modes of a multi-objective search."""
        return self._mode

    @property
    def _multi(self) -> bool:
        return isinstance(self._metric, list)

    @property
    def _started(self) -> bool:
        return self._study is not None

    # -- configuration ---------------------------------------------------------

    def _conflicts_with(self, metric: Any, mode: Any) -> bool:
        """For a multi-objective searcher, the Tuner's metric may be one of its metrics
        (with the same mode)."""
        if not isinstance(self._metric, list):
            return super()._conflicts_with(metric, mode)
        if metric is None:
            return False
        if metric not in self._metric:
            return True
        if mode is None or not isinstance(self._mode, list):
            return False
        return self._mode[self._metric.index(metric)] != mode

    def _add_constants(self, param_space: dict[str, Any]) -> None:
        """Add the constants of ``param_space`` to the ``space`` dict, or to the configs
        that a define-by-run function makes."""
        if callable(self._user_space):
            self._constants = param_space
        else:
            super()._add_constants(param_space)

    def _convert_space(self, space: dict[str, Any] | DefineByRun, argument: str) -> None:
        """Check ``space`` and the points against it (a define-by-run function is not checked)."""
        if callable(space):
            return
        if not _check_space(space, (), argument):
            raise ValueError(
                f"The `{argument}` given to OptunaSearch holds only constants, so there is "
                "nothing to search. Add a hyperparameter such as tune.uniform(0, 1), or drop "
                "search_alg to run the constants once."
            )
        for index, point in enumerate(self._points):
            _enqueue_params(space, point, (), {}, f"points_to_evaluate[{index}]")

    # -- suggestions -------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """A new config for ``trial_id``, sampled through a new Optuna trial.

        Raises:
            RuntimeError: If metric, mode or the search space are not set.
            ValueError: If ``trial_id`` is already live.
            TypeError: If a define-by-run function returns something else
                than None or a dict.
        """
        self._check_can_suggest(trial_id)
        study = self._ensure_study()
        trial = study.ask()
        try:
            config = self._sample_config(trial)
        except BaseException:
            study.tell(trial.number, state=TrialState.FAIL)
            raise
        self._live[trial_id] = trial.number
        self._suggested[trial.number] = (trial_id, _copy_containers(config))
        return config

    def _ensure_study(self) -> optuna.Study:
        if self._study is None:
            _check_objectives(self._metric, self._mode)
            modes = self._mode if isinstance(self._mode, list) else [self._mode]
            sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
            self._study = optuna.create_study(
                directions=["maximize" if mode == "max" else "minimize" for mode in modes],
                sampler=sampler,
            )
            for point in self._points:
                params: dict[str, Any] = {}
                if callable(self._space):
                    params = _flatten(point)
                else:
                    _enqueue_params(self._space, point, (), params, "points_to_evaluate")
                self._study.enqueue_trial(params)
            self._points = []
        return self._study

    def _sample_config(self, trial: optuna.Trial) -> dict[str, Any]:
        if not callable(self._space):
            assert self._space is not None
            return _sample(self._space, (), trial)
        returned = self._space(trial)
        if returned is not None and not isinstance(returned, dict):
            raise TypeError(
                f"The define-by-run function {self._space!r} returned {returned!r}, but it "
                "must return None or a dict of constants to add to the config. Return None, or "
                "a dict such as {'batch_size': 64}."
            )
        return _space.merge(_copy_containers(self._constants), {**trial.params, **(returned or {})})

    # -- results -----------------------------------------------------------------

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell the study the trial's value(s), or that it failed.

        A trial that errored, or whose result lacks a metric or has NaN, is
        told as ``TrialState.FAIL``.
        """
        number = self._live.pop(trial_id, None)
        if number is None or self._study is None:
            return
        values = None if error else self._metric_values(trial_id, result)
        if values is None:
            self._study.tell(number, state=TrialState.FAIL)
        else:
            self._study.tell(number, values if self._multi else values[0])

    def pareto_front(self) -> list[dict[str, Any]]:
        """The best completed trials: the Pareto front, or the best trial for one metric.

        Returns:
            One dict per trial with ``trial_id``, ``config`` and ``metrics``
            (metric name -> value), in the order Optuna completed them.
        """
        if self._study is None or not any(
            t.state == TrialState.COMPLETE for t in self._study.trials
        ):
            return []
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        best = self._study.best_trials if self._multi else [self._study.best_trial]
        front = []
        for trial in best:
            trial_id, config = self._suggested.get(
                trial.number, (str(trial.number), dict(trial.params))
            )
            front.append(
                {
                    "trial_id": trial_id,
                    "config": _copy_containers(config),
                    "metrics": dict(zip(metrics, trial.values, strict=True)),
                }
            )
        return front


# -- checks of the arguments ------------------------------------------------------------


def _copy_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_objectives(metric: Any, mode: Any) -> None:
    """Metric and mode are both single (a name, "min"/"max") or lists of one length."""
    metrics = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    modes = list(mode) if isinstance(mode, (list, tuple)) else [mode]
    for name in metrics:
        if name is not None and not isinstance(name, str):
            raise ValueError(
                f"The value of `metric` is {metric!r}, but it must be a result key (a str) or "
                "a list of them. Pass metric='loss' or metric=['loss', 'latency']."
            )
    for single in modes:
        validate_mode(single)
    if isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple)):
        both_lists = isinstance(metric, (list, tuple)) and isinstance(mode, (list, tuple))
        if not both_lists or len(metrics) != len(modes):
            raise ValueError(
                f"The values of `metric` and `mode` are {metric!r} and {mode!r}, but a "
                "multi-objective search needs a list of metrics and a list of modes of the "
                "same length. Pass, for example, metric=['loss', 'latency'], mode=['min', "
                "'min']."
            )
        if not metrics or None in metrics or None in modes:
            raise ValueError(
                f"The values of `metric` and `mode` are {metric!r} and {mode!r}, but the lists "
                "must be non-empty and hold no None. Name every metric and give each a mode."
            )


# -- the space --------------------------------------------------------------------------


def _check_space(obj: Any, path: Path, argument: str) -> bool:
    """Raise for what Optuna cannot search; return whether ``obj`` has a hyperparameter."""
    if isinstance(obj, Function):
        raise ValueError(
            f"OptunaSearch cannot search {_space.entry(argument, path)} = sample_from(...): "
            "its value comes from your function, which the sampler cannot model. Replace it "
            "with a domain such as tune.uniform(...) or tune.choice([...]), compute the value "
            "inside the trainable, or pass OptunaSearch a define-by-run function that derives "
            "it."
        )
    if is_grid_search(obj):
        raise ValueError(
            f"OptunaSearch cannot search {_space.entry(argument, path)} = "
            f"grid_search({obj['grid_search']!r}): the sampler picks every value itself and "
            f"does not enumerate grids. Use tune.choice({obj['grid_search']!r}) to let it "
            "choose among the values, or drop search_alg to run the grid with the default "
            "BasicVariantGenerator."
        )
    if isinstance(obj, Float) and obj.kind is SamplingKind.NORMAL:
        raise ValueError(
            f"OptunaSearch cannot search {_space.entry(argument, path)} = "
            f"randn(mean={obj.mean}, sd={obj.sd}): Optuna has no normal distribution. Use "
            "tune.uniform(lower, upper) over the range you expect (for example "
            f"tune.uniform({obj.mean - 3 * obj.sd}, {obj.mean + 3 * obj.sd})), or use "
            "HyperOptSearch, which supports tune.randn."
        )
    if isinstance(obj, Categorical):
        for i, category in enumerate(obj.categories):
            _check_space(category, path + (i,), argument)
        return True
    if isinstance(obj, (Float, Integer, BaseDistribution)):
        return True
    if isinstance(obj, dict):
        return any([_check_space(value, path + (key,), argument) for key, value in obj.items()])
    if isinstance(obj, (list, tuple)):
        return any([_check_space(value, path + (i,), argument) for i, value in enumerate(obj)])
    return False


def _by_value(categorical: Categorical) -> bool:
    """Whether Optuna can store the categories themselves (else their indices).

    Not when two categories compare equal (True, 1 and 1.0): Optuna would record
    them all as the first one.
    """
    categories = categorical.categories
    return (
        all(type(c) in _OPTUNA_CHOICE_TYPES for c in categories)
        and not any(isinstance(c, (Categorical, Float, Integer)) for c in categories)
        and not any(a == b for i, a in enumerate(categories) for b in categories[i + 1 :])
    )


def _int_range(domain: Integer) -> tuple[int, int, int]:
    """The smallest and largest value of ``domain`` and its step."""
    k_min, k_max, q = _space.int_multiples(domain)
    return k_min * q, k_max * q, q


def _sample(obj: Any, path: Path, trial: optuna.Trial) -> Any:
    """The config value of the space ``obj``, sampled through ``trial``."""
    name = _space.label(path)
    if isinstance(obj, Categorical):
        if _by_value(obj):
            return trial.suggest_categorical(name, obj.categories)
        index = trial.suggest_categorical(name, list(range(len(obj.categories))))
        return _sample(obj.categories[index], path + (index,), trial)
    if isinstance(obj, Float):
        return _sample_float(obj, name, trial)
    if isinstance(obj, Integer):
        low, high, q = _int_range(obj)
        if obj.kind is SamplingKind.LOGUNIFORM:
            value = trial.suggest_int(name, obj.lower, obj.upper - 1, log=True)
            return _space.quantize(obj, value) if q > 1 else int(value)
        return int(trial.suggest_int(name, low, high, step=q))
    if isinstance(obj, BaseDistribution):
        return _sample_distribution(obj, name, trial)
    if isinstance(obj, dict):
        return {key: _sample(value, path + (key,), trial) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_sample(value, path + (i,), trial) for i, value in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_sample(value, path + (i,), trial) for i, value in enumerate(obj))
    return obj


def _sample_float(domain: Float, name: str, trial: optuna.Trial) -> float:
    assert domain.lower is not None and domain.upper is not None
    if domain.kind is SamplingKind.LOGUNIFORM:
        # Optuna has no quantized log scale: sample on the log scale, then round.
        value = trial.suggest_float(name, domain.lower, domain.upper, log=True)
        return float(value) if domain.q is None else float(_space.quantize(domain, value))
    if domain.q is None:
        return float(trial.suggest_float(name, domain.lower, domain.upper))
    k_min, k_max = _space.float_multiples(domain)
    if k_min == k_max:
        return _space.snap_float(k_min, domain.q)
    low, high = _space.snap_float(k_min, domain.q), _space.snap_float(k_max, domain.q)
    return float(_space.quantize(domain, trial.suggest_float(name, low, high, step=domain.q)))


def _sample_distribution(distribution: BaseDistribution, name: str, trial: optuna.Trial) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(
        f"The search space entry {name!r} is {distribution!r}, an Optuna distribution "
        "OptunaSearch does not know. Use FloatDistribution, IntDistribution or "
        "CategoricalDistribution."
    )


def _copy_containers(obj: Any) -> Any:
    """``obj`` with its dicts, lists and tuples copied; other values shared."""
    if isinstance(obj, dict):
        return {key: _copy_containers(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_copy_containers(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_copy_containers(value) for value in obj)
    return obj


def _flatten(point: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``, as parameters are named."""
    flat: dict[str, Any] = {}
    for key, value in point.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


# -- points to evaluate -----------------------------------------------------------------


def _enqueue_params(obj: Any, value: Any, path: Path, out: dict[str, Any], where: str) -> None:
    """Fill ``out`` with the Optuna parameters (name -> value) of the point ``value``."""
    if value is _MISSING:
        return
    name = _space.label(path)
    if isinstance(obj, Categorical):
        index = _match(obj.categories, value)
        if index is None:
            raise ValueError(
                f"The value of `{_space.located(where, path)}` is {value!r}, but it must be "
                f"one of the categories {obj.categories!r}. Pass the value itself (not its "
                "index), or leave the key out to let Optuna choose."
            )
        if _by_value(obj):
            out[name] = obj.categories[index]
        else:
            out[name] = index
            _enqueue_params(obj.categories[index], value, path + (index,), out, where)
    elif isinstance(obj, (Float, Integer)):
        number = _space.checked_number(obj, value, _space.located(where, path))
        out[name] = int(number) if isinstance(obj, Integer) else float(number)
    elif isinstance(obj, BaseDistribution):
        out[name] = value
    elif isinstance(obj, dict):
        for key, item in _space.check_container(obj, value, path, where).items():
            _enqueue_params(obj[key], item, path + (key,), out, where)
    elif isinstance(obj, (list, tuple)):
        items = _space.check_sequence(obj, value, path, where)
        for i, (child, item) in enumerate(zip(obj, items, strict=True)):
            _enqueue_params(child, item, path + (i,), out, where)


def _match(categories: list[Any], value: Any) -> int | None:
    """The index of the first category equal to ``value`` (same type first), else of the first
    that fits."""
    return _space.match(categories, value, _fits)


def _fits(obj: Any, value: Any) -> bool:
    """Whether the space ``obj`` can produce ``value`` (shape and constants)."""
    return _space.fits(obj, value, _DISTRIBUTIONS, _fits_distribution)


_DISTRIBUTIONS = (FloatDistribution, IntDistribution, CategoricalDistribution)


def _fits_distribution(distribution: Any, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(_space.equal(choice, value) for choice in distribution.choices)
    return is_number(value)
