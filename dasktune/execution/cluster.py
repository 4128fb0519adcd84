"""The embedded local cluster, started when the user brings no Dask client.

:meth:`dasktune.execution._dask.DaskBackend.connect` chooses between the user's
client, the default client and this cluster; here the cluster is started, kept
warm between experiments and closed.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import logging
import math
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from dasktune.execution._gpu import GpuProbe, probe_gpus

logger = logging.getLogger(__name__)

#: Names of the processes that never need the user's ``__main__``: Dask's worker processes
#: and the embedded scheduler's (``_scheduler_process.PROCESS_NAME``).
_NO_MAIN_PROCESS_PREFIXES = ("Dask Worker process", "dasktune-scheduler")
_patched = False


def _allow_scripts_without_main_guard() -> None:
    """Let worker processes start without re-running the user's ``__main__``.

    Worker processes are started with multiprocessing's spawn method, which
    re-runs the driver's main script in each child.  A tutorial-style script
    with no ``if __name__ == "__main__":`` guard would then start a second
    experiment inside every worker and fail.  Workers never need the user's
    main module (functions defined there travel by value through
    cloudpickle), so for Dask's worker processes and the embedded scheduler's only
    we drop that step.
    Other processes the user starts are unaffected.
    """
    global _patched
    if _patched:
        return
    original = multiprocessing.spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if str(name).startswith(_NO_MAIN_PROCESS_PREFIXES):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    multiprocessing.spawn.get_preparation_data = get_preparation_data
    _patched = True


def default_n_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ClusterKind(str, Enum):
    """``dasktune.cluster.kind``: which local cluster the embedded one is."""

    AUTO = "auto"  # CUDA where dask-cuda is installed and a GPU is present, else CPU
    CPU = "cpu"  # distributed.LocalCluster
    CUDA = "cuda"  # dask_cuda.LocalCUDACluster, plus CPU workers on the other cores


def select_kind(setting: Any, probe: GpuProbe) -> ClusterKind:
    """The kind of cluster to start for the setting ``dasktune.cluster.kind``.

    Raises, naming the setting and the fix, where ``cuda`` is asked for and cannot
    be had: dask-cuda is missing, or the machine has no GPU.
    """
    try:
        kind = ClusterKind(setting)
    except ValueError:
        raise ValueError(
            f"dasktune.cluster.kind is {setting!r}, but it must be 'auto', 'cpu' or 'cuda'. "
            "Set it with dask.config.set({'dasktune.cluster.kind': 'auto'}) or "
            "DASK_DASKTUNE__CLUSTER__KIND=auto."
        ) from None
    if kind is ClusterKind.CPU:
        return kind
    if kind is ClusterKind.AUTO:
        return ClusterKind.CUDA if probe.dask_cuda and probe.count > 0 else ClusterKind.CPU
    if not probe.dask_cuda:
        raise ImportError(
            "dasktune.cluster.kind is 'cuda', which starts dask_cuda.LocalCUDACluster, but "
            "dask-cuda is not installed. Install it with pip install 'dasktune[cuda]' (it "
            "brings its own dask and distributed versions; see the README), or set "
            "dasktune.cluster.kind to 'auto' or 'cpu'."
        )
    if probe.count == 0:
        raise RuntimeError(
            f"dasktune.cluster.kind is 'cuda', but this machine has no GPU for it: "
            f"{probe.reason}. Set dasktune.cluster.kind to 'auto' (a CUDA cluster only where "
            "there is a GPU) or 'cpu', or run on a machine with an NVIDIA GPU and its driver."
        )
    return kind


@dataclass(frozen=True)
class CpuShape:
    """How the embedded CPU cluster is cut for trials that ask for ``cpus`` CPUs each.

    As in Ray Tune, a trial that asks for more than one CPU holds that many cores and
    its native thread pools (torch, OpenMP, BLAS) get as many threads, so that fewer
    trials run at once.  Users ask for it to run bigger models, or to keep memory-hungry
    trials from running one per core.
    """

    workers: int
    threads: int  # native threads of each worker's trial
    cpus: float  # the CPU resource each worker advertises; 0: none (one trial a thread)


def cpu_shape(cpus_per_trial: float | None, cores: int, n_workers: int | None) -> CpuShape:
    """The embedded cluster's shape for trials asking ``cpus_per_trial`` CPUs each on a
    machine with ``cores`` cores; ``n_workers`` (``dasktune.cluster.n-workers``) wins
    over the count it implies.

    >>> cpu_shape(None, 8, None)
    CpuShape(workers=8, threads=1, cpus=0)
    >>> cpu_shape(2, 8, None)
    CpuShape(workers=4, threads=2, cpus=2)
    >>> cpu_shape(1.5, 4, None)
    CpuShape(workers=2, threads=2, cpus=1.5)
    >>> cpu_shape(16, 2, None)  # more than the machine has: one at a time, on every core
    CpuShape(workers=1, threads=2, cpus=16)
    """
    if not cpus_per_trial or cpus_per_trial <= 1:
        return CpuShape(n_workers or cores, 1, 0)
    threads = min(math.ceil(cpus_per_trial), cores)
    return CpuShape(n_workers or max(1, cores // threads), threads, cpus_per_trial)


#: Seconds between the embedded cluster's reminders to its scheduler of its name and type.
CLUSTER_INFO_SYNC_S = 10


def cluster_options(n_workers: int | None = None) -> dict[str, Any]:
    """Keyword arguments for the embedded cluster, from ``dasktune.cluster`` settings.

    Scheduler, workers and dashboard listen on ``cluster.host`` (127.0.0.1: only
    this machine can reach them); ``cluster.security: true`` adds Dask's TLS with
    temporary certificates, so that no one without them can connect.
    """
    from dasktune import config

    host = config.get("cluster.host") or "127.0.0.1"
    if not isinstance(host, str):
        raise TypeError(
            f"dasktune.cluster.host is {host!r}; it must be an address such as "
            "'127.0.0.1' (this machine only) or '0.0.0.0' (every interface)."
        )
    dashboard = config.get("cluster.dashboard-address")
    if dashboard is None:
        dashboard = f"[{host}]:0" if ":" in host else f"{host}:0"
    options: dict[str, Any] = dict(
        n_workers=n_workers or config.get("cluster.n-workers") or default_n_workers(),
        threads_per_worker=1,
        processes=True,
        host=host,
        dashboard_address=dashboard,
        silence_logs=logging.ERROR,
        preload=["dasktune.execution._worker_setup"],
        # The cluster object tells the scheduler its name and type, for other clients
        # to read; Dask repeats it every second, a round trip each time.
        scheduler_sync_interval=CLUSTER_INFO_SYNC_S,
    )
    if _security_wanted(config.get("cluster.security")):
        options["security"] = True  # LocalCluster makes temporary certificates
    return options


def _security_wanted(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is not True:
        raise TypeError(
            f"dasktune.cluster.security is {value!r}; it must be true (TLS with "
            "temporary certificates) or false."
        )
    try:
        import cryptography  # noqa: F401  (what Dask's temporary certificates need)
    except ImportError:
        raise ImportError(
            "dasktune.cluster.security is true, and Dask's temporary TLS certificates need "
            "the cryptography package: pip install cryptography (or 'dasktune[hpc]'), or set "
            "dasktune.cluster.security to false."
        ) from None
    return True


def start_local_cluster(
    n_workers: int | None = None, cpus_per_trial: float | None = None, **kwargs: Any
) -> Any:
    """Start the embedded cluster of the kind ``dasktune.cluster.kind`` selects.

    CPU: one single-threaded worker process per core; for trials that ask for more
    than one CPU each (``cpus_per_trial``), one per that many cores, each advertising
    them as the resource ``CPU`` and running its trial's native code on as many
    threads (see :func:`cpu_shape`).  CUDA: dask-cuda's one worker
    per GPU, pinned to it, advertising the resource ``GPU=1``, plus CPU workers
    advertising ``CPU=1`` on the remaining cores.  Extra keyword arguments go to
    :class:`distributed.LocalCluster` (or ``LocalCUDACluster``).
    """
    from dasktune import config

    setting = config.get("cluster.kind")
    probe = GpuProbe(0, False) if setting == ClusterKind.CPU.value else probe_gpus()
    kind = select_kind(setting, probe)
    if kind is ClusterKind.CUDA:
        cpu_workers = (
            n_workers
            or config.get("cluster.n-workers")
            or max(0, default_n_workers() - probe.count)
        )
        options = cluster_options(n_workers=1)
        options.update(kwargs)
        # No forkserver forked from the driver: it has loaded NVML to count the GPUs.
        return _with_worker_settings(
            None, lambda: _start_cuda_cluster(options, probe.count, int(cpu_workers))
        )
    from distributed import LocalCluster

    shape = cpu_shape(
        cpus_per_trial, default_n_workers(), n_workers or config.get("cluster.n-workers")
    )
    options = cluster_options(shape.workers)
    if shape.cpus:
        options["resources"] = {"CPU": shape.cpus}
        # Set in the worker process itself, over the driver's environment, which Dask's
        # pre-spawn settings would prefer: the trials' request wins.
        options["env"] = {variable: str(shape.threads) for variable in _THREAD_VARIABLES}
    options.update(kwargs)
    cls = _local_cluster_class() if config.get("cluster.scheduler-process") else LocalCluster
    return _with_worker_settings(options["n_workers"], lambda: cls(**options))


def _scheduler_in_a_process(spec: dict[str, Any], silence_logs: Any) -> dict[str, Any]:
    """A ``SpecCluster`` scheduler spec that runs the same Scheduler in a child process."""
    from dasktune import config
    from dasktune.execution._scheduler_process import SchedulerProcess

    options = dict(spec.get("options") or {})
    level = silence_logs if isinstance(silence_logs, int) and silence_logs else logging.WARNING
    heartbeat = heartbeat_interval(config.get("cluster.heartbeat-interval"))
    return {
        "cls": SchedulerProcess,
        "options": {"log_level": level, "heartbeat_interval": heartbeat, **options},
    }


def heartbeat_interval(value: Any) -> float | None:
    """``dasktune.cluster.heartbeat-interval`` in seconds (a number, or a duration such as
    "2s"), or None for Dask's own pace."""
    from dask.utils import parse_timedelta

    if value is None:
        return None
    try:
        seconds = None if isinstance(value, bool) else parse_timedelta(value, default="s")
    except Exception:  # parse_timedelta raises several types for what it cannot read
        seconds = None
    if seconds is None or not seconds > 0:
        raise ValueError(
            f"dasktune.cluster.heartbeat-interval is {value!r}; it must be a duration above 0 "
            "(2 or '2s': a heartbeat from each worker every 2 s), or null for Dask's own pace."
        )
    return float(seconds)


@functools.cache
def _local_cluster_class() -> Any:
    """The class is made on first use: importing this module does not import distributed."""
    from distributed import LocalCluster

    class LocalClusterSchedulerProcess(LocalCluster):
        """distributed's LocalCluster, with its scheduler in a process of its own.

        Everything else (workers, security, addresses) is LocalCluster's; only the
        scheduler spec it built is swapped before the cluster starts.
        """

        def __init__(self, **kwargs: Any) -> None:
            self._dasktune_silence_logs = kwargs.get("silence_logs", logging.WARNING)
            super().__init__(**kwargs)

        async def _start(self) -> None:
            if self.scheduler is None and self.scheduler_spec is not None:
                self.scheduler_spec = _scheduler_in_a_process(
                    self.scheduler_spec, self._dasktune_silence_logs
                )
            await super()._start()

    return LocalClusterSchedulerProcess


#: The thread counts of native libraries that Dask sets for worker processes.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _with_worker_settings(fork_for: int | None, start: Callable[[], Any]) -> Any:
    """Start a cluster (``start()``) with dasktune's worker process settings.

    ``fork_for``: the number of workers a forkserver forked from the driver would
    serve, or None for a standard forkserver.
    """
    import dask

    from dasktune import config

    _allow_scripts_without_main_guard()
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in worker processes so that freed memory
    # goes back to the OS. For training loops that allocate and free tensors of a few
    # hundred kB every batch this turns each allocation into mmap/munmap system calls:
    # the tutorial's epochs ran 2.5x slower, half of it in the kernel. dasktune's
    # embedded workers keep glibc's adaptive default unless configured otherwise.
    trim = config.get("cluster.malloc-trim-threshold")
    settings: dict[str, Any] = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": trim}
    settings.update(embedded_dask_settings())
    method = config.get("cluster.start-method")
    if method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
        with dask.config.set(settings):
            preload = _preload_forkserver(config.get("cluster.preload") or [])
            if fork_for is not None and config.get("cluster.fork-from-driver"):
                _start_forkserver_from_driver(preload, fork_for)
    with dask.config.set(settings), _nannies_poll_quickly(), _driver_environment_kept():
        return start()


@contextlib.contextmanager
def _driver_environment_kept() -> Iterator[None]:
    """Dask's nannies write their workers' settings (``OMP_NUM_THREADS=1``...) into the
    driver's own environment before starting them, where the next cluster's nannies
    read them as the user's: a cluster cut for trials of several CPUs would hand its
    thread counts to the next one.  The driver's values are put back once the cluster
    is up (each nanny keeps its own for the restarts of its worker)."""
    names = (*_THREAD_VARIABLES, "MALLOC_TRIM_THRESHOLD_")
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _nannies_poll_quickly(interval: float = 0.005) -> Iterator[None]:
    """While the cluster starts, each nanny checks every ``interval`` seconds whether its
    worker process is up.  Dask checks every 50 ms, so each start waited 25 ms on average
    for the check, on the way to the first trial."""
    from distributed.nanny import WorkerProcess

    before = getattr(WorkerProcess, "_init_msg_interval", None)
    if not isinstance(before, (int, float)) or before <= interval:
        yield  # another version of distributed, or already quick
        return
    WorkerProcess._init_msg_interval = interval
    try:
        yield
    finally:
        WorkerProcess._init_msg_interval = before


def embedded_dask_settings() -> dict[str, Any]:
    """``dasktune.cluster.dask-config``: the Dask settings of the embedded cluster, less
    those the user's Dask configuration sets (in a file, a ``DASK_*`` variable, or in
    the process to something other than Dask's default)."""
    import dask

    from dasktune import config

    wanted = config.get("cluster.dask-config") or {}
    if not isinstance(wanted, dict):
        raise TypeError(
            f"dasktune.cluster.dask-config is {wanted!r}; it must be a mapping of Dask "
            "settings such as {'distributed.worker.profile.enabled': False}, or {} for none."
        )
    defaults: dict[str, Any] = {}
    for layer in dask.config.defaults:
        dask.config.update(defaults, copy.deepcopy(layer))
    given = dask.config.collect()  # the user's YAML files and DASK_* variables
    missing = object()
    return {
        key: value
        for key, value in wanted.items()
        if dask.config.get(key, missing, config=given) is missing
        and dask.config.get(key, missing) == dask.config.get(key, missing, config=defaults)
    }


def _start_cuda_cluster(options: dict[str, Any], n_gpus: int, cpu_workers: int) -> Any:
    """dask-cuda's LocalCUDACluster (one worker per GPU, ``GPU=1``) plus CPU workers.

    Each GPU worker sees only its own GPU first in ``CUDA_VISIBLE_DEVICES`` (device 0
    is its GPU) and has ``dasktune.cluster.gpu-worker-threads`` threads, so that
    trials asking for a fraction of a GPU can share it.  The CPU workers see no GPU
    and advertise ``CPU=1``: trials that ask for no GPU run there, off the GPU
    workers (see :func:`dasktune.execution.capacity.usable_request`).
    """
    from distributed.system import MEMORY_LIMIT

    from dasktune import config

    threads = config.get("cluster.gpu-worker-threads")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(
            f"dasktune.cluster.gpu-worker-threads is {threads!r}; it must be a "
            "whole number >= 1 (2 lets two trials that ask for {'gpu': 0.5} "
            "share a GPU)."
        )
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:  # installed, but broken (a CUDA library it needs is missing)
        raise ImportError(
            f"dasktune.cluster.kind selected a CUDA cluster, but dask_cuda "
            f"failed to import: {exc}. Reinstall it (pip install "
            "'dasktune[cuda]') or set dasktune.cluster.kind to 'cpu'."
        ) from exc
    for key in ("n_workers", "threads_per_worker", "processes"):
        options.pop(key, None)
    options.setdefault("memory_limit", int(MEMORY_LIMIT / max(1, n_gpus + cpu_workers)))
    resources = dict(options.pop("resources", None) or {})
    resources.setdefault("GPU", 1)
    try:
        cluster = LocalCUDACluster(threads_per_worker=threads, resources=resources, **options)
    except Exception as exc:  # NVML or the CUDA driver refused
        raise RuntimeError(
            f"dask_cuda.LocalCUDACluster failed to start on this machine "
            f"({exc!r}). Set dasktune.cluster.kind to 'cpu' to tune on the "
            "CPUs, or check the NVIDIA driver with nvidia-smi."
        ) from exc
    try:
        add_cpu_workers(cluster, cpu_workers)
    except BaseException:
        cluster.close()
        raise
    return cluster


def add_cpu_workers(cluster: Any, n: int) -> None:
    """Add ``n`` single-threaded workers to a running local ``SpecCluster``, each
    advertising ``CPU=1`` and seeing no GPU (``CUDA_VISIBLE_DEVICES=""``).

    They copy the cluster's worker template (address, security, memory limit,
    preloads) without its GPU parts: dask-cuda's preload, data store and plugins.
    """
    if n <= 0:
        return
    template = copy.deepcopy(cluster.new_spec)
    options = template["options"]
    for key in ("data", "plugins", "preload_argv"):
        options.pop(key, None)
    options.update(
        nthreads=1,
        resources={"CPU": 1},
        env={"CUDA_VISIBLE_DEVICES": ""},
        preload=[p for p in options.get("preload") or [] if not str(p).startswith("dask_cuda")],
    )
    for i in range(n):
        cluster.worker_spec[f"cpu-{i}"] = copy.deepcopy(template)
    # What SpecCluster.scale does after changing worker_spec (LocalCUDACluster does it too).
    cluster.sync(cluster._correct_state)
    cluster.wait_for_workers(len(cluster.worker_spec), timeout=120)


def _preload_forkserver(candidates: list[str]) -> list[str]:
    """Have the forkserver import what the driver already uses, once for all workers.

    Worker processes fork from a single-threaded server process that imported
    these modules, so none of them imports torch (seconds) on its own. Only
    modules the driver has imported count: the trainable will need them.
    """
    import distributed.utils
    from distributed.utils import get_mp_context

    # On its first call distributed imports every package it knows of (pandas, numpy,
    # ...) to preload the importable ones: a quarter of a second in the driver, for
    # modules no trial may need. The flag that says it has done so is set first.
    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True
    context = get_mp_context()
    preload = ["distributed"] + [m for m in candidates if m in sys.modules]
    context.set_forkserver_preload(preload)
    return preload


# The driver's resident memory above which its pages are not shared with the workers, as a
# fraction of one worker's memory limit: each forked worker reports the pages it shares with
# the driver as its own memory, and Dask pauses workers that look too big.
_FORK_MAX_RSS_FRACTION = 0.25


def _start_forkserver_from_driver(preload: list[str], n_workers: int) -> bool:
    """Start multiprocessing's forkserver as a fork of this process, when that is safe.

    A fresh forkserver imports torch and torchvision again (3 s and more on two
    cores) while the driver, which imported them already, waits.  A fork of the
    driver has them at no cost.  Forking is only safe in a process that runs no
    other Python thread (a thread could hold a lock the child then waits for
    forever) and has not loaded CUDA.  When either holds, when the driver is
    large (each worker would count the driver's pages as its own memory), or
    when the forkserver runs already, this does nothing and the standard
    forkserver starts as usual.  Native thread pools that may run (OpenBLAS,
    OpenMP) are safe: the forked server runs no numerical code, and trials run
    in new threads, which build their own OpenMP pools.  What a fresh
    interpreter would not have (the driver's open files, signal handlers and
    log handlers) is dropped in the server before any worker forks from it.

    Returns whether the forked server was started.
    """
    reason = _why_not_fork(n_workers)
    if reason:
        logger.debug("starting a standard forkserver: %s", reason)
        return False
    _compute_once_for_every_process()
    import socket
    import warnings
    from multiprocessing import connection, forkserver, resource_tracker, util

    # CPython's private forkserver (and connection.arbitrary_address), which typeshed does not
    # describe: _why_not_fork checked that the forkserver has the attributes used here.
    server: Any = forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is not None:
            return False
        resource_tracker.ensure_running()
        listener = socket.socket(socket.AF_UNIX)
        alive_r = alive_w = -1
        try:
            address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            # Every client holds the write end; the server exits when the driver has gone.
            alive_r, alive_w = os.pipe()
            for stream in (sys.stdout, sys.stderr):  # or the children print it again
                try:
                    stream.flush()
                except Exception:  # a replaced stream that cannot flush has nothing to repeat
                    pass
            with warnings.catch_warnings():  # Python 3.12+ warns of the BLAS threads
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:  # no fork after all: the standard forkserver starts instead
            logger.debug("forking the driver failed: %s", exc)
            for fd in (alive_r, alive_w):
                if fd >= 0:
                    os.close(fd)
            listener.close()
            return False
        if pid == 0:  # the forkserver: never returns into the driver's code
            code = 1
            try:
                os.close(alive_w)
                listener_fd = listener.detach()
                _leave_the_driver_behind(keep=(0, 1, 2, listener_fd, alive_r))
                server._lock = threading.Lock()  # held by this thread in the driver
                embedded._lock = threading.Lock()
                forkserver.main(listener_fd, alive_r, preload)
            except SystemExit:  # the driver has gone
                code = 0
            except BaseException:
                sys.excepthook(*sys.exc_info())
            finally:
                os._exit(code)
        os.close(alive_r)
        listener.close()
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True


def _compute_once_for_every_process() -> None:
    """Compute in the driver, before it is forked, what every process of the cluster
    computes the same way at start: each child inherits the result.

    The scheduler, each worker and the driver's client send or check
    ``distributed.versions.get_versions()`` when they connect: a ``uname -p``
    subprocess, an import of ``email`` and the metadata of ten packages, 35-55 ms
    in each process, while the others start on the same cores.  It is cached per
    process, so computed here once it is computed for all (they all run this Python
    and these packages).  It starts no thread, so the fork stays safe.
    """
    try:
        from distributed.versions import get_versions

        get_versions()
    except Exception:  # each process computes its own, as it would have
        logger.debug("computing Dask's versions before the fork failed", exc_info=True)


def _leave_the_driver_behind(keep: tuple[int, ...]) -> None:
    """In the forked server: drop what a fresh interpreter would not have, for every worker.

    - File descriptors: the driver's pipes, sockets and files would stay open in
      the server and every worker, so a helper process of the driver's would never
      see end-of-file and a port it listened on would stay bound.  Each is pointed
      at /dev/null rather than closed: the driver's Python objects still own the
      numbers, and closing one later must not close a reused descriptor.
    - Signal handlers: a worker must die of SIGTERM, not run the driver's handler.
    - Logging: the root logger's handlers would print the workers' Dask logs,
      or write them into the driver's log file.
    - Garbage: nothing of the driver's is collected here (and flushed again).
    """
    import gc
    import logging as logging_module
    import signal

    devnull = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep and fd != devnull:
            try:
                os.dup2(devnull, fd)
            except OSError:  # the descriptor of the listing itself, closed by now
                pass
    os.close(devnull)
    for sig in signal.valid_signals():
        try:
            if callable(signal.getsignal(sig)):
                signal.signal(
                    sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                )
        except (OSError, ValueError):  # signals that cannot be caught
            pass
    root = logging_module.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging_module.WARNING)
    gc.freeze()


def _why_not_fork(n_workers: int) -> str | None:
    """Why the driver must not be forked into the forkserver now, or None."""
    import inspect
    from multiprocessing import forkserver

    if not sys.platform.startswith("linux"):
        return "forking the driver is only done on Linux"
    server = getattr(forkserver, "_forkserver", None)
    expected = ["listener_fd", "alive_r", "preload", "main_path", "sys_path"]
    attributes = ("_lock", "_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd")
    if (
        server is None
        or list(inspect.signature(forkserver.main).parameters) != expected
        or not all(hasattr(server, a) for a in attributes)
    ):
        return "this Python's forkserver is not the one dasktune knows how to start"
    if server._forkserver_pid is not None:
        return "the forkserver runs already"
    if threading.active_count() > 1:
        return f"{threading.active_count() - 1} other Python threads are running"
    try:
        from distributed.system import MEMORY_LIMIT

        with open("/proc/self/maps") as maps:
            if "libcuda.so" in maps.read():  # a forked CUDA context is unusable
                return "the driver has loaded CUDA"
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return "the driver's memory use is unknown"
    if rss > _FORK_MAX_RSS_FRACTION * MEMORY_LIMIT / max(1, n_workers):
        return f"the driver uses {rss / 2**20:.0f} MiB of memory"
    return None


class _Embedded:
    """The embedded cluster, kept warm for a short while between experiments.

    A script that runs several experiments (the tutorial runs three) would
    otherwise start worker processes, and import torch in them, once per
    ``fit``.  After ``fit`` the cluster stays up ``dasktune.cluster.keep-alive``
    seconds for the next one, then closes; it also closes when Python exits.
    ``keep-alive: 0`` closes it at the end of every ``fit``.
    """

    def __init__(self) -> None:
        self.cluster: Any = None
        self.client: Any = None
        self.in_use = False
        self._kwargs: dict[str, Any] = {}  # what the warm cluster was started with
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def acquire(self, **kwargs: Any) -> tuple[Any, Any, bool]:
        """(cluster, client, started_now) for one experiment."""
        from distributed import Client

        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if (
                self.client is not None
                and not self.in_use
                and self._kwargs == kwargs  # cut for trials of the same size
                and self._healthy()
            ):
                self.in_use = True
                return self.cluster, self.client, False
            if self.in_use:  # a second concurrent fit (threads): give it a cluster of its own
                cluster = start_local_cluster(**kwargs)
                return cluster, Client(cluster, set_as_default=False), True
            self._close_now()
            self.cluster = start_local_cluster(**kwargs)
            self.client = Client(self.cluster, set_as_default=False)
            self._kwargs = dict(kwargs)
            self.in_use = True
            return self.cluster, self.client, True

    def _healthy(self) -> bool:
        try:
            return (
                self.client.status == "running" and len(self.client.scheduler_info()["workers"]) > 0
            )
        except Exception:  # a closed or broken cluster is simply replaced
            return False

    def release(self, cluster: Any, client: Any) -> None:
        """The experiment is over: close its cluster now or after the keep-alive delay."""
        from dasktune import config

        if cluster is not self.cluster:
            client.close()
            cluster.close()
            return
        keep = float(config.get("cluster.keep-alive") or 0)
        with self._lock:
            self.in_use = False
            if keep <= 0:
                self._close_now()
                return
            self._timer = threading.Timer(keep, self.close)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        with self._lock:
            if not self.in_use:
                self._close_now()

    def _close_now(self) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        for closable in (client, cluster):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # closing at exit: nothing useful to do with an error
                    logger.debug("closing the embedded cluster failed", exc_info=True)


embedded = _Embedded()
