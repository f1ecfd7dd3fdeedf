"""Each worker's own input position, whenever there are several workers.

The main checkpoint is written by the chief alone, so an input position in it would be the
chief's: wrong when each worker reads its own part (data.reads_own_part), and wrong even when
all read the same global stream, since the iterator state holds batches already prefetched and
sliced to the chief's rows. So each worker saves its own iterator with every checkpoint, at
the same step, into `checkpoints/input/worker-<i>-of-<N>/`, and restores the one of the step
the main checkpoint was restored at. Without it (another number of workers, a run from before
this existed, a crash between the two saves) the worker's input starts afresh: a warning, not
an error, since training stays correct, only not the exact continuation. One that exists but
does not fit this run's input is an error: the iterator cannot be used after a failed restore.
"""

import os

import tensorflow as tf
from absl import logging

from trainer import paths
from trainer.distribute import Topology
from trainer.errors import UserError


class InputPositions:
    """Saves and restores this worker's train iterator beside the main checkpoints."""

    def __init__(self, model_dir: str, topology: Topology, iterator, keep: int):
        self.name = f"worker-{topology.worker_index}-of-{topology.num_workers}"
        self.checkpoint = tf.train.Checkpoint(iterator=iterator)
        self.directory = paths.worker_input(model_dir, self.name)
        # Same numbering and rotation as the main checkpoints, so every kept step has its input.
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)

    def restore(self, step: int) -> bool:
        """Restores the position saved at `step`; False (with a warning) when there is none.

        Raises UserError when it exists but does not fit this run's input: a failed restore leaves
        the iterator unusable, and the fix (the original input flags) is the user's to choose."""
        path = os.path.join(self.directory, f"ckpt-{step}")
        if not tf.io.gfile.exists(path + ".index"):
            logging.warning(
                "Input of %s: %s does not exist (another number of workers, or a run from before per-worker "
                "input); its input restarts from a fresh shuffle.",
                self.name,
                path,
            )
            return False
        try:
            self.checkpoint.restore(path).assert_consumed()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            logging.info("Restoring %s failed: %s", path, e)
            raise UserError(
                f"the input position {path} does not fit this run's input: --train_data, --shuffle_buffer, "
                "--cache_train_data or --in_memory_budget_mb differ from the run that saved it; use the original "
                "flags, or delete "
                f"{self.directory} to restart this worker's input from a fresh shuffle."
            )
        logging.info("Input of %s restored from %s", self.name, path)
        return True
