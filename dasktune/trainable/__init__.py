"""What runs on a worker: the trial session, checkpoints and trainable wrappers."""

from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.session import (
    TrialContext,
    checkpoint_dir,
    get_checkpoint,
    get_context,
    report,
)
from dasktune.trainable.trainable import Trainable
from dasktune.trainable.util import PlacementGroupFactory, with_parameters, with_resources

__all__ = [
    "Checkpoint",
    "PlacementGroupFactory",
    "Trainable",
    "TrialContext",
    "checkpoint_dir",
    "get_checkpoint",
    "get_context",
    "report",
    "with_parameters",
    "with_resources",
]
