"""``dasktune dashboard PATH``: the page for an experiment directory, on a Bokeh server of its own.

No Dask cluster is involved: one :class:`ExperimentFollower` reads the
directory once a second (whether another process is still writing it or it is
long finished), and every browser tab shows the model it fills.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from dasktune.dashboard._follow import ExperimentFollower

__all__ = ["ExperimentServer"]

ROUTE = "/dasktune"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ExperimentServer:
    """A Bokeh server showing the experiment in ``path`` at ``http://host:port/dasktune``."""

    def __init__(
        self, path: str, port: int = 8788, host: str = "127.0.0.1", interval: float = 1.0
    ) -> None:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from tornado.ioloop import PeriodicCallback

        self.follower = ExperimentFollower(path)
        self.follower.poll()
        self.port = port or _free_port(host)
        self.host = host
        origins = (
            ["*"]
            if host in ("0.0.0.0", "::")
            else [f"{name}:{self.port}" for name in {host, "localhost", "127.0.0.1"}]
        )
        self.server = Server(
            {ROUTE: Application(FunctionHandler(self._make_doc))},
            port=self.port,
            address=host,
            allow_websocket_origin=origins,
            redirect_root=True,
        )
        self._poller = PeriodicCallback(self._poll, interval * 1000)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{ROUTE}"

    def _catalog(self) -> dict[str, Any]:
        return {self.follower.path: self.follower.model}

    def _poll(self) -> None:
        try:
            self.follower.poll()
        except OSError:  # the directory went away or is being moved: try again later
            pass

    def _make_doc(self, doc: Any) -> None:
        from dasktune.dashboard._page import ExperimentPage

        ExperimentPage(doc, self._catalog)

    def start(self) -> None:
        self.server.start()
        self._poller.start()

    def run(self, ready: Callable[[str], None] | None = None) -> None:
        """Serve until interrupted; ``ready`` hears the page's address once it listens."""
        self.start()
        if ready is not None:
            ready(self.url)
        try:
            self.server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            self._poller.stop()
            self.server.stop()


def is_experiment_dir(path: str) -> bool:
    from dasktune.storage.layout import JOURNAL_FILE, STATE_FILE

    return any(os.path.isfile(os.path.join(path, name)) for name in (JOURNAL_FILE, STATE_FILE))
