"""The worker's outbox: trial messages go to the driver in order, batched, none held back."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from distributed.protocol.serialize import _is_dumpable

from dasktune._protocol import (
    AwaitingDecision,
    ResultReported,
    RunEnded,
    RunOutcome,
    RunStarted,
    RunStatus,
    read_messages,
)
from dasktune.execution._dask import _Outbox


class FakeWorker:
    """Records what log_event was given, as a Dask worker would send it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def log_event(self, topic: str, msg: Any) -> None:
        assert _is_dumpable(msg), msg
        with self.lock:
            self.events.append((topic, msg))

    def messages(self) -> list[Any]:
        with self.lock:
            return [m for _, event in self.events for m in read_messages(event)]


def result(seq: int, wait: bool = False, **metrics: Any) -> ResultReported:
    return ResultReported("r-1", "tcp://w", seq, {"seq": seq, **metrics}, None, wait)


def wait_for(condition: Any) -> None:
    """Wait for the outbox's own thread, without a timing assertion (a loaded machine)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the outbox never sent its messages"
        time.sleep(0.01)


def test_a_message_someone_waits_for_goes_at_once_with_everything_before_it() -> None:
    worker = FakeWorker()
    box = _Outbox.of(worker, "topic-a")
    box.put(RunStarted("r-1", "tcp://w"))
    box.put(result(1))
    box.put(result(2, wait=True))
    # Sent by the time put returns (whether the late flush took the first two or not).
    assert worker.messages() == [RunStarted("r-1", "tcp://w"), result(1), result(2, wait=True)]
    assert {topic for topic, _ in worker.events} == {"topic-a"}


def test_other_messages_follow_within_the_batch_wait_in_their_order() -> None:
    worker = FakeWorker()
    box = _Outbox.of(worker, "topic-b")
    sent = [RunStarted("r-1", "tcp://w")] + [result(seq) for seq in range(1, 6)]
    for message in sent:
        box.put(message)
    wait_for(lambda: len(worker.messages()) == len(sent))
    assert worker.messages() == sent


def test_the_end_of_a_run_and_a_repeated_question_are_sent_at_once() -> None:
    worker = FakeWorker()
    box = _Outbox.of(worker, "topic-c")
    outcome = RunOutcome("r-1", RunStatus.FINISHED, 1, 1)
    box.put(AwaitingDecision("r-1", "tcp://w", 1))
    box.put(RunEnded("r-1", "tcp://w", outcome))
    assert worker.messages() == [
        AwaitingDecision("r-1", "tcp://w", 1),
        RunEnded("r-1", "tcp://w", outcome),
    ]
    assert [event for _, event in worker.events] == [
        AwaitingDecision("r-1", "tcp://w", 1).to_wire(),
        RunEnded("r-1", "tcp://w", outcome).to_wire(),
    ], "a message alone is sent as itself"


def test_values_dask_refuses_are_converted_before_they_join_a_batch() -> None:
    worker = FakeWorker()
    box = _Outbox.of(worker, "topic-d")
    box.put(result(1, loss=np.float64(0.5), shape=(2, 3)))
    box.put(result(2, wait=True, loss=np.float32(0.25)))
    first, second = worker.messages()
    assert first.result["loss"] == 0.5 and type(first.result["loss"]) is float
    assert first.result["shape"] == [2, 3]
    assert second.result["loss"] == 0.25


def test_each_worker_and_topic_has_its_own_box() -> None:
    one, two = FakeWorker(), FakeWorker()
    _Outbox.of(one, "topic-e").put(result(1, wait=True))
    _Outbox.of(two, "topic-e").put(result(2, wait=True))
    _Outbox.of(one, "topic-f").put(result(3, wait=True))
    assert [(t, read_messages(e)[0].seq) for t, e in one.events] == [("topic-e", 1), ("topic-f", 3)]
    assert [(t, read_messages(e)[0].seq) for t, e in two.events] == [("topic-e", 2)]
