"""Tools to test schedulers and searchers against the real coordinator, without Dask.

:class:`Simulator` runs whole experiments: the real
:class:`~dasktune.execution.controller.Controller`, searcher and scheduler,
driven in the experiment loop's order by simulated trial runs on a fake clock.
"""

from __future__ import annotations

from dasktune.testing.outcome import Outcome, Report, Stalled
from dasktune.testing.simulator import ConfigList, FakeClock, Simulator, Step, curve_step

__all__ = [
    "ConfigList",
    "FakeClock",
    "Outcome",
    "Report",
    "Simulator",
    "Stalled",
    "Step",
    "curve_step",
]
