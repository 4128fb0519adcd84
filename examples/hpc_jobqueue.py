"""Tuning on an HPC cluster: trials run in batch jobs started by dask-jobqueue.

Each batch job starts one Dask worker. ``cluster.adapt`` submits jobs while
trials wait for a worker and cancels them when the work runs out, so the queue
holds only jobs that have work. dasktune gives trials to workers as their jobs
start, and checks each trial's resource request against the first worker.

A job that reaches its walltime takes its running trial with it. Dask runs that
trial again on another worker, from the checkpoint it had started from (for a
new trial: from scratch); the iterations trained a second time are not recorded
twice. Keep the walltime well above one trial's duration. A trial that raises
is retried from its latest checkpoint (``FailureConfig(max_failures=...)``).
Adaptive scaling grows with the work it sees queued, which at first it guesses
short: ``minimum_jobs`` keeps some workers from the start.

    python examples/hpc_jobqueue.py            # on a SLURM login node (edit make_cluster first)
    python examples/hpc_jobqueue.py --local    # the same, with local processes as the "jobs"
    python examples/hpc_jobqueue.py --smoke    # a small local run, for the test suite

Needs ``pip install 'dasktune[hpc]'``.
"""

import argparse
import json
import math
import os
import tempfile

from distributed import Client

import dasktune as tune
from dasktune.schedulers import ASHAScheduler

STEPS = 30


def objective(config):
    """A training loop that checkpoints, so that a retried trial resumes where it was."""
    step, loss = 0, 10.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after the trial raised
        with checkpoint.as_directory() as path, open(os.path.join(path, "state.json")) as f:
            step, loss = json.load(f)
    while step < STEPS:
        step += 1
        loss = loss * (1 - config["lr"]) + config["lr"] * abs(math.log10(config["lr"]) + 1)
        saved = None
        if step % 5 == 0:
            path = tempfile.mkdtemp()
            with open(os.path.join(path, "state.json"), "w") as f:
                json.dump([step, loss], f)
            saved = tune.Checkpoint.from_directory(path)
        tune.report({"loss": loss}, checkpoint=saved)


def make_cluster(local: bool):
    if local:
        # dask-jobqueue's own stand-in: the "jobs" are processes on this machine.
        from dask_jobqueue.local import LocalCluster

        return LocalCluster(cores=1, processes=1, memory="1GB", walltime="00:30:00")
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        cores=1,               # one worker thread per job: one trial at a time
        processes=1,
        memory="4GB",
        walltime="00:30:00",
        # queue="normal", account="my-project",
        # job_extra_directives=["--gres=gpu:1"],  # and tune.with_resources(objective, {"gpu": 1})
        # worker_extra_args=["--resources", "GPU=1"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", action="store_true", help="local processes as the jobs")
    parser.add_argument("--smoke", action="store_true", help="small and local (the test suite)")
    args = parser.parse_args()

    cluster = make_cluster(local=args.local or args.smoke)
    cluster.adapt(minimum_jobs=0, maximum_jobs=2 if args.smoke else 20)
    with cluster, Client(cluster) as client:
        results = tune.Tuner(
            objective,
            param_space={"lr": tune.loguniform(1e-4, 0.5)},
            tune_config=tune.TuneConfig(
                num_samples=6 if args.smoke else 100,
                scheduler=ASHAScheduler(metric="loss", mode="min", max_t=STEPS, grace_period=5),
                seed=0,
            ),
            run_config=tune.RunConfig(name="hpc", failure_config=tune.FailureConfig(max_failures=3)),
            client=client,
        ).fit()
    best = results.get_best_result(metric="loss", mode="min")
    print(f"Best config: {best.config}")
    print(f"Best loss: {best.metrics['loss']:.4f} after {best.metrics['training_iteration']} steps")
    print(f"Trials run: {len(results)}")


if __name__ == "__main__":
    main()
