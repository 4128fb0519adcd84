"""How many trials the cluster fits at once, followed as workers join and leave.

Pure: the loop reads the workers from the backend and hands them in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

#: Address -> {"nthreads": int, "resources": {name: amount}}, as the backend reports workers.
Workers = Mapping[str, Mapping[str, Any]]


class Capacity:
    """The trial slots of a cluster for one experiment's resource request.

    Args:
        request: Resources per trial, as ``with_resources`` asked.
        checked: Whether ``request`` was already checked against workers; a cluster
            that has none yet is checked when the first one arrives.
        max_concurrent: ``TuneConfig(max_concurrent_trials)``; 0 for no limit.
        worker_timeout: How long the cluster may have no worker at all (None: it
            scales itself, so wait for it).
    """

    def __init__(self, request: dict[str, float], checked: bool, max_concurrent: int,
                 worker_timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.request = dict(request)
        self.checked = checked
        self.max_concurrent = max_concurrent
        self.worker_timeout = worker_timeout
        self.slots = 1
        self._clock = clock
        self._no_worker_since: float | None = None

    def update(self, workers: Workers) -> None:
        """Follow the cluster's size: workers join (from a batch queue, or by cluster.adapt)
        and leave while the experiment runs."""
        now = self._clock()
        if workers:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        elif self.worker_timeout is not None and now - self._no_worker_since > self.worker_timeout:
            raise RuntimeError(
                f"The Dask cluster has had no worker for dasktune.worker-timeout = "
                f"{self.worker_timeout:g} s, so no trial can run. Start workers "
                "(cluster.scale(n), or `dask worker <scheduler address>`), let the cluster scale "
                "itself (cluster.adapt(maximum=n)), or, where workers take longer to start (a "
                "batch queue, an autoscaler dasktune cannot see), raise dasktune.worker-timeout "
                "in dask.config."
            )
        if not self.checked and workers:
            self.request = usable_request(workers, self.request)
            self.checked = True
        # With no worker yet, queued trials are what ask a self-scaling cluster to grow.
        self.slots = self.max_concurrent or max(1, trial_slots(workers, self.request))

    @property
    def queue_limit(self) -> int:
        """How many runs to keep submitted: one extra per slot so that a worker never
        idles between trials, unless the user limited concurrency."""
        return self.slots if self.max_concurrent else 2 * self.slots


def usable_request(workers: Mapping[str, Mapping[str, Any]],
                   resources: Mapping[str, float]) -> dict[str, float]:
    """The per-trial request as Dask can express it; raise if no worker can ever meet it.

    Dask places a task by the resources it asks for, and a task that asks for none
    may run on any worker.  So:

    - A trial that asks for ``GPU`` runs on workers that advertise it; ``CPU`` is
      kept only where those workers advertise CPU (a worker thread is a CPU).
    - A trial that asks for no GPU, on a cluster where some workers have a GPU
      and others do not, must stay off the GPU workers: it asks for ``CPU`` (as
      much as it asked, else 1), which the workers without a GPU advertise.  GPU
      workers that advertise CPU too offer it to such trials, by their own choice.
      Where no worker without a GPU advertises CPU, Dask cannot keep the trials
      off the GPUs: an error says how to fix the cluster.
    - Otherwise ``CPU`` is dropped unless some worker advertises it.
    """
    gpu_workers = {a: w for a, w in workers.items() if _has_gpu(w)}
    other_workers = {a: w for a, w in workers.items() if not _has_gpu(w)}
    request = dict(resources)
    if "GPU" in request:
        if not _advertises_cpu(gpu_workers):
            request.pop("CPU", None)
    elif gpu_workers and other_workers:
        if not _advertises_cpu(other_workers):
            raise ValueError(
                f"with_resources asks for no GPU ({request or 'no resources'}), so these trials "
                f"belong on the {len(other_workers)} workers without a GPU, not on the "
                f"{len(gpu_workers)} that have one; but Dask keeps a task off a worker only "
                "through resources, and the workers without a GPU advertise none. Start them "
                "with --resources 'CPU=<threads>' (LocalCluster(resources={'CPU': 1}), or for "
                "dask-jobqueue worker_extra_args=['--resources', 'CPU=4']); or ask for GPUs: "
                "tune.with_resources(trainable, {'gpu': 1}). To let such trials use the GPU "
                "workers as well, have those advertise CPU too."
            )
        request.setdefault("CPU", 1.0)
    elif not _advertises_cpu(workers):
        request.pop("CPU", None)
    if trial_slots(workers, request) == 0:
        have = {addr: w["resources"] or "no resources" for addr, w in workers.items()}
        raise ValueError(
            f"with_resources asks for {request} per trial, but no worker of the cluster can "
            f"provide that; the workers advertise: {have}. Lower the request, or start "
            "workers that have it (dask worker --resources 'GPU=1', "
            "LocalCluster(resources={'GPU': 1}), or for dask-jobqueue "
            "worker_extra_args=['--resources', 'GPU=1'])."
        )
    return request


def _has_gpu(worker: Mapping[str, Any]) -> bool:
    return float(worker["resources"].get("GPU", 0)) > 0


def _advertises_cpu(workers: Mapping[str, Mapping[str, Any]]) -> bool:
    return any("CPU" in w["resources"] for w in workers.values())


def trial_slots(workers: Mapping[str, Mapping[str, Any]], request: Mapping[str, float]) -> int:
    """How many trials asking for ``request`` fit on ``workers`` at once."""
    total = 0
    for info in workers.values():
        fit = info["nthreads"]
        for name, amount in request.items():
            have = info["resources"].get(name, 0)
            fit = min(fit, math.floor(have / amount + 1e-9))
        total += max(fit, 0)
    return total

