"""The same Tuner on a real Dask cluster of separate processes: ``dask scheduler`` and
``dask worker`` commands, as a batch script or a shell starts them.

Many short trials (so that runs are queued ahead and trial messages travel in
batches), with ASHA deciding at its rungs: every result on disk exactly once,
and the trials ran on the cluster's workers, not on a cluster of dasktune's own.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

import dasktune as tune
from dasktune.schedulers import ASHAScheduler
from tests.integration._processes import dask_scheduler, dask_worker, stop, wait_for_file

WORKERS = 3
MAX_T = 8


@pytest.fixture
def process_cluster(tmp_path):
    """A scheduler and WORKERS single-threaded workers, each its own process tree."""
    from distributed import Client

    dask_cli = [sys.executable, "-m", "dask"]
    scheduler_file = tmp_path / "scheduler.json"
    processes = [dask_scheduler(dask_cli, scheduler_file, tmp_path / "scheduler.log")]
    try:
        wait_for_file(scheduler_file, tmp_path / "scheduler.log", timeout=120)
        for i in range(WORKERS):
            processes.append(
                dask_worker(
                    dask_cli, scheduler_file, tmp_path / f"worker{i}.log", extra=("--no-dashboard",)
                )
            )
        with Client(
            scheduler_file=str(scheduler_file), timeout=120, set_as_default=False
        ) as client:
            client.wait_for_workers(WORKERS, timeout=180)
            yield client
    finally:
        stop(processes)


def steps(config):
    for i in range(MAX_T):
        tune.report({"score": config["x"] * (i + 1)})


def test_many_short_trials_on_a_cluster_of_dask_worker_processes(process_cluster, tmp_path):
    worker_pids = set(process_cluster.run(os.getpid).values())
    grid = tune.Tuner(
        steps,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            num_samples=120,
            seed=7,
            scheduler=ASHAScheduler(
                metric="score", mode="max", max_t=MAX_T, grace_period=1, reduction_factor=2
            ),
        ),
        run_config=tune.RunConfig(name="processes", storage_path=str(tmp_path), verbose=0),
        client=process_cluster,
    ).fit()

    assert len(grid) == 120 and not grid.errors
    lengths = []
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            iterations = [json.loads(line)["training_iteration"] for line in f]
        assert iterations == list(range(1, len(iterations) + 1)), result.path  # once each
        assert len(result.metrics_dataframe) == len(iterations)
        lengths.append(len(iterations))
    assert max(lengths) == MAX_T and min(lengths) < MAX_T, "ASHA stopped some, not all"
    pids = {int(r.metrics["pid"]) for r in grid}
    assert pids <= worker_pids, "every trial ran on the cluster's own workers"
    assert len(pids) >= 2, "the trials spread over the workers"
