"""The HPC recipes, without a batch system.

- The job scripts that examples/hpc_jobqueue.py's SLURM and PBS recipes produce.
- Real tuning on dask-jobqueue's local job runner (its "jobs" are processes here,
  started through the same JobQueueCluster machinery as SLURMCluster): two jobs
  advertising GPU=1, one of which ends mid-trial; adapt() from no job at all.
- The tutorial on a cluster started the way a batch script starts one: separate
  ``dask scheduler`` and ``dask worker`` processes meeting through a scheduler file.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import pytest

import dasktune as tune
from tests.integration._processes import dask_scheduler, dask_worker, stop, wait_for_file
from tests.integration.test_faults import assert_rows_exactly_once, checkpointed

#: Whole scripts and clusters of processes: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

pytest.importorskip("dask_jobqueue")
ROOT = Path(__file__).resolve().parents[2]


def load_example():
    spec = importlib.util.spec_from_file_location(
        "hpc_jobqueue", ROOT / "examples" / "hpc_jobqueue.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the recipes' job scripts ----------------------------------------------------------------


def job_script(cluster) -> tuple[list[str], str]:
    """The batch directives and the worker's command line of one job of ``cluster``."""
    import psutil

    with cluster:
        script = cluster.job_script()
        # The scheduler runs in this process; its dashboard listens on the login node only.
        port = int(cluster.dashboard_link.split(":")[2].split("/")[0])
        bound = {
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert bound == {"127.0.0.1"}, bound
    lines = script.splitlines()
    command = next(line for line in lines if "distributed.cli.dask_worker" in line)
    return [line for line in lines if line.startswith("#")], command


def test_the_slurm_recipe_asks_for_a_gpu_and_retires_before_the_walltime():
    example = load_example()
    directives, command = job_script(example.slurm_cluster(gpus_per_job=1))
    for wanted in (
        "#SBATCH --gres=gpu:1",
        "#SBATCH -t 01:00:00",
        "#SBATCH -p gpu",
        "#SBATCH -A my-project",
        "#SBATCH --cpus-per-task=8",
    ):
        assert wanted in directives, (wanted, directives)
    assert "--resources GPU=1" in command
    assert "--lifetime 55m --lifetime-stagger 4m" in command
    assert "--nthreads 8" in command and "--local-directory $TMPDIR" in command
    # A CPU job advertises its CPUs instead, so that CPU-only trials keep off the GPU jobs.
    directives, command = job_script(example.slurm_cluster(gpus_per_job=0))
    assert not [d for d in directives if "--gres" in d]
    assert "--resources CPU=8" in command


def test_the_pbs_recipe_asks_for_the_gpu_in_its_select_statement():
    example = load_example()
    directives, command = job_script(example.pbs_cluster(gpus_per_job=1))
    assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=32GB" in directives
    assert "#PBS -l walltime=01:00:00" in directives and "#PBS -q gpu" in directives
    assert "--resources GPU=1" in command and "--lifetime 55m" in command


# -- real runs on dask-jobqueue's local job runner -----------------------------------------


class EndJob(tune.Callback):
    """Ends the batch job running the first trial that reaches iteration ``at``, as a
    walltime or a preemption would: the job's whole process tree is killed."""

    def __init__(self, cluster, at):
        self.cluster, self.at, self.ended = cluster, at, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        import psutil

        if self.ended is not None or result["it"] != self.at:
            return
        job_pids = {int(job.job_id) for job in self.cluster.workers.values()}
        job = psutil.Process(result["pid"]).parent()
        assert job.pid in job_pids, "the trial's worker is not the child of a job"
        for process in job.children(recursive=True) + [job]:
            process.kill()
        self.ended = trial.trial_id


def test_a_job_that_ends_mid_trial_resumes_its_trial_on_the_other_job(storage):
    from distributed import Client

    example = load_example()
    with (
        example.local_cluster(gpus_per_job=1) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.scale(jobs=2)
        client.wait_for_workers(2, timeout=60)
        ender = EndJob(cluster, at=3)
        grid = tune.Tuner(
            tune.with_resources(checkpointed, {"gpu": 1}),
            param_space={"iters": 8, "sleep": 0.25, "i": tune.grid_search([0, 1, 2])},
            run_config=tune.RunConfig(
                storage_path=storage,
                verbose=0,
                callbacks=[ender],
                failure_config=tune.FailureConfig(max_failures=1),
            ),
            client=client,
        ).fit()
    assert ender.ended is not None
    for result in grid:  # every row once; "it" counts on from the checkpoint, not from 1
        assert result.status == "TERMINATED", result.error
        assert_rows_exactly_once(result, 8)
    [ended] = [r for r in grid if r.metrics["trial_id"] == ender.ended]
    frame = ended.metrics_dataframe
    # The second run, on the other job, started from a checkpoint the first had written.
    assert frame["pid"].nunique() == 2
    assert frame["iterations_since_restore"].iloc[-1] <= 8 - 3
    runs = [p for p in os.listdir(ended.path) if p.startswith(".run-")]
    assert len(runs) == 2, runs


def test_an_adaptive_job_cluster_grows_from_no_job_for_gpu_trials(storage):
    from distributed import Client

    example = load_example()
    with (
        example.local_cluster(gpus_per_job=1) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.adapt(minimum_jobs=0, maximum_jobs=2)
        assert not client.scheduler_info()["workers"]
        start = time.monotonic()
        grid = tune.Tuner(
            tune.with_resources(checkpointed, {"gpu": 1}),
            param_space={"iters": 3, "sleep": 0.25, "i": tune.grid_search([0, 1, 2, 3])},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
            client=client,
        ).fit()
        assert time.monotonic() - start < 60
    for result in grid:
        assert result.status == "TERMINATED", result.error
        assert_rows_exactly_once(result, 3)
        assert result.metrics["pid"] != os.getpid()


def test_a_worker_that_retires_before_its_walltime_hands_its_trial_on(storage):
    """The recipes' --lifetime, in seconds: the worker retires before the trial can end;
    adapt() submits a new job, and the trial goes on there from its latest checkpoint.
    (dask-jobqueue takes about 15 s to notice that the job has ended and replace it.)"""
    from dask_jobqueue.local import LocalCluster
    from distributed import Client

    with (
        LocalCluster(
            cores=1,
            processes=1,
            memory="1GB",
            worker_extra_args=[
                "--resources",
                "GPU=1",
                "--lifetime",
                "4s",
                "--lifetime-stagger",
                "0s",
            ],
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.adapt(minimum_jobs=1, maximum_jobs=1)
        [result] = tune.Tuner(
            tune.with_resources(checkpointed, {"gpu": 1}),
            param_space={"iters": 20, "sleep": 0.25},  # 5 s: longer than the worker lives
            run_config=tune.RunConfig(
                storage_path=storage, verbose=0, failure_config=tune.FailureConfig(max_failures=3)
            ),
            client=client,
        ).fit()
    assert result.status == "TERMINATED", result.error
    assert_rows_exactly_once(result, 20)  # every row once: resumed, not restarted
    runs = [p for p in os.listdir(result.path) if p.startswith(".run-")]
    assert len(runs) >= 2 and result.metrics_dataframe["pid"].nunique() >= 2, runs
    assert result.metrics_dataframe["iterations_since_restore"].iloc[-1] < 20


# -- a cluster started by a batch script, found through a scheduler file ------------------

DRIVER = textwrap.dedent(
    """
    import os, runpy, sys
    from distributed import Client

    # What a batch script's Python step does: attach to the cluster its other steps started.
    client = Client(scheduler_file=os.environ["SCHEDULER_FILE"])
    client.wait_for_workers(2, timeout=60)
    print("WORKERS", len(client.scheduler_info()["workers"]))
    sys.argv = [os.environ["TUTORIAL"], "--smoke"]
    runpy.run_path(os.environ["TUTORIAL"], run_name="__main__")
    """
)


def test_the_tutorial_runs_on_a_cluster_found_through_a_scheduler_file(tmp_path):
    import psutil

    for module in ("torch", "torchvision", "hyperopt", "mlxtend"):
        pytest.importorskip(module)
    from dasktune import datasets

    dask_cli = str(Path(sys.executable).parent / "dask")
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(
        os.environ,
        HOME=str(tmp_path / "home"),
        DASK_DASKTUNE__CACHE_DIR=str(tmp_path / "cache"),
        SCHEDULER_FILE=str(scheduler_file),
        TUTORIAL=str(ROOT / "examples" / "getting_started.py"),
    )
    os.makedirs(env["HOME"])
    with pytest.MonkeyPatch.context() as mp:  # offline on purpose, as in the example tests
        mp.setitem(dask.config.config["dasktune"], "cache-dir", env["DASK_DASKTUNE__CACHE_DIR"])
        datasets._remember_failure(OSError("this test runs offline on purpose"))
    processes = [dask_scheduler([dask_cli], scheduler_file, tmp_path / "scheduler.log", env)]
    family: set[int] = set()
    try:
        wait_for_file(scheduler_file, tmp_path / "scheduler.log", timeout=60)
        for i in range(2):  # as `srun dask worker ...` starts one per node
            processes.append(
                dask_worker([dask_cli], scheduler_file, tmp_path / f"worker{i}.log", env)
            )
        driver = subprocess.run(
            [sys.executable, "-c", DRIVER],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        for process in processes:
            family |= {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
    finally:
        family |= {process.pid for process in processes}
        stop(processes)
    output = driver.stdout + driver.stderr
    assert driver.returncode == 0, output[-6000:]
    assert "WORKERS 2" in output
    assert "started a local Dask cluster" not in output, "the tutorial started its own cluster"
    assert "Stage 2, ASHA: best mean_accuracy" in output and "Stage 3, HyperOpt" in output
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in family
    ):
        time.sleep(0.2)
    left = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not left, f"processes left running: {left}"
