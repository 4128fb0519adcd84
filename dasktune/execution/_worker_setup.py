"""Set-up that dasktune's embedded cluster runs in each worker process (a Dask preload).

Ctrl-C in a terminal reaches every process of the group, the workers too. The
driver stops the experiment cleanly (trials end at their next report and every
result is kept); workers that died of the same Ctrl-C would only print
tracebacks. So embedded workers ignore SIGINT and leave shutdown to the driver.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
