"""GPU requests on real multi-process clusters whose workers advertise GPUs they lack.

Dask schedules by the resources workers advertise, not by the hardware: a
worker started with ``GPU=1`` is a GPU worker to the scheduler whether or not a
GPU is there.  So where trials go, and how many share a GPU, is tested here on
CPUs; what happens on the GPU itself is in test_gpu.py (``pytest -m gpu``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict

import pytest

import dasktune as tune
from dasktune.execution.cluster import add_cpu_workers


def timed(config):
    start = time.time()
    time.sleep(config.get("sleep", 0.8))
    tune.report(
        {
            "start": start,
            "end": time.time(),
            "pid": os.getpid(),
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        }
    )


def most_at_once(results) -> int:
    """The largest number of the given trials that ran at the same moment."""
    edges = sorted(
        [(r.metrics["start"], 1) for r in results] + [(r.metrics["end"], -1) for r in results]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def per_worker_most_at_once(grid) -> dict[int, int]:
    by_pid = defaultdict(list)
    for result in grid:
        by_pid[result.metrics["pid"]].append(result)
    return {pid: most_at_once(results) for pid, results in by_pid.items()}


def fit(trainable, client, storage, n):
    return tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(n)))},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()


def worker_pids(client) -> tuple[set[int], set[int]]:
    """(pids of the workers advertising GPU, pids of the others)."""
    pids = client.run(os.getpid)
    info = client.scheduler_info(n_workers=-1)["workers"]
    gpu = {pids[a] for a, w in info.items() if (w.get("resources") or {}).get("GPU")}
    return gpu, set(pids.values()) - gpu


def test_half_a_gpu_per_trial_runs_two_trials_per_gpu(storage):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            resources={"GPU": 1},
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        halves = fit(tune.with_resources(timed, {"gpu": 0.5}), client, storage, 8)
        wholes = fit(tune.with_resources(timed, {"gpu": 1}), client, storage, 4)
    assert all(r.status == "TERMINATED" for r in list(halves) + list(wholes))
    assert sorted(per_worker_most_at_once(halves).values()) == [2, 2]
    assert most_at_once(halves) == 4
    assert sorted(per_worker_most_at_once(wholes).values()) == [1, 1]
    assert most_at_once(wholes) == 2


@pytest.fixture(scope="module")
def gpu_box():
    """The embedded CUDA cluster's layout, built the same way on CPUs: one worker that
    advertises GPU=1 with two threads, plus two CPU workers added by add_cpu_workers."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        resources={"GPU": 1},
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        preload=["dasktune.execution._worker_setup"],
        silence_logs=logging.ERROR,
    ) as cluster:
        add_cpu_workers(cluster, 2)
        with Client(cluster, set_as_default=False) as client:
            yield client


def test_added_cpu_workers_advertise_cpu_and_see_no_gpu(gpu_box):
    info = gpu_box.scheduler_info(n_workers=-1)["workers"]
    layouts = sorted(
        (w["nthreads"], tuple(sorted((w.get("resources") or {}).items()))) for w in info.values()
    )
    assert layouts == [(1, (("CPU", 1.0),)), (1, (("CPU", 1.0),)), (2, (("GPU", 1.0),))]
    visible = gpu_box.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    gpu, cpu = worker_pids(gpu_box)
    pids = gpu_box.run(os.getpid)
    assert sorted(visible[a] for a in visible if pids[a] in cpu) == ["", ""]


def test_trials_that_ask_for_no_gpu_stay_off_the_gpu_worker(gpu_box, storage):
    gpu, cpu = worker_pids(gpu_box)
    plain = fit(timed, gpu_box, storage, 6)
    cpu_only = fit(tune.with_resources(timed, {"cpu": 1}), gpu_box, storage, 4)
    for grid in (plain, cpu_only):
        assert all(r.status == "TERMINATED" for r in grid)
        assert {r.metrics["pid"] for r in grid} <= cpu, "a CPU-only trial took a GPU slot"
        assert {r.metrics["visible"] for r in grid} == {""}
        assert most_at_once(grid) == 2
    gpu_trials = fit(tune.with_resources(timed, {"cpu": 1, "gpu": 1}), gpu_box, storage, 3)
    assert {r.metrics["pid"] for r in gpu_trials} == gpu
    assert most_at_once(gpu_trials) == 1


def test_requests_no_worker_can_meet_fail_within_seconds(gpu_box, storage):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"asks for \{'GPU': 2.0\} per trial, but no worker"):
        fit(tune.with_resources(timed, {"gpu": 2}), gpu_box, storage, 1)
    with pytest.raises(ValueError, match=r"asks for \{'CPU': 2.0\} per trial, but no worker"):
        fit(tune.with_resources(timed, {"cpu": 2}), gpu_box, storage, 1)
    assert time.monotonic() - start < 10


def test_a_mixed_cluster_whose_cpu_workers_advertise_nothing_is_an_error_with_the_fix(storage):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    workers = {
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "plain": {"cls": Nanny, "options": {"nthreads": 1}},
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
    }
    with (
        SpecCluster(scheduler=scheduler, workers=workers, silence_logs=logging.ERROR) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(2)
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"asks for no GPU.*--resources 'CPU=<threads>'"):
            fit(timed, client, storage, 2)
        assert time.monotonic() - start < 10
        # Asking for the GPU is fine on the same cluster.
        grid = fit(tune.with_resources(timed, {"gpu": 1}), client, storage, 2)
    assert all(r.status == "TERMINATED" for r in grid)
