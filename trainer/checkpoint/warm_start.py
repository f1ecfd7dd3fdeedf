"""--init_checkpoint: a warm start from another run's model weights when model_dir has no checkpoint."""

import tensorflow as tf
from absl import logging

from trainer import paths
from trainer.errors import UserError


def find_init_checkpoint(path: str) -> str:
    """The checkpoint prefix `--init_checkpoint` names: a ckpt-N prefix, a checkpoints directory
    (its newest), or a run's model_dir (the newest of its checkpoints/)."""
    candidates = [tf.train.latest_checkpoint(path), tf.train.latest_checkpoint(paths.checkpoints(path))]
    if tf.io.gfile.exists(path + ".index"):
        candidates.insert(0, path)
    found = next((c for c in candidates if c), None)
    if found is None:
        raise UserError(
            f"--init_checkpoint={path} names no checkpoint; give a ckpt-N prefix (without .index), a "
            "checkpoints directory, or the --model_dir of a trained run."
        )
    return found


def warm_start(model, prefix: str) -> None:
    """Restores only the model's weights from `prefix`, which must hold this very model. Call
    inside the strategy scope."""
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        raise UserError(
            f"--init_checkpoint={prefix} does not fit this model ({str(e).strip().splitlines()[0][:200]}); "
            "it needs the same --model settings and number of labels as the run that wrote it."
        ) from None
    logging.info("Warm start: model weights from %s; optimizer, step and input start fresh.", prefix)
