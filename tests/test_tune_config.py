"""The configuration objects' pure parts: the checkpoint-retention policy (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from dasktune.tune_config import CheckpointConfig


def entries(*scores: float | None) -> list[tuple[str, dict]]:
    return [(f"c{i}", {} if s is None else {"acc": s, "training_iteration": i + 1})
            for i, s in enumerate(scores)]


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
    config = CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="acc",
                              checkpoint_score_order="min")
    assert paths(config.retained(entries(0.5, 0.1, 0.3, 0.9))) == ["c1", "c2", "c3"]


def test_ties_keep_the_newest() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="acc")
    assert paths(config.retained(entries(0.5, 0.5, 0.2))) == ["c1", "c2"]


def test_nested_and_numpy_scores() -> None:
    config = CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="eval/acc")
    checkpoints = [("c0", {"eval": {"acc": np.float32(0.9)}}), ("c1", {"eval": {"acc": 0.1}}),
                   ("c2", {"eval": {"acc": np.float64(0.2)}})]
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
