"""Checkpoints: the run's own (resume, rollback), the best evaluation's, each worker's input
position, and the warm start from another run. Never imports metrics or reporting."""

from trainer.checkpoint.best import BestCheckpoint, restore_best
from trainer.checkpoint.input_position import InputPositions
from trainer.checkpoint.manager import Checkpoints, async_allowed
from trainer.checkpoint.warm_start import find_init_checkpoint, warm_start

__all__ = [
    "BestCheckpoint",
    "Checkpoints",
    "InputPositions",
    "async_allowed",
    "find_init_checkpoint",
    "restore_best",
    "warm_start",
]
