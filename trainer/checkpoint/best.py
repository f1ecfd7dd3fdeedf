"""The best evaluation's checkpoint, kept apart in `checkpoints/best/` so that --keep_checkpoints
rotation never deletes it and --checkpoint=best can evaluate, predict and export it.

`checkpoints/best/` holds the checkpoint (one kept), `thresholds.json` tuned at that evaluation
(written by the caller through trainer.reporting), and `best.json` {"step", "metric", "value"},
written last, so it never names a checkpoint or thresholds that are not there yet.
"""

import json
import math
from typing import Optional

import tensorflow as tf
from absl import logging

from trainer import distribute, paths
from trainer.checkpoint.manager import restore, save_to_scratch
from trainer.errors import UserError

LOWER_IS_BETTER = ("loss", "hamming_loss", "ranking/coverage_error", "ranking/ranking_loss")


def restore_best(model_dir: str, checkpoint: tf.train.Checkpoint) -> str:
    """Restores `checkpoints/best/`; returns its path. Call inside the strategy scope."""
    directory = paths.best(model_dir)
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise UserError(
            f"--checkpoint=best: {directory} holds no checkpoint; only --mode=train_and_eval "
            "with --eval_data keeps one. Use --checkpoint=latest, or train with evaluations."
        )
    try:
        restore(checkpoint, path)
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
        raise UserError(
            f"--checkpoint=best: {path} could not be restored ({str(e).strip().splitlines()[0][:200]}); "
            "use --checkpoint=latest."
        ) from None
    logging.info("Restored the best checkpoint %s", path)
    if not tf.io.gfile.exists(paths.thresholds(directory)):
        logging.warning("%s has no thresholds.json (an older run): 0.5 for every label.", directory)
    return path


class BestCheckpoint:
    """Decides whether an evaluation is the best so far and keeps its checkpoint.

    The best value so far comes from best.json, so it survives a resume. Every worker must make
    the same save decision (a save takes all of them), so the chief's best.json value is handed
    to the others with `agree` (an all-reduce) before the first comparison.
    """

    def __init__(self, model_dir: str, is_chief: bool, metric: str, checkpoint: tf.train.Checkpoint):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.metric = metric
        self.checkpoint = checkpoint
        self.path = paths.best_record(model_dir)
        self.lower_is_better = metric in LOWER_IS_BETTER
        self.value: Optional[float] = None  # The best value so far, and the step it was reached at.
        self.step: Optional[int] = None
        if is_chief:
            self._read_best()

    def _read_best(self) -> None:
        if not tf.io.gfile.exists(self.path):
            return
        try:
            saved = json.loads(paths.read_text(self.path))
        except (OSError, ValueError, tf.errors.OpError) as e:
            logging.warning("Ignoring unreadable %s (%s): the next evaluation becomes the best.", self.path, e)
            return
        if saved.get("metric") != self.metric:
            logging.warning(
                "%s tracks %s, not --best_metric=%s: the next evaluation becomes the best.",
                self.path,
                saved.get("metric"),
                self.metric,
            )
            return
        logging.info("Best %s so far: %.6g at step %d (%s)", self.metric, saved["value"], saved["step"], self.path)
        self.value, self.step = float(saved["value"]), int(saved["step"])

    def agree(self, strategy) -> None:
        """Multi-worker only: every worker takes the chief's best value and step (a sum where only the chief adds)."""
        known = self.is_chief and self.value is not None
        local = [1.0, self.value, float(self.step)] if known else [0.0, 0.0, 0.0]
        # Only the chief's replicas add [1, value, step], so sum[i] / sum[0] is its figure for any replica count.
        total = distribute.make_replica_sum(strategy)(tf.constant(local, tf.float64)).numpy()
        self.value = float(total[1] / total[0]) if total[0] > 0 else None
        self.step = int(round(total[2] / total[0])) if total[0] > 0 else None
        if not self.is_chief and self.value is not None:
            logging.info("Best %s so far, from the chief: %.6g", self.metric, self.value)

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return self.value is None or (value < self.value if self.lower_is_better else value > self.value)

    def save(self, step: int) -> None:
        """Saves the checkpoint into checkpoints/best/ (every worker takes part)."""
        if self.is_chief:
            manager = tf.train.CheckpointManager(self.checkpoint, paths.best(self.model_dir), max_to_keep=1)
            manager.save(checkpoint_number=step)
        else:
            save_to_scratch(self.checkpoint, step)

    def record(self, step: int, value: float) -> None:
        """Writes best.json, last: after `save` and the thresholds."""
        self.value, self.step = value, step
        if self.is_chief:
            record = json.dumps({"step": step, "metric": self.metric, "value": value}) + "\n"
            paths.atomic_write(self.path, record)
            logging.info("New best %s %.6g at step %d: saved %s", self.metric, value, step, paths.best(self.model_dir))
