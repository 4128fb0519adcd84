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


def test_short_runs_are_queued_further_ahead_where_that_is_allowed() -> None:
    capacity = Capacity({}, checked=True, max_concurrent=0, worker_timeout=60)
    capacity.update(workers((1, {}), (1, {})))
    capacity.note_run(0.001)
    assert capacity.queue_limit == 4, "only where the loop allows it"
    capacity.queue_ahead = True
    assert (capacity.per_slot, capacity.queue_limit, capacity.refill_at) == (32, 64, 32)
    for _ in range(50):  # runs grow longer: the queue shrinks back
        capacity.note_run(0.02)
    assert (capacity.per_slot, capacity.queue_limit) == (5, 10)
    for _ in range(50):
        capacity.note_run(3.0)
    assert (capacity.per_slot, capacity.queue_limit, capacity.refill_at) == (2, 4, 1)


def test_before_any_run_ended_and_under_max_concurrent_the_queue_stays_short() -> None:
    capacity = Capacity({}, checked=True, max_concurrent=0, worker_timeout=60)
    capacity.queue_ahead = True
    capacity.update(workers((1, {}), (1, {})))
    assert (capacity.queue_limit, capacity.refill_at) == (4, 1)
    limited = Capacity({}, checked=True, max_concurrent=3, worker_timeout=60)
    limited.queue_ahead = True
    limited.update(workers((4, {})))
    limited.note_run(0.001)
    assert (limited.queue_limit, limited.refill_at) == (3, 1)


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


# -- GPUs: fractions, and trials that ask for none on a cluster with GPU workers ------------


def test_fractional_gpu_requests_share_a_gpu_up_to_the_worker_s_threads() -> None:
    two_threads = workers((2, {"GPU": 1}), (2, {"GPU": 1}))
    assert trial_slots(two_threads, {"GPU": 1}) == 2, "one trial per GPU"
    assert trial_slots(two_threads, {"GPU": 0.5}) == 4, "two trials per GPU"
    assert trial_slots(two_threads, {"GPU": 0.25}) == 4, "no more trials than threads"
    assert trial_slots(workers((4, {"GPU": 1})), {"GPU": 1 / 3}) == 3, "a third fits three times"


def test_cpu_only_trials_ask_for_cpu_to_stay_off_the_gpu_workers() -> None:
    # The embedded CUDA cluster's layout: GPU workers, and CPU workers advertising CPU=1.
    mixed = workers((2, {"GPU": 1}), (1, {"CPU": 1}), (1, {"CPU": 1}), (1, {"CPU": 1}))
    assert usable_request(mixed, {}) == {"CPU": 1.0}
    assert trial_slots(mixed, usable_request(mixed, {})) == 3, "the GPU worker's slots stay free"
    assert usable_request(mixed, {"CPU": 1}) == {"CPU": 1}
    # A GPU request goes to the GPU workers, which advertise no CPU: CPU is dropped.
    assert usable_request(mixed, {"GPU": 1, "CPU": 1}) == {"GPU": 1}
    assert trial_slots(mixed, {"GPU": 0.5}) == 2


def test_gpu_workers_that_advertise_cpu_take_cpu_only_trials_by_choice() -> None:
    shared = workers((1, {"GPU": 1, "CPU": 1}), (1, {"CPU": 1}))
    assert usable_request(shared, {}) == {"CPU": 1.0}
    assert trial_slots(shared, {"CPU": 1.0}) == 2
    assert usable_request(shared, {"GPU": 1, "CPU": 1}) == {"GPU": 1, "CPU": 1}


def test_a_cluster_of_gpu_workers_only_runs_cpu_only_trials_too() -> None:
    assert usable_request(workers((1, {"GPU": 1}), (1, {"GPU": 1})), {}) == {}
    assert usable_request(workers((1, {"GPU": 1})), {"CPU": 2}) == {}


def test_cpu_only_trials_that_cannot_be_kept_off_gpu_workers_are_an_error_with_the_fix() -> None:
    mixed = workers((1, {"GPU": 1}), (1, {}))
    with pytest.raises(
        ValueError,
        match=r"asks for no GPU.*1 workers without a GPU.*"
        r"--resources 'CPU=<threads>'.*\{'gpu': 1\}",
    ):
        usable_request(mixed, {})


def test_more_gpus_than_any_worker_has_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"asks for \{'GPU': 2\} per trial.*'GPU': 1"):
        usable_request(workers((2, {"GPU": 1}), (1, {"CPU": 1})), {"GPU": 2})


def test_with_resources_spells_gpu_the_ray_way_and_refuses_fractions_above_one() -> None:
    from dasktune.trainable.util import normalize_resources

    assert normalize_resources({"cpu": 2, "gpu": 0.5}) == {"CPU": 2.0, "GPU": 0.5}
    assert normalize_resources({"cpu": 1, "gpu": 0}) == {"CPU": 1.0}
    assert normalize_resources({"gpu": 2}) == {"GPU": 2.0}
    with pytest.raises(ValueError, match=r"amount of 'gpu' is 1.5.*Use \{'gpu': 2\}"):
        normalize_resources({"gpu": 1.5})
