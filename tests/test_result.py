"""Result and ResultGrid, built directly from rows (what the runner records)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from dasktune.result import Result, ResultGrid, TrialError


def make_result(
    name: str,
    losses: list[float],
    config: dict[str, Any] | None = None,
    status: str = "TERMINATED",
    error: BaseException | None = None,
    **extra: Any,
) -> Result:
    rows = [
        {"loss": v, "training_iteration": i + 1, "trial_id": name, **extra}
        for i, v in enumerate(losses)
    ]
    return Result(
        metrics=dict(rows[-1]) if rows else {},
        config=config or {"name": name},
        path=f"/exp/{name}",
        status=status,
        error=error,
        _rows=rows,
    )


def best_name(grid: ResultGrid, **kwargs: Any) -> str:
    return grid.get_best_result(**kwargs).config["name"]


@pytest.fixture
def grid() -> ResultGrid:
    return ResultGrid(
        [
            make_result("a", [10, 1, 9, 8, 7, 6, 5]),  # last 5, best 1, avg 6.57, last-5 7
            make_result("b", [4, 4, 4, 4, 4, 4, 4]),  # last 4, best 4, avg 4,    last-5 4
            make_result(
                "c", [12, 11, 10, 9, 8, 3, 3.5]
            ),  # last 3.5, best 3 / 12, avg 8.07, last-5 6.7
        ],
        "/exp",
    )


@pytest.mark.parametrize(
    "scope, mode, expected",
    [
        ("last", "min", "c"),
        ("last", "max", "a"),
        ("all", "min", "a"),
        ("all", "max", "c"),
        ("avg", "min", "b"),
        ("avg", "max", "c"),
        ("last-5-avg", "min", "b"),
        ("last-5-avg", "max", "a"),
        ("last-10-avg", "min", "b"),
        ("last-10-avg", "max", "c"),
    ],
)
def test_best_result_by_scope(grid: ResultGrid, scope: str, mode: str, expected: str) -> None:
    assert best_name(grid, metric="loss", mode=mode, scope=scope) == expected


def test_last_10_avg_uses_only_the_last_ten_results() -> None:
    grid = ResultGrid(
        [
            make_result("slow_start", [100, 100] + [1] * 10),  # avg 17.5, last-10 1
            make_result("steady", [2] * 12),  # avg 2,    last-10 2
        ],
        "/exp",
    )
    assert best_name(grid, metric="loss", mode="min", scope="last-10-avg") == "slow_start"
    assert best_name(grid, metric="loss", mode="min", scope="avg") == "steady"


def test_default_metric_and_mode_come_from_the_grid() -> None:
    grid = ResultGrid([make_result("a", [3]), make_result("b", [1])], "/exp", "loss", "min")
    assert best_name(grid) == "b"
    assert best_name(grid, mode="max") == "a"


def test_missing_metric_or_mode_is_an_error(grid: ResultGrid) -> None:
    with pytest.raises(ValueError, match=r"get_best_result\(\) needs a metric and a mode"):
        grid.get_best_result()
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        grid.get_best_result(metric="loss")
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        grid.get_best_result(mode="min")


def test_bad_mode_and_scope_name_the_value(grid: ResultGrid) -> None:
    with pytest.raises(ValueError, match=r"mode='best'\): mode must be 'min' or 'max'"):
        grid.get_best_result(metric="loss", mode="best")
    with pytest.raises(ValueError, match=r"scope='last-3-avg'\): scope must be one of last, all"):
        grid.get_best_result(metric="loss", mode="min", scope="last-3-avg")


def test_unknown_metric_names_the_metric_and_the_reported_keys(grid: ResultGrid) -> None:
    with pytest.raises(ValueError) as info:
        grid.get_best_result(metric="accuracy", mode="max")
    message = str(info.value)
    assert "get_best_result(metric='accuracy')" in message
    assert "no trial reported 'accuracy'" in message
    assert "The trials reported: loss." in message


def test_unknown_metric_on_an_empty_grid() -> None:
    with pytest.raises(ValueError, match="The trials reported: nothing"):
        ResultGrid([], "/exp").get_best_result(metric="loss", mode="min")


def test_nan_and_inf_are_filtered_by_default() -> None:
    grid = ResultGrid(
        [
            make_result("nan", [1.0, math.nan]),
            make_result("finite", [5.0, 3.0]),
            make_result("inf", [1.0, math.inf]),
            make_result("neg_inf", [1.0, -math.inf]),
        ],
        "/exp",
    )
    assert best_name(grid, metric="loss", mode="max") == "finite"
    assert best_name(grid, metric="loss", mode="min") == "finite"


def test_nan_and_inf_compared_when_not_filtered() -> None:
    grid = ResultGrid(
        [
            make_result("nan", [1.0, math.nan]),
            make_result("finite", [5.0, 3.0]),
            make_result("inf", [1.0, math.inf]),
            make_result("neg_inf", [1.0, -math.inf]),
        ],
        "/exp",
    )
    assert best_name(grid, metric="loss", mode="max", filter_nan_and_inf=False) == "inf"
    assert best_name(grid, metric="loss", mode="min", filter_nan_and_inf=False) == "neg_inf"


def test_all_scope_skips_nan_results_within_a_trial() -> None:
    grid = ResultGrid(
        [make_result("a", [math.nan, 2.0, math.nan]), make_result("b", [3.0])], "/exp"
    )
    assert best_name(grid, metric="loss", mode="min", scope="all") == "a"


def test_every_value_nan_says_so() -> None:
    grid = ResultGrid([make_result("a", [math.nan]), make_result("b", [math.inf])], "/exp")
    with pytest.raises(
        ValueError, match="every trial's value is NaN or infinite.*filter_nan_and_inf=False"
    ):
        grid.get_best_result(metric="loss", mode="min")


def test_non_numeric_values_are_ignored() -> None:
    grid = ResultGrid(
        [
            make_result("a", [1.0]),
            Result(
                metrics={"loss": "n/a"},
                config={"name": "b"},
                path="/exp/b",
                _rows=[{"loss": "n/a"}, {"loss": True}],
            ),
        ],
        "/exp",
    )
    assert best_name(grid, metric="loss", mode="max") == "a"


def test_nested_metric_by_flattened_name() -> None:
    grid = ResultGrid(
        [
            make_result("a", [1.0], **{"val/acc": 0.7}),
            make_result("b", [1.0], **{"val/acc": 0.9}),
        ],
        "/exp",
    )
    assert best_name(grid, metric="val/acc", mode="max") == "b"


def test_result_without_rows_falls_back_to_its_metrics() -> None:
    grid = ResultGrid(
        [
            Result(metrics={"val": {"acc": 0.4}}, config={"name": "a"}, path="/exp/a"),
            Result(metrics={"val": {"acc": 0.8}}, config={"name": "b"}, path="/exp/b"),
        ],
        "/exp",
    )
    assert best_name(grid, metric="val/acc", mode="max") == "b"


def test_error_for_nan_metric_without_rows() -> None:
    grid = ResultGrid([Result(metrics={"loss": math.nan}, config={}, path="/exp/a")], "/exp")
    with pytest.raises(ValueError, match="every trial's value is NaN or infinite"):
        grid.get_best_result(metric="loss", mode="min")


# -- get_dataframe ----------------------------------------------------------


def test_dataframe_has_the_last_result_and_config_of_each_trial() -> None:
    grid = ResultGrid(
        [
            make_result("a", [3.0, 1.0, 2.0], config={"name": "a", "opt": {"lr": 0.1}}),
            make_result("b", [5.0, 4.0], config={"name": "b", "opt": {"lr": 0.2}}),
        ],
        "/exp",
    )
    df = grid.get_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert list(df["loss"]) == [2.0, 4.0]
    assert list(df["training_iteration"]) == [3, 2]
    assert list(df["config/opt/lr"]) == [0.1, 0.2]
    assert list(df["config/name"]) == ["a", "b"]
    assert list(df["logdir"]) == ["/exp/a", "/exp/b"]


def test_dataframe_filter_picks_each_trials_best_row() -> None:
    grid = ResultGrid(
        [
            make_result("a", [3.0, 1.0, 2.0]),
            make_result("b", [5.0, math.nan, 4.0]),
            Result(
                metrics={"acc": 1.0},
                config={"name": "no_loss"},
                path="/exp/n",
                _rows=[{"acc": 1.0}],
            ),
        ],
        "/exp",
    )
    low = grid.get_dataframe(filter_metric="loss", filter_mode="min")
    assert list(low["loss"]) == [1.0, 4.0]
    assert list(low["training_iteration"]) == [2, 3]
    high = grid.get_dataframe(filter_metric="loss", filter_mode="max")
    assert list(high["loss"]) == [3.0, 5.0]
    assert list(high["config/name"]) == ["a", "b"], "a trial without the metric is left out"


def test_dataframe_filter_needs_both_arguments() -> None:
    grid = ResultGrid([make_result("a", [1.0])], "/exp")
    with pytest.raises(ValueError, match="needs both filter_metric and filter_mode, or neither"):
        grid.get_dataframe(filter_metric="loss")
    with pytest.raises(ValueError, match="needs both filter_metric and filter_mode"):
        grid.get_dataframe(filter_mode="min")


def test_dataframe_skips_trials_without_results() -> None:
    grid = ResultGrid(
        [
            make_result("a", [1.0]),
            Result(
                metrics={},
                config={"name": "never_reported"},
                path="/exp/n",
                status="ERROR",
                error=TrialError("boom"),
            ),
        ],
        "/exp",
    )
    assert list(grid.get_dataframe()["config/name"]) == ["a"]


# -- errors and counts ------------------------------------------------------


def test_errors_and_counts() -> None:
    boom = TrialError("Traceback ... ValueError: boom")
    grid = ResultGrid(
        [
            make_result("a", [1.0]),
            make_result("b", [2.0], status="ERROR", error=boom),
            make_result("c", [3.0]),
            make_result("d", [], status="PENDING"),
        ],
        "/exp",
    )
    assert len(grid) == 4
    assert grid.errors == [boom]
    assert grid.num_errors == 1
    assert grid.num_terminated == 2
    assert [r.config["name"] for r in grid] == ["a", "b", "c", "d"]
    assert grid[1].error is boom
    assert repr(grid) == "ResultGrid<4 trials, 1 errors, path='/exp'>"


def test_no_errors() -> None:
    grid = ResultGrid([make_result("a", [1.0])], "/exp")
    assert grid.errors == [] and grid.num_errors == 0 and grid.num_terminated == 1


# -- Result -----------------------------------------------------------------


def test_metrics_dataframe_has_one_row_per_report() -> None:
    result = make_result("a", [3.0, 2.0, 1.0], **{"val/acc": 0.5})
    df = result.metrics_dataframe
    assert list(df["loss"]) == [3.0, 2.0, 1.0]
    assert list(df["training_iteration"]) == [1, 2, 3]
    assert list(df["val/acc"]) == [0.5, 0.5, 0.5]


def test_metrics_dataframe_with_a_late_metric() -> None:
    result = Result(
        metrics={}, config={}, path="/p", _rows=[{"loss": 1.0}, {"loss": 0.5, "acc": 0.9}]
    )
    df = result.metrics_dataframe
    assert list(df.columns) == ["loss", "acc"]
    assert math.isnan(df["acc"][0]) and df["acc"][1] == 0.9


def test_metrics_dataframe_empty_without_reports() -> None:
    assert Result(metrics={}, config={}, path="/p").metrics_dataframe.empty


def test_result_trial_id_and_repr() -> None:
    result = make_result("a", [1.0], status="ERROR", error=TrialError("boom"))
    assert result.trial_id == "a"
    text = repr(result)
    assert text == (
        "Result(metrics={'loss': 1.0, 'training_iteration': 1}, path='/exp/a', error=TrialError)"
    )


def test_pareto_front_keeps_the_non_dominated_trials() -> None:
    def make(loss: float, latency: float) -> Result:
        return Result(
            metrics={"loss": loss, "latency": latency},
            config={},
            path="p",
            _rows=[{"loss": loss, "latency": latency}],
        )

    a, b, c, d = make(1.0, 5.0), make(2.0, 2.0), make(3.0, 3.0), make(0.5, 9.0)
    grid = ResultGrid([a, b, c, d], "exp", ["loss", "latency"], ["min", "min"])
    assert grid.get_pareto_front() == [a, b, d]  # c is beaten by b on both
    # With latency maximised, d (lowest loss, highest latency) beats all the others.
    assert grid.get_pareto_front(["loss", "latency"], ["min", "max"]) == [d]
    with pytest.raises(ValueError, match="several objectives"):
        grid.get_best_result()
    with pytest.raises(ValueError, match="one mode"):
        grid.get_pareto_front(["loss"], ["min", "max"])
