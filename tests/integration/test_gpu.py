"""On a machine with NVIDIA GPUs and dasktune[cuda]: ``pytest -m gpu`` (skipped elsewhere).

The embedded default there is dask-cuda's LocalCUDACluster plus CPU workers.
These tests check what only a real GPU shows: a trial's device 0 is its own GPU,
concurrent trials use different GPUs, half-GPU trials share one, and a stopped
trial's cached memory is free before the next trial on that GPU starts.
``benchmarks/gpu_check.sh`` runs them with the tutorial, timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dasktune as tune
from dasktune.execution._gpu import probe_gpus
from dasktune.schedulers import ASHAScheduler

ROOT = Path(__file__).resolve().parents[2]
_PROBE = probe_gpus()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (_PROBE.count and _PROBE.dask_cuda),
        reason="needs an NVIDIA GPU and dasktune[cuda] ("
        + ("dask-cuda is not installed" if not _PROBE.dask_cuda else _PROBE.reason)
        + ")",
    ),
]


@pytest.fixture(scope="module")
def gpu_client():
    """The embedded default cluster of this machine, as Tuner.fit would start it."""
    from distributed import Client

    from dasktune.execution.cluster import start_local_cluster

    pytest.importorskip("torch")
    with start_local_cluster() as cluster, Client(cluster, set_as_default=False) as client:
        yield client


def gpu_trial(config):
    """Trains a little on the trial's device; reports which GPU that was, and its memory."""
    import torch

    reserved_at_start = torch.cuda.memory_reserved(0) if torch.cuda.is_initialized() else 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the tutorial's line
    properties = torch.cuda.get_device_properties(device)
    # A large block, held until the trial ends: cached by torch after it is freed.
    ballast = torch.empty(config.get("ballast_mib", 256) * 2**20, dtype=torch.uint8, device=device)
    weight = torch.randn(512, 512, device=device, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=config.get("lr", 0.01))
    for _ in range(config.get("steps", 5)):
        start = time.time()
        loss = (weight @ weight).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        time.sleep(config.get("sleep", 0.3))
        tune.report(
            {
                "loss": float(loss) + config.get("offset", 0.0),
                "start": start,
                "end": time.time(),
                "device": str(device),
                "device_index": device.index or 0,
                "uuid": str(properties.uuid),
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                "pid": os.getpid(),
                "reserved_at_start": reserved_at_start,
                "reserved": torch.cuda.memory_reserved(device),
                "ballast": ballast.numel(),
            }
        )


def fit(trainable, client, storage, param_space, **tune_config):
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_config),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()


def overlapping(results) -> list[tuple]:
    """Pairs of trials that ran at the same time."""
    spans = [
        (r.metrics_dataframe["start"].min(), r.metrics_dataframe["end"].max(), r) for r in results
    ]
    return [
        (a[2], b[2])
        for i, a in enumerate(spans)
        for b in spans[i + 1 :]
        if a[0] < b[1] and b[0] < a[1]
    ]


def test_the_embedded_default_has_one_gpu_worker_per_gpu_and_cpu_workers(gpu_client):
    from dasktune.execution.cluster import ClusterKind, select_kind

    assert select_kind("auto", _PROBE) is ClusterKind.CUDA
    workers = gpu_client.scheduler_info(n_workers=-1)["workers"].values()
    gpu = [w for w in workers if (w.get("resources") or {}).get("GPU")]
    assert len(gpu) == _PROBE.count
    assert all(w["resources"] == {"CPU": 1} for w in workers if w not in gpu)


def test_a_trial_s_device_0_is_its_own_gpu(gpu_client, storage):
    grid = fit(
        tune.with_resources(gpu_trial, {"gpu": 1}),
        gpu_client,
        storage,
        {"i": tune.grid_search(list(range(_PROBE.count)))},
        metric="loss",
        mode="min",
    )
    for result in grid:
        assert result.status == "TERMINATED", result.error
        assert result.metrics["device"] == "cuda" and result.metrics["device_index"] == 0
        # dask-cuda rotates CUDA_VISIBLE_DEVICES: the worker's own GPU comes first.
        assert result.metrics["visible"].split(",")[0] != ""


def test_concurrent_trials_use_different_gpus(gpu_client, storage):
    if _PROBE.count < 2:
        pytest.skip("needs two GPUs")
    grid = fit(
        tune.with_resources(gpu_trial, {"gpu": 1}),
        gpu_client,
        storage,
        {"i": tune.grid_search(list(range(2 * _PROBE.count)))},
        metric="loss",
        mode="min",
    )
    pairs = overlapping(grid)
    assert pairs, "no two trials ran at once"
    assert all(a.metrics["uuid"] != b.metrics["uuid"] for a, b in pairs)


def test_half_a_gpu_per_trial_shares_a_gpu_between_two_trials(gpu_client, storage):
    grid = fit(
        tune.with_resources(gpu_trial, {"gpu": 0.5}),
        gpu_client,
        storage,
        {"i": tune.grid_search(list(range(2 * _PROBE.count)))},
        metric="loss",
        mode="min",
    )
    assert all(r.status == "TERMINATED" for r in grid)
    assert any(a.metrics["uuid"] == b.metrics["uuid"] for a, b in overlapping(grid)), (
        "no two trials shared a GPU at the same time"
    )


def test_stopped_trials_free_their_gpu_memory_before_the_next_trial(gpu_client, storage):
    # One trial per GPU at a time; ASHA stops most after their first results, each
    # holding 1 GiB.  Each later trial on the same GPU must start with torch's cache empty.
    grid = fit(
        tune.with_resources(gpu_trial, {"gpu": 1}),
        gpu_client,
        storage,
        {
            "offset": tune.grid_search([float(i) for i in range(6)]),
            "ballast_mib": 1024,
            "steps": 8,
            "sleep": 0.05,
        },
        metric="loss",
        mode="min",
        scheduler=ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2),
    )
    stopped = [r for r in grid if r.metrics["training_iteration"] < 8]
    assert stopped, "ASHA stopped no trial"
    assert all(r.metrics_dataframe["reserved"].max() >= 2**30 for r in grid)
    assert [r.metrics["reserved_at_start"] for r in grid] == [0] * len(grid)


def test_the_tutorial_runs_on_the_embedded_default(tmp_path):
    pytest.importorskip("torchvision")
    pytest.importorskip("hyperopt")
    env = dict(os.environ, HOME=str(tmp_path), DASKTUNE_SMOKE="1", PYTHONUNBUFFERED="1")
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "getting_started.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert "Stage 2, ASHA: best mean_accuracy" in out.stdout
    print(f"tutorial (smoke) on the embedded CUDA cluster: {time.monotonic() - start:.1f} s")
