"""Population Based Bandits (PB2): PBT whose explore step is a GP bandit.

PB2 (Parker-Holder, Nguyen and Roberts, NeurIPS 2020, https://arxiv.org/abs/2002.02518)
is :class:`~dasktune.schedulers.PopulationBasedTraining` with one change: when a trial of
the lower quantile copies a trial of the upper one, its new hyperparameters are not a random
perturbation of the source's but the choice of a bandit that learned, from the whole
population, which hyperparameters made the reward grow fastest lately.  So a small
population finds good continuous hyperparameters, and schedules of them, where PBT's random
walk would need many more trials.  As in Ray Tune's ``PB2``:

* ``hyperparam_bounds`` maps each hyperparameter to ``[low, high]`` (dicts for nested
  configs); a trial's config that lacks one gets it uniformly drawn between the bounds;
  only these hyperparameters change, and only within their bounds (an int stays an int);
* every perturbation point of every trial ends a stretch of training under one config; its
  data are the time it ended at, the reward it started from, the config, and the change of
  reward per unit of time (the metric, negated for ``mode="min"``);
* an exploiting trial's new stretch starts at the time and reward of its source's last
  perturbation point, from which it goes on with the source's checkpoint;
* its config maximises an upper confidence bound of the reward change there, under a
  Gaussian process fitted to the most recent stretches, whose kernel forgets with time
  (:mod:`dasktune.schedulers._gp_bandit`); ``custom_explore_fn`` may then change it;
* everything else (quantiles, perturbation points, ``synch``, yielding, the policy log)
  is PBT's; with no stretch observed yet, the config is drawn uniformly within the bounds.

The numbers differ from Ray's: the Gaussian process is scikit-learn's
``GaussianProcessRegressor`` with a kernel of its standard parts, fitted to the last
:data:`WINDOW` stretches, and UCB's weight on the standard deviation grows like
``sqrt(log n)``.  Draws come from ``seed``: given the same events, PB2 explores the same.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dasktune._validation import invalid_argument as _invalid
from dasktune._validation import is_finite_number
from dasktune.schedulers.pbt import PopulationBasedTraining
from dasktune.search.sample import uniform
from dasktune.trial import Trial

__all__ = ["PB2"]

#: How many of the most recent stretches of training the Gaussian process is fitted to.
WINDOW = 128

Path = tuple[str, ...]


@dataclass
class _Stretch:
    """Where a trial's current stretch of training started, and with which values."""

    time: float
    reward: float
    values: tuple[float, ...]


class PB2(PopulationBasedTraining):
    """Population Based Bandits (Ray Tune's ``PB2``), see the module docstring.

    Args:
        hyperparam_bounds: ``{name: [low, high]}`` for each continuous hyperparameter to
            tune, or a dict of those for a nested config.
        time_attr, metric, mode, perturbation_interval, quantile_fraction, log_config,
            require_attrs, synch, custom_explore_fn, seed: As for
            :class:`~dasktune.schedulers.PopulationBasedTraining`; ``custom_explore_fn``
            gets the bandit's config.

    Raises:
        ImportError: If scikit-learn is not installed.
        ValueError: If an argument is invalid; the message names it.

    Example:
        >>> pb2 = PB2(time_attr="training_iteration", metric="mean_accuracy", mode="max",
        ...           perturbation_interval=5, hyperparam_bounds={"lr": [1e-4, 1e-1]}, seed=0)
        >>> pb2.debug_string()
        'PopulationBasedTraining: 0 checkpoints, 0 perturbs'
    """

    _CONFIG_ATTRS = PopulationBasedTraining._CONFIG_ATTRS | {"_bounds"}

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: Mapping[str, Any] | None = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        _require_sklearn()
        bounds = _flat_bounds(hyperparam_bounds)
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations=_uniform_domains(hyperparam_bounds or {}),
            quantile_fraction=quantile_fraction,
            resample_probability=0.0,
            custom_explore_fn=custom_explore_fn,
            log_config=log_config,
            require_attrs=require_attrs,
            synch=synch,
            seed=seed,
        )
        self._bounds = bounds
        # Ended stretches: (end time, start reward, values, reward change per unit of time).
        self._stretches: list[tuple[float, float, tuple[float, ...], float]] = []
        self._current: dict[str, _Stretch] = {}  # trial -> the stretch it trains now
        self._trying: dict[str, tuple[float, ...]] = {}  # explored, no stretch ended yet

    def on_trial_add(self, trial: Trial) -> None:
        """As PBT; the bounded hyperparameters of the config must be numbers."""
        super().on_trial_add(trial)
        self._values(trial.config, f"the config of trial {trial.trial_id}")

    # -- PBT's hooks ---------------------------------------------------------------

    def _on_perturbation_point(self, tid: str, now: float, score: float) -> None:
        """End ``tid``'s stretch there (a data point if its reward is a number); start the next."""
        values = self._values(self._state[tid].config, f"the config of trial {tid}")
        stretch = self._current.get(tid)
        if (
            stretch is not None
            and now > stretch.time
            and math.isfinite(score)
            and math.isfinite(stretch.reward)
        ):
            change = (score - stretch.reward) / (now - stretch.time)
            self._stretches.append((now, stretch.reward, stretch.values, change))
            del self._stretches[:-WINDOW]
        self._trying.pop(tid, None)
        self._current[tid] = _Stretch(now, score, values)

    def _explored(self, tid: str, source: str) -> dict[str, Any]:
        """The bandit's config for ``tid``, which goes on from ``source``'s last point."""
        source_state = self._state[source]
        start = (source_state.last_train_time, source_state.last_score)
        values = self._choose(tid, start)
        config = copy.deepcopy(source_state.config)
        for (path, low, high), value in zip(self._bounds, values, strict=True):
            _set(config, path, _typed(value, _get(config, path), low, high))
        if self._custom_explore_fn is not None:
            config = self._custom_explore_fn(config)
            if not isinstance(config, dict):
                raise ValueError(
                    f"`custom_explore_fn` returned {config!r}, but it must return the new "
                    "config dict. Change the config it receives and return it."
                )
        chosen = self._values(config, "the config `custom_explore_fn` returned")
        time, reward = start
        self._current[tid] = _Stretch(time, math.nan if reward is None else reward, chosen)
        self._trying[tid] = chosen
        return config

    def _finish(self, tid: str) -> None:
        self._trying.pop(tid, None)
        self._current.pop(tid, None)
        super()._finish(tid)

    # -- the bandit ----------------------------------------------------------------

    def _choose(self, tid: str, start: tuple[float, float | None]) -> list[float]:
        """Values within the bounds: the GP-UCB choice, or uniform draws without data."""
        lows = np.array([low for _, low, _ in self._bounds])
        spans = np.array([high - low for _, low, high in self._bounds])
        time, reward = start
        if not self._stretches or reward is None or not math.isfinite(reward):
            unit = self._np_rng.random(len(self._bounds))
        else:
            from dasktune.schedulers import _gp_bandit

            ends, rewards, values, changes = zip(*self._stretches, strict=True)
            trying = [v for other, v in self._trying.items() if other != tid]
            unit = _gp_bandit.choose(
                np.array(ends, dtype=float),
                np.array(rewards, dtype=float),
                _unit(np.array(values, dtype=float), lows, spans),
                np.array(changes, dtype=float),
                (float(time), float(reward)),
                _unit(np.array(trying, dtype=float).reshape(-1, len(self._bounds)), lows, spans),
                self._np_rng,
            )
        return [float(v) for v in lows + unit * spans]

    def _values(self, config: Mapping[str, Any], where: str) -> tuple[float, ...]:
        """The bounded hyperparameters of ``config``, in the order of the bounds."""
        values = []
        for path, _, _ in self._bounds:
            value = _get(config, path)
            if not is_finite_number(value) or isinstance(value, bool):
                name = "".join(f"[{key!r}]" for key in path)
                raise ValueError(
                    f"PB2 tunes {name} within `hyperparam_bounds`, but {where} holds "
                    f"{value!r} there, which is not a finite number. Put a number in the "
                    "param_space (or leave the key out: PB2 then draws one within the bounds)."
                )
            values.append(float(value))
        return tuple(values)


# ------------------------------------------------------------------------ helpers


def _require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401 - only whether it imports
    except ImportError as exc:
        raise ImportError(
            "PB2 needs scikit-learn for its Gaussian process: pip install 'dasktune[pb2]'"
        ) from exc


def _flat_bounds(bounds: Any, path: Path = ()) -> list[tuple[Path, float, float]]:
    """``[(path, low, high), ...]`` from ``hyperparam_bounds``; raises if it is malformed."""
    name = "hyperparam_bounds" + "".join(f"[{key!r}]" for key in path)
    if not isinstance(bounds, Mapping) or not bounds:
        raise _invalid(
            name,
            bounds,
            "it must be a non-empty dict",
            "Map each hyperparameter to its range, such as hyperparam_bounds={'lr': [1e-4, 1e-1]}.",
        )
    flat = []
    for key, value in bounds.items():
        where = path + (key,)
        if isinstance(value, Mapping):
            flat.extend(_flat_bounds(value, where))
            continue
        entry = "hyperparam_bounds" + "".join(f"[{k!r}]" for k in where)
        pair = isinstance(value, (list, tuple)) and len(value) == 2
        if not pair or not all(is_finite_number(v) and not isinstance(v, bool) for v in value):
            raise _invalid(
                entry,
                value,
                "it must be [low, high], two finite numbers",
                f"Pass the range PB2 may choose {key!r} from, such as [1e-4, 1e-1].",
            )
        low, high = value
        if low > high:
            raise _invalid(
                entry,
                value,
                "its low end must not exceed its high end",
                f"Pass [{high!r}, {low!r}].",
            )
        flat.append((where, float(low), float(high)))
    return flat


def _uniform_domains(bounds: Mapping[str, Any]) -> dict[str, Any]:
    """``hyperparam_bounds`` as uniform domains: PBT draws a missing key from them."""
    return {
        key: _uniform_domains(value) if isinstance(value, Mapping) else uniform(*value)
        for key, value in bounds.items()
    }


def _get(config: Mapping[str, Any], path: Path) -> Any:
    for key in path:
        if not isinstance(config, Mapping) or key not in config:
            return None
        config = config[key]
    return config


def _set(config: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def _typed(value: float, old: Any, low: float, high: float) -> float | int:
    """``value`` as the old value's type: an int rounds to the nearest int within bounds."""
    if isinstance(old, int) and not isinstance(old, bool):
        return min(max(round(value), math.ceil(low)), math.floor(high))
    return min(max(value, low), high)


def _unit(values: np.ndarray, lows: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] by their bounds (a zero-width range maps to 0)."""
    safe = np.where(spans > 0, spans, 1.0)
    return (values - lows) / safe
