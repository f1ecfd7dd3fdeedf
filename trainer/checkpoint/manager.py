"""The run's checkpoints under `model_dir/checkpoints`: model, optimizer, step and input position.

Every worker must take part in a save (variables may live on any of them), but only the
chief writes into `model_dir`; other workers write to a private temporary directory that is
deleted straight after.

Crash safety: TensorFlow writes a checkpoint's files before it points the `checkpoint` index
at them, so a process killed mid-save leaves the index on the previous checkpoint. A latest
checkpoint that is corrupt or truncated anyway (a full disk, a copy cut short) is skipped
with a warning and the one before it is used. This holds for async saves too: the manager
updates the index from the write's completion callback.
"""

import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf
from absl import logging

from trainer import paths
from trainer.errors import UserError


def restore(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores `path` into `checkpoint`; raises AssertionError unless every weight of its model
    came from the file. What else the checkpoint holds may be partial (a checkpoint from `train`
    holds an optimizer an `eval` run never builds), but a model built with other layers (another
    --dropout once did) would otherwise keep some of its fresh weights without a word."""
    checkpoint.restore(path).expect_partial()
    model = getattr(checkpoint, "model", None)
    if model is not None:
        tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched().expect_partial()


class Checkpoints:
    """Saves and restores one `tf.train.Checkpoint` of the given trackables."""

    def __init__(
        self, model_dir: str, is_chief: bool, keep: int, async_save: bool = False, worker_input=None, **trackables
    ):
        self.is_chief = is_chief
        # input_position.InputPositions when there are several workers (each has its own input
        # position): saved (first, by every worker) and restored with every checkpoint.
        self.worker_input = worker_input
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.directory = paths.checkpoints(model_dir)
        # For a NaN rollback (and the best checkpoint): the weights, optimizer and step; the input
        # position is not part of it.
        self.without_input = tf.train.Checkpoint(**{k: v for k, v in trackables.items() if k != "train_iterator"})
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)
        # Async: `save` copies the variables to host memory and returns; the files are written by
        # a background thread while training goes on. `sync` waits for that write.
        self._options = tf.train.CheckpointOptions(enable_async=True) if async_save else None
        if async_save:
            _let_keras_variables_be_copied_again()

    def _restore_newest_readable(self, checkpoint: tf.train.Checkpoint) -> Optional[str]:
        """Restores the newest checkpoint that reads; None if there is none. Raises UserError when
        checkpoints exist but none can be restored: starting afresh over them would be wrong."""
        errors = []
        for path in reversed(self.manager.checkpoints):
            try:
                restore(checkpoint, path)
                return path
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
                errors.append(f"{os.path.basename(path)}: {str(e).strip().splitlines()[0][:200]}")
                logging.warning("Checkpoint %s is unreadable (%s); trying the one before it.", path, errors[-1])
        if errors:
            raise UserError(
                f"no checkpoint in {self.directory} could be restored ({errors[0]}); the model or its settings "
                "differ from the run that wrote them, or the files are damaged: resume with that run's flags, or use a "
                "new --model_dir."
            )
        return None

    def restore_latest(self) -> bool:
        """Restores the newest readable checkpoint; returns whether one was found. Call inside the strategy scope."""
        path = self._restore_newest_readable(self.checkpoint)
        if path:
            logging.info("Restored %s", path)
            if self.worker_input is not None:
                self.worker_input.restore(int(path.rsplit("-", 1)[1]))
        return path is not None

    def roll_back(self) -> Optional[str]:
        """Restores model, optimizer and step from the newest checkpoint, leaving the input position as is."""
        self.sync()  # An async save still being written would otherwise be missed or read half-done.
        return self._restore_newest_readable(self.without_input)

    def save(self, step: int) -> None:
        if self.worker_input is not None:
            self.worker_input.save(step)
        if self.is_chief:
            path = self.manager.save(checkpoint_number=step, options=self._options)
            logging.info("Saved checkpoint %s%s", path, " (writing in the background)" if self._options else "")
            return
        save_to_scratch(self.checkpoint, step)
        # Lets one see (and tests check) that every worker took part in the same save.
        logging.info("Took part in the save of checkpoint %d (this worker's copy is discarded)", step)

    def sync(self) -> None:
        """Waits until an async save is on disk; call before exiting. A no-op for synchronous saves."""
        if self._options is not None:
            self.checkpoint.sync()


def async_allowed(requested: bool, num_workers: int) -> bool:
    """Whether to save asynchronously: only on one worker, since with several each save is a step
    every worker takes together and a background write would leave them out of step."""
    if requested and num_workers > 1:
        logging.warning("--async_checkpoint is ignored with %d workers: saving synchronously.", num_workers)
        return False
    return requested


def _let_keras_variables_be_copied_again() -> None:
    """Works around a Keras 3 bug (3.15): a Keras variable's `_copy_trackable_to_cpu` creates a new
    host variable on every async save, which the second save's `tf.function` refuses ("only
    supports singleton tf.Variables"). TensorFlow's own variables assign into the copy made by the
    first save; this makes Keras variables do the same."""
    from keras.src.backend.tensorflow.core import Variable  # Where the method lives; no public name.

    def copy_to_cpu(self, object_map):
        self.value._copy_trackable_to_cpu(object_map)
        if self in object_map:
            object_map[self].assign(object_map[self.value])
        else:
            object_map[self] = tf.Variable(object_map[self.value])

    Variable._copy_trackable_to_cpu = copy_to_cpu


def save_to_scratch(checkpoint: tf.train.Checkpoint, step: int) -> None:
    """A non-chief worker's part of a save: written to a private directory, then deleted."""
    scratch = tempfile.mkdtemp(prefix="mltrain-worker-checkpoint-")
    try:
        tf.train.CheckpointManager(checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
