"""The embedded local cluster, started when the user brings no Dask client.

:meth:`dasktune.execution._dask.DaskBackend.connect` chooses between the user's
client, the default client and this cluster; here the cluster is started, kept
warm between experiments and closed.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

_NANNY_PROCESS_PREFIX = "Dask Worker process"
_patched = False


def _allow_scripts_without_main_guard() -> None:
    """Let worker processes start without re-running the user's ``__main__``.

    Worker processes are started with multiprocessing's spawn method, which
    re-runs the driver's main script in each child.  A tutorial-style script
    with no ``if __name__ == "__main__":`` guard would then start a second
    experiment inside every worker and fail.  Workers never need the user's
    main module (functions defined there travel by value through
    cloudpickle), so for Dask's worker processes only we drop that step.
    Other processes the user starts are unaffected.
    """
    global _patched
    if _patched:
        return
    original = multiprocessing.spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if str(name).startswith(_NANNY_PROCESS_PREFIX):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    multiprocessing.spawn.get_preparation_data = get_preparation_data  # type: ignore[assignment]
    _patched = True


def default_n_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def start_local_cluster(n_workers: int | None = None, **kwargs: Any) -> Any:
    """Start the embedded cluster: worker processes with one thread each.

    Extra keyword arguments go to :class:`distributed.LocalCluster`.
    """
    import dask
    from distributed import LocalCluster

    from dasktune import config

    _allow_scripts_without_main_guard()
    options: dict[str, Any] = dict(
        n_workers=n_workers or config.get("cluster.n-workers") or default_n_workers(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=config.get("cluster.dashboard-address"),
        silence_logs=logging.ERROR,
        preload=["dasktune.execution._worker_setup"],
    )
    options.update(kwargs)
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in worker processes so that freed memory
    # goes back to the OS. For training loops that allocate and free tensors of a few
    # hundred kB every batch this turns each allocation into mmap/munmap system calls:
    # the tutorial's epochs ran 2.5x slower, half of it in the kernel. dasktune's
    # embedded workers keep glibc's adaptive default unless configured otherwise.
    trim = config.get("cluster.malloc-trim-threshold")
    settings: dict[str, Any] = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": trim}
    method = config.get("cluster.start-method")
    if method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
        with dask.config.set(settings):
            preload = _preload_forkserver(config.get("cluster.preload") or [])
            if config.get("cluster.fork-from-driver"):
                _start_forkserver_from_driver(preload, options["n_workers"])
    with dask.config.set(settings):
        return LocalCluster(**options)


def _preload_forkserver(candidates: list[str]) -> list[str]:
    """Have the forkserver import what the driver already uses, once for all workers.

    Worker processes fork from a single-threaded server process that imported
    these modules, so none of them imports torch (seconds) on its own. Only
    modules the driver has imported count: the trainable will need them.
    """
    from distributed.utils import get_mp_context

    context = get_mp_context()  # lets distributed choose its own preloads first
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
    import socket
    import warnings
    from multiprocessing import connection, forkserver, resource_tracker, util

    server = forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is not None:
            return False
        resource_tracker.ensure_running()
        listener = socket.socket(socket.AF_UNIX)
        alive_r = alive_w = -1
        try:
            address = connection.arbitrary_address("AF_UNIX")
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
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                              else signal.SIG_DFL)
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
    if (list(inspect.signature(forkserver.main).parameters) != expected
            or not all(hasattr(server, a) for a in
                       ("_lock", "_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd"))):
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
            if self.client is not None and not self.in_use and self._healthy():
                self.in_use = True
                return self.cluster, self.client, False
            if self.in_use:  # a second concurrent fit (threads): give it a cluster of its own
                cluster = start_local_cluster(**kwargs)
                return cluster, Client(cluster, set_as_default=False), True
            self._close_now()
            self.cluster = start_local_cluster(**kwargs)
            self.client = Client(self.cluster, set_as_default=False)
            self.in_use = True
            return self.cluster, self.client, True

    def _healthy(self) -> bool:
        try:
            return self.client.status == "running" and len(self.client.scheduler_info()["workers"]) > 0
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
