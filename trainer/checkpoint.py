"""Checkpoints under `model_dir/checkpoints`: model, optimizer, step and input position.

Every worker must take part in a save (variables may live on any of them), but only the
chief writes into `model_dir`; other workers write to a private temporary directory that is
deleted straight after.
"""

import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging

CHECKPOINT_SUBDIR = "checkpoints"


class Checkpoints:
    """Saves and restores one `tf.train.Checkpoint` of the given trackables."""

    def __init__(self, model_dir: str, is_chief: bool, keep: int, **trackables):
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        self._keep = keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)

    def restore_latest(self) -> bool:
        """Restores the newest checkpoint, if any; returns whether one was found. Call inside the strategy scope."""
        path = self.manager.latest_checkpoint
        if not path:
            return False
        # expect_partial: a checkpoint from `train` may lack objects an `eval` run never builds.
        self.checkpoint.restore(path).expect_partial()
        logging.info("Restored %s", path)
        return True

    def save(self, step: int) -> None:
        if self.is_chief:
            path = self.manager.save(checkpoint_number=step)
            logging.info("Saved checkpoint %s", path)
            return
        scratch = tempfile.mkdtemp(prefix="mltrain-worker-checkpoint-")
        try:
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
