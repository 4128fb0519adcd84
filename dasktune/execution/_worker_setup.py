"""Set-up that dasktune's embedded cluster runs in each worker process (a Dask preload).

Ctrl-C in a terminal reaches every process of the group, the workers too. The
driver stops the experiment cleanly (trials end at their next report and every
result is kept); workers that died of the same Ctrl-C would only print
tracebacks. So embedded workers ignore SIGINT and leave shutdown to the driver.

Trials may start processes of their own (see :func:`allow_child_processes`).

Workers are forked from a server process that may be a copy of the driver (see
``cluster._start_forkserver_from_driver``). Dask sets ``OMP_NUM_THREADS`` (and
the BLAS variables) to the worker's thread count, but native libraries read
them once, when they load, and those the driver had loaded read the driver's
values. So each worker holds torch, OpenMP and BLAS to that count itself:
two workers on two cores would otherwise run four threads each.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

_threads: int | None = None  # the worker's thread count, in the embedded cluster's workers
_this_thread = threading.local()


def dask_setup(worker: Any) -> None:
    global _threads
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    allow_child_processes()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        _threads = int(threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(_threads)
        limit_native_threads()  # BLAS pools are per process: done here for all threads


def allow_child_processes() -> None:
    """Let trials start processes of their own, as they may under Ray Tune: torch's
    ``DataLoader(num_workers=4)``, ``multiprocessing.Pool``.

    Dask starts workers as daemonic processes, which multiprocessing forbids to have
    children ("daemonic processes are not allowed to have children").  This process
    stops calling itself daemonic; the nanny still treats it as one (it is ended with
    the cluster), and the children that libraries start are daemonic themselves.  On
    Linux, children are forked, Python's own default there: a worker forked from the
    driver's forkserver carries the driver's ``__main__``, which a spawned or
    forkserver child would run again (a script without a main guard would start its
    experiment anew in every DataLoader worker).
    """
    import multiprocessing

    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]
    if sys.platform.startswith("linux"):
        multiprocessing.set_start_method("fork", force=True)


def limit_native_threads() -> None:
    """Hold this thread's OpenMP and BLAS pools to the worker's thread count (once per thread).

    OpenMP keeps its thread count per calling thread, so every thread that runs
    trials calls this before its first trial. Outside the embedded cluster's
    workers it does nothing.
    """
    if _threads is None or getattr(_this_thread, "limited", False):
        return
    _this_thread.limited = True
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=_threads)
