"""The ``/dasktune`` page on a Dask scheduler's dashboard, added by a scheduler plugin.

Dask has no public way to add a dashboard page, so the plugin does what
Dask's own dashboard does when it starts: it builds a Bokeh application for
the route and adds it to the scheduler's HTTP application (see
``../shared/DASK-NOTES.md``, "Custom dashboard pages").  Registered with
``client.register_plugin``, it works on a scheduler that is already running:
the embedded cluster's or a user's.  It also adds one scheduler handler,
``dasktune_dashboard_feed``, through which drivers send the page's records;
the models live in the scheduler process, so the page survives the driver's
end for as long as the cluster lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune._protocol import is_trial_key
from dasktune.dashboard._imports import import_page_modules
from dasktune.dashboard._model import ExperimentModel

__all__ = ["DashboardPlugin", "FEED_HANDLER", "PLUGIN_NAME", "ROUTE"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "dasktune-dashboard"
FEED_HANDLER = "dasktune_dashboard_feed"
ROUTE = "/dasktune"
#: Experiments a scheduler keeps for the page; the oldest are forgotten first.
MAX_EXPERIMENTS = 20


class DashboardPlugin(SchedulerPlugin):
    """Keeps the experiments that drivers report and serves them at ``/dasktune``."""

    name = PLUGIN_NAME
    idempotent = True  # registered by every fit; the first registration stays

    def __init__(self) -> None:
        self.experiments: OrderedDict[str, ExperimentModel] = OrderedDict()
        self.scheduler: Any = None
        self.route: str | None = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.handlers[FEED_HANDLER] = self.feed
        http = getattr(scheduler, "http_application", None)
        if http is None or "dashboard" not in getattr(scheduler, "services", {}):
            return  # no dashboard to add the page to
        try:  # in a thread: bokeh's import must not stall the scheduler's event loop
            await asyncio.to_thread(import_page_modules)
        except ImportError:  # bokeh missing or a version Dask refuses
            return
        self.route = self._add_page(http, scheduler)

    def feed(self, experiment: str, records: list[dict[str, Any]]) -> str | None:
        """A scheduler handler: fold a driver's records into the experiment's model."""
        model = self.experiments.get(experiment)
        if model is None:
            model = self.experiments[experiment] = ExperimentModel(experiment)
            while len(self.experiments) > MAX_EXPERIMENTS:
                self.experiments.popitem(last=False)
        else:
            self.experiments.move_to_end(experiment)
        for record in records:
            try:
                model.apply(record)
            except (KeyError, TypeError, ValueError) as exc:  # a malformed record: skip it
                logger.debug("dasktune dashboard: skipped %r (%r)", record, exc)
        return self.route

    def catalog(self) -> OrderedDict[str, ExperimentModel]:
        return self.experiments

    def cluster_info(self) -> dict[str, int]:
        """Worker threads, and how many of them run dasktune trials now.

        A worker's ``processing`` also holds tasks queued behind its threads, so
        each worker counts at most its number of threads.
        """
        workers = list(self.scheduler.workers.values())
        busy = sum(
            min(
                ws.nthreads,
                sum(1 for ts in ws.processing if is_trial_key(ts.key)),
            )
            for ws in workers
        )
        return {
            "workers": len(workers),
            "threads": sum(ws.nthreads for ws in workers),
            "busy": busy,
        }

    def _add_page(self, http: Any, scheduler: Any) -> str:
        """Add the Bokeh application for the page to ``http``; its route."""
        from distributed.dashboard.core import BokehApplication
        from tornado.ioloop import IOLoop

        prefix = _dashboard_prefix(http)
        app = BokehApplication({ROUTE: self._make_doc}, scheduler, prefix=prefix)
        http.add_application(app)
        app.initialize(IOLoop.current())
        app.start()
        return prefix.rstrip("/") + ROUTE

    def _make_doc(self, scheduler: Any, extra: dict[str, Any], doc: Any) -> None:
        from dasktune.dashboard._page import ExperimentPage

        wanted = None
        request = getattr(doc.session_context, "request", None)
        if request is not None:
            values = request.arguments.get("experiment") or []
            wanted = values[0].decode() if values else None
        ExperimentPage(doc, self.catalog, self.cluster_info, wanted=wanted)


def _dashboard_prefix(http: Any) -> str:
    """The prefix the scheduler's own dashboard is served under (``/`` unless configured)."""
    for app in getattr(http, "applications", []):
        prefix = getattr(app, "_prefix", None)
        if isinstance(prefix, str):
            return prefix or "/"
    return "/"
