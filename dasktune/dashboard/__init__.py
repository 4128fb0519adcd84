"""Watching an experiment: the ``/dasktune`` page, on a Dask dashboard or on its own.

* On a cluster: :class:`DashboardCallback` (added by the Tuner; ``dasktune.dashboard.page``
  turns it off) registers :class:`~dasktune.dashboard._plugin.DashboardPlugin` on the
  scheduler, which serves the page at ``<dashboard>/dasktune``, and publishes the
  experiment to it as it runs.
* Without one: ``dasktune dashboard PATH`` (:class:`ExperimentServer`) follows an
  experiment directory, running or finished, on a Bokeh server of its own.

Both fill the same :class:`~dasktune.dashboard._model.ExperimentModel`, which the
page (:mod:`dasktune.dashboard._page`) shows.  Needs bokeh (``dasktune[dashboard]``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DashboardCallback",
    "ExperimentFollower",
    "ExperimentModel",
    "ExperimentServer",
    "attach_dashboard",
    "expected_trials",
]

_WHERE = {
    "DashboardCallback": "dasktune.dashboard._publish",
    "attach_dashboard": "dasktune.dashboard._publish",
    "expected_trials": "dasktune.dashboard._publish",
    "ExperimentFollower": "dasktune.dashboard._follow",
    "ExperimentModel": "dasktune.dashboard._model",
    "ExperimentServer": "dasktune.dashboard._server",
}


def __getattr__(name: str) -> Any:
    """Import lazily: the driver's callback must not import bokeh."""
    if name not in _WHERE:
        raise AttributeError(f"module 'dasktune.dashboard' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
