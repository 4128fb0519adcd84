"""PB2: PBT whose explore step is a time-varying GP bandit within ``hyperparam_bounds``."""

from __future__ import annotations

import math
import pickle
import sys
from typing import Any

import numpy as np
import pytest

from dasktune.schedulers import (
    PB2,
    PopulationBasedTraining,
    TrialDecision,
    TrialScheduler,
    _gp_bandit,
)
from dasktune.testing import Simulator
from dasktune.trial import Trial

from .scheduler_contract import SchedulerContract

PAUSE, CONTINUE = TrialDecision.PAUSE, TrialDecision.CONTINUE


class TestPB2Contract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return PB2(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            perturbation_interval=2,
            hyperparam_bounds={"x": [0, 100]},
            require_attrs=False,
            seed=0,
        )


class TestPB2ContractSynch(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return PB2(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            perturbation_interval=3,
            hyperparam_bounds={"x": [0.0, 100.0]},
            quantile_fraction=0.5,
            require_attrs=False,
            synch=True,
            seed=1,
        )


def pb2(**kwargs: Any) -> PB2:
    kwargs.setdefault("time_attr", "training_iteration")
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    kwargs.setdefault("perturbation_interval", 3)
    kwargs.setdefault("hyperparam_bounds", {"lr": [0.0, 1.0]})
    kwargs.setdefault("seed", 0)
    return PB2(**kwargs)


def peaked(best: float):
    """A step whose score grows by 1 - 4 (lr - best)^2 per iteration: fastest at ``best``."""

    def step(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
        score = (state or 0.0) + 1.0 - 4.0 * (config["lr"] - best) ** 2
        return score, score

    return step


def explored(outcome: Any, key: str = "lr") -> list[Any]:
    return [u.new_config[key] for u in outcome.updates if u.new_config is not None]


# -- the bandit -------------------------------------------------------------------


def test_prefers_the_region_that_improved() -> None:
    """Eight trials start in [0, 0.3]; the reward grows fastest at lr=0.7.  PBT's explore
    step only multiplies by 0.8 or 1.2, so it would need many steps to get there; PB2's
    bandit has seen the larger lrs do better and goes to them."""
    configs = [{"lr": v} for v in np.linspace(0.0, 0.3, 8)]
    outcome = Simulator(
        pb2(perturbation_interval=4), configs, peaked(0.7), lambda c: 40, concurrency=4
    ).run()
    lrs = explored(outcome)
    assert len(lrs) >= 6
    assert all(abs(lr - 0.7) < 0.1 for lr in lrs[-4:]), lrs
    finals = sorted(t.config["lr"] for t in outcome.trials.values())
    assert abs(np.median(finals) - 0.7) < 0.1, finals


def test_the_kernel_forgets_old_stretches() -> None:
    """Long ago lr=0.2 made the reward grow and lr=0.8 did not; lately the other way round.
    At the latest time, the bandit follows the recent stretches."""
    rng = np.random.default_rng(0)
    old_x, new_x = rng.random(40), rng.random(40)
    times = np.concatenate([np.full(40, 1.0), np.full(40, 100.0)])
    points = np.concatenate([old_x, new_x]).reshape(-1, 1)
    changes = np.concatenate([-((old_x - 0.2) ** 2), -((new_x - 0.8) ** 2)])
    chosen = _gp_bandit.choose(
        times,
        np.zeros(80),
        points,
        changes,
        (100.0, 0.0),
        np.empty((0, 1)),
        np.random.default_rng(1),
    )
    assert abs(chosen[0] - 0.8) < 0.1, chosen
    earlier = _gp_bandit.choose(
        times, np.zeros(80), points, changes, (1.0, 0.0), np.empty((0, 1)), np.random.default_rng(1)
    )
    assert abs(earlier[0] - 0.2) < 0.1, earlier


def test_trials_exploring_at_once_spread_out() -> None:
    """Hyperparameters another trial is trying count as seen: they lower the standard
    deviation there, so UCB (mean + kappa * std) looks elsewhere when the data says
    little.  Three stretches near lr=0.5 leave [0, 1] open; with 0.9 taken, the next
    choice stays away from it."""
    points = np.array([[0.45], [0.5], [0.55]])
    args = (np.array([1.0, 2.0, 3.0]), np.zeros(3), points, np.array([0.1, 0.1, 0.1]), (3.0, 0.0))
    alone = _gp_bandit.choose(*args, np.empty((0, 1)), np.random.default_rng(0))
    beside = _gp_bandit.choose(*args, alone.reshape(1, 1), np.random.default_rng(0))
    assert abs(beside[0] - alone[0]) > 0.2, (alone, beside)


def test_exploration_weight_grows_slowly() -> None:
    weights = [_gp_bandit.exploration_weight(n) for n in (1, 10, 100, 1000)]
    assert weights == sorted(weights) and weights[-1] < 2


# -- what explore produces -------------------------------------------------------------


def test_explore_stays_within_bounds_and_keeps_types() -> None:
    """Nested bounds, an int, a key the configs leave out: every config PB2 gives stays
    within the bounds; ints stay ints; keys without bounds are the source's."""
    bounds = {"opt": {"lr": [1e-4, 1e-2], "momentum": [0.8, 0.99]}, "layers": [1, 6]}

    def step(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
        gain = config["opt"]["lr"] * 100 + config["layers"] - 3 * config["opt"]["momentum"]
        return (state or 0.0) + gain, (state or 0.0) + gain

    configs = [
        {"opt": {"lr": 1e-3 * (i + 1)}, "layers": 1 + i % 3, "name": f"n{i}"} for i in range(6)
    ]
    scheduler = pb2(hyperparam_bounds=bounds, perturbation_interval=2)
    outcome = Simulator(scheduler, configs, step, lambda c: 16, concurrency=3).run()
    news = [u.new_config for u in outcome.updates if u.new_config is not None]
    assert len(news) >= 4
    for config in news + [t.config for t in outcome.trials.values()]:
        assert 1e-4 <= config["opt"]["lr"] <= 1e-2
        assert 0.8 <= config["opt"]["momentum"] <= 0.99
        assert isinstance(config["layers"], int) and 1 <= config["layers"] <= 6
        assert config["name"].startswith("n")
    assert len({c["opt"]["momentum"] for c in news}) > 1, "momentum, drawn on add, is tuned too"


def test_missing_keys_are_drawn_within_the_bounds_on_add() -> None:
    scheduler = pb2(hyperparam_bounds={"lr": [0.1, 0.2], "opt": {"beta": [0.9, 0.99]}})
    trial = Trial("a", {"other": 1})
    scheduler.on_trial_add(trial)
    assert 0.1 <= trial.config["lr"] <= 0.2 and 0.9 <= trial.config["opt"]["beta"] <= 0.99
    assert trial.config["other"] == 1


def test_custom_explore_fn_gets_the_bandits_config() -> None:
    seen = []

    def custom(config: dict[str, Any]) -> dict[str, Any]:
        seen.append(config["lr"])
        return {**config, "tag": "custom"}

    outcome = Simulator(
        pb2(custom_explore_fn=custom),
        [{"lr": v} for v in (0.1, 0.2, 0.3, 0.4)],
        peaked(0.5),
        lambda c: 9,
        concurrency=2,
    ).run()
    news = [u.new_config for u in outcome.updates if u.new_config is not None]
    assert news and all(c["tag"] == "custom" for c in news)
    assert seen == [c["lr"] for c in news]


def test_first_explore_without_data_draws_within_the_bounds() -> None:
    """No stretch has ended when the first exploit comes: the config is drawn uniformly."""
    scheduler = pb2(hyperparam_bounds={"lr": [0.5, 0.6]}, perturbation_interval=1)
    a, b, c = (Trial(name, {"lr": 0.55}) for name in "abc")
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)
    scheduler.on_no_more_trials()
    for trial, score in ((a, 1.0), (c, 2.0)):  # c is in the upper quantile at its point
        assert (
            scheduler.on_trial_result(trial, {"training_iteration": 1, "score": score}) is CONTINUE
        )
    assert scheduler.on_trial_result(b, {"training_iteration": 1, "score": 0.0}) is PAUSE
    [update] = scheduler.pop_trial_updates()
    assert update.checkpoint_from == "c" and 0.5 <= update.new_config["lr"] <= 0.6
    assert update.new_config["lr"] != 0.55


def test_data_are_reward_changes_per_unit_of_time() -> None:
    """A stretch runs from one perturbation point to the next under one config; an exploit
    starts a new one at its source's last point (time and reward)."""
    scheduler = pb2(perturbation_interval=2)
    a, b, c = Trial("a", {"lr": 0.9}), Trial("b", {"lr": 0.1}), Trial("c", {"lr": 0.5})
    for trial in (a, b, c):
        scheduler.on_trial_add(trial)
    scheduler.on_no_more_trials()

    def report(trial: Trial, t: int, score: float) -> TrialDecision:
        return scheduler.on_trial_result(trial, {"training_iteration": t, "score": score})

    for trial, score in ((a, 4.0), (c, 3.0), (b, 1.0)):  # first points: no stretch ends
        report(trial, 2, score)
    assert scheduler._stretches == []
    report(a, 4, 10.0)  # (10 - 4) / 2 = 3 with lr 0.9; a is in the upper quantile
    report(c, 4, 7.0)  # (7 - 3) / 2 = 2 with lr 0.5
    assert report(b, 4, 2.0) is PAUSE  # (2 - 1) / 2 = 0.5 with lr 0.1; b then exploits a
    [update] = scheduler.pop_trial_updates()
    assert update.checkpoint_from == "a"
    report(b, 6, 13.0)  # from a's point (4, 10): (13 - 10) / 2 = 1.5 with the new lr
    assert scheduler._stretches == [
        (4, 4.0, (0.9,), 3.0),
        (4, 3.0, (0.5,), 2.0),
        (4, 1.0, (0.1,), 0.5),
        (6, 10.0, (update.new_config["lr"],), 1.5),
    ]


# -- PBT's behaviour, seeds and state ------------------------------------------------


def test_is_a_pbt() -> None:
    scheduler = pb2()
    assert isinstance(scheduler, PopulationBasedTraining)
    assert scheduler.debug_string() == "PopulationBasedTraining: 0 checkpoints, 0 perturbs"


def run_population(seed: int) -> list[Any]:
    scheduler = pb2(seed=seed)
    outcome = Simulator(
        scheduler,
        [{"lr": v} for v in (0.1, 0.3, 0.5, 0.9)],
        peaked(0.6),
        lambda c: 12,
        concurrency=2,
    ).run()
    return [(u.trial_id, u.checkpoint_from, u.new_config) for u in outcome.updates]


def test_seeded_runs_repeat() -> None:
    first = run_population(3)
    assert first and first == run_population(3)
    np.random.seed(1)  # the global generators play no part
    assert run_population(3) == first
    assert run_population(4) != first


def test_state_roundtrip_mid_experiment() -> None:
    """Saved mid-way and restored into a new PB2, it explores as the original goes on."""

    def trials() -> list[Trial]:
        return [Trial(f"t{i}", {"lr": 0.1 + 0.2 * i}) for i in range(4)]

    def feed(scheduler: PB2, population: list[Trial], steps: range) -> list[Any]:
        out = []
        for t in steps:
            for i, trial in enumerate(population):
                score = t * (1 - (trial.config["lr"] - 0.6) ** 2) + i * 0.01
                out.append(
                    scheduler.on_trial_result(trial, {"training_iteration": t, "score": score})
                )
                for update in scheduler.pop_trial_updates():
                    out.append((update.trial_id, update.new_config))
                    if update.new_config:
                        next(p for p in population if p.trial_id == update.trial_id).config = dict(
                            update.new_config
                        )
        return out

    original, population = pb2(perturbation_interval=2), trials()
    for trial in population:
        original.on_trial_add(trial)
    original.on_no_more_trials()
    feed(original, population, range(1, 7))
    state = pickle.loads(pickle.dumps(original.get_state()))
    assert "_bounds" not in state and state["_stretches"]
    restored = pb2(perturbation_interval=2)
    restored.set_state(state)
    copies = [Trial(t.trial_id, dict(t.config)) for t in population]
    assert feed(restored, copies, range(7, 13)) == feed(original, population, range(7, 13))


# -- arguments -----------------------------------------------------------------------


def test_ray_signature_and_defaults() -> None:
    scheduler = PB2(
        "training_iteration", "acc", "max", 5, {"lr": [0.1, 0.2]}, 0.25, True, True, False, None
    )
    assert scheduler.metric == "acc" and scheduler.mode == "max"
    late = PB2(hyperparam_bounds={"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"needs a `metric` and a `mode`"):
        late.on_trial_add(Trial("a", {}))
    assert late.set_search_properties("loss", "min")
    late.on_trial_add(Trial("a", {}))


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (None, r"`hyperparam_bounds` is None, but it must be a non-empty dict"),
        ({}, r"`hyperparam_bounds` is \{\}, but it must be a non-empty dict"),
        ({"lr": [0.1]}, r"`hyperparam_bounds\['lr'\]` is \[0.1\], but it must be \[low, high\]"),
        ({"lr": (0.1, math.inf)}, r"`hyperparam_bounds\['lr'\]` is \(0.1, inf\)"),
        ({"lr": [0.2, 0.1]}, r"its low end must not exceed its high end. Pass \[0.1, 0.2\]"),
        ({"o": {"lr": "0.1"}}, r"`hyperparam_bounds\['o'\]\['lr'\]` is '0.1'"),
        ({"o": {}}, r"`hyperparam_bounds\['o'\]` is \{\}"),
        ({"flag": [False, True]}, r"`hyperparam_bounds\['flag'\]`"),
    ],
)
def test_invalid_bounds(bounds: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pb2(hyperparam_bounds=bounds)


def test_other_arguments_are_pbts() -> None:
    with pytest.raises(ValueError, match=r"`quantile_fraction` is 0.7"):
        pb2(quantile_fraction=0.7)
    with pytest.raises(ValueError, match=r"`perturbation_interval` is 0"):
        pb2(perturbation_interval=0)


@pytest.mark.parametrize("value", ["high", math.nan, True])
def test_a_config_value_that_is_not_a_number(value: Any) -> None:
    scheduler = pb2()
    with pytest.raises(
        ValueError,
        match=r"PB2 tunes \['lr'\] within `hyperparam_bounds`, but "
        r"the config of trial a holds .* there, which is not a "
        r"finite number",
    ):
        scheduler.on_trial_add(Trial("a", {"lr": value}))


def test_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install 'dasktune\[pb2\]'"):
        pb2()
