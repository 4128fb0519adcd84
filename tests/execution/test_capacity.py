"""Capacity: trial slots as workers join and leave, the resource check, the no-worker timeout."""

from __future__ import annotations

import pytest

from dasktune.execution.capacity import Capacity, trial_slots, usable_request


def workers(*specs: tuple[int, dict]) -> dict[str, dict]:
    return {f"tcp://w{i}": {"nthreads": n, "resources": r} for i, (n, r) in enumerate(specs)}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_slots_follow_workers_and_queue_one_extra_run_per_slot() -> None:
    capacity = Capacity({}, checked=True, max_concurrent=0, worker_timeout=60)
    capacity.update(workers((1, {}), (1, {})))
    assert (capacity.slots, capacity.queue_limit) == (2, 4)
    capacity.update(workers((1, {}), (1, {}), (2, {})))
    assert (capacity.slots, capacity.queue_limit) == (4, 8)


def test_max_concurrent_caps_slots_without_extra_queue() -> None:
    capacity = Capacity({}, checked=True, max_concurrent=3, worker_timeout=60)
    capacity.update(workers((4, {})))
    assert (capacity.slots, capacity.queue_limit) == (3, 3)


def test_gpu_requests_count_resources() -> None:
    assert trial_slots(workers((4, {"GPU": 1}), (4, {"GPU": 2})), {"GPU": 0.5}) == 6
    assert trial_slots(workers((1, {"GPU": 2})), {"GPU": 0.5}) == 1, "threads cap it too"


def test_an_unsatisfiable_request_is_checked_when_the_first_worker_arrives() -> None:
    capacity = Capacity({"GPU": 1}, checked=False, max_concurrent=0, worker_timeout=None)
    capacity.update({})
    assert capacity.slots == 1, "queue one trial so that an adaptive cluster grows"
    with pytest.raises(ValueError, match=r"asks for \{'GPU': 1\} per trial.*advertise"):
        capacity.update(workers((1, {})))


def test_cpu_is_dropped_unless_advertised() -> None:
    assert usable_request(workers((2, {})), {"CPU": 1}) == {}
    assert usable_request(workers((2, {"CPU": 2})), {"CPU": 1}) == {"CPU": 1}


def test_no_worker_for_longer_than_the_timeout_is_an_error() -> None:
    clock = Clock()
    capacity = Capacity({}, checked=True, max_concurrent=0, worker_timeout=10, clock=clock)
    capacity.update({})
    clock.now = 9
    capacity.update({})
    clock.now = 11
    with pytest.raises(RuntimeError, match="no worker for dasktune.worker-timeout = 10 s"):
        capacity.update({})


def test_a_self_scaling_cluster_may_have_no_worker_for_long() -> None:
    clock = Clock()
    capacity = Capacity({}, checked=True, max_concurrent=0, worker_timeout=None, clock=clock)
    capacity.update({})
    clock.now = 10_000
    capacity.update({})
    assert capacity.slots == 1
