"""The console reporter: status line, final table, and silence at verbose=0."""

from __future__ import annotations

import io
import math
import re
from typing import Any

import pytest

from dasktune.execution.console import ConsoleReporter
from dasktune.trial import Trial, TrialStatus


def trial(
    name: str,
    status: TrialStatus = TrialStatus.TERMINATED,
    loss: Any = None,
    iteration: int = 3,
    **config: Any,
) -> Trial:
    last = {"training_iteration": iteration}
    if loss is not None:
        last["loss"] = loss
    return Trial(
        trial_id=name,
        config=config or {"lr": 0.1},
        trial_name=name,
        status=status,
        local_path=f"/exp/{name}",
        last_result=last,
    )


class FakeController:
    def __init__(self, trials: list[Trial], best: Trial | None = None) -> None:
        self.trials = trials
        self.best = best
        self.asked: list[tuple[Any, Any]] = []

    def best_trial(self, metric: Any, mode: Any) -> Trial | None:
        self.asked.append((metric, mode))
        return self.best


def reporter(
    verbose: int = 1, metric: str | None = "loss", mode: str | None = "min", interval: float = 5.0
) -> tuple[ConsoleReporter, io.StringIO]:
    stream = io.StringIO()
    return ConsoleReporter(verbose, metric, mode, interval=interval, stream=stream), stream


# -- status line ------------------------------------------------------------


def test_status_line_counts_in_a_fixed_order() -> None:
    console, _ = reporter()
    trials = [
        trial("a", TrialStatus.ERROR),
        trial("b", TrialStatus.PENDING),
        trial("c", TrialStatus.RUNNING),
        trial("d", TrialStatus.PENDING),
        trial("e", TrialStatus.TERMINATED),
    ]
    line = console.status_line(trials)
    assert re.fullmatch(
        r"\[dasktune \d+:\d\d:\d\d\] 5 trials: 1 RUNNING, 2 PENDING, "
        r"1 TERMINATED, 1 ERROR",
        line,
    ), line


def test_status_line_before_any_trial() -> None:
    console, _ = reporter()
    assert console.status_line([]).endswith("] 0 trials: starting")


def test_status_line_elapsed_time_format() -> None:
    console, _ = reporter()
    console._start -= 3 * 3600 + 25 * 60 + 7
    assert console.status_line([]).startswith("[dasktune 3:25:07] ")


def test_status_line_shows_the_best_trial() -> None:
    console, _ = reporter()
    best = trial("train_00001", loss=0.123456, iteration=7)
    controller = FakeController([best], best=best)
    line = console.status_line(controller.trials, controller)
    assert line.endswith(" | best loss=0.1235 (train_00001, iter 7)")
    assert controller.asked == [("loss", "min")]


def test_status_line_without_a_best_trial() -> None:
    console, _ = reporter()
    controller = FakeController([trial("a")], best=None)
    assert "best" not in console.status_line(controller.trials, controller)


# -- the table --------------------------------------------------------------


def table_order(console: ConsoleReporter, trials: list[Trial]) -> list[str]:
    lines = console.table(trials).splitlines()[2:]
    return [line.split()[0] for line in lines]


def test_table_best_first_with_nan_and_missing_last_for_min() -> None:
    console, _ = reporter(mode="min")
    trials = [
        trial("a", loss=0.5),
        trial("b", loss=math.nan),
        trial("c", loss=0.1),
        trial("d"),
        trial("e", loss=0.3),
    ]
    assert table_order(console, trials) == ["c", "e", "a", "b", "d"]


def test_table_best_first_with_nan_last_for_max() -> None:
    console, _ = reporter(mode="max")
    trials = [
        trial("a", loss=0.5),
        trial("b", loss=math.nan),
        trial("c", loss=0.1),
        trial("d"),
        trial("e", loss=0.3),
    ]
    assert table_order(console, trials) == ["a", "e", "c", "b", "d"]


def test_table_keeps_the_order_without_metric_or_mode() -> None:
    trials = [trial("b", loss=0.5), trial("a", loss=0.1)]
    assert table_order(reporter(mode=None)[0], trials) == ["b", "a"]
    no_metric = reporter(metric=None)[0]
    assert table_order(no_metric, trials) == ["b", "a"]
    # Without a metric to rank by, the table still shows what the trials reported.
    assert no_metric.table(trials).splitlines()[0].split()[-1] == "loss"


def test_table_columns_and_values() -> None:
    console, _ = reporter()
    trials = [
        trial(
            "train_00000",
            TrialStatus.TERMINATED,
            loss=0.25,
            iteration=10,
            lr=0.001,
            layers=[1, 2],
            opt={"m": 0.9},
            batch=32,
        ),
        trial("train_00001", TrialStatus.ERROR, loss=math.inf, iteration=2, lr=0.1, batch=64),
    ]
    header, rule, first, second = console.table(trials).splitlines()
    assert header.split() == ["trial", "status", "batch", "lr", "iter", "loss"], (
        "nested and list configs are left out, keys sorted"
    )
    assert set(rule.replace("  ", "")) == {"-"}
    assert first.split() == ["train_00000", "TERMINATED", "32", "0.001", "10", "0.25"]
    assert second.split() == ["train_00001", "ERROR", "64", "0.1", "2", "inf"]
    assert len(header) == len(rule), "columns are aligned"


def test_table_shows_at_most_six_config_keys() -> None:
    console, _ = reporter()
    config = {f"k{i}": i for i in range(9)}
    header = console.table([trial("a", loss=1.0, **config)]).splitlines()[0]
    assert header.split() == ["trial", "status", "k0", "k1", "k2", "k3", "k4", "k5", "iter", "loss"]


def test_table_is_cut_at_twenty_rows() -> None:
    console, _ = reporter()
    trials = [trial(f"t{i:02d}", loss=float(i)) for i in range(25)]
    lines = console.table(trials).splitlines()
    assert len(lines) == 2 + 20 + 1
    assert lines[2].split()[0] == "t00" and lines[21].split()[0] == "t19"
    assert lines[-1] == "... 5 more trials (ResultGrid.get_dataframe() has them all)"


def test_table_of_no_trials() -> None:
    console, _ = reporter()
    assert console.table([]).splitlines() == [
        "trial  status  iter  loss",
        "-----  ------  ----  ----",
    ]


# -- verbosity --------------------------------------------------------------


def test_verbose_zero_prints_nothing() -> None:
    console, stream = reporter(verbose=0)
    t = trial("a", TrialStatus.ERROR, loss=1.0)
    controller = FakeController([t], best=t)
    console.start()
    console.note("dasktune: results go to /exp")
    console.update(controller, active=1, force=True)
    console.result(t, {"loss": 1.0, "training_iteration": 1})
    console.error(t, "ValueError")
    console.summary([t])
    assert stream.getvalue() == ""


def test_verbose_one_prints_status_failures_and_summary_but_not_results() -> None:
    console, stream = reporter(verbose=1)
    t = trial("a", loss=1.0)
    controller = FakeController([t], best=t)
    console.note("hello")
    console.update(controller, active=1, force=True)
    console.result(t, {"loss": 1.0, "training_iteration": 1})
    console.error(
        t, "ValueError", "Traceback (most recent call last):\n  ...\nValueError: bad lr\n"
    )
    console.summary([t])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "hello"
    assert "1 trials: 1 TERMINATED | best loss=1 (a, iter 3)" in lines[1]
    assert lines[2] == "dasktune: trial a failed: ValueError: bad lr (traceback: /exp/a/error.txt)"
    assert lines[3].endswith("1 trials: 1 TERMINATED -- finished")
    assert lines[4].split() == ["trial", "status", "lr", "iter", "loss"]
    assert len(lines) == 7


def test_update_waits_for_the_interval_unless_forced() -> None:
    console, stream = reporter(verbose=1, interval=3600)
    controller = FakeController([trial("a")])
    console.start()
    console.update(controller, active=1)
    assert stream.getvalue() == ""
    console.update(controller, active=1, force=True)
    assert stream.getvalue().count("\n") == 1


def test_update_prints_once_the_interval_passed() -> None:
    console, stream = reporter(verbose=1, interval=0.0)
    controller = FakeController([trial("a")])
    console.update(controller, active=1)
    console.update(controller, active=1)
    assert stream.getvalue().count("1 trials: 1 TERMINATED") == 2


def test_verbose_two_prints_each_result_and_error() -> None:
    console, stream = reporter(verbose=2)
    t = trial("train_00003", loss=1.0)
    console.result(t, {"loss": 0.123456, "training_iteration": 4, "other": 1})
    console.error(t, "ValueError")  # no traceback text: its type
    assert stream.getvalue().splitlines() == [
        "  train_00003: loss=0.1235, training_iteration=4",
        "dasktune: trial train_00003 failed: ValueError (traceback: /exp/train_00003/error.txt)",
    ]


# -- the progress bar: terminal, plain lines, notebook ----------------------------------------


class Counted(FakeController):
    """A controller whose searcher knows it will make ``total`` trials."""

    def __init__(self, trials: list[Trial], total: int) -> None:
        super().__init__(trials)
        self.searcher = type("Searcher", (), {"total_samples": total})()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(done: int, running: int) -> list[Trial]:
    return [trial(f"d{i}") for i in range(done)] + [
        trial(f"r{i}", TrialStatus.RUNNING) for i in range(running)
    ]


def test_a_terminal_gets_one_line_that_rewrites_itself():
    stream = Terminal()
    console = ConsoleReporter(1, "loss", "min", interval=5.0, stream=stream)
    assert console.kind == "terminal"
    for done in (0, 3, 8):
        console.update(Counted(progress(done, 2), 10), active=2, force=True)
    out = stream.getvalue()
    assert "\n" not in out and out.count("\r") == 3  # no wall of lines
    assert out.rsplit("\r", 1)[1].startswith(
        "[dasktune 0:00:00] [###################-----] 8/10 trials done | 2 RUNNING"
    )
    console.note("a note")  # ends the progress line first
    console.summary(progress(10, 0))
    tail = stream.getvalue()[len(out) :]
    assert tail.startswith("\na note\n\r") and "10/10 trials done -- finished" in tail
    assert tail.count("trial ") == 1  # the table, once


def test_plain_lines_where_output_is_not_a_terminal():
    console, stream = reporter(interval=5.0)
    assert console.kind == "lines"
    console.update(Counted(progress(1, 1), 4), active=1, force=True)
    console.update(Counted(progress(2, 1), 4), active=1)  # within the interval: nothing
    console.update(Counted(progress(3, 1), 4), active=1, force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert "[######------------------] 1/4 trials done | 1 RUNNING" in lines[0]
    assert "[##################------] 3/4 trials done" in lines[1]


def test_without_a_known_number_of_trials_there_is_no_bar():
    console, stream = reporter()
    console.update(FakeController(progress(2, 1)), active=1, force=True)
    assert re.search(r"\] 3 trials: 1 RUNNING, 2 TERMINATED$", stream.getvalue().strip())


NOTEBOOK_CELL = """
from dasktune.execution.console import ConsoleReporter
from dasktune.trial import Trial, TrialStatus

class Controller:
    def __init__(self, done, total):
        self.trials = [Trial(str(i), {}, status=TrialStatus.TERMINATED) for i in range(done)]
        self.searcher = type("S", (), {"total_samples": total})()
    def best_trial(self, metric, mode):
        return None

console = ConsoleReporter(1, None, None)
assert console.kind == "notebook", console.kind
for done in range(6):
    console.update(Controller(done, 5), active=0, force=True)
"""


def test_a_notebook_gets_one_display_updated_in_place(tmp_path):
    """A real Jupyter kernel runs the reporter; the cell keeps one output, the last state."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CELL)])
    nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = notebook.cells[0].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"], outputs
    html = outputs[0]["data"]["text/html"]
    assert "[########################] 5/5 trials done" in html


def test_the_final_table_shows_the_searched_parameters_not_the_constants() -> None:
    """Ray Tune's columns: the keys the search varied. Sorted keys with constants first
    (bagging_fraction, epochs, metric...) used to push the searched ones out of the six."""
    console, _ = reporter()
    constants = {"a_epochs": 10, "b_metric": "multi_logloss", "c_path": "/data", "d": 1, "e": 2}
    trials = [
        trial("t1", loss=0.5, num_leaves=31, lr=0.1, **constants),
        trial("t2", loss=0.4, num_leaves=63, lr=0.1, **constants),
        trial("t3", loss=0.3, num_leaves=15, lr=0.01, **constants),
    ]
    header = console.table(trials).splitlines()[0].split()
    assert header == ["trial", "status", "lr", "num_leaves", "iter", "loss"]
    single = console.table(trials[:1]).splitlines()[0].split()
    assert single[2:8] == ["a_epochs", "b_metric", "c_path", "d", "e", "lr"], "one trial: all"
