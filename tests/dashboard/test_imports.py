"""Both dashboards' Bokeh imports in one scheduler process, at the same moment.

Bokeh switches its property validation off process-wide while it defines a model
class; two threads doing so at once could leave it off, and then Dask's /status page
answered 500 (a figure's title stayed a string).  The embedded scheduler loads Dask's
pages in a thread just as the /dasktune page's plugin loads its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, json, sys, urllib.request
sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
from distributed import Scheduler
from dasktune.dashboard._plugin import DashboardPlugin
from dasktune.execution._scheduler_process import _add_dashboard

assert "bokeh" not in sys.modules

async def main():
    async with Scheduler(dashboard=False, dashboard_address="127.0.0.1:0") as scheduler:
        # as in the embedded cluster: Dask's pages and the plugin's page load together
        await asyncio.gather(_add_dashboard(scheduler, "/"), DashboardPlugin().start(scheduler))
        from bokeh.core.property.bases import Property
        from bokeh.plotting import figure

        port = scheduler.http_server.port

        def get(path):
            url = f"http://127.0.0.1:{port}{path}"
            with urllib.request.urlopen(url, timeout=60) as reply:
                return reply.status

        print(json.dumps({
            "validating": Property._should_validate,
            "title": type(figure(title="t").title).__name__,
            "status": await asyncio.to_thread(get, "/status"),
            "dasktune": await asyncio.to_thread(get, "/dasktune"),
        }))

asyncio.run(main())
"""


def test_dask_s_pages_and_the_dasktune_page_load_together_and_both_answer(tmp_path):
    for _ in range(3):  # without the shared import lock, each run failed here
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen == {"validating": True, "title": "Title", "status": 200, "dasktune": 200}
