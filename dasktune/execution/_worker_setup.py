"""Set-up that dasktune's embedded cluster runs in each worker process (a Dask preload).

Ctrl-C in a terminal reaches every process of the group, the workers too. The
driver stops the experiment cleanly (trials end at their next report and every
result is kept); workers that died of the same Ctrl-C would only print
tracebacks. So embedded workers ignore SIGINT and leave shutdown to the driver.

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
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        _threads = int(threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(_threads)
        limit_native_threads()  # BLAS pools are per process: done here for all threads


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
