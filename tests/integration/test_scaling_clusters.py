"""Clusters whose size changes during an experiment: batch-queue jobs, cluster.adapt, scale().

dask-jobqueue's ``LocalCluster`` runs its "jobs" as local processes through the
same JobQueueCluster machinery as SLURMCluster or PBSCluster, so it stands in
for an HPC cluster here.
"""

from __future__ import annotations

import logging
import os
import time

import dask
import pytest

import dasktune as tune

jobqueue = pytest.importorskip("dask_jobqueue.local")


def short(config):
    import time

    for i in range(3):
        time.sleep(0.05)
        tune.report({"score": config["x"] * i, "pid": os.getpid()})


def timed(config):
    import time

    start = time.time()
    time.sleep(1.0)
    tune.report({"start": start, "end": time.time()})


def most_at_once(grid) -> int:
    """The largest number of trials that were running at the same moment."""
    edges = sorted([(r.metrics["start"], 1) for r in grid] + [(r.metrics["end"], -1) for r in grid])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_an_adaptive_batch_queue_cluster_scales_up_from_no_workers(storage):
    """No worker until trials wait for one: fit must not wait for workers that never come."""
    from distributed import Client

    with (
        jobqueue.LocalCluster(cores=1, processes=1, memory="1GB") as cluster,
        Client(cluster) as client,
    ):
        cluster.adapt(minimum_jobs=0, maximum_jobs=2)
        start = time.monotonic()
        # Ray's spelling of one CPU per trial: a CPU that no worker advertises must not
        # keep the first runs waiting for ever.
        grid = tune.Tuner(
            tune.with_resources(short, {"cpu": 1}),
            param_space={"x": tune.grid_search(list(range(6)))},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
            client=client,
        ).fit()
        assert sorted(r.metrics["score"] for r in grid) == [0, 2, 4, 6, 8, 10]
        assert all(r.metrics["pid"] != os.getpid() for r in grid)
        assert time.monotonic() - start < 45  # it used to fail after waiting 60 s


def test_an_adaptive_cluster_checks_resources_when_its_first_worker_arrives(storage):
    from distributed import Client

    with (
        jobqueue.LocalCluster(cores=1, processes=1, memory="1GB") as cluster,
        Client(cluster) as client,
    ):
        cluster.adapt(minimum_jobs=0, maximum_jobs=1)
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"asks for \{'GPU': 1.0\} per trial, but no worker"):
            tune.Tuner(
                tune.with_resources(short, {"gpu": 1}),
                param_space={"x": 1},
                run_config=tune.RunConfig(storage_path=storage, verbose=0),
                client=client,
            ).fit()
        assert time.monotonic() - start < 45


def test_a_client_connected_by_address_to_an_autoscaling_cluster(storage):
    """dasktune cannot see this autoscaler (as with Kubernetes or Gateway): queued trials
    still make it grow."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=0,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        cluster.adapt(minimum=0, maximum=2)
        with Client(cluster.scheduler_address) as client:
            grid = tune.Tuner(
                short,
                param_space={"x": tune.grid_search([1, 2, 3])},
                run_config=tune.RunConfig(storage_path=storage, verbose=0),
                client=client,
            ).fit()
    assert sorted(r.metrics["score"] for r in grid) == [2, 4, 6]


class GrowCluster(tune.Callback):
    """Scales the cluster once the experiment is under way, as queued batch jobs start."""

    def __init__(self, cluster, n):
        self.cluster, self.n, self.done = cluster, n, False

    def on_trial_start(self, iteration, trials, trial, **info):
        if not self.done:
            self.done = True
            self.cluster.scale(self.n)


def test_workers_that_join_during_the_experiment_get_trials(storage):
    """The experiment starts on one worker; two more join; all three run trials at once."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        grid = tune.Tuner(
            timed,
            param_space={"i": tune.grid_search(list(range(18)))},
            run_config=tune.RunConfig(
                storage_path=storage, verbose=0, callbacks=[GrowCluster(cluster, 3)]
            ),
            client=client,
        ).fit()
    # With its queue sized once at the start (one worker: two runs), no more than two
    # trials could ever run at once.
    assert most_at_once(grid) == 3


def test_a_cluster_without_workers_fails_with_the_fix(storage):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
        dask.config.set({"dasktune.worker-timeout": 1}),
    ):
        start = time.monotonic()
        no_worker = (
            r"The Dask cluster has had no worker for "
            r"dasktune.worker-timeout = 1 s.*cluster.adapt"
        )
        with pytest.raises(RuntimeError, match=no_worker) as info:
            tune.Tuner(
                short,
                param_space={"x": 1},
                run_config=tune.RunConfig(storage_path=storage, verbose=0),
                client=client,
            ).fit()
        assert time.monotonic() - start < 15
        assert len(info.value.result_grid) == 1  # the trial that waited is on the record
