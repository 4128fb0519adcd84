"""Trial schedulers: pure policies that turn trial results into decisions.

Ported Ray Tune scripts import them from here instead of ``ray.tune.schedulers``.
"""

from __future__ import annotations

from dasktune._names import create_scheduler
from dasktune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from dasktune.schedulers.fifo import FIFOScheduler
from dasktune.schedulers.hyperband import HyperBandScheduler
from dasktune.schedulers.median_stopping_rule import MedianStoppingRule
from dasktune.schedulers.pb2 import PB2
from dasktune.schedulers.pbt import PopulationBasedTraining
from dasktune.schedulers.pbt_replay import PopulationBasedTrainingReplay
from dasktune.schedulers.trial_scheduler import (
    Rung,
    TrialDecision,
    TrialScheduler,
    TrialUpdate,
)

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "PB2",
    "PopulationBasedTraining",
    "PopulationBasedTrainingReplay",
    "Rung",
    "TrialDecision",
    "TrialScheduler",
    "TrialUpdate",
    "create_scheduler",
]
