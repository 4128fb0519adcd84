"""PopulationBasedTraining, with Ray Tune's rules by hand.

Ray is not installed; the expectations follow Ray Tune's ``pbt.py``:

* perturbation point: ``t >= burn_in_period`` and ``t - last_perturbation_time
  >= perturbation_interval``; the score there is the metric (negated for "min");
* quantiles over trials with a score that have not ended, sorted ascending
  (stable): ``ceil(n * quantile_fraction)`` each, at most ``floor(n / 2)``,
  none when ``n <= 1``;
* a lower-quantile trial exploits ``random.choice(upper)`` if that one was in
  the upper quantile at its own last perturbation point, else nothing happens.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers import (
    PopulationBasedTraining,
    PopulationBasedTrainingReplay,
    TrialDecision,
    TrialScheduler,
    TrialUpdate,
)
from dasktune.schedulers.pbt import explore
from dasktune.search.sample import choice, randint, sample_from, uniform
from dasktune.testing import Simulator
from dasktune.trial import Trial, TrialStatus

from .scheduler_contract import SchedulerContract

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE
LRS = [0.1, 0.2, 0.3, 0.4]


class TestPBTContract(SchedulerContract):
    def make_scheduler(self) -> TrialScheduler:
        return PopulationBasedTraining(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            perturbation_interval=2,
            hyperparam_mutations={"x": list(range(100))},
            require_attrs=False,
            seed=0,
        )


class TestPBTContractSynch(SchedulerContract):
    mode = "min"

    def make_scheduler(self) -> TrialScheduler:
        return PopulationBasedTraining(
            time_attr=self.time_attr,
            metric=self.metric,
            mode=self.mode,
            perturbation_interval=3,
            hyperparam_mutations={"x": uniform(0, 100)},
            quantile_fraction=0.5,
            require_attrs=False,
            synch=True,
            seed=1,
        )


def pbt(**kwargs: Any) -> PopulationBasedTraining:
    kwargs.setdefault("time_attr", "training_iteration")
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    kwargs.setdefault("perturbation_interval", 2)
    kwargs.setdefault("hyperparam_mutations", {"lr": LRS})
    kwargs.setdefault("seed", 0)
    return PopulationBasedTraining(**kwargs)


def population(scheduler: TrialScheduler, n: int = 4) -> list[Trial]:
    trials = [Trial("ABCDEFGH"[i], {"lr": LRS[i % 4]}) for i in range(n)]
    for trial in trials:
        scheduler.on_trial_add(trial)
    return trials


def report(scheduler: TrialScheduler, trial: Trial, t: float, score: float) -> TrialDecision:
    return scheduler.on_trial_result(trial, {"training_iteration": t, "score": score})


# Asynchronous PBT -------------------------------------------------------------------------


def test_quantile_fraction_zero_never_exploits() -> None:
    """Ray documents 0 as no exploitation: the lower quantile is empty."""
    scheduler = pbt(quantile_fraction=0)
    trials = population(scheduler)
    scheduler.on_no_more_trials()
    for t in range(1, 9):
        for i, trial in enumerate(trials):
            assert report(scheduler, trial, t, (i + 1) * t) is CONTINUE
    assert scheduler.pop_trial_updates() == []


def test_exploit_by_hand() -> None:
    scheduler = pbt(resample_probability=0.0)
    a, b, c, d = population(scheduler)
    scheduler.on_no_more_trials()  # the whole population runs: no trial yields
    assert report(scheduler, a, 1, 0.5) is CONTINUE  # 1 - 0 < 2
    # t=2: A alone has a score: no quantiles.  B: {A 1, B 2}: ceil(2 * 0.25) = 1 each:
    # lower [A], upper [B] (B saves).  C: lower [A], upper [C].  D: lower [A], upper [D].
    decisions = [
        report(scheduler, x, 2, s) for x, s in zip((a, b, c, d), (1, 2, 3, 4), strict=True)
    ]
    assert decisions == [CONTINUE] * 4
    assert scheduler.pop_trial_updates() == []
    assert report(scheduler, a, 3, 1.2) is CONTINUE  # 3 - 2 < 2
    # A at 4 with 1.5: lower [A], upper [D]; D saved at 2 -> A exploits D: it pauses and
    # resumes from D's checkpoint with D's lr moved one step (resample_probability 0).
    assert report(scheduler, a, 4, 1.5) is PAUSE
    [update] = scheduler.pop_trial_updates()
    assert update.trial_id == "A" and update.checkpoint_from == "D"
    assert update.decision is CONTINUE and update.new_config in ({"lr": 0.3}, {"lr": 0.4})
    [entry] = scheduler.policy_log("A")
    assert entry == {
        "trial_id": "A",
        "source": "D",
        "time_attr": "training_iteration",
        "step": 4.0,
        "source_step": 2.0,
        "old_config": {"lr": 0.4},
        "new_config": update.new_config,
    }
    assert scheduler.debug_string() == "PopulationBasedTraining: 3 checkpoints, 1 perturbs"
    # A took over D's perturbation time (2): at 4 (restored from D's checkpoint at 2,
    # A reports 3, then 4) it is at a perturbation point again.
    assert report(scheduler, a, 3, 4.0) is CONTINUE
    assert report(scheduler, a, 4, 4.5) is CONTINUE  # now in the upper quantile


def test_trial_records_hold_the_policy_log_for_the_coordinator() -> None:
    scheduler = pbt(resample_probability=0.0)
    a, b, c, d = population(scheduler)
    scheduler.on_no_more_trials()
    assert scheduler.trial_records("A") == {"pbt_policy.jsonl": []}
    for x, s in zip((a, b, c, d), (1, 2, 3, 4), strict=True):
        report(scheduler, x, 2, s)
    assert report(scheduler, a, 4, 1.5) is PAUSE  # A exploits D (test_exploit_by_hand)
    records = scheduler.trial_records("A")
    assert records == {"pbt_policy.jsonl": scheduler.policy_log("A")}
    assert records["pbt_policy.jsonl"][0]["source"] == "D"
    records["pbt_policy.jsonl"].clear()  # a copy: the scheduler's log is untouched
    assert len(scheduler.policy_log("A")) == 1
    assert scheduler.trial_records("unknown") == {"pbt_policy.jsonl": []}


def test_no_exploit_of_a_trial_that_did_not_save() -> None:
    scheduler = pbt()
    a, b, *_ = population(scheduler)
    scheduler.on_no_more_trials()
    # A reaches 2 first, alone: no quantiles, so it does not save (Ray: no checkpoint).
    assert report(scheduler, a, 2, 5.0) is CONTINUE
    # B: lower [B], upper [A]; A has no checkpoint -> Ray skips the exploit.
    assert report(scheduler, b, 2, 1.0) is CONTINUE
    assert scheduler.pop_trial_updates() == []
    assert scheduler.policy_log("B") == []


def test_mode_min_and_nan() -> None:
    scheduler = pbt(mode="min", metric="loss", resample_probability=0.0)
    a, b, c, d = population(scheduler)
    scheduler.on_no_more_trials()
    for trial, loss in zip((a, b, c, d), (3.0, 1.0, 2.0, 0.5), strict=True):
        scheduler.on_trial_result(trial, {"training_iteration": 2, "loss": loss})
    # Scores (negated losses): A -3, B -1, C -2, D -0.5 -> at 4 with NaN, A ranks lowest;
    # upper [D] (saved at 2: lower [A], upper [D] when D reported) -> A exploits D.
    decision = scheduler.on_trial_result(a, {"training_iteration": 4, "loss": math.nan})
    assert decision is PAUSE
    assert scheduler.pop_trial_updates()[0].checkpoint_from == "D"


def test_trials_yield_while_others_wait() -> None:
    scheduler = pbt()
    a, b = population(scheduler, 2)
    # New trials may still come: at its perturbation point a trial yields its slot.
    assert report(scheduler, a, 2, 1.0) is PAUSE
    a.status = TrialStatus.PAUSED
    assert scheduler.choose_trial_to_run([a]) is None  # a new trial starts first
    scheduler.on_no_more_trials()
    assert scheduler.choose_trial_to_run([a]) is a
    # b's perturbation point: a is paused, waiting to run -> b yields too.
    assert report(scheduler, b, 2, 2.0) is PAUSE


def test_least_trained_paused_trial_resumes_first() -> None:
    scheduler = pbt(perturbation_interval=1)
    a, b, c = population(scheduler, 3)
    scheduler.on_no_more_trials()
    report(scheduler, a, 5, 1.0)
    report(scheduler, b, 3, 1.0)
    report(scheduler, c, 4, 1.0)
    assert scheduler.choose_trial_to_run([a, b, c]) is b
    assert scheduler.choose_trial_to_run([a, c]) is c


def test_population_larger_than_the_cluster_shares_it() -> None:
    """6 trials on 2 slots, 8 iterations each: trials take turns at perturbation points."""
    scheduler = pbt(perturbation_interval=2, hyperparam_mutations={"lr": uniform(0.01, 1.0)})
    outcome = Simulator(
        scheduler,
        [{"lr": lr} for lr in (0.02, 0.05, 0.1, 0.3, 0.6, 0.9)],
        _learn,
        lambda c: 8,
        concurrency=2,
    ).run()
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    order = [(r.trial_id, r.iteration) for r in outcome.reports]
    # Pending trials first (Ray: PENDING before PAUSED): every trial trains to its first
    # perturbation point (2) before any trial goes past it.
    first_past_2 = next(i for i, (_, it) in enumerate(order) if it > 2)
    assert {tid for tid, _ in order[:first_past_2]} == set(outcome.trials)
    # Then turns in pairs, least trained first: t0, t1 train 3-4 while t2-t5 wait at 2.
    assert order[first_past_2 : first_past_2 + 4] == [
        ("t_00000", 3),
        ("t_00001", 3),
        ("t_00000", 4),
        ("t_00001", 4),
    ]


def _learn(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
    """A model whose skill approaches 1 at a rate set by lr (lr above 0.5 diverges)."""
    skill = state or 0.0
    lr = config["lr"]
    skill = skill + lr * (1.0 - skill) if lr <= 0.5 else skill * 0.9
    return skill, skill


def test_pbt_copies_good_configs_and_replay_reproduces_the_best() -> None:
    """Weak trials copy strong ones; replaying the best trial's policy on one trial
    retraces its lineage and ends at the same score (deterministic training)."""
    configs = [{"lr": lr} for lr in (0.01, 0.02, 0.03, 0.3, 0.04, 0.05)]
    scheduler = pbt(
        perturbation_interval=3, hyperparam_mutations={"lr": uniform(0.001, 0.5)}, seed=3
    )
    outcome = Simulator(scheduler, configs, _learn, lambda c: 15, concurrency=3).run()
    exploited = [tid for tid in outcome.trials if scheduler.policy_log(tid)]
    assert exploited  # the weak trials copied someone
    for tid in exploited:
        log = scheduler.policy_log(tid)
        assert log[-1]["trial_id"] == tid
        assert all(n["source"] == p["trial_id"] for p, n in itertools.pairwise(log))
    best = max(outcome.trials.values(), key=lambda t: t.last_result["score"])
    policy = scheduler.policy_log(best.trial_id)
    replay = PopulationBasedTrainingReplay(policy)
    assert replay.initial_config is not None
    replayed = Simulator(replay, [{}], _learn, lambda c: 15).run()
    (trial,) = replayed.trials.values()
    assert trial.config == best.config
    assert trial.last_result["score"] == pytest.approx(best.last_result["score"], rel=1e-12)


# Synchronous PBT ----------------------------------------------------------------------------


def test_synch_waits_for_everyone_then_perturbs_all() -> None:
    scheduler = pbt(synch=True, resample_probability=0.0)
    a, b, c, d = population(scheduler)
    for trial, score in zip((a, b, c), (1.0, 2.0, 3.0), strict=True):
        assert report(scheduler, trial, 2, score) is PAUSE
    # D reaches 2 too, but a trial might still be created: keep waiting.
    assert report(scheduler, d, 2, 4.0) is PAUSE
    assert scheduler.pop_trial_updates() == []
    for trial in (a, b, c, d):
        trial.status = TrialStatus.PAUSED
    assert scheduler.choose_trial_to_run([a, b, c, d]) is None
    scheduler.on_no_more_trials()
    # All at 2: lower [A], upper [D]; judged in the order upper, middle, lower.
    updates = scheduler.pop_trial_updates()
    assert [u.trial_id for u in updates] == ["D", "B", "C", "A"]
    assert updates[:3] == [
        TrialUpdate("D", CONTINUE),
        TrialUpdate("B", CONTINUE),
        TrialUpdate("C", CONTINUE),
    ]
    assert updates[3].checkpoint_from == "D" and updates[3].new_config in ({"lr": 0.3}, {"lr": 0.4})
    # The next synchronisation point is max(2 + 2, 2) = 4; everyone may run again.
    assert scheduler.choose_trial_to_run([a, b, c, d]) is a
    assert report(scheduler, a, 3, 1.0) is CONTINUE
    assert report(scheduler, a, 4, 1.0) is PAUSE


def test_synch_completes_on_the_last_arrival_and_on_a_trial_leaving() -> None:
    scheduler = pbt(synch=True)
    a, b, c = population(scheduler, 3)
    scheduler.on_no_more_trials()
    assert report(scheduler, a, 2, 1.0) is PAUSE
    assert report(scheduler, b, 2, 2.0) is PAUSE
    assert scheduler.pop_trial_updates() == []
    scheduler.on_trial_error(c)  # the last missing trial fails: the others are synced
    updates = scheduler.pop_trial_updates()
    assert {u.trial_id for u in updates} == {"A", "B"}
    # Round two: the last trial to arrive completes it and gets its own update.
    assert report(scheduler, a, 4, 1.0) is PAUSE
    assert report(scheduler, b, 4, 2.0) is PAUSE
    assert "B" in {u.trial_id for u in scheduler.pop_trial_updates()}


# Explore -----------------------------------------------------------------------------------


class Script:
    """A stand-in random generator: ``random()`` and ``choice()`` answers given in advance."""

    def __init__(self, randoms: list[float], choices: list[int]) -> None:
        self.randoms, self.choices = list(randoms), list(choices)

    def random(self) -> float:
        return self.randoms.pop(0)

    def choice(self, seq: Any) -> Any:
        return list(seq)[self.choices.pop(0)]


def run_explore(
    config: dict, mutations: dict, randoms: list[float], choices: list[int], custom: Any = None
) -> dict:
    rng = Script(randoms, choices)
    out = explore(config, mutations, 0.25, (1.2, 0.8), custom, rng, np.random.default_rng(0))  # type: ignore[arg-type]
    assert not rng.randoms and not rng.choices  # every scripted draw was used
    return out


@pytest.mark.parametrize(
    ("old", "randoms", "choices", "new"),
    [
        (2, [0.9], [1], 3),  # no resample (0.9 >= 0.25), shift right
        (2, [0.9], [0], 1),  # shift left
        (3, [0.9], [1], 3),  # shift right at the end: stays (clipped)
        (1, [0.9], [0], 1),
        (2, [0.1], [0], 1),  # resample (0.1 < 0.25): choice of the list
        (7, [0.9], [2], 3),  # not in the list: resampled whatever the draw
    ],
)
def test_explore_list(old: int, randoms: list[float], choices: list[int], new: int) -> None:
    assert run_explore({"a": old, "keep": "x"}, {"a": [1, 2, 3]}, randoms, choices) == {
        "a": new,
        "keep": "x",
    }


def test_explore_domains_and_functions() -> None:
    # Float: multiplied by the chosen factor.
    assert run_explore({"f": 10.0}, {"f": uniform(0, 100)}, [0.9], [0]) == {"f": 12.0}
    assert run_explore({"f": 10.0}, {"f": uniform(0, 100)}, [0.9], [1]) == {"f": 8.0}
    # Resampled from the domain.
    resampled = run_explore({"f": 10.0}, {"f": uniform(0, 1)}, [0.1], [])
    assert 0 <= resampled["f"] <= 1
    # An int stays an int (truncated, as in Ray); an Integer domain also clips.
    assert run_explore({"b": 5}, {"b": uniform(0, 100)}, [0.9], [1]) == {"b": 4}
    assert run_explore({"n": 9}, {"n": randint(1, 10)}, [0.9], [0]) == {"n": 9}  # 10 -> 9
    assert run_explore({"n": 1}, {"n": randint(1, 10)}, [0.9], [1]) == {"n": 1}  # 0 -> 1
    # A function is called to resample; otherwise its value is multiplied.
    assert run_explore({"g": 2.0}, {"g": lambda: 42.0}, [0.1], []) == {"g": 42.0}
    assert run_explore({"g": 2.0}, {"g": lambda: 42.0}, [0.9], [0]) == {"g": 2.4}
    # choice() of numbers is treated as continuous (as in Ray); of strings, resampled.
    assert run_explore({"c": 10}, {"c": choice([1, 10, 100])}, [0.9], [0]) == {"c": 12}
    assert run_explore({"c": "relu"}, {"c": choice(["relu", "tanh"])}, [0.9], [])["c"] in (
        "relu",
        "tanh",
    )


def test_explore_nested_and_custom() -> None:
    config = {"opt": {"lr": 2, "momentum": 0.9}, "layers": 3}
    mutations = {"opt": {"lr": [1, 2, 3]}}
    assert run_explore(config, mutations, [0.9], [1]) == {
        "opt": {"lr": 3, "momentum": 0.9},
        "layers": 3,
    }

    def double_layers(c: dict) -> dict:
        c["layers"] *= 2
        return c

    assert run_explore(config, mutations, [0.9], [0], custom=double_layers)["layers"] == 6
    assert config["layers"] == 3  # the input is not changed
    with pytest.raises(ValueError, match="custom_explore_fn` returned None"):
        run_explore(config, mutations, [0.9], [0], custom=lambda c: None)


def test_missing_mutated_keys_are_sampled_on_add() -> None:
    scheduler = pbt(
        hyperparam_mutations={
            "lr": [0.5],
            "opt": {"m": uniform(0, 1)},
            "f": lambda: 7,
            "kept": [1, 2],
        }
    )
    trial = Trial("t", {"kept": 2})
    scheduler.on_trial_add(trial)
    assert trial.config["lr"] == 0.5 and trial.config["f"] == 7 and trial.config["kept"] == 2
    assert 0 <= trial.config["opt"]["m"] <= 1


def test_custom_explore_fn_alone() -> None:
    scheduler = pbt(
        hyperparam_mutations=None,
        custom_explore_fn=lambda c: {**c, "lr": 0.05},
        resample_probability=0.0,
    )
    a, b, c, d = population(scheduler)
    scheduler.on_no_more_trials()
    for trial, score in zip((a, b, c, d), (1, 2, 3, 4), strict=True):
        report(scheduler, trial, 2, score)
    assert report(scheduler, a, 4, 0) is PAUSE
    assert scheduler.pop_trial_updates()[0].new_config == {"lr": 0.05}


# Results, state, arguments --------------------------------------------------------------------


def test_require_attrs() -> None:
    scheduler = pbt()
    [trial] = population(scheduler, 1)
    with pytest.raises(ValueError, match=r"metric 'score'.*require_attrs=False"):
        scheduler.on_trial_result(trial, {"training_iteration": 1})
    with pytest.raises(ValueError, match=r"time_attr 'training_iteration'"):
        scheduler.on_trial_result(trial, {"score": 1.0})
    lenient = pbt(require_attrs=False)
    [trial] = population(lenient, 1)
    assert lenient.on_trial_result(trial, {"score": 1.0}) is CONTINUE


def test_burn_in_period() -> None:
    scheduler = pbt(burn_in_period=5, perturbation_interval=1)
    a, b = population(scheduler, 2)
    scheduler.on_no_more_trials()
    for t in range(1, 5):
        report(scheduler, a, t, 1.0)
        report(scheduler, b, t, 0.0)
    assert scheduler.pop_trial_updates() == []
    assert scheduler.debug_string() == "PopulationBasedTraining: 0 checkpoints, 0 perturbs"


def test_state_roundtrip_without_the_mutations() -> None:
    scheduler = pbt(hyperparam_mutations={"lr": lambda: 0.5})
    state = scheduler.get_state()
    assert "_hyperparam_mutations" not in state and "_custom_explore_fn" not in state
    restored = pbt(hyperparam_mutations={"lr": lambda: 0.5})
    restored.set_state(state)
    assert restored.debug_string() == scheduler.debug_string()


def test_decision_points_always() -> None:
    assert pbt().decision_points() == DecisionPoints.always()


MUTATIONS_MISSING = r"needs `hyperparam_mutations` or `custom_explore_fn`"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hyperparam_mutations": {}}, ValueError, MUTATIONS_MISSING),
        (
            {"quantile_fraction": -0.1},
            ValueError,
            r"`quantile_fraction` is -0.1, but it must be in \[0,",
        ),
        (
            {"hyperparam_mutations": ["lr"]},
            ValueError,
            r"`hyperparam_mutations` is \['lr'\], but it must be a dict",
        ),
        ({"quantile_fraction": 0.6}, ValueError, r"`quantile_fraction` is 0.6"),
        ({"perturbation_interval": 0}, ValueError, r"`perturbation_interval` is 0, but it must"),
        ({"perturbation_interval": -5}, ValueError, r"`perturbation_interval` is -5"),
        ({"burn_in_period": -1}, ValueError, r"`burn_in_period` is -1"),
        ({"mode": "maximize"}, ValueError, r"`mode` is 'maximize', but it must be 'min' or 'max'"),
        ({"resample_probability": 1.5}, ValueError, r"`resample_probability` is 1.5"),
        ({"perturbation_factors": ()}, ValueError, r"`perturbation_factors` is \(\)"),
        ({"hyperparam_mutations": {"lr": 0.1}}, TypeError, r"mutations\['lr'\]` is 0.1"),
        ({"hyperparam_mutations": {"o": {"lr": []}}}, ValueError, r"\['lr'\]` is an empty list"),
        ({"hyperparam_mutations": {"lr": sample_from(lambda s: 1)}}, TypeError, r"sample_from"),
        ({"custom_explore_fn": 3}, ValueError, r"`custom_explore_fn` is 3"),
        ({"time_attr": ""}, ValueError, r"`time_attr` is ''"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        pbt(**kwargs)


def test_ray_defaults() -> None:
    scheduler = PopulationBasedTraining(hyperparam_mutations={"lr": [1, 2]})
    with pytest.raises(ValueError, match=r"needs a `metric` and a `mode`"):
        scheduler.on_trial_add(Trial("a", {}))
    assert scheduler.set_search_properties("acc", "max")
    scheduler.on_trial_add(Trial("a", {"lr": 1}))


def test_seeded_runs_repeat() -> None:
    def run(seed: int) -> list[Any]:
        scheduler = pbt(seed=seed, hyperparam_mutations={"lr": uniform(0.001, 0.5)})
        Simulator(
            scheduler,
            [{"lr": x} for x in (0.01, 0.1, 0.2, 0.3)],
            _learn,
            lambda c: 10,
            concurrency=2,
        ).run()
        return [scheduler.policy_log(t) for t in ("t_00000", "t_00001", "t_00002", "t_00003")]

    assert run(5) == run(5)
    random.seed(0)  # the global generator plays no part
    assert run(5) == run(5)
