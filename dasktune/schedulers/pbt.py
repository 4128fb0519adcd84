"""Population Based Training, with Ray Tune's rules.

PBT (Jaderberg et al., https://arxiv.org/abs/1711.09846) trains a population
and periodically makes the worst trials continue from a copy of the best ones
("exploit") with perturbed hyperparameters ("explore").  As in Ray Tune:

* a trial reaches a perturbation point when ``time_attr >= burn_in_period``
  and at least ``perturbation_interval`` has passed since its last one; its
  score there (the metric, negated for ``mode="min"``) is its ``last score``;
* the trials with a score that have not ended are ranked; the lower and upper
  quantiles hold ``ceil(n * quantile_fraction)`` trials each (at most
  ``floor(n / 2)``, none when ``n <= 1``); ties keep the order of addition;
* a trial in the lower quantile exploits a random trial of the upper one,
  provided that one was itself in the upper quantile at its last perturbation
  point (Ray saves a checkpoint only then; otherwise the exploit is skipped);
  it takes over that trial's config (explored), its checkpoint, its last
  perturbation time and its last training time;
* asynchronous mode: each trial is judged alone at its perturbation points,
  and yields (PAUSE) there when other trials wait to run, so that a population
  larger than the cluster shares it; the paused trial with the least training
  time resumes first;
* synchronous mode (``synch=True``): trials pause at their perturbation point
  until every live trial is there, then all are judged at once (upper
  quantile first) and the next synchronisation point becomes
  ``max(previous + interval, latest training time)``.

The scheduler never touches checkpoints: an exploit returns PAUSE for the
trial and queues ``TrialUpdate(trial, CONTINUE, new_config=explored,
checkpoint_from=source)``; the coordinator restores the source trial's latest
checkpoint.  "Other trials wait to run" means a trial that PBT paused, or a
trial that may still be created (until :meth:`PopulationBasedTraining.on_no_more_trials`).
NaN scores rank below every number.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dasktune._validation import invalid_argument as _invalid
from dasktune._validation import is_finite_number, is_number
from dasktune.decision_points import DecisionPoints
from dasktune.schedulers._common import check_metric, check_time_attr, time_and_score
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.pbt_replay import PopulationBasedTrainingReplay  # Ray's module has both
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialUpdate
from dasktune.search.sample import Categorical, Domain, Function, Integer
from dasktune.trial import Trial

__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay"]

#: The file of a trial's directory that holds its policy log (:meth:`trial_records`).
POLICY_FILE = "pbt_policy.jsonl"

Mutation = Mapping[str, Any] | Sequence[Any] | Domain | Callable[[], Any]


# --------------------------------------------------------------------- explore


def explore(
    config: dict[str, Any],
    mutations: Mapping[str, Any],
    resample_probability: float,
    perturbation_factors: Sequence[float],
    custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None,
    rng: random.Random,
    np_rng: np.random.Generator,
) -> dict[str, Any]:
    """A perturbed copy of ``config`` (Ray's explore step).

    For each key of ``mutations``: a nested dict is explored recursively; a
    list or tuple is resampled with ``resample_probability`` (or when the
    current value is not in it), else the value moves to a neighbouring index
    (clipped at the ends); a search domain or a callable is resampled with
    ``resample_probability``, else the value is multiplied by a random
    perturbation factor.  An int value stays int (truncated, as in Ray); an
    :class:`~dasktune.search.sample.Integer` domain's value is also clipped to
    its bounds; a non-numeric ``choice`` value is always resampled.
    ``custom_explore_fn`` then gets the new config and returns it, changed.
    """
    new_config = copy.deepcopy(config)
    for key, distribution in mutations.items():
        old = config[key]
        if isinstance(distribution, Mapping):
            new_config[key] = explore(
                old, distribution, resample_probability, perturbation_factors, None, rng, np_rng
            )
        elif isinstance(distribution, (list, tuple)):
            if rng.random() < resample_probability or old not in distribution:
                new_config[key] = rng.choice(distribution)
            else:
                index = distribution.index(old) + rng.choice([-1, 1])
                new_config[key] = distribution[min(max(index, 0), len(distribution) - 1)]
        else:
            new_config[key] = _perturb(
                old, distribution, resample_probability, perturbation_factors, rng, np_rng
            )
    if custom_explore_fn is not None:
        new_config = custom_explore_fn(new_config)
        if not isinstance(new_config, dict):
            raise ValueError(
                f"`custom_explore_fn` returned {new_config!r}, but it must return the new "
                "config dict. Change the config it receives and return it."
            )
    return new_config


def _perturb(
    old: Any,
    distribution: Domain | Callable[[], Any],
    resample_probability: float,
    factors: Sequence[float],
    rng: random.Random,
    np_rng: np.random.Generator,
) -> Any:
    numeric = is_number(old)
    if rng.random() < resample_probability or (
        isinstance(distribution, Categorical) and not numeric
    ):
        new = distribution.sample(np_rng) if isinstance(distribution, Domain) else distribution()
    else:
        new = old * rng.choice(list(factors))
    if isinstance(old, int) and not isinstance(old, bool):
        new = int(new)
    if isinstance(distribution, Integer):
        new = min(max(int(new), distribution.lower), distribution.upper - 1)
    return new


def _fill(
    config: dict[str, Any],
    mutations: Mapping[str, Any],
    rng: random.Random,
    np_rng: np.random.Generator,
) -> None:
    """Sample the keys of ``mutations`` that ``config`` lacks (Ray does this on trial add)."""
    for key, distribution in mutations.items():
        if isinstance(distribution, Mapping):
            nested = config.setdefault(key, {})
            if isinstance(nested, dict):
                _fill(nested, distribution, rng, np_rng)
        elif key not in config:
            if isinstance(distribution, (list, tuple)):
                config[key] = rng.choice(distribution)
            elif isinstance(distribution, Domain):
                config[key] = distribution.sample(np_rng)
            else:
                config[key] = distribution()


# ------------------------------------------------------------------------- PBT


@dataclass
class _TrialState:
    config: dict[str, Any]
    last_score: float | None = None  # signed: higher is better; NaN is -inf
    last_train_time: float = 0.0
    last_perturbation_time: float = 0.0
    last_time: float = 0.0  # time_attr of its latest result: where its latest checkpoint is
    saved: bool = False  # in the upper quantile at its last perturbation point
    paused: bool = False  # paused by PBT and not resumed yet
    finished: bool = False
    policy: list[dict[str, Any]] = field(default_factory=list)


class PopulationBasedTraining(FIFOScheduler):
    """Population Based Training (Ray Tune's ``PopulationBasedTraining``), see the module docstring.

    Args:
        time_attr: Result field measuring training progress; it must grow monotonically.
        metric: Result field to optimise; None to take it from the ``TuneConfig``.
        mode: ``"min"`` or ``"max"``; None to take it from the ``TuneConfig``.
        perturbation_interval: ``time_attr`` units between a trial's perturbation points.
        burn_in_period: No perturbation before ``time_attr`` reaches this.
        hyperparam_mutations: For each hyperparameter to perturb, a list of
            values, a search domain (``tune.uniform(...)``...), a function
            returning a new value, or a dict of those for nested configs.  A key
            missing from a trial's config is sampled when the trial is added.
        quantile_fraction: Fraction of the population in each of the lower and
            upper quantiles, in [0, 0.5]; 0 turns exploitation off.
        resample_probability: Probability of resampling a value rather than
            perturbing it.
        perturbation_factors: Factors a numeric value is multiplied by.
        custom_explore_fn: ``f(config) -> config``, applied after the mutations.
        log_config: Keep each trial's policy (see :meth:`policy_log`).
        require_attrs: Raise if a result lacks ``time_attr`` or ``metric``
            (False: ignore such results).
        synch: Synchronous PBT (all trials perturbed together).
        seed: Seed of the explore and exploit draws (dasktune only); None: random.

    Raises:
        ValueError: If an argument is invalid; the message names it.
        TypeError: If a mutation is not a list, dict, domain or callable.
    """

    needs_metric = True

    # Arguments that are configuration, not state (and may not pickle: lambdas).
    _CONFIG_ATTRS = frozenset({"_hyperparam_mutations", "_custom_explore_fn"})

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Mapping[str, Mutation] | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Sequence[float] = (1.2, 0.8),
        custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        seed: int | None = None,
    ) -> None:
        if hyperparam_mutations is not None and not isinstance(hyperparam_mutations, Mapping):
            raise _invalid(
                "hyperparam_mutations",
                hyperparam_mutations,
                "it must be a dict",
                "Map each hyperparameter to its new values, such as "
                "hyperparam_mutations={'lr': tune.loguniform(1e-4, 1e-1)}.",
            )
        mutations = dict(hyperparam_mutations or {})
        _validate(
            time_attr,
            metric,
            perturbation_interval,
            burn_in_period,
            mutations,
            quantile_fraction,
            resample_probability,
            perturbation_factors,
            custom_explore_fn,
        )
        self._set_metric_and_mode(metric, mode)
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = tuple(perturbation_factors)
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._rng = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._state: dict[str, _TrialState] = {}
        self._exploits: list[dict[str, Any]] = []  # every policy entry, for pbt_global.txt
        self._updates: list[TrialUpdate] = []
        self._next_perturbation_sync = max(perturbation_interval, burn_in_period)
        self._no_more_trials = False
        self._num_checkpoints = 0
        self._num_perturbations = 0

    # -- public -------------------------------------------------------------

    def decision_points(self) -> DecisionPoints:
        """``always()``: perturbation points depend on each trial's history."""
        return DecisionPoints.always()

    def policy_log(self, trial_id: str) -> list[dict[str, Any]]:
        """The exploits that made ``trial_id``'s current lineage, oldest first.

        Each entry is a dict: ``trial_id`` (the trial that exploited), ``source``
        (the trial it copied), ``time_attr``, ``step`` (the exploiting trial's
        ``time_attr`` value), ``source_step`` (the source's latest ``time_attr``
        value, where its latest checkpoint is if it checkpoints at every
        report: the new config takes over from there, as Ray logs it),
        ``old_config`` (the source's config, which trained that checkpoint)
        and ``new_config``.  An
        exploit copies the source's log first, as Ray copies its policy file,
        so the log is a chain that :class:`PopulationBasedTrainingReplay`
        replays.  Empty if ``log_config`` is False or the trial never exploited.
        """
        state = self._state.get(trial_id)
        return copy.deepcopy(state.policy) if state is not None else []

    def trial_records(self, trial_id: str) -> dict[str, list[dict[str, Any]]]:
        """``{"pbt_policy.jsonl": policy_log(trial_id)}``: the lineage a replay needs.

        Written to the trial's directory after each exploit, it is the file
        :class:`PopulationBasedTrainingReplay` takes as its ``policy``.
        """
        return {POLICY_FILE: self.policy_log(trial_id)}

    def experiment_records(self) -> dict[str, list[Any]]:
        """Ray Tune's policy files, for the experiment's directory: ``pbt_policy_<trial_id>.txt``
        for each trial that exploited (its lineage) and ``pbt_global.txt`` (every exploit).

        Each line is Ray's row: ``[trial, source trial, step, source's step, source's
        config, new config]``, with trial ids where Ray has its trials' tags.  Ray's
        PBT guides find these files there; :class:`PopulationBasedTrainingReplay`
        reads them as it reads ``pbt_policy.jsonl`` (which each trial's directory
        holds from its first exploit on).
        """
        if not self._log_config or not self._exploits:
            return {}
        files = {
            f"pbt_policy_{trial_id}.txt": [_ray_row(e) for e in state.policy]
            for trial_id, state in self._state.items()
            if state.policy
        }
        files["pbt_global.txt"] = [_ray_row(e) for e in self._exploits]
        return files

    def get_state(self) -> dict[str, Any]:
        """The scheduler's state, without ``hyperparam_mutations`` and ``custom_explore_fn``."""
        state = {k: v for k, v in self.__dict__.items() if k not in self._CONFIG_ATTRS}
        return copy.deepcopy(state)

    # -- events ----------------------------------------------------------------

    def on_trial_add(self, trial: Trial) -> None:
        """Track ``trial``; sample the mutated keys its config lacks (in place, as Ray does)."""
        self._require_metric_and_mode()
        _fill(trial.config, self._hyperparam_mutations, self._rng, self._np_rng)
        self._state[trial.trial_id] = _TrialState(config=copy.deepcopy(trial.config))
        self._no_more_trials = False

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        """Continue between perturbation points; at one, exploit, yield or wait (synch)."""
        self._require_metric_and_mode()
        progress = self._time_and_score(result)
        if progress is None:
            return TrialDecision.CONTINUE
        now, score = progress
        tid = trial.trial_id
        if tid not in self._state:
            self.on_trial_add(trial)
        state = self._state[tid]
        if state.finished:
            return TrialDecision.CONTINUE
        state.paused = False
        state.last_time = now
        if now < self._burn_in_period:
            return TrialDecision.CONTINUE
        if now - state.last_perturbation_time < self._perturbation_interval:
            return TrialDecision.CONTINUE
        state.last_score = score
        state.last_train_time = now
        self._on_perturbation_point(tid, now, score)
        if self._synch:
            state.paused = True
            if self._sync_ready(exclude=tid):
                self._synchronize(now)
            return TrialDecision.PAUSE
        state.last_perturbation_time = now
        lower, upper = self._quantiles()
        waiting = not self._no_more_trials or any(
            s.paused and not s.finished for other, s in self._state.items() if other != tid
        )
        exploited = self._checkpoint_or_exploit(tid, lower, upper, now)
        if exploited or waiting:
            state.paused = True
            return TrialDecision.PAUSE
        return TrialDecision.CONTINUE

    def on_trial_complete(self, trial: Trial, result: dict[str, Any] | None) -> None:
        self._finish(trial.trial_id)

    def on_trial_error(self, trial: Trial) -> None:
        self._finish(trial.trial_id)

    def on_trial_remove(self, trial: Trial) -> None:
        self._finish(trial.trial_id)

    def on_no_more_trials(self) -> None:
        """Paused trials may resume now; in synch mode, synchronise if only they were missing."""
        self._no_more_trials = True
        if self._synch and self._sync_ready(exclude=None):
            self._synchronize(self._latest_train_time())

    def pop_trial_updates(self) -> list[TrialUpdate]:
        """CONTINUE updates: with the explored config and ``checkpoint_from`` for exploits."""
        updates, self._updates = self._updates, []
        return updates

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        """The paused trial with the least training time (Ray's fair share).

        None while new trials may still come: Ray starts pending trials (no
        training time) first.  In synch mode only trials before the next
        synchronisation point may run.
        """
        if not self._no_more_trials:
            return None
        candidates = []
        for trial in trials:
            state = self._state.get(trial.trial_id)
            if state is None or state.finished:
                continue
            if self._synch and state.last_train_time >= self._next_perturbation_sync:
                continue
            candidates.append((state.last_train_time, trial))
        candidates.sort(key=lambda pair: pair[0])
        return candidates[0][1] if candidates else None

    def debug_string(self) -> str:
        return (
            f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, "
            f"{self._num_perturbations} perturbs"
        )

    # -- internals ----------------------------------------------------------------

    def _quantiles(self) -> tuple[list[str], list[str]]:
        ranked = [
            tid for tid, s in self._state.items() if s.last_score is not None and not s.finished
        ]
        ranked.sort(key=lambda tid: self._state[tid].last_score)  # type: ignore[arg-type, return-value]
        if len(ranked) <= 1:
            return [], []
        count = math.ceil(len(ranked) * self._quantile_fraction)
        if count > len(ranked) / 2:
            count = math.floor(len(ranked) / 2)
        return ranked[:count], ranked[-count:]

    def _checkpoint_or_exploit(
        self, tid: str, lower: list[str], upper: list[str], now: float
    ) -> bool:
        """Remember whether ``tid`` saved; exploit if it is in the lower quantile."""
        state = self._state[tid]
        state.saved = tid in upper
        if state.saved:
            self._num_checkpoints += 1
        if tid not in lower:
            return False
        source = self._rng.choice(upper)
        if not self._state[source].saved:
            return False  # Ray: "no checkpoint for trial ... Skip exploit"
        self._exploit(tid, source, now)
        return True

    def _on_perturbation_point(self, tid: str, now: float, score: float) -> None:
        """``tid`` reached a perturbation point at ``now`` with ``score`` (signed), before
        it is judged there.  Nothing to do here; PB2 records its data."""

    def _explored(self, tid: str, source: str) -> dict[str, Any]:
        """The config ``tid`` goes on with after it copies ``source``: the explore step.

        PBT perturbs the source's config (:func:`explore`); PB2 overrides this.
        """
        return explore(
            self._state[source].config,
            self._hyperparam_mutations,
            self._resample_probability,
            self._perturbation_factors,
            self._custom_explore_fn,
            self._rng,
            self._np_rng,
        )

    def _exploit(self, tid: str, source: str, now: float) -> None:
        state, source_state = self._state[tid], self._state[source]
        new_config = self._explored(tid, source)
        if self._log_config:
            entry = {
                "trial_id": tid,
                "source": source,
                "time_attr": self._time_attr,
                "step": now,
                "source_step": source_state.last_time,
                "old_config": copy.deepcopy(source_state.config),
                "new_config": copy.deepcopy(new_config),
            }
            state.policy = copy.deepcopy(source_state.policy) + [entry]
            self._exploits.append(entry)
        state.config = new_config
        state.last_perturbation_time = source_state.last_perturbation_time
        state.last_train_time = source_state.last_train_time
        state.last_time = source_state.last_time
        self._num_perturbations += 1
        self._updates.append(
            TrialUpdate(
                tid,
                TrialDecision.CONTINUE,
                new_config=copy.deepcopy(new_config),
                checkpoint_from=source,
            )
        )

    def _sync_ready(self, exclude: str | None) -> bool:
        """Whether every live trial (but ``exclude``) is at the synchronisation point."""
        if not self._no_more_trials:
            return False  # a trial not created yet has not reached it
        live = [(tid, s) for tid, s in self._state.items() if not s.finished]
        return bool(live) and all(
            s.last_train_time >= self._next_perturbation_sync for tid, s in live if tid != exclude
        )

    def _synchronize(self, now: float) -> None:
        """Judge every live trial at once; the paused ones may then resume."""
        lower, upper = self._quantiles()
        live = [tid for tid, s in self._state.items() if not s.finished]
        middle = [tid for tid in live if tid not in lower and tid not in upper]
        for tid in upper + middle + lower:
            self._state[tid].last_perturbation_time = now
            exploited = self._checkpoint_or_exploit(tid, lower, upper, now)
            if not exploited and self._state[tid].paused:
                self._updates.append(TrialUpdate(tid, TrialDecision.CONTINUE))
        latest = max(s.last_train_time for s in self._state.values())
        self._next_perturbation_sync = max(
            self._next_perturbation_sync + self._perturbation_interval, latest
        )

    def _finish(self, tid: str) -> None:
        state = self._state.get(tid)
        if state is None or state.finished:
            return
        state.finished = True
        state.paused = False
        if self._synch and self._sync_ready(exclude=None):
            self._synchronize(self._latest_train_time())

    def _latest_train_time(self) -> float:
        return max((s.last_train_time for s in self._state.values() if not s.finished), default=0.0)

    def _time_and_score(self, result: dict[str, Any]) -> tuple[float, float] | None:
        """:func:`time_and_score`, raising for a missing field if ``require_attrs``."""
        for name, argument in ((self._time_attr, "time_attr"), (self._metric, "metric")):
            field_value = result.get(name or "")
            if self._require_attrs and not is_number(field_value):
                raise ValueError(
                    f"PopulationBasedTraining needs the {argument} {name!r} as a number in every "
                    f"result, but a result has {name}={field_value!r} (keys: {sorted(result)}). "
                    f"Report it with tune.report({{{name!r}: ...}}), or pass "
                    "PopulationBasedTraining(require_attrs=False) to ignore such results."
                )
        return time_and_score(result, self._time_attr, self._metric, self._mode)


# ------------------------------------------------------------------ validation


def _validate(
    time_attr: Any,
    metric: Any,
    perturbation_interval: Any,
    burn_in_period: Any,
    mutations: dict[str, Any],
    quantile_fraction: Any,
    resample_probability: Any,
    perturbation_factors: Any,
    custom_explore_fn: Any,
) -> None:
    check_time_attr(time_attr, "training_iteration")
    check_metric(metric)
    if not is_finite_number(perturbation_interval) or perturbation_interval <= 0:
        raise _invalid(
            "perturbation_interval",
            perturbation_interval,
            "it must be a finite number > 0",
            "Pass the `time_attr` units between perturbations, such as perturbation_interval=5.",
        )
    if not is_finite_number(burn_in_period) or burn_in_period < 0:
        raise _invalid(
            "burn_in_period",
            burn_in_period,
            "it must be a finite number >= 0",
            "Pass burn_in_period=0 (the default) to allow perturbations from the start.",
        )
    if custom_explore_fn is not None and not callable(custom_explore_fn):
        raise _invalid(
            "custom_explore_fn",
            custom_explore_fn,
            "it must be None or a function",
            "Pass a function that takes the new config and returns it.",
        )
    if not mutations and custom_explore_fn is None:
        raise ValueError(
            "PopulationBasedTraining needs `hyperparam_mutations` or `custom_explore_fn`, but "
            "neither was given. Pass hyperparam_mutations={'lr': tune.loguniform(1e-4, 1e-1)}, "
            "for example."
        )
    _validate_mutations(mutations, "hyperparam_mutations")
    if not is_finite_number(quantile_fraction) or not 0 <= quantile_fraction <= 0.5:
        raise _invalid(
            "quantile_fraction",
            quantile_fraction,
            "it must be in [0, 0.5] (0: no exploitation)",
            "Pass quantile_fraction=0.25 (the default): the worst quarter copies the best quarter.",
        )
    if not is_finite_number(resample_probability) or not 0 <= resample_probability <= 1:
        raise _invalid(
            "resample_probability",
            resample_probability,
            "it must be in [0, 1]",
            "Pass resample_probability=0.25 (the default).",
        )
    factors = perturbation_factors
    if (
        isinstance(factors, (str, bytes))
        or not isinstance(factors, Sequence)
        or not factors
        or not all(is_finite_number(f) and f > 0 for f in factors)
    ):
        raise _invalid(
            "perturbation_factors",
            factors,
            "it must be a non-empty sequence of numbers > 0",
            "Pass perturbation_factors=(1.2, 0.8) (the default).",
        )


def _validate_mutations(mutations: Mapping[str, Any], path: str) -> None:
    for key, value in mutations.items():
        where = f"{path}[{key!r}]"
        if isinstance(value, Mapping):
            _validate_mutations(value, where)
        elif isinstance(value, Function):
            raise TypeError(
                f"The value of `{where}` is a sample_from() domain, which PBT cannot resample. "
                "Use tune.uniform(), tune.loguniform(), tune.choice() or a plain function."
            )
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(
                    f"The value of `{where}` is an empty list, but it must hold the values to "
                    "choose from. Pass a list such as [1e-3, 1e-2, 1e-1]."
                )
        elif not isinstance(value, Domain) and not callable(value):
            raise TypeError(
                f"The value of `{where}` is {value!r}, but it must be a list, a dict, a search "
                "domain such as tune.uniform(0, 1), or a function returning a value."
            )


def _ray_row(entry: dict[str, Any]) -> list[Any]:
    """A policy entry as a row of Ray Tune's policy files."""
    return [
        entry["trial_id"],
        entry["source"],
        entry["step"],
        entry["source_step"],
        entry["old_config"],
        entry["new_config"],
    ]
