"""Experiments for the dashboard tests, and the headless browser that looks at the page."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

import dasktune as tune
from dasktune.schedulers import ASHAScheduler


def curve(config):
    """A learning curve whose height depends on lr and width (ASHA stops the low ones)."""
    for step in range(1, 13):
        score = config["width"] / 64 * (1 - 1 / (step + 1)) - abs(config["lr"] - 0.01)
        tune.report({"score": score, "loss": 1 / step})
        time.sleep(config.get("sleep", 0))


SPACE = {"lr": tune.loguniform(1e-4, 1e-1), "width": tune.choice([16, 32, 64])}


def asha_tuner(
    storage: str, name: str, client, num_samples: int = 12, sleep: float = 0.0, **run_config
) -> tune.Tuner:
    return tune.Tuner(
        curve,
        param_space={**SPACE, "sleep": sleep},
        tune_config=tune.TuneConfig(
            num_samples=num_samples,
            seed=1,
            scheduler=ASHAScheduler(
                metric="score", mode="max", max_t=12, grace_period=1, reduction_factor=2
            ),
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, **run_config),
        client=client,
    )


@pytest.fixture(scope="session")
def finished_experiment(client, tmp_path_factory):
    """A finished ASHA experiment of 12 trials on the real test cluster."""
    storage = str(tmp_path_factory.mktemp("dashboard"))
    grid = asha_tuner(storage, "asha", client).fit()
    return grid


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser():
    """Headless Chromium driven by selenium; skipped only where Chromium cannot be had."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium(), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium here (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="dasktune-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1500,1100",
    ):
        options.add_argument(flag)
    options.binary_location = binary
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()
        shutil.rmtree(profile, ignore_errors=True)


# What the page holds, read in the browser: the table's cells (inside Bokeh's shadow DOM)
# and the data the curve renderer draws (BokehJS's own copy of the model).
PAGE_STATE_JS = """
function cells(root, out) {
  for (const el of root.querySelectorAll('*')) {
    if (el.classList && el.classList.contains('slick-cell')) out.push(el.textContent);
    if (el.shadowRoot) cells(el.shadowRoot, out);
  }
  return out;
}
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const fig = doc.get_model_by_name('dasktune-curves-linear');
const lines = fig.renderers.filter(r => r.glyph && r.glyph.type === 'MultiLine')[0];
const xs = lines.data_source.data.xs;
const points = Array.from(xs).reduce((n, x) => n + x.length, 0);
return {cells: cells(document, []), curves: xs.length, points: points,
        title: doc.get_model_by_name('dasktune-title').text};
"""


def page_state(session, until, timeout: float = 30.0):
    """Poll the page until ``until(state)`` holds; the last state either way."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = session.execute_script(PAGE_STATE_JS)
        if state and until(state):
            return state
        time.sleep(0.5)
    return state


def screenshot(session, name: str) -> str:
    folder = os.environ.get("DASKTUNE_SCREENSHOTS") or tempfile.mkdtemp(prefix="dasktune-shots-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    assert session.save_screenshot(path), path
    return path
