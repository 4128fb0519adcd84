"""PopulationBasedTrainingReplay: one trial through the config changes of a PBT policy."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from dasktune.decision_points import DecisionPoints
from dasktune.schedulers import (
    PopulationBasedTrainingReplay,
    TrialDecision,
    TrialScheduler,
    TrialUpdate,
)
from dasktune.trial import Trial, TrialStatus

PAUSE, CONTINUE = TrialDecision.PAUSE, TrialDecision.CONTINUE


def report(scheduler: TrialScheduler, trial: Trial, t: float, score: float) -> TrialDecision:
    return scheduler.on_trial_result(trial, {"training_iteration": t, "score": score})


POLICY = [
    {
        "trial_id": "B",
        "source": "A",
        "time_attr": "training_iteration",
        "step": 4,
        "source_step": 2,
        "old_config": {"lr": 1},
        "new_config": {"lr": 2},
    },
    {
        "trial_id": "C",
        "source": "B",
        "time_attr": "training_iteration",
        "step": 8,
        "source_step": 6,
        "old_config": {"lr": 2},
        "new_config": {"lr": 3},
    },
]


def test_replay_changes_the_config_at_the_recorded_steps() -> None:
    replay = PopulationBasedTrainingReplay(POLICY)
    assert replay.initial_config == {"lr": 1}
    assert replay.changes == [(2.0, {"lr": 2}), (6.0, {"lr": 3})]
    assert replay.decision_points() == DecisionPoints.at("training_iteration", [2, 6])
    trial = Trial("t", {})
    replay.on_trial_add(trial)
    assert trial.config == {"lr": 1}
    decisions = [report(replay, trial, t, 0.0) for t in range(1, 8)]
    assert decisions == [CONTINUE, PAUSE, CONTINUE, CONTINUE, CONTINUE, PAUSE, CONTINUE]
    updates = replay.pop_trial_updates()
    assert updates == [
        TrialUpdate("t", CONTINUE, new_config={"lr": 2}),
        TrialUpdate("t", CONTINUE, new_config={"lr": 3}),
    ]
    trial.status = TrialStatus.PAUSED
    assert replay.choose_trial_to_run([Trial("other", {}), trial]) is trial


def test_replay_ignores_a_step_that_is_not_a_number() -> None:
    # A NaN step compares below nothing; it used to apply every remaining change at once.
    replay = PopulationBasedTrainingReplay(POLICY)
    trial = Trial("t", {})
    replay.on_trial_add(trial)
    for step in (math.nan, True, None, "3"):
        assert replay.on_trial_result(trial, {"training_iteration": step}) is CONTINUE
    assert replay.pop_trial_updates() == []
    assert report(replay, trial, 2, 0.0) is PAUSE
    assert replay.pop_trial_updates() == [TrialUpdate("t", CONTINUE, new_config={"lr": 2})]


def test_replay_reads_json_lines_and_ray_rows(tmp_path: Any) -> None:
    path = tmp_path / "pbt_policy_C.txt"
    path.write_text("\n".join(json.dumps(entry) for entry in POLICY) + "\n")
    assert PopulationBasedTrainingReplay(str(path)).changes == [(2.0, {"lr": 2}), (6.0, {"lr": 3})]
    # Ray's rows: [target tag, source tag, target step, source step, old config, new config].
    ray_rows = [["B", "A", 4, 2, {"lr": 1}, {"lr": 2}], ["C", "B", 8, 6, {"lr": 2}, {"lr": 3}]]
    ray_path = tmp_path / "ray.txt"
    ray_path.write_text("\n".join(json.dumps(row) for row in ray_rows))
    replay = PopulationBasedTrainingReplay(ray_path)
    assert replay.initial_config == {"lr": 1} and len(replay.changes) == 2


def test_replay_keeps_only_the_last_unbroken_chain() -> None:
    stale = {**POLICY[0], "trial_id": "C", "source": "Z", "old_config": {"lr": 9}}
    replay = PopulationBasedTrainingReplay([stale, *POLICY])
    assert replay.initial_config == {"lr": 1}
    assert [step for step, _ in replay.changes] == [2.0, 6.0]


def test_replay_errors(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        PopulationBasedTrainingReplay(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="Line 1 .* is not JSON"):
        PopulationBasedTrainingReplay(bad)
    with pytest.raises(ValueError, match="must be a dict with the keys"):
        PopulationBasedTrainingReplay([{"step": 1}])
    replay = PopulationBasedTrainingReplay(POLICY)
    replay.on_trial_add(Trial("one", {}))
    with pytest.raises(ValueError, match="second trial"):
        replay.on_trial_add(Trial("two", {}))
    with pytest.raises(ValueError, match="policy is empty and the trial has no config"):
        PopulationBasedTrainingReplay([]).on_trial_add(Trial("t", {}))
    with pytest.warns(UserWarning, match="replaced by the initial config"):
        PopulationBasedTrainingReplay(POLICY).on_trial_add(Trial("t", {"lr": 5}))


def test_replay_with_an_empty_policy_keeps_the_config() -> None:
    replay = PopulationBasedTrainingReplay([])
    trial = Trial("t", {"lr": 5})
    replay.on_trial_add(trial)
    assert trial.config == {"lr": 5}
    assert report(replay, trial, 100, 0.0) is CONTINUE
