"""The experiment directory: per-trial files, names, the writability check, the state file."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasktune._util import flatten
from dasktune.storage.files import TrialRecorder, delete_checkpoint, to_json, write_experiment_state
from dasktune.storage.layout import check_writable, trial_dir_name


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def recorder(tmp_path: Path) -> Any:
    rec = TrialRecorder(str(tmp_path / "train_00000"))
    yield rec
    rec.close()


# -- flatten ----------------------------------------------------------------


def test_flatten_nested_dicts() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert flatten({"a": {}}) == {}
    assert flatten({"a": [1, {"b": 2}]}) == {"a": [1, {"b": 2}]}, "lists are left alone"


# -- TrialRecorder ----------------------------------------------------------


def test_result_json_has_one_line_per_result(recorder: TrialRecorder, tmp_path: Path) -> None:
    recorder.append({"loss": 1.0, "training_iteration": 1, "nested": {"acc": 0.5}})
    recorder.append({"loss": 0.5, "training_iteration": 2, "nested": {"acc": 0.7}})
    lines = read_json_lines(tmp_path / "train_00000" / "result.json")
    assert lines == [
        {"loss": 1.0, "training_iteration": 1, "nested": {"acc": 0.5}},
        {"loss": 0.5, "training_iteration": 2, "nested": {"acc": 0.7}},
    ]


def test_result_json_is_readable_while_the_trial_runs(
    recorder: TrialRecorder, tmp_path: Path
) -> None:
    recorder.append({"loss": 1.0})
    assert read_json_lines(tmp_path / "train_00000" / "result.json") == [{"loss": 1.0}]
    _, rows = read_csv(tmp_path / "train_00000" / "progress.csv")
    assert rows == [{"loss": "1.0"}]


def test_result_json_serializes_numpy_and_nan(recorder: TrialRecorder, tmp_path: Path) -> None:
    recorder.append(
        {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(3), "d": math.nan, "e": object}
    )
    (line,) = (tmp_path / "train_00000" / "result.json").read_text().splitlines()
    loaded = json.loads(line)
    assert loaded["a"] == 0.5 and loaded["b"] == 3 and loaded["c"] == [0, 1, 2]
    assert math.isnan(loaded["d"])
    assert loaded["e"] == repr(object)


def test_progress_csv_flattens_nested_metrics(recorder: TrialRecorder, tmp_path: Path) -> None:
    recorder.append({"loss": 1.0, "val": {"acc": 0.5, "f1": {"macro": 0.4}}})
    header, rows = read_csv(tmp_path / "train_00000" / "progress.csv")
    assert header == ["loss", "val/acc", "val/f1/macro"]
    assert rows == [{"loss": "1.0", "val/acc": "0.5", "val/f1/macro": "0.4"}]
    assert recorder.rows == [{"loss": 1.0, "val/acc": 0.5, "val/f1/macro": 0.4}]


def test_late_metric_rewrites_the_header_and_keeps_earlier_rows(
    recorder: TrialRecorder, tmp_path: Path
) -> None:
    recorder.append({"training_iteration": 1, "loss": 1.0})
    recorder.append({"training_iteration": 2, "loss": 0.8})
    recorder.append({"training_iteration": 3, "loss": 0.6, "val": {"acc": 0.9}})
    recorder.append({"training_iteration": 4, "loss": 0.4})
    header, rows = read_csv(tmp_path / "train_00000" / "progress.csv")
    assert header == ["training_iteration", "loss", "val/acc"]
    assert rows == [
        {"training_iteration": "1", "loss": "1.0", "val/acc": ""},
        {"training_iteration": "2", "loss": "0.8", "val/acc": ""},
        {"training_iteration": "3", "loss": "0.6", "val/acc": "0.9"},
        {"training_iteration": "4", "loss": "0.4", "val/acc": ""},
    ]
    content = (tmp_path / "train_00000" / "progress.csv").read_text()
    assert content.count("training_iteration") == 1, "one header, not one per rewrite"


def test_rows_keep_the_order_of_first_appearance(recorder: TrialRecorder, tmp_path: Path) -> None:
    recorder.append({"b": 1})
    recorder.append({"a": 2, "b": 3})
    header, _ = read_csv(tmp_path / "train_00000" / "progress.csv")
    assert header == ["b", "a"]


def test_write_params_and_error(recorder: TrialRecorder, tmp_path: Path) -> None:
    trial_dir = tmp_path / "train_00000"
    recorder.write_params({"lr": np.float64(0.1), "layers": [1, 2], "act": {"name": "relu"}})
    assert json.loads((trial_dir / "params.json").read_text()) == {
        "lr": 0.1,
        "layers": [1, 2],
        "act": {"name": "relu"},
    }
    path = recorder.write_error("Traceback 1\n")
    recorder.write_error("Traceback 2\n")
    assert path == str(trial_dir / "error.txt")
    assert (trial_dir / "error.txt").read_text() == "Traceback 1\nTraceback 2\n"


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    rec = TrialRecorder(str(tmp_path / "t"))
    rec.close()
    rec.append({"loss": 1.0})
    rec.close()
    rec.close()
    assert read_json_lines(tmp_path / "t" / "result.json") == [{"loss": 1.0}]


def test_append_after_close_with_known_columns(tmp_path: Path) -> None:
    rec = TrialRecorder(str(tmp_path / "t"))
    rec.append({"loss": 1.0})
    rec.close()
    rec.append({"loss": 0.5})
    rec.close()
    _, rows = read_csv(tmp_path / "t" / "progress.csv")
    assert rows == [{"loss": "1.0"}, {"loss": "0.5"}]


def test_delete_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint_000000"
    checkpoint.mkdir()
    (checkpoint / "f").write_text("x")
    delete_checkpoint(str(checkpoint))
    assert not checkpoint.exists()
    delete_checkpoint(str(checkpoint))  # already gone: no error


# -- trial_dir_name ---------------------------------------------------------


def test_trial_dir_name_is_short_safe_and_deterministic() -> None:
    assert trial_dir_name("train_mnist", 7) == "train_mnist_00007"
    assert trial_dir_name("train_mnist", 7) == trial_dir_name("train_mnist", 7)
    assert trial_dir_name("<lambda>", 0) == "_lambda__00000"
    assert trial_dir_name("a/b\\c d:e", 1) == "a_b_c_d_e_00001"
    assert trial_dir_name("", 3) == "trial_00003"
    assert trial_dir_name("x", 123456) == "x_123456"


def test_trial_dir_name_is_bounded() -> None:
    name = trial_dir_name("very_long_trainable_name_" * 10, 42)
    assert len(name) == 40 + len("_00042")
    assert name.endswith("_00042")


@pytest.mark.parametrize("raw", ["..", "../../etc", "/abs/path", "~user", "ünïcödé", "a\x00b"])
def test_trial_dir_name_never_escapes_the_experiment(raw: str, tmp_path: Path) -> None:
    name = trial_dir_name(raw, 1)
    assert os.sep not in name and "\x00" not in name
    assert name not in (".", "..")
    resolved = (tmp_path / name).resolve()
    assert resolved.parent == tmp_path.resolve()


# -- check_writable ---------------------------------------------------------


def test_check_writable_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    check_writable(str(target))
    assert target.is_dir()
    assert list(target.iterdir()) == [], "the probe file is removed"


def test_check_writable_error_names_the_argument_and_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    path = str(blocker / "results")
    with pytest.raises(ValueError) as info:
        check_writable(path)
    message = str(info.value)
    assert message.startswith("RunConfig(storage_path=...): cannot write to ")
    assert repr(path) in message
    assert "every worker" in message
    assert info.value.__cause__ is None


def test_check_writable_custom_argument(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"^Tuner\.restore\(path=\.\.\.\): cannot write to"):
        check_writable(str(blocker), argument="Tuner.restore(path=...)")


# -- write_experiment_state -------------------------------------------------


def test_write_experiment_state_writes_and_replaces(tmp_path: Path) -> None:
    write_experiment_state(str(tmp_path), {"name": "exp", "trials": [1]})
    write_experiment_state(
        str(tmp_path), {"name": "exp", "trials": [1, 2], "best": np.float64(0.5)}
    )
    state = json.loads((tmp_path / "experiment_state.json").read_text())
    assert state == {"name": "exp", "trials": [1, 2], "best": 0.5}
    assert sorted(os.listdir(tmp_path)) == ["experiment_state.json"], "no temporary file is left"


def test_write_experiment_state_keeps_the_old_file_if_writing_fails(tmp_path: Path) -> None:
    write_experiment_state(str(tmp_path), {"name": "old"})
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        write_experiment_state(str(tmp_path), {"name": "new", "bad": circular})
    assert json.loads((tmp_path / "experiment_state.json").read_text()) == {"name": "old"}


def test_write_experiment_state_uses_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        assert json.loads(Path(src).read_text()) == {"v": 2}, "fully written before the swap"
        calls.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_experiment_state(str(tmp_path), {"v": 2})
    assert calls == [
        (str(tmp_path / "experiment_state.json.tmp"), str(tmp_path / "experiment_state.json"))
    ]


# -- small helpers ----------------------------------------------------------


#: Three results of a finished trial as result.json holds them: only the last is done.
THREE_FINISHED = [{"i": 0, "done": False}, {"i": 1, "done": False}, {"i": 2, "done": True}]


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_finish_rewrites_the_last_line_in_place(tmp_path):
    recorder = TrialRecorder(str(tmp_path / "t"))
    for i in range(3):
        recorder.append({"i": i, "done": False})
    recorder.finish()
    assert json_lines(tmp_path / "t" / "result.json") == THREE_FINISHED
    # A fresh recorder for the same directory (a new experiment) starts the file afresh.
    again = TrialRecorder(str(tmp_path / "t"))
    again.append({"i": 9, "done": False})
    again.close()
    assert (tmp_path / "t" / "result.json").read_text().count("\n") == 1


def test_to_json_writes_numpy_values_as_numbers() -> None:
    assert json.loads(to_json({"x": np.int32(4), "y": np.float32(2.5)})) == {"x": 4, "y": 2.5}


@pytest.mark.parametrize("flushed", [0, 2, 3])
def test_finish_marks_the_last_result_done_whether_or_not_it_was_written(tmp_path, flushed):
    """The last line still in memory (a short trial's results and its end arrive in one
    turn of the loop) is changed there; one already written is rewritten in place."""
    import csv

    recorder = TrialRecorder(str(tmp_path / "t"))
    for i in range(3):
        recorder.remember({"i": i, "done": False})
        recorder.write_last()
        if i + 1 == flushed:
            recorder.flush()
    recorder.finish()
    assert json_lines(tmp_path / "t" / "result.json") == THREE_FINISHED
    with open(tmp_path / "t" / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["i"], row["done"]) for row in rows] == [
        ("0", "False"),
        ("1", "False"),
        ("2", "True"),
    ]
    assert recorder.rows[-1] == {"i": 2, "done": True}
