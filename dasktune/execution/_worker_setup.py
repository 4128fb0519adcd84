"""Set-up that dasktune's embedded cluster runs in each worker process (a Dask preload).

Ctrl-C in a terminal reaches every process of the group, the workers too. The
driver stops the experiment cleanly (trials end at their next report and every
result is kept); workers that died of the same Ctrl-C would only print
tracebacks. So embedded workers ignore SIGINT and leave shutdown to the driver.

Workers are forked from a server process that may be a copy of the driver (see
``cluster._start_forkserver_from_driver``), so each worker also sets torch's
thread count from ``OMP_NUM_THREADS`` (Dask sets it to one per worker thread):
torch reads that variable only once, and the driver may have read it already.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
