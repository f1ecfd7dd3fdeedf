"""Checkpoints under `model_dir/checkpoints`: model, optimizer, step and input position.

Every worker must take part in a save (variables may live on any of them), but only the
chief writes into `model_dir`; other workers write to a private temporary directory that is
deleted straight after.

Crash safety: TensorFlow writes a checkpoint's files before it points the `checkpoint` index
at them, so a process killed mid-save leaves the index on the previous checkpoint. A latest
checkpoint that is corrupt or truncated anyway (a full disk, a copy cut short) is skipped
with a warning and the one before it is used. This holds for async saves too: the manager
updates the index from the write's completion callback.

The best evaluation so far is kept apart, under `checkpoints/best/` with `best.json` and the
thresholds tuned at that evaluation, so that `--keep_checkpoints` rotation never deletes it and
`--checkpoint=best` can evaluate, predict and export it.
"""

import json
import math
import os
import shutil
import tempfile
from typing import Dict, Optional

import tensorflow as tf
from absl import logging

from trainer import metrics, reporting
from trainer.errors import UserError

CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best"
LOWER_IS_BETTER = ("loss", "hamming_loss", "ranking/coverage_error", "ranking/ranking_loss")


class Checkpoints:
    """Saves and restores one `tf.train.Checkpoint` of the given trackables."""

    def __init__(
        self, model_dir: str, is_chief: bool, keep: int, async_save: bool = False, worker_input=None, **trackables
    ):
        self.is_chief = is_chief
        # trainer.worker_input.IteratorCheckpoints when there are several workers (each has its own
        # input position): saved (first, by every worker) and restored with every checkpoint.
        self.worker_input = worker_input
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
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
        _save_to_scratch(self.checkpoint, step)
        # Lets one see (and tests check) that every worker took part in the same save.
        logging.info("Took part in the save of checkpoint %d (this worker's copy is discarded)", step)

    def sync(self) -> None:
        """Waits until an async save is on disk; call before exiting. A no-op for synchronous saves."""
        if self._options is not None:
            self.checkpoint.sync()


def async_allowed(requested: bool, num_workers: int, deterministic: bool) -> bool:
    """Whether to save asynchronously: only on one worker, since with several each save is a step
    every worker takes together and a background write would leave them out of step."""
    if requested and num_workers > 1:
        logging.warning("--async_checkpoint is ignored with %d workers: saving synchronously.", num_workers)
        return False
    if requested and deterministic:
        logging.warning(
            "--async_checkpoint with --deterministic: a resume is exact only until the next epoch starts "
            "(TensorFlow's async save loses the input's reshuffle state); save synchronously for exact resumes."
        )
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


def _save_to_scratch(checkpoint: tf.train.Checkpoint, step: int) -> None:
    """A non-chief worker's part of a save: written to a private directory, then deleted."""
    scratch = tempfile.mkdtemp(prefix="mltrain-worker-checkpoint-")
    try:
        tf.train.CheckpointManager(checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def metric_value(summary: Dict, metric: str) -> float:
    """`metric` (`loss`, `hamming_loss`, or `<block>/<name>` such as `macro/f1` or `ranking/precision@1`)
    read from an eval summary; NaN when undefined (e.g. psprecision@k without training label counts)."""
    value = summary
    for key in metric.split("/"):
        value = value[key]
    return float("nan") if value is None else float(value)


def find_init_checkpoint(path: str) -> str:
    """The checkpoint prefix `--init_checkpoint` names: a ckpt-N prefix, a checkpoints directory
    (its newest), or a run's model_dir (the newest of its checkpoints/)."""
    candidates = [tf.train.latest_checkpoint(path), tf.train.latest_checkpoint(os.path.join(path, CHECKPOINT_SUBDIR))]
    if tf.io.gfile.exists(path + ".index"):
        candidates.insert(0, path)
    found = next((c for c in candidates if c), None)
    if found is None:
        raise UserError(
            f"--init_checkpoint={path} names no checkpoint; give a ckpt-N prefix (without .index), a "
            "checkpoints directory, or the --model_dir of a trained run."
        )
    return found


def run_directory(checkpoint_prefix: str) -> str:
    """The model_dir that wrote `checkpoint_prefix` (under checkpoints/ or checkpoints/best/)."""
    directory = os.path.dirname(checkpoint_prefix)
    if os.path.basename(directory) == BEST_SUBDIR:
        directory = os.path.dirname(directory)
    return os.path.dirname(directory) if os.path.basename(directory) == CHECKPOINT_SUBDIR else directory


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


def best_directory(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR, BEST_SUBDIR)


def restore_best(model_dir: str, checkpoint: tf.train.Checkpoint) -> str:
    """Restores `checkpoints/best/`; returns its path. Call inside the strategy scope."""
    path = tf.train.latest_checkpoint(best_directory(model_dir))
    if path is None:
        raise UserError(
            f"--checkpoint=best: {best_directory(model_dir)} holds no checkpoint; only --mode=train_and_eval "
            "with --eval_data keeps one. Use --checkpoint=latest, or train with evaluations."
        )
    try:
        checkpoint.restore(path).expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
        raise UserError(
            f"--checkpoint=best: {path} could not be restored ({str(e).strip().splitlines()[0][:200]}); "
            "use --checkpoint=latest."
        ) from None
    logging.info("Restored the best checkpoint %s", path)
    if not os.path.exists(os.path.join(best_directory(model_dir), "thresholds.json")):
        logging.warning("%s has no thresholds.json (an older run): 0.5 for every label.", best_directory(model_dir))
    return path


class BestCheckpoint:
    """Keeps the checkpoint of the best evaluation so far in `checkpoints/best/` (one kept), the
    thresholds tuned on that evaluation in `checkpoints/best/thresholds.json`, and its figures in
    `checkpoints/best/best.json`: {"step", "metric", "value"}.

    The best value so far comes from best.json, so it survives a resume. Every worker must make
    the same save decision (a save takes all of them), so the chief's best.json value is handed
    to the others with `agree` (an all-reduce) before the first comparison.
    """

    def __init__(self, model_dir: str, is_chief: bool, metric: str, checkpoint: tf.train.Checkpoint):
        self.is_chief = is_chief
        self.metric = metric
        self.checkpoint = checkpoint
        self.directory = best_directory(model_dir)
        self.path = os.path.join(self.directory, "best.json")
        self.lower_is_better = metric in LOWER_IS_BETTER
        self.value = self._read_best() if is_chief else None

    def _read_best(self) -> Optional[float]:
        try:
            with open(self.path) as f:
                saved = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logging.warning("Ignoring unreadable %s (%s): the next evaluation becomes the best.", self.path, e)
            return None
        if saved.get("metric") != self.metric:
            logging.warning(
                "%s tracks %s, not --best_metric=%s: the next evaluation becomes the best.",
                self.path,
                saved.get("metric"),
                self.metric,
            )
            return None
        logging.info("Best %s so far: %.6g at step %d (%s)", self.metric, saved["value"], saved["step"], self.path)
        return float(saved["value"])

    def agree(self, strategy) -> None:
        """Multi-worker only: every worker takes the chief's best value (a sum where only the chief adds)."""
        known, value = (1.0, self.value) if self.is_chief and self.value is not None else (0.0, 0.0)

        @tf.function
        def broadcast(local):
            def replica_sum():
                # The copy places the values on this replica's device, where the collective runs.
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(local))

            return strategy.experimental_local_results(strategy.run(replica_sum))[0]

        # Only the chief's replicas add [1, value], so sum[1] / sum[0] is its value for any replica count.
        total = broadcast(tf.constant([known, value], tf.float64)).numpy()
        self.value = float(total[1] / total[0]) if total[0] > 0 else None
        if not self.is_chief and self.value is not None:
            logging.info("Best %s so far, from the chief: %.6g", self.metric, self.value)

    def update(self, summary: Dict, totals: Dict) -> bool:
        """Saves the checkpoint as the best one if `summary` (figures at 0.5, from `totals`, the
        evaluation's summed statistics) improves on the best so far; every worker calls it."""
        value = metric_value(summary, self.metric)
        if not math.isfinite(value):
            return False
        improved = self.value is None or (value < self.value if self.lower_is_better else value > self.value)
        if not improved:
            return False
        step = int(summary["step"])
        if self.is_chief:
            manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=1)
            path = manager.save(checkpoint_number=step)
            # Tuned as the end of training tunes thresholds.json, on the same eval split.
            reporting.write_thresholds(self.directory, list(summary["labels"]), metrics.tune_thresholds(totals))
            tmp = f"{self.path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump({"step": step, "metric": self.metric, "value": value}, f)
                f.write("\n")
            os.replace(tmp, self.path)  # Last: best.json never names a missing checkpoint or thresholds.
            logging.info("New best %s %.6g at step %d: saved %s", self.metric, value, step, path)
        else:
            _save_to_scratch(self.checkpoint, step)
        self.value = value
        return True
