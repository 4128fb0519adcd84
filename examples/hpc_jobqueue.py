"""Tuning on an HPC cluster: trials run in batch jobs started by dask-jobqueue.

Each batch job starts one Dask worker. ``cluster.adapt`` submits jobs while
trials wait for a worker and cancels them when the work runs out, so the queue
holds only jobs that have work. dasktune gives trials to workers as their jobs
start, and checks each trial's resource request against the first worker.

The recipes below (``slurm_cluster``, ``pbs_cluster``) ask each job for one GPU
and start its worker with ``--resources GPU=1``, so that
``tune.with_resources(objective, {"gpu": 1})`` runs one trial per GPU. Workers
retire (``--lifetime``) a few minutes before the job's walltime, staggered so
that not all leave at once; adapt() submits new jobs in their place. A trial
whose job ends (walltime, preemption, a node failure) counts as a failure of
that trial: under ``FailureConfig(max_failures=...)`` it runs again on another
worker from its latest checkpoint, so checkpoint often compared with the
walltime. Results and checkpoints are written by the workers: keep
``storage_path`` on the shared filesystem (the default, ``~/dasktune_results``,
is, where home directories are shared).

    python examples/hpc_jobqueue.py --system slurm   # on a SLURM login node (edit the recipe first)
    python examples/hpc_jobqueue.py --system pbs     # on a PBS login node
    python examples/hpc_jobqueue.py --local          # local processes as the "jobs"
    python examples/hpc_jobqueue.py --smoke          # a small local run, for the test suite

The scheduler runs in this script, on the login node; its dashboard listens on
127.0.0.1:8787 there (reach it with ``ssh -L 8787:localhost:8787 login-node``).
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
    if checkpoint is not None:  # a retry: the trial raised, or its job ended
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


#: Each job's walltime, and its worker's lifetime: retire before the batch system kills.
WALLTIME = "01:00:00"
LIFETIME = ["--lifetime", "55m", "--lifetime-stagger", "4m"]


def slurm_cluster(gpus_per_job: int = 1):
    """One worker per job with one GPU (``gpus_per_job=0``: CPU jobs, advertising their CPUs)."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        cores=8,  # worker threads; with GPU=1 still one GPU trial at a time
        processes=1,
        memory="32GB",
        walltime=WALLTIME,
        queue="gpu",  # your partition
        account="my-project",  # your allocation
        job_extra_directives=[f"--gres=gpu:{gpus_per_job}"] if gpus_per_job else [],
        worker_extra_args=job_resources(gpus_per_job, cores=8) + LIFETIME,
        local_directory="$TMPDIR",  # node-local scratch for Dask's spill files
        scheduler_options={"dashboard_address": "127.0.0.1:8787"},
    )


def pbs_cluster(gpus_per_job: int = 1):
    """The same on PBS Pro: the GPU is asked for in the select statement."""
    from dask_jobqueue import PBSCluster

    gpus = f":ngpus={gpus_per_job}" if gpus_per_job else ""
    return PBSCluster(
        cores=8,
        processes=1,
        memory="32GB",
        walltime=WALLTIME,
        queue="gpu",
        account="my-project",
        resource_spec=f"select=1:ncpus=8{gpus}:mem=32GB",
        worker_extra_args=job_resources(gpus_per_job, cores=8) + LIFETIME,
        local_directory="$TMPDIR",
        scheduler_options={"dashboard_address": "127.0.0.1:8787"},
    )


def job_resources(gpus: int, cores: int) -> list[str]:
    """The worker resources a job advertises: its GPUs, or else its CPUs, so that trials that
    ask for no GPU run on CPU jobs, off the GPU jobs, where a cluster has both."""
    return ["--resources", f"GPU={gpus}" if gpus else f"CPU={cores}"]


def local_cluster(gpus_per_job: int = 0):
    """dask-jobqueue's own stand-in: the "jobs" are processes on this machine."""
    from dask_jobqueue.local import LocalCluster

    return LocalCluster(
        cores=1,
        processes=1,
        memory="1GB",
        walltime="00:30:00",
        worker_extra_args=job_resources(gpus_per_job, cores=1) if gpus_per_job else [],
    )


def make_cluster(system: str, gpus_per_job: int):
    makers = {"slurm": slurm_cluster, "pbs": pbs_cluster, "local": local_cluster}
    return makers[system](gpus_per_job)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--system", choices=["slurm", "pbs", "local"], default="slurm")
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs per job and per trial (default: 1 on SLURM/PBS, 0 locally)",
    )
    parser.add_argument("--local", action="store_true", help="local processes as the jobs")
    parser.add_argument("--smoke", action="store_true", help="small and local (the test suite)")
    parser.add_argument(
        "--storage",
        default=None,
        help="results directory, on the shared filesystem (~/dasktune_results)",
    )
    args = parser.parse_args()
    system = "local" if args.local or args.smoke else args.system
    gpus = args.gpus if args.gpus is not None else (0 if system == "local" else 1)

    trainable = tune.with_resources(objective, {"gpu": gpus}) if gpus else objective
    cluster = make_cluster(system, gpus)
    cluster.adapt(minimum_jobs=0, maximum_jobs=2 if args.smoke else 20)
    with cluster, Client(cluster) as client:
        results = tune.Tuner(
            trainable,
            param_space={"lr": tune.loguniform(1e-4, 0.5)},
            tune_config=tune.TuneConfig(
                num_samples=6 if args.smoke else 100,
                scheduler=ASHAScheduler(metric="loss", mode="min", max_t=STEPS, grace_period=5),
                seed=0,
            ),
            run_config=tune.RunConfig(
                name="hpc",
                storage_path=args.storage,
                failure_config=tune.FailureConfig(max_failures=3),
            ),
            client=client,
        ).fit()
    best = results.get_best_result(metric="loss", mode="min")
    print(f"Best config: {best.config}")
    print(f"Best loss: {best.metrics['loss']:.4f} after {best.metrics['training_iteration']} steps")
    print(f"Trials run: {len(results)}")


if __name__ == "__main__":
    main()
