"""run_trial, the task that runs one trial on a worker, driven by a fake emit (no cluster)."""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dasktune as tune
from dasktune._protocol import Message
from dasktune.decision_points import DecisionPoints
from dasktune.trainable import session as session_mod
from dasktune.trainable._trial_run import run_trial
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.diagnostics import accepts_params
from dasktune.trainable.session import CONTINUE, PAUSE, STOP, RunSpec, TrialContext, deliver
from dasktune.trainable.trainable import Trainable


def make_spec(tmp_path: Path, **overrides: Any) -> RunSpec:
    context = TrialContext(
        trial_id="trial_a",
        trial_name="train_00000",
        trial_dir=str(tmp_path / "trial"),
        experiment_name="exp",
        experiment_path=str(tmp_path),
    )
    fields: dict[str, Any] = dict(
        run_id=f"run-{uuid.uuid4().hex}",
        context=context,
        config={"steps": 3, "lr": 0.1},
        topic="topic",
        decision_points=(),
    )
    fields.update(overrides)
    return RunSpec(**fields)


class FakeDriver:
    """Collects messages; answers decision points (in order) from its own thread."""

    def __init__(self, answers: Sequence[str] = ()) -> None:
        self.messages: list[dict[str, Any]] = []
        self.answers = list(answers)
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def emit(self, message: Message) -> None:
        wire = message.to_wire()  # what travels to the driver
        self.messages.append(wire)
        self._inbox.put(wire)

    def _serve(self) -> None:
        while (message := self._inbox.get()) is not None:
            if message.get("wait"):
                deliver(
                    message["run"],
                    self.answers.pop(0) if self.answers else CONTINUE,
                    message["seq"],
                )

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=5)

    def kinds(self) -> list[str]:
        return [m["kind"] for m in self.messages]

    def results(self) -> list[dict[str, Any]]:
        return [m["result"] for m in self.messages if m["kind"] == "result"]

    def checkpoints(self) -> list[str]:
        return [m["checkpoint"] for m in self.messages if m.get("checkpoint")]


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    fake = FakeDriver()
    yield fake
    fake.close()


def run(
    tmp_path: Path,
    trainable: Any,
    driver: FakeDriver,
    params: dict[str, Any] | None = None,
    checkpoint_config: tuple[int, bool] = (0, False),
    **spec: Any,
) -> Any:
    return run_trial(
        make_spec(tmp_path, **spec), trainable, params or {}, checkpoint_config, driver.emit
    )


# -- function trainables ----------------------------------------------------


def test_function_trainable_finishes(tmp_path: Path, driver: FakeDriver) -> None:
    def train(config: dict[str, Any]) -> dict[str, Any]:
        for step in range(config["steps"]):
            tune.report({"loss": 1.0 / (step + 1)})
        return {"final": True}

    outcome = run(tmp_path, train, driver)
    assert outcome.status == "finished"
    # The returned metrics are the last result, as in Ray Tune.
    assert (outcome.num_reports, outcome.iteration) == (4, 4)
    assert outcome.error is None and outcome.error_type is None
    assert driver.kinds() == ["start", "result", "result", "result", "result"]
    assert [r.get("loss") for r in driver.results()] == [1.0, 0.5, pytest.approx(1 / 3), None]
    assert driver.results()[-1]["final"] is True
    assert os.path.isdir(tmp_path / "trial")
    # The session is gone once the trial ended.
    assert session_mod._current() is None
    assert outcome.run_id not in session_mod._MAILBOXES


def test_a_result_with_done_true_finishes_a_function_trainable(
    tmp_path: Path, driver: FakeDriver
) -> None:
    after: list[int] = []

    def train(config: dict[str, Any]) -> None:
        for step in range(10):
            tune.report({"loss": step, "done": np.bool_(step >= 2)})  # numpy's bool, as computed
            after.append(step)

    outcome = run(tmp_path, train, driver)
    assert outcome.status == "finished", "as if it had returned, not stopped"
    assert (outcome.num_reports, outcome.iteration) == (3, 3)
    assert [r["loss"] for r in driver.results()] == [0, 1, 2]
    assert after == [0, 1], "nothing runs past the result that said done"


def test_a_return_value_that_is_not_a_dict_is_ignored(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, lambda config: [1, 2, 3], driver)
    assert outcome.status == "finished" and outcome.num_reports == 0


def test_params_are_passed_as_keywords(tmp_path: Path, driver: FakeDriver) -> None:
    seen: list[Any] = []

    def train(config: dict[str, Any], data: list[int]) -> None:
        seen.append(data)

    assert run(tmp_path, train, driver, params={"data": [1, 2]}).status == "finished"
    assert seen == [[1, 2]]


def test_function_trainable_stopped_at_a_decision_point(tmp_path: Path) -> None:
    after_stop: list[int] = []

    def train(config: dict[str, Any]) -> None:
        for step in range(10):
            try:
                tune.report({"step": step})
            except Exception:  # a user's broad except must not swallow the stop
                pytest.fail("StopTrial was caught by `except Exception`")
            after_stop.append(step)

    driver = FakeDriver(answers=[CONTINUE, STOP])
    try:
        outcome = run(tmp_path, train, driver, decision_points=(DecisionPoints.always(),))
    finally:
        driver.close()
    assert outcome.status == "stopped"
    assert (outcome.num_reports, outcome.iteration) == (2, 2)
    assert after_stop == [0], "no step may run past the result that stopped the trial"
    assert outcome.error is None


def test_function_trainable_paused(tmp_path: Path) -> None:
    def train(config: dict[str, Any]) -> None:
        for step in range(10):
            tune.report({"step": step})

    driver = FakeDriver(answers=[PAUSE])
    try:
        outcome = run(tmp_path, train, driver, decision_points=(DecisionPoints.always(),))
    finally:
        driver.close()
    assert outcome.status == "paused"
    assert outcome.num_reports == 1


def test_function_trainable_error_carries_the_traceback(tmp_path: Path, driver: FakeDriver) -> None:
    def exploding_train(config: dict[str, Any]) -> None:
        tune.report({"loss": 1.0})
        raise ValueError("boom at step 1")

    outcome = run(tmp_path, exploding_train, driver)
    assert outcome.status == "error"
    assert outcome.error_type == "ValueError"
    assert outcome.error.startswith("Traceback (most recent call last)")
    assert "exploding_train" in outcome.error
    assert "ValueError: boom at step 1" in outcome.error
    assert (outcome.num_reports, outcome.iteration) == (1, 1)
    assert session_mod._current() is None


def test_bad_report_is_an_error_outcome(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, lambda config: tune.report(0.5), driver)  # type: ignore[arg-type]
    assert outcome.status == "error"
    assert outcome.error_type == "TypeError"
    assert "metrics must be a dict" in outcome.error


def test_function_trainable_resumes_from_checkpoint(tmp_path: Path, driver: FakeDriver) -> None:
    old = tmp_path / "trial" / "checkpoint_000000"
    old.mkdir(parents=True)
    (old / "step.txt").write_text("4")
    new_state = tmp_path / "scratch"
    new_state.mkdir()

    def train(config: dict[str, Any]) -> None:
        checkpoint = tune.get_checkpoint()
        with checkpoint.as_directory() as directory:  # type: ignore[union-attr]
            start = int(Path(directory, "step.txt").read_text())
        (new_state / "step.txt").write_text(str(start + 1))
        tune.report({"step": start + 1}, checkpoint=Checkpoint.from_directory(new_state))

    outcome = run(
        tmp_path, train, driver, checkpoint_path=str(old), start_iteration=4, checkpoint_index=1
    )
    assert outcome.status == "finished"
    (result,) = driver.results()
    assert result["step"] == 5 and result["training_iteration"] == 5
    assert driver.checkpoints() == [str(tmp_path / "trial" / "checkpoint_000001")]


# -- class trainables -------------------------------------------------------


class Counter(Trainable):
    """Counts steps; ``done`` after ``config['steps']``; saves its count."""

    instances: list[Counter] = []

    def setup(self, config: dict[str, Any], offset: int = 0) -> None:
        self.count = offset
        self.saved_dirs: list[str] = []
        self.loaded: list[Any] = []
        self.cleaned_up = False
        Counter.instances.append(self)

    def step(self) -> dict[str, Any]:
        self.count += 1
        return {"count": self.count, "done": self.count >= self.config["steps"]}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.saved_dirs.append(checkpoint_dir)
        Path(checkpoint_dir, "count.txt").write_text(str(self.count))

    def load_checkpoint(self, checkpoint_dir: Any) -> None:
        self.loaded.append(checkpoint_dir)
        self.count = int(Path(checkpoint_dir, "count.txt").read_text())

    def cleanup(self) -> None:
        self.cleaned_up = True


@pytest.fixture(autouse=True)
def fresh_instances() -> Iterator[None]:
    Counter.instances = []
    yield


def _checkpoint_counts(paths: list[str]) -> list[str]:
    return [Path(p, "count.txt").read_text() for p in paths]


def test_class_trainable_runs_until_done(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, Counter, driver, params={"offset": 10}, config={"steps": 13})
    assert outcome.status == "finished"
    assert (outcome.num_reports, outcome.iteration) == (3, 3)
    results = driver.results()
    assert [r["count"] for r in results] == [11, 12, 13]
    assert [r["training_iteration"] for r in results] == [1, 2, 3]
    assert all("done" in r and r["done"] is False for r in results), "step's done is consumed"
    (instance,) = Counter.instances
    assert instance.cleaned_up
    assert instance.iteration == instance.training_iteration == 3
    assert driver.checkpoints() == []


def test_class_checkpoint_frequency_and_at_end(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, Counter, driver, checkpoint_config=(2, True), config={"steps": 5})
    assert outcome.status == "finished"
    trial_dir = tmp_path / "trial"
    expected = [str(trial_dir / f"checkpoint_{i:06d}") for i in range(3)]
    assert driver.checkpoints() == expected
    assert _checkpoint_counts(expected) == ["2", "4", "5"]
    # Iterations 2 and 4 travel with their result; the final one as a checkpoint message.
    by_kind = [
        (m["kind"], m.get("iteration", m.get("result", {}).get("training_iteration")))
        for m in driver.messages
        if m.get("checkpoint")
    ]
    assert by_kind == [("result", 2), ("result", 4), ("checkpoint", 5)]
    # The trainable's temporary directories are removed once copied.
    (instance,) = Counter.instances
    assert len(instance.saved_dirs) == 3
    assert not any(os.path.exists(d) for d in instance.saved_dirs)


def test_class_checkpoint_at_end_not_repeated_when_frequency_hit_the_end(
    tmp_path: Path, driver: FakeDriver
) -> None:
    run(tmp_path, Counter, driver, checkpoint_config=(2, True), config={"steps": 4})
    assert [os.path.basename(p) for p in driver.checkpoints()] == [
        "checkpoint_000000",
        "checkpoint_000001",
    ]
    assert [m["kind"] for m in driver.messages if m.get("checkpoint")] == ["result", "result"]


def test_class_without_checkpoint_config_saves_nothing(tmp_path: Path, driver: FakeDriver) -> None:
    run(tmp_path, Counter, driver, checkpoint_config=(0, False), config={"steps": 4})
    assert driver.checkpoints() == []
    assert Counter.instances[0].saved_dirs == []


def test_class_stop_then_restore_continues_iterations(tmp_path: Path) -> None:
    stopper = FakeDriver(answers=[STOP])
    try:
        first = run(
            tmp_path,
            Counter,
            stopper,
            checkpoint_config=(2, False),
            config={"steps": 100},
            decision_points=(DecisionPoints.at("training_iteration", [3]),),
        )
    finally:
        stopper.close()
    assert first.status == "stopped" and first.iteration == 3
    assert Counter.instances[0].cleaned_up
    (saved,) = stopper.checkpoints()  # iteration 2; no at_end checkpoint was asked for
    assert Path(saved, "count.txt").read_text() == "2"

    resumed = FakeDriver()
    try:
        second = run(
            tmp_path,
            Counter,
            resumed,
            checkpoint_config=(2, False),
            config={"steps": 5},
            checkpoint_path=saved,
            start_iteration=2,
            checkpoint_index=1,
        )
    finally:
        resumed.close()
    assert second.status == "finished"
    instance = Counter.instances[1]
    assert instance.loaded == [saved]
    results = resumed.results()
    assert [r["training_iteration"] for r in results] == [3, 4, 5]
    assert [r["count"] for r in results] == [3, 4, 5]
    # Frequency counts the trial's iterations across runs; the index continues.
    assert [os.path.basename(p) for p in resumed.checkpoints()] == ["checkpoint_000001"]
    assert Path(resumed.checkpoints()[0], "count.txt").read_text() == "4"


def test_class_stopped_with_checkpoint_at_end_saves_its_state(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[STOP])
    try:
        outcome = run(
            tmp_path,
            Counter,
            driver,
            checkpoint_config=(0, True),
            config={"steps": 100},
            decision_points=(DecisionPoints.at("training_iteration", [2]),),
        )
    finally:
        driver.close()
    assert outcome.status == "stopped"
    assert driver.messages[-1]["kind"] == "checkpoint"
    assert _checkpoint_counts(driver.checkpoints()) == ["2"]


def test_class_paused_saves_its_state_even_without_at_end(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[PAUSE])
    try:
        outcome = run(
            tmp_path,
            Counter,
            driver,
            checkpoint_config=(0, False),
            config={"steps": 100},
            decision_points=(DecisionPoints.at("training_iteration", [2]),),
        )
    finally:
        driver.close()
    assert outcome.status == "paused"
    assert _checkpoint_counts(driver.checkpoints()) == ["2"]


class DictState(Trainable):
    """Returns its state from save_checkpoint, as Ray Tune's Trainable API allows."""

    loaded: list[Any] = []

    def setup(self, config: dict[str, Any]) -> None:
        self.weight = config.get("weight", 0)

    def step(self) -> dict[str, Any]:
        self.weight += 1
        return {"weight": self.weight, "done": self.iteration + 1 >= self.config["steps"]}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"weight": self.weight}

    def load_checkpoint(self, checkpoint: Any) -> None:
        DictState.loaded.append(checkpoint)
        self.weight = checkpoint["weight"]


def test_class_state_returned_by_save_checkpoint_reaches_load_checkpoint(
    tmp_path: Path, driver: FakeDriver
) -> None:
    DictState.loaded = []
    first = run(tmp_path, DictState, driver, checkpoint_config=(0, True), config={"steps": 2})
    assert first.status == "finished"
    (saved,) = driver.checkpoints()
    second = run(
        tmp_path,
        DictState,
        driver,
        config={"steps": 4},
        checkpoint_path=saved,
        start_iteration=2,
        checkpoint_index=1,
    )
    assert DictState.loaded == [{"weight": 2}]
    assert second.status == "finished"


class NotADict(Trainable):
    cleaned_up = False

    def step(self) -> Any:
        return 0.5

    def cleanup(self) -> None:
        NotADict.cleaned_up = True


def test_step_returning_a_non_dict_is_an_error(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, NotADict, driver)
    assert outcome.status == "error"
    assert outcome.error_type == "TypeError"
    assert "NotADict.step() returned float" in outcome.error
    assert outcome.num_reports == 0
    assert NotADict.cleaned_up


def test_trainable_without_step_is_an_error(tmp_path: Path, driver: FakeDriver) -> None:
    outcome = run(tmp_path, Trainable, driver)
    assert outcome.status == "error"
    assert outcome.error_type == "NotImplementedError"
    assert "Trainable.step() is not implemented" in outcome.error


def test_class_error_in_setup_is_an_error_outcome(tmp_path: Path, driver: FakeDriver) -> None:
    class BadSetup(Trainable):
        def setup(self, config: dict[str, Any]) -> None:
            raise KeyError("data")

    outcome = run(tmp_path, BadSetup, driver)
    assert outcome.status == "error" and outcome.error_type == "KeyError"


def test_accepts_params() -> None:
    def train(config: dict[str, Any], data: Any) -> None: ...

    assert accepts_params(train, ["data"])
    assert not accepts_params(train, ["other"])
    assert accepts_params(lambda config, **kw: None, ["anything"])


# -- reliability -------------------------------------------------------------


def test_a_second_attempt_of_the_same_run_does_nothing(tmp_path: Path, driver: FakeDriver) -> None:
    """Dask re-runs a task whose worker died; the run's claim makes the re-run a no-op."""
    calls: list[int] = []

    def train(config: dict[str, Any]) -> None:
        calls.append(1)
        tune.report({"loss": 1.0})

    spec = make_spec(tmp_path)
    first = run_trial(spec, train, {}, (0, False), driver.emit)
    second = run_trial(spec, train, {}, (0, False), driver.emit)
    assert first.status == "finished" and second.status == "duplicate"
    assert calls == [1], "the trainable ran once"
    assert driver.kinds() == ["start", "result"]


def test_the_spool_ends_with_the_outcome(tmp_path: Path, driver: FakeDriver) -> None:
    from dasktune.storage.layout import spool_file_name
    from dasktune.storage.spool import read_spool

    def train(config: dict[str, Any]) -> None:
        for step in range(3):
            tune.report({"loss": 1.0 / (step + 1)})

    spec = make_spec(tmp_path)
    outcome = run_trial(spec, train, {}, (0, False), driver.emit)
    records = read_spool(os.path.join(spec.context.trial_dir, spool_file_name(spec.run_id)))
    assert [r.seq for r in records.results] == [1, 2, 3]
    expected = outcome.to_wire()
    del expected["exception"]  # bytes: only the future carries the pickled exception
    assert records.end == expected
    assert records.end["num_reports"] == 3 and records.end["status"] == "finished"


def test_a_vanished_checkpoint_is_a_clear_error(tmp_path: Path, driver: FakeDriver) -> None:
    gone = str(tmp_path / "trial" / "checkpoint_000004")
    outcome = run(tmp_path, Counter, driver, checkpoint_path=gone)
    assert outcome.status == "error" and outcome.error_type == "FileNotFoundError"
    assert f"checkpoint {gone}, which is gone" in outcome.error
    assert "filesystem every worker can reach" in outcome.error


class FailingSave(Counter):
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "half.txt"), "w") as f:
            f.write("half")
        raise OSError("disk trouble")


def test_a_failing_save_checkpoint_leaves_no_temporary_directory(
    tmp_path: Path, driver: FakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    outcome = run(tmp_path, FailingSave, driver, checkpoint_config=(1, False))
    assert outcome.status == "error" and "disk trouble" in outcome.error
    assert os.listdir(scratch) == []
