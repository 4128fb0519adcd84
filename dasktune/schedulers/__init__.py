"""Trial schedulers: pure policies that turn trial results into decisions.

Ported Ray Tune scripts import them from here instead of ``ray.tune.schedulers``.
"""

from __future__ import annotations

from dasktune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialDecision, TrialScheduler

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "TrialDecision",
    "TrialScheduler",
]
