"""The driver publishes to the scheduler's plugin: what the page on the cluster holds."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request
from urllib.parse import urljoin

import dask
from distributed.diagnostics.plugin import SchedulerPlugin

import dasktune as tune
from dasktune.dashboard._publish import DashboardCallback, expected_trials
from tests.dashboard.conftest import asha_tuner


def plugin_state(dask_scheduler, path):
    plugin = dask_scheduler.plugins["dasktune-dashboard"]
    model = plugin.experiments[path]
    return {
        "trials": len(model.trials),
        "ended": model.ended,
        "points": {t.name: len(t.curve("score")[0]) for t in model.trials.values()},
        "statuses": sorted({t.status for t in model.trials.values()}),
        "stopped": sum(1 for t in model.trials.values() if any(w == "stopped" for _, w in t.marks)),
        "rungs": len(model.rungs),
        "total": model.total,
        "cluster": plugin.cluster_info(),
    }


def test_a_fit_fills_the_page_on_its_cluster(client, finished_experiment):
    path = finished_experiment.experiment_path
    deadline = time.monotonic() + 10
    while True:  # the last message leaves the driver without waiting: give it a moment
        state = client.run_on_scheduler(plugin_state, path=path)
        if state["ended"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state["ended"]["status"] == "finished"
    assert state["trials"] == state["total"] == 12 and state["statuses"] == ["TERMINATED"]
    for result in finished_experiment:  # every result of every trial reached the page
        assert state["points"][os.path.basename(result.path)] == len(result.metrics_dataframe)
    assert state["stopped"] >= 1 and state["rungs"] == 4
    assert state["cluster"]["threads"] == 2 and state["cluster"]["busy"] == 0
    page = urljoin(client.dashboard_link, "dasktune")
    with urllib.request.urlopen(page, timeout=10) as response:  # served by Dask's dashboard
        assert response.status == 200 and b"bokeh" in response.read().lower()


def test_the_page_can_be_turned_off(client, tmp_path):
    with dask.config.set({"dasktune.dashboard.page": False}):
        tuner = asha_tuner(str(tmp_path), "off", client, num_samples=2)
        assert not any(isinstance(c, DashboardCallback) for c in tuner._callbacks())


def test_expected_trials():
    space = {"a": tune.grid_search([1, 2, 3]), "b": tune.uniform(0, 1)}
    assert expected_trials(space, tune.TuneConfig(num_samples=4)) == 12
    assert expected_trials(space, tune.TuneConfig(num_samples=-1)) is None


class _RefusedPlugin(SchedulerPlugin):
    """Stands for a scheduler that cannot take the page's plugin (no dasktune there)."""

    idempotent = True

    async def start(self, scheduler):
        raise ModuleNotFoundError("No module named 'dasktune'")


def test_a_scheduler_that_refuses_the_page_costs_a_warning_and_nothing_else(tmp_path, caplog):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            callback = DashboardCallback()
            url = callback.attach(client, str(tmp_path))  # does not wait for the scheduler
            assert url is not None and url.startswith(urljoin(client.dashboard_link, "dasktune"))
            loop = client.loop.asyncio_loop
            with caplog.at_level(logging.WARNING, logger="dasktune.dashboard._publish"):
                callback._registered = asyncio.run_coroutine_threadsafe(
                    callback._register(_RefusedPlugin(), "refused"), loop
                )
                assert callback._registered.result(timeout=30) is False
            assert "could not be added" in caplog.text and "No module named" in caplog.text
            assert str(tmp_path) in caplog.text  # and says how to see the experiment instead
            callback._emit({"kind": "end"})
            sent = asyncio.run_coroutine_threadsafe(callback._send(), loop).result(timeout=30)
            assert sent is False  # the records are dropped, the experiment goes on
