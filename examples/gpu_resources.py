"""Ask for a GPU per trial with ``tune.with_resources``; fall back to the CPU without one.

How a GPU request reaches Dask
------------------------------
``tune.with_resources(train, {"cpu": 1, "gpu": 1})`` is Ray Tune's spelling.
dasktune turns it into a Dask *worker resource* request: ``gpu`` becomes the
resource ``GPU`` (and ``cpu`` the resource ``CPU``, which is dropped unless your
workers advertise it: each worker thread runs one trial anyway).  The Dask
scheduler then runs a trial only on a worker that advertises ``GPU``, and never
more trials on it at once than its ``GPU`` amount (and its threads) allow: a
worker started with ``GPU=1`` trains one trial at a time; with two threads it
runs two trials that ask for ``{"gpu": 0.5}`` side by side on its GPU.  Inside
a trial, ``tune.get_context().get_trial_resources()`` returns ``{"GPU": 1.0}``.

Dask workers advertise no resources unless told to, so a GPU request needs
workers started with one:

* on one machine, dask-cuda starts one worker per GPU, each pinned to its own
  device through ``CUDA_VISIBLE_DEVICES``::

      from dask_cuda import LocalCUDACluster
      from distributed import Client
      client = Client(LocalCUDACluster(resources={"GPU": 1}))

* on a cluster, start the scheduler and, on each GPU machine, the workers::

      dask scheduler
      dask cuda worker tcp://scheduler:8786 --resources "GPU=1"      # one worker per GPU
      # or without dask-cuda, one worker per GPU by hand:
      CUDA_VISIBLE_DEVICES=0 dask worker tcp://scheduler:8786 --nthreads 1 --resources "GPU=1"

  and connect to it before tuning: ``Client("tcp://scheduler:8786")`` (it
  becomes the default client), or ``tune.Tuner(..., client=client)``.

If no worker advertises enough ``GPU``, ``Tuner.fit`` stops at once and says
so, rather than waiting forever for a worker that will never come.

This script asks for a GPU only where torch sees one; on a CPU-only machine it
asks for ``{"cpu": 1}`` and runs on dasktune's embedded local cluster.  Each
trial reports the device it trained on.  It starts its own cluster on a GPU
machine, hence the ``__main__`` guard (dasktune's embedded cluster needs none;
one you start yourself in a script does).

    python examples/gpu_resources.py           # 8 trials
    python examples/gpu_resources.py --smoke   # 3 small trials (DASKTUNE_SMOKE=1 too)
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import dasktune as tune

SMOKE = "--smoke" in sys.argv or os.environ.get("DASKTUNE_SMOKE") == "1"
EPOCHS = 5 if SMOKE else 20


def make_data(n, generator):
    """Points in the plane, labelled by which of two interleaved spirals they lie on."""
    t = torch.rand(n, generator=generator) * 3 * torch.pi
    label = torch.randint(0, 2, (n,), generator=generator)
    radius = t / (3 * torch.pi)
    angle = t + label * torch.pi
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return x + 0.02 * torch.randn(n, 2, generator=generator), label


def train_spirals(config):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = make_data(2048, generator)
    x_val, y_val = make_data(512, generator)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    torch.manual_seed(config["seed"])
    width = config["width"]
    model = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 2)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x_train), device=device).split(128):
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(dim=1) == y_val).float().mean().item()
        tune.report({
            "accuracy": accuracy,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        })


def gpu_client():
    """A local cluster whose workers each advertise one GPU; None without GPUs.

    Prefer your own cluster (see the module docstring) on a shared machine.
    """
    if not torch.cuda.is_available():
        return None
    from distributed import Client

    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:  # plain Dask: one worker, which uses the first visible GPU
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=1, threads_per_worker=1, resources={"GPU": 1})
    else:  # one worker per GPU, each seeing only its own
        cluster = LocalCUDACluster(resources={"GPU": 1})
    return Client(cluster, set_as_default=False)


if __name__ == "__main__":
    gpus = 1 if torch.cuda.is_available() else 0
    trainable = tune.with_resources(train_spirals, {"cpu": 1, "gpu": gpus})
    client = gpu_client()
    tuner = tune.Tuner(
        trainable,
        param_space={
            "lr": tune.loguniform(1e-3, 3e-2),
            "width": tune.choice([16, 32, 64]),
            "seed": tune.randint(0, 1000),
        },
        tune_config=tune.TuneConfig(num_samples=3 if SMOKE else 8, seed=0),
        client=client,
    )
    print(f"Asking for {{'cpu': 1, 'gpu': {gpus}}} per trial "
          f"({'CUDA available' if gpus else 'no CUDA device: CPU only'})")
    results = tuner.fit()
    best = results.get_best_result(metric="accuracy", mode="max")
    print(f"Best config: {best.config}")
    print(f"Best accuracy: {best.metrics['accuracy']:.3f}")
    print(f"Devices used by the trials: {sorted({r.metrics['device'] for r in results})} "
          f"({sorted({r.metrics['device_name'] for r in results})})")
    if client is not None:
        cluster = client.cluster
        client.close()
        cluster.close()
