"""Checkpoints under `model_dir/checkpoints`: model, optimizer, step and input position.

Every worker must take part in a save (variables may live on any of them), but only the
chief writes into `model_dir`; other workers write to a private temporary directory that is
deleted straight after.

Crash safety: TensorFlow writes a checkpoint's files before it points the `checkpoint` index
at them, so a process killed mid-save leaves the index on the previous checkpoint. A latest
checkpoint that is corrupt or truncated anyway (a full disk, a copy cut short) is skipped
with a warning and the one before it is used.
"""

import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf
from absl import logging

from trainer.errors import UserError

CHECKPOINT_SUBDIR = "checkpoints"


class Checkpoints:
    """Saves and restores one `tf.train.Checkpoint` of the given trackables."""

    def __init__(self, model_dir: str, is_chief: bool, keep: int, **trackables):
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        # For a NaN rollback: the weights and optimizer come back, the input keeps moving forward.
        self._without_input = tf.train.Checkpoint(**{k: v for k, v in trackables.items() if k != "train_iterator"})
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)

    def _restore_newest_readable(self, checkpoint: tf.train.Checkpoint) -> Optional[str]:
        """Restores the newest checkpoint that reads; None if there is none. Raises UserError when
        checkpoints exist but none can be restored: starting afresh over them would be wrong."""
        errors = []
        for path in reversed(self.manager.checkpoints):
            try:
                # expect_partial: a checkpoint from `train` holds objects an `eval` run never builds.
                checkpoint.restore(path).expect_partial()
                return path
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
                errors.append(f"{os.path.basename(path)}: {str(e).strip().splitlines()[0][:200]}")
                logging.warning("Checkpoint %s is unreadable (%s); trying the one before it.", path, errors[-1])
        if errors:
            raise UserError(
                f"no checkpoint in {self.directory} could be restored ({errors[0]}); the model or its settings "
                "differ from the run that wrote them, or the files are damaged: use a new --model_dir."
            )
        return None

    def restore_latest(self) -> bool:
        """Restores the newest readable checkpoint; returns whether one was found. Call inside the strategy scope."""
        path = self._restore_newest_readable(self.checkpoint)
        if path:
            logging.info("Restored %s", path)
        return path is not None

    def roll_back(self) -> Optional[str]:
        """Restores model, optimizer and step from the newest checkpoint, leaving the input position as is."""
        return self._restore_newest_readable(self._without_input)

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
