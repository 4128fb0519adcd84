"""The driver's cyclic garbage collector while experiments run.

A script that tunes a torch model has imported torch, torchvision, Dask and the
rest before ``fit()``: some 400,000 objects that the garbage collector tracks.
Each full collection walks all of them, about 0.4 s of the driver on a 2-core
machine, and the allocations of a searcher (HyperOpt builds a graph per
suggestion) or of thousands of results trigger one now and then, on the
coordinator's thread, while the trials want the cores.  Objects that exist when
``fit()`` begins are the script's and its modules'; they are moved out of the
collector's way (:func:`gc.freeze`) for the experiment and handed back when the
last running experiment ends, so the collector then sees what it would have seen.
Garbage made during the experiment is collected as usual; cyclic garbage made
before it waits until it ends.  Where something else froze objects already, the
collector is left alone.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_running = 0  # experiments inside frozen_heap() now
_froze = False  # whether the first of them froze the heap (and the last unfreezes it)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of full collections until the block ends."""
    global _running, _froze
    with _lock:
        if _running == 0:
            _froze = gc.isenabled() and gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _froze:
                gc.unfreeze()
                _froze = False
