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

#: Runs queued per slot, normally: the one running and the next, so a worker never waits.
_PER_SLOT = 2
#: Where runs are short, enough are queued per slot to keep it busy this long...
_QUEUE_AHEAD_S = 0.1
#: ...but no more than this many.
_MAX_PER_SLOT = 32


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

    def __init__(
        self,
        request: dict[str, float],
        checked: bool,
        max_concurrent: int,
        worker_timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = dict(request)
        self.checked = checked
        self.max_concurrent = max_concurrent
        self.worker_timeout = worker_timeout
        self.slots = 1
        #: Whether runs may be queued further ahead when they are short (the loop says so:
        #: where the searcher learns nothing from results, drawing ahead changes nothing).
        self.queue_ahead = False
        #: A running mean of how long a run takes, in seconds (None: none ended yet).
        self.run_seconds: float | None = None
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

    def note_run(self, seconds: float) -> None:
        """A run ended after ``seconds`` (of its own time on the worker)."""
        seconds = max(0.0, float(seconds))
        self.run_seconds = (
            seconds if self.run_seconds is None else (0.8 * self.run_seconds + 0.2 * seconds)
        )

    @property
    def per_slot(self) -> int:
        """Runs to keep submitted per slot: two (one extra, so that a worker never idles
        between trials), or, where runs take less than a tenth of a second and may be
        queued ahead, enough for a tenth of a second (32 at most).

        Each run submitted when another ends costs a round trip through the driver and
        one graph for the Dask scheduler; for trials of a few milliseconds that
        halved bare Dask's own throughput (see BENCHMARKS.md).
        """
        if not self.queue_ahead or self.max_concurrent or self.run_seconds is None:
            return _PER_SLOT
        wanted = _QUEUE_AHEAD_S / max(self.run_seconds, _QUEUE_AHEAD_S / _MAX_PER_SLOT)
        return max(_PER_SLOT, min(_MAX_PER_SLOT, int(wanted)))

    @property
    def queue_limit(self) -> int:
        """How many runs to keep submitted (:attr:`per_slot` per slot), or exactly the
        slots if the user limited concurrency."""
        return self.slots if self.max_concurrent else self.per_slot * self.slots

    @property
    def deep(self) -> bool:
        """Whether more than the usual two runs per slot are queued (short runs)."""
        return self.per_slot > _PER_SLOT

    @property
    def refill_at(self) -> int:
        """The room in the queue at which new trials are drawn and submitted: at once, or
        for a deep queue of short runs, half of it at a time (one graph, one snapshot
        of the searcher, one write of the journal for them all)."""
        return self.queue_limit // 2 if self.deep else 1


def usable_request(
    workers: Mapping[str, Mapping[str, Any]], resources: Mapping[str, float]
) -> dict[str, float]:
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
