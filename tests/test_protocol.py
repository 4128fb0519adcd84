"""The worker-driver messages: plain event data for what real code reports (no cluster)."""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import threading

import numpy as np
import pandas as pd
import pytest
from distributed.protocol.serialize import _is_dumpable

from dasktune._protocol import (
    AwaitingDecision,
    CheckpointStored,
    ResultReported,
    RunEnded,
    RunOutcome,
    RunStarted,
    RunStatus,
    batch_message,
    from_wire,
    is_plain,
    plain,
    plain_message,
    read_messages,
    unplain,
    without_messages,
)


class Color(enum.IntEnum):
    RED = 1


class Label(str, enum.Enum):
    A = "a"


class Point:
    def __init__(self, x: float) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x


def test_messages_survive_the_wire() -> None:
    outcome = RunOutcome("r-1", RunStatus.ERROR, 3, 3, "trace", "ValueError", b"pickled")
    for message in [
        RunStarted("r-1", "tcp://w"),
        ResultReported("r-1", "tcp://w", 2, {"loss": 0.5}, "/c/checkpoint_000001", True),
        CheckpointStored("r-1", "tcp://w", "/c/checkpoint_000002", 4),
        AwaitingDecision("r-1", "tcp://w", 2),
        RunEnded("r-1", "tcp://w", outcome),
    ]:
        wire = message.to_wire()
        assert _is_dumpable(wire), f"{type(message).__name__} must be plain event data"
        assert from_wire(wire) == message


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.float64(0.25), 0.25),
        (np.float32(0.5), 0.5),
        (np.int64(3), 3),
        (np.int8(-2), -2),
        (np.bool_(True), True),
        (np.array([1.5, 2.5]), [1.5, 2.5]),
        (np.arange(4).reshape(2, 2), [[0, 1], [2, 3]]),
        (Color.RED, 1),
        (Label.A, "a"),
        ((1, 2), [1, 2]),
        (fractions.Fraction(1, 4), 0.25),
        (pd.Series([1.0, 2.0]), [1.0, 2.0]),
        (np.str_("x"), "x"),
    ],
)
def test_what_numpy_pandas_and_the_standard_library_give_becomes_plain(value, expected) -> None:
    converted = plain(value)
    assert converted == expected
    assert _is_dumpable(converted)
    assert type(converted) is type(expected)


def test_torch_values_become_plain() -> None:
    torch = pytest.importorskip("torch")
    assert plain({"loss": torch.tensor(0.5), "w": torch.tensor([1.0, 2.0])}) == {
        "loss": 0.5,
        "w": [1.0, 2.0],
    }


def test_dict_keys_become_strings_and_nesting_is_kept() -> None:
    converted = plain({1: np.float64(1.0), "nested": {np.int64(2): [np.float32(3.0)]}})
    assert converted == {"1": 1.0, "nested": {"2": [3.0]}}
    assert _is_dumpable(converted)


def test_other_objects_travel_pickled_and_come_back() -> None:
    when = datetime.datetime(2026, 11, 29, 12, 0)
    value = {"when": when, "point": Point(2.0), "price": decimal.Decimal("1.5")}
    converted = plain(value)
    assert _is_dumpable(converted)
    assert unplain(converted) == {
        "when": when,
        "point": Point(2.0),
        "price": decimal.Decimal("1.5"),
    }


def test_a_value_that_cannot_travel_names_its_key() -> None:
    with pytest.raises(TypeError, match=r"metrics\['lock'\] is a _thread.lock.*str\(value\)"):
        plain({"lock": threading.Lock()}, "metrics")


def test_a_converted_result_is_rebuilt_on_the_driver() -> None:
    message = ResultReported(
        "r", "w", 1, {"acc": np.float64(0.5), "at": datetime.date(2026, 1, 2)}, None, False
    )
    wire = plain_message(message)
    assert _is_dumpable(wire)
    back = from_wire(wire)
    assert back.result == {"acc": 0.5, "at": datetime.date(2026, 1, 2)}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "s",
        1,
        1.5,
        True,
        b"x",
        [1, "a", None],
        {"a": {"b": [1.0, {"c": None}]}},
        np.float64(1.0),
        np.int64(1),
        (1, 2),
        {1: "int key"},
        {"a": (1,)},
        [np.bool_(True)],
        {"a": datetime.date(2026, 1, 1)},
        Color.RED,
        Label.A,
    ],
)
def test_is_plain_agrees_with_what_dask_events_accept(value) -> None:
    assert (
        is_plain(value) == _is_dumpable(value)
        or isinstance(value, tuple)
        or (isinstance(value, dict) and any(isinstance(v, tuple) for v in value.values()))
    ), value  # Dask takes tuples, which msgpack turns into lists: is_plain is stricter
    if is_plain(value):
        assert _is_dumpable(value)


def test_a_batch_of_messages_survives_the_wire_in_order() -> None:
    messages = [
        RunStarted("r-1", "tcp://w"),
        ResultReported("r-1", "tcp://w", 1, {"loss": 0.5}, None, False),
        ResultReported("r-1", "tcp://w", 2, {"loss": 0.4}, None, False),
    ]
    wire = batch_message([m.to_wire() for m in messages])
    assert _is_dumpable(wire)
    assert read_messages(wire) == messages
    assert read_messages(messages[0].to_wire()) == [messages[0]], "a single message as before"


def test_messages_can_be_taken_out_of_an_event_alone_or_from_a_batch() -> None:
    first = ResultReported("r-1", "tcp://w", 1, {"loss": 0.5}, None, False).to_wire()
    second = ResultReported("r-1", "tcp://w", 2, {"loss": 0.4}, None, False).to_wire()

    def is_second(message: dict) -> bool:
        return message.get("seq") == 2

    assert without_messages(batch_message([first, second]), is_second) == batch_message([first])
    assert without_messages(second, is_second) is None
    assert without_messages(first, is_second) == first
    assert without_messages(batch_message([second]), is_second) is None


def test_only_a_trial_s_run_key_is_a_trial_key():
    from dasktune._protocol import PARKED_PREFIX, TASK_PREFIX, WARM_UP_PREFIX, is_trial_key

    assert is_trial_key(f"{TASK_PREFIX}ab12c_00001-1")
    assert not is_trial_key(f"{WARM_UP_PREFIX}0f3a9b2c")
    assert not is_trial_key(f"{PARKED_PREFIX}0f3a9b2c")
    assert not is_trial_key("inc-5f1c0d")  # a user's own task
