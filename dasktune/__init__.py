"""dasktune: parallel hyperparameter tuning on Dask, with Ray Tune's API.

Port a Ray Tune script by changing its imports: ``from ray import tune``
becomes ``import dasktune as tune``.
"""

from __future__ import annotations

from dasktune._names import create_scheduler, create_searcher
from dasktune._run import Experiment, TuneError, run, run_experiments
from dasktune.analysis import Analysis, ExperimentAnalysis
from dasktune.callback import Callback
from dasktune.reporters import (
    CLIReporter,
    JupyterNotebookReporter,
    ProgressReporter,
    TuneReporterBase,
)
from dasktune.result import Result, ResultGrid
from dasktune.search.sample import (
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from dasktune.stopper import Stopper
from dasktune.trainable import (
    Checkpoint,
    PlacementGroupFactory,
    Trainable,
    checkpoint_dir,
    get_checkpoint,
    get_context,
    report,
    with_parameters,
    with_resources,
)
from dasktune.tune_config import SyncConfig
from dasktune.tuner import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "CLIReporter",
    "Callback",
    "Checkpoint",
    "CheckpointConfig",
    "Experiment",
    "ExperimentAnalysis",
    "FailureConfig",
    "JupyterNotebookReporter",
    "PlacementGroupFactory",
    "ProgressReporter",
    "Result",
    "ResultGrid",
    "RunConfig",
    "Stopper",
    "SyncConfig",
    "Trainable",
    "TuneConfig",
    "TuneError",
    "TuneReporterBase",
    "Tuner",
    "checkpoint_dir",
    "choice",
    "create_scheduler",
    "create_searcher",
    "get_checkpoint",
    "get_context",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "report",
    "run",
    "run_experiments",
    "sample_from",
    "uniform",
    "with_parameters",
    "with_resources",
]
