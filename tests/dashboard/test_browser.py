"""The page in a real browser (headless Chromium): live on the cluster, and from the files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import quote, urljoin

import pytest

import dasktune
from tests.dashboard.conftest import asha_tuner, page_state, screenshot

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dasktune.__file__)))


def served(url: str, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


def test_the_live_page_of_a_running_experiment(client, tmp_path, browser):
    storage = str(tmp_path)
    tuner = asha_tuner(storage, "live", client, num_samples=16, sleep=0.15)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("grid", tuner.fit()))
    runner.start()
    try:
        path = os.path.join(storage, "live")
        url = f"{urljoin(client.dashboard_link, 'dasktune')}?experiment={quote(path, safe='')}"
        # On a cluster new to dasktune the page is added once the first trial runs (the
        # scheduler imports bokeh for it), and a browser that asks before gets Dask's 404,
        # which it keeps: as a person would, open the page once it answers.
        served(url)
        browser.get(url)
        state = page_state(
            browser,
            lambda s: (
                "running" in s["title"]
                and s["points"] >= 3
                and any(c.startswith("curve_") for c in s["cells"])
            ),
        )
        assert state is not None, "the page never rendered"
        assert "running" in state["title"], state["title"]
        trials = {c for c in state["cells"] if re.fullmatch(r"curve_\d{5}", c)}
        assert trials, state["cells"][:20]  # the running experiment's trials, in the table
        assert state["curves"] >= 1 and state["points"] >= 3  # and a curve in the plot
        screenshot(browser, "dasktune-live-page.png")
    finally:
        runner.join(timeout=120)
    grid = outcome["grid"]
    # Once it ends, the page shows all of them and says so.
    state = page_state(
        browser,
        lambda s: (
            "ended" in s["title"]
            and sum(re.fullmatch(r"curve_\d{5}", c) is not None for c in s["cells"]) == len(grid)
        ),
    )
    assert "ended" in state["title"], state["title"]


def test_dasktune_dashboard_on_a_finished_experiment(finished_experiment, browser):
    path = finished_experiment.experiment_path
    server = subprocess.Popen(
        [sys.executable, "-m", "dasktune", "dashboard", path, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"(http://\S+/dasktune)", line)
        assert match, line + server.stdout.read(2000) if server.poll() is not None else line
        browser.get(match[1])
        names = {os.path.basename(r.path) for r in finished_experiment}
        state = page_state(browser, lambda s: names <= set(s["cells"]) and s["points"] > 0)
        assert names <= set(state["cells"]), state["cells"][:20]
        assert state["curves"] == len(names) and state["points"] > len(names)
        assert "ended: finished" in state["title"]
        screenshot(browser, "dasktune-dashboard-command.png")
    finally:
        server.terminate()
        server.wait(timeout=30)
