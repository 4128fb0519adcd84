"""Ask for a GPU per trial with ``tune.with_resources``; fall back to the CPU without one.

How a GPU request reaches Dask
------------------------------
``tune.with_resources(train, {"cpu": 1, "gpu": 1})`` is Ray Tune's spelling.
dasktune turns it into a Dask *worker resource* request: ``gpu`` becomes the
resource ``GPU`` (and ``cpu`` the resource ``CPU``, honoured where workers
advertise it).  The Dask scheduler then runs a trial only on a worker that
advertises ``GPU``, and never more trials on it at once than its ``GPU`` amount
(and its threads) allow: ``{"gpu": 1}`` runs one trial per GPU, ``{"gpu": 0.5}``
two.  Inside a trial, device 0 is the trial's own GPU, so
``torch.device("cuda" if torch.cuda.is_available() else "cpu")`` needs no change,
and ``tune.get_context().get_trial_resources()`` returns ``{"GPU": 1.0}``.

On a machine with NVIDIA GPUs and ``pip install 'dasktune[cuda]'``, the embedded
cluster is dask-cuda's ``LocalCUDACluster``: one worker per GPU, each pinned to
its GPU through ``CUDA_VISIBLE_DEVICES`` and advertising ``GPU=1``, plus CPU
workers (``CPU=1``, no GPU visible) on the other cores.  Trials that ask for no
GPU run on the CPU workers and leave the GPUs to the trials that asked.
``dasktune.cluster.kind`` (``auto``, ``cpu``, ``cuda``) overrides the choice.

On a cluster of your own, start the GPU workers with the resource::

    dask scheduler --scheduler-file ~/sched.json
    dask cuda worker --scheduler-file ~/sched.json --resources "GPU=1"   # one worker per GPU
    dask worker --scheduler-file ~/sched.json --resources "CPU=8"        # CPU-only machines

and connect before tuning: ``Client(scheduler_file="~/sched.json")`` becomes
the default client.  If no worker advertises enough ``GPU``, ``Tuner.fit`` stops
at once and says so, rather than waiting forever for a worker that never comes.

This script asks for a GPU where the embedded cluster will have GPU workers
(torch sees a GPU and dask-cuda is installed), else for ``{"cpu": 1}``.  Each
trial reports the device it trained on.

    python examples/gpu_resources.py           # 8 trials
    python examples/gpu_resources.py --smoke   # 3 small trials (DASKTUNE_SMOKE=1 too)
"""

import importlib.util
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
    model = nn.Sequential(
        nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2)
    ).to(device)
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
        tune.report(
            {
                "accuracy": accuracy,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else "cpu",
            }
        )


gpus = 1 if torch.cuda.is_available() else 0
if gpus and importlib.util.find_spec("dask_cuda") is None:
    print(
        "This machine has a GPU, but dask-cuda is not installed: the trials run on the "
        "CPU. pip install 'dasktune[cuda]' to give them the GPU."
    )
    gpus = 0
tuner = tune.Tuner(
    tune.with_resources(train_spirals, {"cpu": 1, "gpu": gpus}),
    param_space={
        "lr": tune.loguniform(1e-3, 3e-2),
        "width": tune.choice([16, 32, 64]),
        "seed": tune.randint(0, 1000),
    },
    tune_config=tune.TuneConfig(num_samples=3 if SMOKE else 8, seed=0),
)
print(
    f"Asking for {{'cpu': 1, 'gpu': {gpus}}} per trial "
    f"({'on the GPU workers' if gpus else 'no usable GPU: CPU only'})"
)
results = tuner.fit()
best = results.get_best_result(metric="accuracy", mode="max")
print(f"Best config: {best.config}")
print(f"Best accuracy: {best.metrics['accuracy']:.3f}")
print(
    f"Devices used by the trials: {sorted({r.metrics['device'] for r in results})} "
    f"({sorted({r.metrics['device_name'] for r in results})})"
)
