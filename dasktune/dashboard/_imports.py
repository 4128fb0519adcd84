"""The dashboards' Bokeh imports in a scheduler process: one thread, once.

Bokeh turns its property validation off, for the whole process, while it
defines each model class, and puts back what it found when it is done.  Two
threads defining classes at once can therefore leave it off for good (one
saves "off" from the other, and restores it last).  After that a figure keeps
a plain string where Bokeh would have made a model of it, and Dask's
``/status`` page fails with ``AttributeError: 'str' object has no attribute
'text'``.  The embedded scheduler imports Dask's pages in a thread while the
dasktune page's plugin imports its own, often at the same moment.  So both go
through :func:`import_page_modules`, which imports the modules of both pages
under one lock: whichever comes second finds every class defined already, and
no page is served before its imports have finished.
"""

from __future__ import annotations

import importlib
import threading

__all__ = ["PAGE_MODULES", "import_page_modules"]

#: Every module that defines the Bokeh models either dashboard uses.
PAGE_MODULES = ("distributed.dashboard.scheduler", "dasktune.dashboard._page")

_lock = threading.Lock()


def import_page_modules() -> None:
    """Import :data:`PAGE_MODULES`, one caller at a time in this process.

    Meant for a worker thread (``asyncio.to_thread``), so that the scheduler's
    event loop keeps answering while Bokeh loads.  Raises ImportError where
    bokeh is missing or a version Dask refuses.
    """
    with _lock:
        for name in PAGE_MODULES:
            importlib.import_module(name)
