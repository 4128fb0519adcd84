"""The configuration objects' pure parts (no cluster): the checkpoint-retention policy,
and Ray Tune's arguments: accepted, checked, or noted as having no effect here."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dasktune import CLIReporter, tune_config
from dasktune.tune_config import (
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    SyncConfig,
    TuneConfig,
)


def entries(*scores: float | None) -> list[tuple[str, dict]]:
    return [
        (f"c{i}", {} if s is None else {"acc": s, "training_iteration": i + 1})
        for i, s in enumerate(scores)
    ]


def paths(retention) -> list[str]:
    return [p for p, _ in retention.kept]


def test_without_num_to_keep_every_checkpoint_is_kept() -> None:
    assert paths(CheckpointConfig().retained(entries(0.1, 0.2, 0.3))) == ["c0", "c1", "c2"]


def test_the_newest_are_kept_without_a_score() -> None:
    assert paths(CheckpointConfig(num_to_keep=2).retained(entries(0.9, 0.1, 0.2))) == ["c1", "c2"]


def test_the_best_are_kept_by_score_and_the_newest_always() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
    retention = config.retained(entries(0.5, 0.9, 0.1))
    assert paths(retention) == ["c1", "c2"], "the best, and the newest to resume from"
    assert retention.unscored is None


def test_min_order_keeps_the_lowest() -> None:
    config = CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="acc", checkpoint_score_order="min"
    )
    assert paths(config.retained(entries(0.5, 0.1, 0.3, 0.9))) == ["c1", "c2", "c3"]


def test_ties_keep_the_newest() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
    assert paths(config.retained(entries(0.5, 0.5, 0.2))) == ["c1", "c2"]


def test_nested_and_numpy_scores() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="eval/acc")
    checkpoints = [
        ("c0", {"eval": {"acc": np.float32(0.9)}}),
        ("c1", {"eval": {"acc": 0.1}}),
        ("c2", {"eval": {"acc": np.float64(0.2)}}),
    ]
    assert paths(config.retained(checkpoints)) == ["c0", "c2"]


def test_a_checkpoint_without_the_score_counts_as_worst_and_is_reported() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
    retention = config.retained(entries(None, 0.3, 0.1))
    assert paths(retention) == ["c1", "c2"]
    assert retention.unscored == {}


@pytest.mark.parametrize("score", [float("nan"), True, "0.9"])
def test_scores_that_are_not_finite_numbers_count_as_worst(score) -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
    checkpoints = [("c0", {"acc": score}), ("c1", {"acc": 0.1}), ("c2", {"acc": 0.05})]
    assert paths(config.retained(checkpoints)) == ["c1", "c2"]


# -- Ray Tune 2.x's arguments: accepted, checked, or noted as having no effect ---------------


@pytest.fixture
def fresh_notes(monkeypatch):
    """Forget which no-op arguments this process has already reported."""
    monkeypatch.setattr(tune_config, "_NOTED", set())


def test_every_argument_of_ray_s_tune_config_is_accepted() -> None:
    def name(trial):
        return f"t_{trial.trial_id}"

    config = TuneConfig(
        mode="max",
        metric="acc",
        search_alg=None,
        scheduler=None,
        num_samples=2,
        max_concurrent_trials=2,
        time_budget_s=5,
        reuse_actors=True,
        trial_name_creator=name,
        trial_dirname_creator=name,
        chdir_to_trial_dir=False,
    )
    assert config.trial_name_creator is name and config.trial_dirname_creator is name
    assert config.reuse_actors is True and config.chdir_to_trial_dir is False


@pytest.mark.parametrize("argument", ["trial_name_creator", "trial_dirname_creator"])
def test_name_creators_must_be_callables(argument) -> None:
    with pytest.raises(TypeError, match=rf"`TuneConfig\({argument}=...\)` is 'trial'.*function"):
        TuneConfig(**{argument: "trial"})


@pytest.mark.parametrize("argument", ["reuse_actors", "chdir_to_trial_dir"])
def test_flags_must_be_bools(argument) -> None:
    with pytest.raises(TypeError, match=rf"`TuneConfig\({argument}=...\)` is 'yes'"):
        TuneConfig(**{argument: "yes"})


def test_every_argument_of_ray_s_run_config_is_accepted(tmp_path, fresh_notes) -> None:
    config = RunConfig(
        name="exp",
        storage_path=tmp_path,
        storage_filesystem=object(),
        failure_config=None,
        checkpoint_config=None,
        sync_config=SyncConfig(),
        verbose=None,
        stop={"training_iteration": 3},
        callbacks=[],
        progress_reporter=CLIReporter(metric_columns=["loss"]),
        log_to_file=True,
    )
    assert config.storage_path == str(tmp_path), "a pathlib.Path becomes a string"
    assert config.checkpoint_config == CheckpointConfig()
    assert config.failure_config == FailureConfig()
    assert config.verbose == 1


def test_local_dir_is_the_older_name_of_storage_path(tmp_path) -> None:
    assert RunConfig(local_dir=str(tmp_path)).storage_path == str(tmp_path)
    with pytest.raises(ValueError, match="local_dir is Ray's older name for storage_path"):
        RunConfig(storage_path="/a", local_dir="/b")


@pytest.mark.parametrize(
    "value, names",
    [
        (False, None),
        (True, ("stdout", "stderr")),
        ("out.log", ("out.log", "out.log")),
        (("o.txt", "e.txt"), ("o.txt", "e.txt")),
        (["o.txt", "e.txt"], ("o.txt", "e.txt")),
    ],
)
def test_log_to_file_names(value, names) -> None:
    assert RunConfig(log_to_file=value).log_file_names() == names


@pytest.mark.parametrize(
    "value", [("a", "b", "c"), 3, ("out", ""), "/tmp/out.log", ("../out", "err")]
)
def test_bad_log_to_file_is_refused(value) -> None:
    with pytest.raises(ValueError, match=r"RunConfig\(log_to_file="):
        RunConfig(log_to_file=value)


@pytest.mark.parametrize("value, level", [(None, 1), (False, 0), (True, 1), (3, 3)])
def test_verbose_levels(value, level) -> None:
    assert RunConfig(verbose=value).verbose == level


@pytest.mark.parametrize("value", [-1, 4, "1", 1.5])
def test_bad_verbose_is_refused(value) -> None:
    with pytest.raises(ValueError, match=r"`RunConfig\(verbose=...\)` is .* must be 0"):
        RunConfig(verbose=value)


def test_sub_configs_must_be_config_objects() -> None:
    with pytest.raises(
        TypeError, match=r"`RunConfig\(checkpoint_config=...\)` is .*CheckpointConfig"
    ):
        RunConfig(checkpoint_config={"num_to_keep": 2})
    with pytest.raises(TypeError, match=r"`RunConfig\(failure_config=...\)`"):
        RunConfig(failure_config=3)


def test_arguments_without_effect_are_logged_once_per_process(caplog, fresh_notes) -> None:
    with caplog.at_level(logging.INFO, logger="dasktune.tune_config"):
        RunConfig(sync_config=SyncConfig(sync_period=10), storage_filesystem=object())
        RunConfig(sync_config=SyncConfig(), storage_filesystem=object())
        CheckpointConfig(_checkpoint_keep_all_ranks=True)
    messages = [r.getMessage() for r in caplog.records]
    for argument in (
        "RunConfig(sync_config)",
        "RunConfig(storage_filesystem)",
        "SyncConfig",
        "CheckpointConfig(_checkpoint_keep_all_ranks)",
    ):
        said = [m for m in messages if m.startswith(f"{argument} has no effect in dasktune")]
        assert len(said) == 1, (argument, messages)
    # Results that would go elsewhere deserve a warning; the rest is information.
    levels = {r.getMessage().split(" ")[0]: r.levelno for r in caplog.records}
    assert levels["RunConfig(storage_filesystem)"] == logging.WARNING
    assert levels["RunConfig(sync_config)"] == logging.INFO


def test_defaults_log_nothing(caplog, fresh_notes) -> None:
    with caplog.at_level(logging.DEBUG, logger="dasktune.tune_config"):
        RunConfig(), TuneConfig(), CheckpointConfig(), FailureConfig()
    assert caplog.records == []


def test_fail_fast_raise_in_any_case_as_ray_accepts() -> None:
    assert FailureConfig(fail_fast="RAISE").fail_fast == "raise"
    with pytest.raises(ValueError, match="fail_fast='sometimes'"):
        FailureConfig(fail_fast="sometimes")


def test_a_progress_reporter_that_cannot_report_is_a_clear_error() -> None:
    with pytest.raises(TypeError) as error:
        RunConfig(progress_reporter="cli")
    message = str(error.value)
    assert "RunConfig(progress_reporter=...) is 'cli'" in message
    assert "dasktune.CLIReporter(metric_columns=[...])" in message
