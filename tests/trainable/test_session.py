"""The worker-side session behind ``tune.report``: fields, decision points, checkpoints.

No cluster: a fake ``emit`` collects the messages a trial would publish, and a
fake driver thread answers decision points with :func:`session.deliver`.
"""

from __future__ import annotations

import datetime
import os
import queue
import threading
import time
import types
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasktune._protocol import Message
from dasktune.decision_points import DecisionPoints
from dasktune.trainable import session as session_mod
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.session import (
    CONTINUE,
    PAUSE,
    STOP,
    DecisionTimeoutError,
    RunSpec,
    Session,
    StopTrial,
    TrialContext,
    deliver,
    get_checkpoint,
    get_context,
    report,
    set_session,
)

EVERY_SECOND_ITERATION = DecisionPoints.at("training_iteration", [2, 4])


def make_spec(tmp_path: Path, **overrides: Any) -> RunSpec:
    run_id = overrides.pop("run_id", f"run-{uuid.uuid4().hex}")
    context = TrialContext(
        trial_id="trial_a",
        trial_name="train_00000",
        trial_dir=str(tmp_path / "train_00000"),
        experiment_name="exp",
        experiment_path=str(tmp_path),
        resources={"GPU": 1.0},
    )
    fields: dict[str, Any] = dict(
        run_id=run_id, context=context, config={"lr": 0.1}, topic="topic", decision_points=()
    )
    fields.update(overrides)
    return RunSpec(**fields)


class FakeDriver:
    """Collects a trial's messages; answers each decision point from its own thread."""

    def __init__(self, answers: Sequence[str] = ()) -> None:
        self.messages: list[dict[str, Any]] = []
        self.answers = list(answers)
        self.answered: list[tuple[str, str]] = []
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def emit(self, message: Message) -> None:
        wire = message.to_wire()  # what travels to the driver
        self.messages.append(wire)
        self._inbox.put(wire)

    def _serve(self) -> None:
        while (message := self._inbox.get()) is not None:
            if message.get("wait") and self.answers:
                decision = self.answers.pop(0)
                self.answered.append((message["run"], decision))
                deliver(message["run"], decision, message["seq"])

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=5)

    def results(self) -> list[dict[str, Any]]:
        return [m["result"] for m in self.messages if m["kind"] == "result"]


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    fake = FakeDriver()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    yield
    set_session(None)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def read(self) -> float:
        return self.now


# -- the fields of a result -------------------------------------------------


def test_report_fills_in_ray_tune_fields(
    tmp_path: Path, driver: FakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(1000.0)
    monkeypatch.setattr(
        session_mod, "time", types.SimpleNamespace(time=clock.read, monotonic=time.monotonic)
    )
    spec = make_spec(tmp_path, start_iteration=3, start_time_total=10.0)
    session = Session(spec, driver.emit)
    metrics = {"loss": 0.5}

    clock.now = 1002.5
    assert session.report(metrics) == CONTINUE
    clock.now = 1003.25
    assert session.report({"loss": 0.25}) == CONTINUE

    first, second = driver.results()
    assert metrics == {"loss": 0.5}, "the user's dict must not be changed"
    assert first["loss"] == 0.5 and second["loss"] == 0.25
    assert [first["training_iteration"], second["training_iteration"]] == [4, 5]
    assert [first["iterations_since_restore"], second["iterations_since_restore"]] == [1, 2]
    assert first["time_this_iter_s"] == pytest.approx(2.5)
    assert second["time_this_iter_s"] == pytest.approx(0.75)
    # time_total_s counts the time of earlier runs of the trial (start_time_total).
    assert first["time_total_s"] == pytest.approx(12.5)
    assert second["time_total_s"] == pytest.approx(13.25)
    assert second["time_since_restore"] == pytest.approx(3.25)
    assert first["timestamp"] == 1002 and isinstance(first["timestamp"], int)
    assert first["trial_id"] == second["trial_id"] == "trial_a"
    assert first["done"] is False and second["done"] is False
    assert first["pid"] == os.getpid()
    assert first["date"] == datetime.datetime.fromtimestamp(1002.5).strftime("%Y-%m-%d_%H-%M-%S")
    assert first["node_ip"] == "127.0.0.1", "no worker address: this machine"
    assert "config" not in first, "the driver adds it: it would travel with every result"
    assert session.iteration == 5 and session.num_reports == 2


@pytest.mark.parametrize(
    "address, ip",
    [
        ("tcp://10.1.2.3:40123", "10.1.2.3"),
        ("tls://node-7.cluster:8786", "node-7.cluster"),
        ("tcp://[::1]:40123", "::1"),
        ("", "127.0.0.1"),
    ],
)
def test_node_ip_is_the_host_of_the_worker_s_address(address: str, ip: str) -> None:
    assert session_mod._node_ip(address) == ip


def test_result_message_shape_without_decision_points(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    session = Session(spec, driver.emit)
    session.report({"acc": 1})
    (message,) = driver.messages
    assert message["kind"] == "result"
    assert message["run"] == spec.run_id
    assert message["checkpoint"] is None
    assert message["wait"] is False
    assert driver.answered == []


# -- decision points --------------------------------------------------------


def test_report_waits_only_at_decision_points(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[CONTINUE, CONTINUE])
    try:
        session = Session(
            make_spec(tmp_path, decision_points=(EVERY_SECOND_ITERATION,)), driver.emit
        )
        decisions = [session.report({"i": i}) for i in range(5)]
    finally:
        driver.close()
    assert decisions == [CONTINUE] * 5
    assert [m["wait"] for m in driver.messages] == [False, True, False, True, False]
    assert [d for _, d in driver.answered] == [CONTINUE, CONTINUE]


def test_module_report_raises_stop_trial_on_stop(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[STOP])
    try:
        session = Session(
            make_spec(tmp_path, decision_points=(DecisionPoints.always(),)), driver.emit
        )
        set_session(session)
        with pytest.raises(StopTrial) as info:
            report({"loss": 1.0})
    finally:
        driver.close()
    assert info.value.decision == STOP
    assert not isinstance(info.value, Exception), "an `except Exception` must not swallow it"
    assert session.num_reports == 1


def test_module_report_raises_stop_trial_on_pause(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[PAUSE])
    try:
        set_session(
            Session(make_spec(tmp_path, decision_points=(DecisionPoints.always(),)), driver.emit)
        )
        with pytest.raises(StopTrial) as info:
            report({"loss": 1.0})
    finally:
        driver.close()
    assert info.value.decision == PAUSE


def test_module_report_returns_none_on_continue(tmp_path: Path) -> None:
    driver = FakeDriver(answers=[CONTINUE])
    try:
        set_session(
            Session(make_spec(tmp_path, decision_points=(DecisionPoints.always(),)), driver.emit)
        )
        assert report({"loss": 1.0}) is None
    finally:
        driver.close()


def test_stop_is_sticky_against_a_later_continue(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    session = Session(spec, driver.emit)
    deliver(spec.run_id, STOP)
    deliver(spec.run_id, CONTINUE)
    assert session.pending_decision() == STOP
    assert session.report({"loss": 1.0}) == STOP


def test_pause_is_sticky_against_a_later_continue(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    session = Session(spec, driver.emit)
    deliver(spec.run_id, PAUSE)
    deliver(spec.run_id, CONTINUE)
    assert session.pending_decision() == PAUSE


def test_stop_sent_between_decision_points_ends_the_next_report(
    tmp_path: Path, driver: FakeDriver
) -> None:
    spec = make_spec(tmp_path)
    set_session(Session(spec, driver.emit))
    report({"loss": 1.0})
    deliver(spec.run_id, STOP)
    with pytest.raises(StopTrial):
        report({"loss": 0.5})
    assert [m["wait"] for m in driver.messages] == [False, False]


def test_decision_delivered_before_the_session_starts_is_kept(
    tmp_path: Path, driver: FakeDriver
) -> None:
    spec = make_spec(tmp_path)
    deliver(spec.run_id, STOP)  # the driver answers a "start" message of a run it already stopped
    session = Session(spec, driver.emit)
    assert session.pending_decision() == STOP


def test_no_pending_decision_by_default(tmp_path: Path, driver: FakeDriver) -> None:
    session = Session(make_spec(tmp_path), driver.emit)
    assert session.pending_decision() is None
    deliver(session.spec.run_id, CONTINUE)
    assert session.pending_decision() is None


def test_cancelled_predicate_ends_a_wait_with_stop(tmp_path: Path, driver: FakeDriver) -> None:
    cancelled = threading.Event()

    def emit(message: dict[str, Any]) -> None:
        driver.emit(message)
        cancelled.set()  # the driver cancels the future instead of answering

    session = Session(
        make_spec(tmp_path, decision_points=(DecisionPoints.always(),)),
        emit,
        cancelled=cancelled.is_set,
    )
    assert session.pending_decision() is None
    assert session.report({"loss": 1.0}) == STOP
    assert session.pending_decision() == STOP


def test_decision_timeout_fails_the_run(tmp_path: Path, driver: FakeDriver) -> None:
    """No decision at all is a failure (FailureConfig decides), never a quiet stop."""
    session = Session(
        make_spec(tmp_path, decision_points=(DecisionPoints.always(),), decision_timeout=0.0),
        driver.emit,
    )
    with pytest.raises(DecisionTimeoutError, match="decision-timeout"):
        session.report({"loss": 1.0})


def test_cancelled_run_stops_at_its_next_report(tmp_path: Path, driver: FakeDriver) -> None:
    cancelled = threading.Event()
    session = Session(make_spec(tmp_path), driver.emit, cancelled=cancelled.is_set)
    assert session.report({"loss": 1.0}) == CONTINUE
    cancelled.set()
    assert session.report({"loss": 0.5}) == STOP
    assert [m["wait"] for m in driver.messages] == [False, False]


def test_cancelled_shows_as_pending_stop(tmp_path: Path, driver: FakeDriver) -> None:
    session = Session(make_spec(tmp_path), driver.emit, cancelled=lambda: True)
    assert session.pending_decision() == STOP


def test_decision_point_after_a_stop_does_not_wait(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path, decision_points=(DecisionPoints.always(),), decision_timeout=30.0)
    session = Session(spec, driver.emit)
    deliver(spec.run_id, STOP)  # e.g. the experiment's wind-down reached the worker first
    decisions: list[str] = []
    worker = threading.Thread(
        target=lambda: decisions.append(session.report({"loss": 1.0})), daemon=True
    )
    worker.start()
    worker.join(timeout=1.0)
    still_waiting = worker.is_alive()
    if still_waiting:
        deliver(spec.run_id, STOP)  # release the thread
        worker.join(timeout=5)
    assert not still_waiting
    assert decisions == [STOP]


def test_close_forgets_the_mailbox(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    session = Session(spec, driver.emit)
    deliver(spec.run_id, STOP)
    session.close()
    assert spec.run_id not in session_mod._MAILBOXES


# -- checkpoints ------------------------------------------------------------


def _make_checkpoint_dir(root: Path, content: str) -> Checkpoint:
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.txt").write_text(content)
    return Checkpoint.from_directory(root)


def test_checkpoint_is_copied_into_the_trial_dir(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path, checkpoint_index=3)
    os.makedirs(spec.context.trial_dir)
    session = Session(spec, driver.emit)
    set_session(session)

    report({"loss": 1.0}, checkpoint=_make_checkpoint_dir(tmp_path / "tmp_a", "first"))
    report({"loss": 0.5})
    report({"loss": 0.2}, checkpoint=_make_checkpoint_dir(tmp_path / "tmp_b", "second"))

    trial_dir = Path(spec.context.trial_dir)
    first, second = trial_dir / "checkpoint_000003", trial_dir / "checkpoint_000004"
    assert (first / "state.txt").read_text() == "first"
    assert (second / "state.txt").read_text() == "second"
    assert [m["checkpoint"] for m in driver.messages] == [str(first), None, str(second)]
    assert session.checkpoint_index == 5
    assert get_checkpoint() == Checkpoint(second)
    assert get_checkpoint().path == str(second)


def test_checkpoint_source_may_be_deleted_after_report(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    session = Session(spec, driver.emit)
    source = _make_checkpoint_dir(tmp_path / "tmp", "x")
    session.report({"loss": 1.0}, source)
    (tmp_path / "tmp" / "state.txt").unlink()
    with session.checkpoint.as_directory() as directory:  # type: ignore[union-attr]
        assert Path(directory, "state.txt").read_text() == "x"


def test_a_dict_checkpoint_is_stored_and_its_temporary_directory_removed(
    tmp_path: Path, driver: FakeDriver
) -> None:
    session = Session(make_spec(tmp_path), driver.emit)
    set_session(session)
    made = Checkpoint.from_dict({"epoch": 1, "model": {"w": [1.0, 2.0]}})
    report({"loss": 1.0}, checkpoint=made)
    assert not os.path.exists(made.path), "moved into the trial, not left in /tmp"
    stored = get_checkpoint()
    assert stored is not None and stored.path.startswith(str(tmp_path))
    assert stored.to_dict() == {"epoch": 1, "model": {"w": [1.0, 2.0]}}


def test_attach_checkpoint_emits_a_checkpoint_message(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path, checkpoint_index=1)
    session = Session(spec, driver.emit)
    session.report({"loss": 1.0})
    session.attach_checkpoint(_make_checkpoint_dir(tmp_path / "tmp", "final"))
    target = os.path.join(spec.context.trial_dir, "checkpoint_000001")
    assert driver.messages[-1] == {
        "kind": "checkpoint",
        "run": spec.run_id,
        "worker": "",
        "checkpoint": target,
        "iteration": 1,
    }
    assert Path(target, "state.txt").read_text() == "final"


def test_checkpoint_already_in_place_is_not_copied_onto_itself(
    tmp_path: Path, driver: FakeDriver
) -> None:
    spec = make_spec(tmp_path)
    target = Path(spec.context.trial_dir) / "checkpoint_000000"
    session = Session(spec, driver.emit)
    session.report({"loss": 1.0}, _make_checkpoint_dir(target, "in place"))
    assert (target / "state.txt").read_text() == "in place"
    assert driver.messages[-1]["checkpoint"] == str(target)


def test_reused_checkpoint_index_does_not_keep_stale_files(
    tmp_path: Path, driver: FakeDriver
) -> None:
    spec = make_spec(tmp_path, checkpoint_index=2)
    stale = Path(spec.context.trial_dir) / "checkpoint_000002"
    stale.mkdir(parents=True)
    (stale / "shard_7.bin").write_text("from a run whose result never reached the driver")
    session = Session(spec, driver.emit)
    session.report({"loss": 1.0}, _make_checkpoint_dir(tmp_path / "tmp", "fresh"))
    stored = Path(driver.messages[-1]["checkpoint"])
    assert sorted(os.listdir(stored)) == ["state.txt"], "never merged with a stale copy"
    assert (stored / "state.txt").read_text() == "fresh"


# -- the module-level API ---------------------------------------------------


def test_get_checkpoint_outside_a_session_is_none() -> None:
    set_session(None)
    assert get_checkpoint() is None


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: get_context(), "get_context"),
        (lambda: report({"loss": 1.0}), "report"),
    ],
)
def test_outside_a_session_errors_name_the_function(call: Any, name: str) -> None:
    set_session(None)
    with pytest.raises(
        RuntimeError, match=rf"tune\.{name}\(\) was called outside a dasktune trial"
    ):
        call()


def test_get_checkpoint_inside_a_session_is_the_restore_checkpoint(
    tmp_path: Path, driver: FakeDriver
) -> None:
    restore_from = tmp_path / "old" / "checkpoint_000002"
    restore_from.mkdir(parents=True)
    set_session(Session(make_spec(tmp_path, checkpoint_path=str(restore_from)), driver.emit))
    assert get_checkpoint() == Checkpoint(restore_from)


def test_get_checkpoint_inside_a_fresh_session_is_none(tmp_path: Path, driver: FakeDriver) -> None:
    set_session(Session(make_spec(tmp_path), driver.emit))
    assert get_checkpoint() is None


def test_get_context_inside_a_session(tmp_path: Path, driver: FakeDriver) -> None:
    spec = make_spec(tmp_path)
    set_session(Session(spec, driver.emit))
    context = get_context()
    assert context.get_trial_id() == "trial_a"
    assert context.get_trial_name() == "train_00000"
    assert context.get_trial_dir() == spec.context.trial_dir
    assert context.get_experiment_name() == "exp"
    assert context.get_experiment_path() == str(tmp_path)
    resources = context.get_trial_resources()
    assert resources == {"GPU": 1.0}
    resources["GPU"] = 8.0
    assert context.get_trial_resources() == {"GPU": 1.0}, "a copy, not the context's own dict"


def test_session_is_per_thread_and_a_lone_trial_s_helper_threads_share_it(
    tmp_path: Path, driver: FakeDriver
) -> None:
    """As in Ray Tune, a trial's own helper thread may report; with two trials running in
    one process (two worker threads), a third thread cannot tell whose it is."""
    first = Session(make_spec(tmp_path), driver.emit)
    set_session(first)

    def look() -> Any:
        seen: list[Any] = []
        thread = threading.Thread(target=lambda: seen.append(session_mod._current()))
        thread.start()
        thread.join()
        return seen[0]

    try:
        assert look() is first
        second = Session(make_spec(tmp_path), driver.emit)
        other = threading.Thread(target=lambda: set_session(second))
        other.start()
        other.join()
        assert look() is None and session_mod._current() is first
        session_mod._RUNNING.remove(second)
    finally:
        set_session(None)
    assert look() is None


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize("metrics", [0.5, [("loss", 1.0)], None, "loss"])
def test_report_rejects_metrics_that_are_not_a_dict(
    tmp_path: Path, driver: FakeDriver, metrics: Any
) -> None:
    session = Session(make_spec(tmp_path), driver.emit)
    set_session(session)
    with pytest.raises(TypeError, match=r"tune\.report\(metrics=.*metrics must be a dict"):
        report(metrics)
    assert driver.messages == [] and session.iteration == 0


def test_report_takes_ray_s_older_keyword_form(tmp_path: Path, driver: FakeDriver) -> None:
    session = Session(make_spec(tmp_path), driver.emit)
    set_session(session)
    report(mean_loss=np.float64(0.25), accuracy=0.9)
    report({"mean_loss": 0.5}, accuracy=0.8)  # both: the keywords join the dict
    results = driver.results()
    assert [(r["mean_loss"], r["accuracy"]) for r in results] == [(0.25, 0.9), (0.5, 0.8)]
    assert [r["training_iteration"] for r in results] == [1, 2]
    with pytest.raises(TypeError, match=r"or given as keywords: tune\.report\(mean_accuracy="):
        report(0.5)


@pytest.mark.parametrize("checkpoint", ["/tmp", {"path": "/tmp"}])
def test_report_rejects_a_checkpoint_that_is_not_a_checkpoint(
    tmp_path: Path, driver: FakeDriver, checkpoint: Any
) -> None:
    session = Session(make_spec(tmp_path), driver.emit)
    set_session(session)
    with pytest.raises(TypeError, match=r"Checkpoint\.from_directory"):
        report({"loss": 1.0}, checkpoint=checkpoint)
    assert driver.messages == [] and session.iteration == 0


def test_a_stop_delivered_while_a_decision_point_begins_is_not_lost(tmp_path: Path) -> None:
    """The driver's STOP can land between report() reading the mailbox and clearing its
    event; it must end the wait at once, not after decision_timeout."""
    spec = make_spec(tmp_path, decision_timeout=5.0)
    session = Session(spec, emit=lambda message: None)
    session._tracker.needs_decision = lambda result: True  # every result is a decision point
    clear = session._box.event.clear

    def stop_lands_then_clear() -> None:
        session_mod.deliver(spec.run_id, STOP)  # the event-loop thread, at this very moment
        clear()

    session._box.event.clear = stop_lands_then_clear
    start = time.monotonic()
    assert session.report({"a": 1}) == STOP
    assert time.monotonic() - start < 2.0


# -- reliability: sequence numbers, asking again, the spool --------------------------------------


def test_a_continue_answers_only_results_up_to_its_sequence_number(tmp_path: Path) -> None:
    """A late CONTINUE (sent again for an older result) must not release a newer wait."""
    messages: list[dict[str, Any]] = []
    spec = make_spec(
        tmp_path,
        decision_points=(DecisionPoints.always(),),
        decision_timeout=30.0,
        decision_resend=60.0,
    )
    session = Session(spec, lambda m: messages.append(m.to_wire()))
    deliver(spec.run_id, CONTINUE, 1)
    assert session.report({"loss": 1.0}) == CONTINUE, "result 1 was answered already"
    done: list[Any] = []
    waiter = threading.Thread(
        target=lambda: done.append(session.report({"loss": 0.5})), daemon=True
    )
    waiter.start()
    deliver(spec.run_id, CONTINUE, 1)  # the old answer again
    waiter.join(timeout=1.0)
    assert waiter.is_alive(), "the wait for result 2 ended on the answer for result 1"
    deliver(spec.run_id, CONTINUE, 2)
    waiter.join(timeout=5)
    assert done == [CONTINUE]
    assert [m["seq"] for m in messages if m["kind"] == "result"] == [1, 2]


def test_a_waiting_trial_asks_again_until_answered(tmp_path: Path) -> None:
    messages: list[dict[str, Any]] = []
    spec = make_spec(
        tmp_path,
        decision_points=(DecisionPoints.always(),),
        decision_timeout=30.0,
        decision_resend=0.2,
    )

    def emit(message: Message) -> None:
        messages.append(message.to_wire())
        asked = [m for m in messages if m["kind"] == "waiting"]
        if len(asked) == 2:  # the result and the first decision were lost; answer now
            deliver(spec.run_id, CONTINUE, asked[-1]["seq"])

    session = Session(spec, emit)
    assert session.report({"loss": 1.0}) == CONTINUE
    assert [m["kind"] for m in messages] == ["result", "waiting", "waiting"]
    assert all(m["seq"] == 1 for m in messages)


def test_results_and_checkpoints_are_spooled_before_they_are_sent(tmp_path: Path) -> None:
    from dasktune.storage.spool import SpoolWriter, read_spool

    spec = make_spec(tmp_path)
    spool = SpoolWriter(spec.context.trial_dir, spec.run_id)
    seen_on_disk: list[int] = []

    def emit(message: Message) -> None:  # the driver hears of it only once it is on disk
        seen_on_disk.append(len(read_spool(spool.path).results))

    session = Session(spec, emit, spool=spool)
    session.report({"loss": 1.0})
    session.report({"loss": 0.5}, _make_checkpoint_dir(tmp_path / "src", "w"))
    records = read_spool(spool.path)
    assert seen_on_disk == [1, 2]
    assert [(r.seq, r.result["loss"]) for r in records.results] == [(1, 1.0), (2, 0.5)]
    assert records.results[1].checkpoint == os.path.join(
        spec.context.trial_dir, "checkpoint_000000"
    )


def test_a_checkpoint_never_overwrites_another_runs(tmp_path: Path, driver: FakeDriver) -> None:
    """A run the driver lost touch with may still write checkpoint_000000: take the next name."""
    spec = make_spec(tmp_path)
    taken = _make_checkpoint_dir(Path(spec.context.trial_dir) / "checkpoint_000000", "other run")
    session = Session(spec, driver.emit)
    session.report({"loss": 1.0}, _make_checkpoint_dir(tmp_path / "src", "mine"))
    stored = driver.messages[-1]["checkpoint"]
    assert os.path.basename(stored) == "checkpoint_000001"
    assert (Path(taken) / "state.txt").read_text() == "other run"
    assert not [p for p in os.listdir(spec.context.trial_dir) if ".partial-" in p]


def test_a_checkpoint_request_is_taken_once_and_decides_nothing(
    tmp_path: Path, driver: FakeDriver
) -> None:
    from dasktune._protocol import Decision

    session = Session(make_spec(tmp_path), driver.emit)
    assert session.take_checkpoint_request() is False
    deliver(session.spec.run_id, Decision.CHECKPOINT)
    assert session.pending_decision() is None  # the run goes on
    assert session.take_checkpoint_request() is True
    assert session.take_checkpoint_request() is False  # carried out once
    deliver(session.spec.run_id, STOP)
    deliver(session.spec.run_id, Decision.CHECKPOINT)
    assert session.pending_decision() == STOP  # and undoes no STOP
