"""--mode=train and train_and_eval: the training loop, then (with eval data) thresholds tuned on the
eval split and the test split scored with them.

The host acts between compiled loops of up to --steps_per_loop steps, at the nearest of: a log
line, a checkpoint, an evaluation, the end. Each evaluation keeps the best checkpoint so far.
"""

import contextlib
import hashlib
import math
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import config as config_lib
from trainer import data, metrics, paths, steps
from trainer.checkpoint import BestCheckpoint, restore_best
from trainer.data import labels
from trainer.errors import Preempted, TrainingFailed
from trainer.preemption import make_watcher
from trainer.reporting import read_thresholds


def train(run) -> None:
    """Trains `run` (a trainer.run.Run) to --train_steps, evaluating on the way when it has eval data."""
    config, train_config = run.config, run.config.train
    evaluating = config.mode == "train_and_eval" and run.eval_split is not None
    best = _best_checkpoint(run) if evaluating else None
    stale_evaluations = 0  # Evaluations in a row without a better --best_metric (this process's count).
    _log_label_statistics(run.train_split)
    train_loop = steps.make_train_loop(
        run.strategy,
        run.topology,
        run.model,
        run.optimizer,
        run.loss_fn,
        run.step,
        train_config.jit_compile,
        config.loss.label_smoothing,
        run.average,
    )
    timed_saves = train_config.checkpoint_every_seconds > 0
    preemption = make_watcher(run.strategy, run.topology.num_workers, run.topology.is_chief, timed_saves)
    progress = _Progress(train_config.train_steps, train_config.global_batch_size, int(run.step.numpy()))
    last_save_time, nan_rollbacks = time.time(), 0
    current = int(run.step.numpy())

    while current < train_config.train_steps:
        # -- Run compiled steps up to the next event.
        num_steps = _steps_until_next_event(current, config, evaluating)
        started = time.time()
        loss = float(train_loop(run.train_iterator, tf.constant(num_steps, tf.int32)))
        progress.trained(num_steps, time.time() - started)
        current = int(run.step.numpy())

        # -- A NaN/Inf loss: stop, or roll back to the last checkpoint a bounded number of times.
        if not math.isfinite(loss):
            bad_steps = f"steps {current - num_steps + 1}..{current}"
            if nan_rollbacks >= train_config.max_nan_rollbacks or not run.checkpoints.roll_back():
                raise TrainingFailed(
                    f"loss is {loss} in {bad_steps}; lower --learning_rate, set --clip_norm, check the data "
                    "of that range, or allow --max_nan_rollbacks. "
                    + (
                        f"Checkpoints are in {run.checkpoints.directory}."
                        if run.checkpoints.manager.latest_checkpoint
                        else "No checkpoint was written before it."
                    )
                )
            nan_rollbacks += 1
            current = int(run.step.numpy())
            logging.warning(
                "Loss is %s in %s: rolled back to step %d; the input moves on past those batches (rollback %d of %d).",
                loss,
                bad_steps,
                current,
                nan_rollbacks,
                train_config.max_nan_rollbacks,
            )
            continue

        # -- Log.
        if current % train_config.log_every_steps == 0 or current == train_config.train_steps:
            progress.log(current, loss)

        # -- Checkpoint, and stop if preempted. Agreed by all workers (one all-reduce at most): a
        # save takes every one of them.
        time_due = timed_saves and time.time() - last_save_time >= train_config.checkpoint_every_seconds
        stop, time_due = preemption.agree(time_due)
        step_due = current % train_config.checkpoint_every_steps == 0 or current == train_config.train_steps
        if stop or time_due or step_due:
            run.checkpoints.save(current)
            last_save_time = time.time()
        if stop:
            run.checkpoints.sync()
            raise Preempted(
                f"stopped by SIGTERM at step {current} of {train_config.train_steps}; checkpoint saved in "
                f"{run.checkpoints.directory}; run the same command again to resume."
            )

        # -- Evaluate (at 0.5; the thresholds are tuned once, at the end).
        if evaluating and current % train_config.eval_every_steps == 0 and current < train_config.train_steps:
            at_half = np.full(run.spec.num_labels, 0.5, np.float32)
            with _evaluation_weights(run):
                summary, source = run.evaluator.evaluate("eval", run.eval_split, at_half, current)
            run.reporter.evaluation(summary, source)
            stale_evaluations = 0 if _keep_if_best(run, best, summary, source) else stale_evaluations + 1
            del source  # Exact scores can be large: not held through the next pass.
            patience = train_config.early_stopping_patience
            if patience and stale_evaluations >= patience:
                logging.info(
                    "[train] early stop at step %d: %d evaluations without a better %s than at step %d "
                    "(--early_stopping_patience).",
                    current,
                    stale_evaluations,
                    best.metric,
                    best.step,
                )
                run.checkpoints.save(current)
                break
    run.checkpoints.sync()
    # Every worker logs this; equal digests prove the replicas ended in sync.
    logging.info("[train] done at step %d; weights sha256 %s", current, weights_digest(run.model))
    if evaluating:
        _finish(run, best, current)
    elif config.mode == "train_and_eval" and run.test_split is not None:  # No eval split: test at 0.5.
        at_half = np.full(run.spec.num_labels, 0.5, np.float32)
        with _evaluation_weights(run):
            summary, source = run.evaluator.evaluate("test", run.test_split, at_half, current)
        run.reporter.evaluation(summary, source)


def _finish(run, best: BestCheckpoint, step: int) -> None:
    """Tunes one threshold per label on eval (thresholds.json), reports, then scores test: with the
    best evaluation's checkpoint and the thresholds tuned at it (--test_checkpoint=best, the
    default), or with the last weights and the thresholds just tuned."""
    with _evaluation_weights(run):
        tuned, at_half, source, thresholds = run.evaluator.tune(
            run.eval_split, step, run.config.train.threshold_objective
        )
    run.reporter.tuned(tuned, at_half, source, thresholds)
    # The final step competes at 0.5, as the others did; its thresholds are the ones just tuned.
    _keep_if_best(run, best, at_half, source, thresholds)
    del source
    if run.test_split is None:
        return
    if run.config.train.test_checkpoint == "best" and best.step not in (None, step):
        # Every worker restores it: the model_dir is shared by the workers (they resume from it too).
        with run.strategy.scope():
            restore_best(run.config.model_dir, run.checkpoints.without_input)
        step = best.step
        thresholds = read_thresholds(paths.best(run.config.model_dir), run.spec.label_names)
        run.evaluator.checkpoint = "best"
        logging.info("Scoring --test_data with the best checkpoint (step %d; --test_checkpoint=best).", step)
    with _evaluation_weights(run):
        summary, test_source = run.evaluator.evaluate("test", run.test_split, thresholds, step)
    run.reporter.evaluation(summary, test_source)


@contextlib.contextmanager
def _evaluation_weights(run):
    """The averaged weights in the model for the block (with --ema_decay, unless --eval_weights=raw)."""
    swap = run.average is not None and run.config.train.eval_weights == "averaged"
    if swap:
        run.average.swap(run.model.trainable_variables)
    try:
        yield
    finally:
        if swap:
            run.average.swap(run.model.trainable_variables)


def _best_checkpoint(run) -> BestCheckpoint:
    best = BestCheckpoint(
        run.config.model_dir, run.topology.is_chief, run.config.train.best_metric, run.checkpoints.without_input
    )
    if run.topology.num_workers > 1:
        best.agree(run.strategy)
    return best


def _keep_if_best(run, best: BestCheckpoint, summary, source, thresholds: Optional[np.ndarray] = None) -> bool:
    """Keeps the checkpoint in checkpoints/best/ when `summary` (figures at 0.5) is the best so far,
    with thresholds tuned on that evaluation (`thresholds` when they already are: tuning is the
    costly part at many labels); best.json is written last. Returns whether it was."""
    value = figure(summary, best.metric)
    if not best.improves(value):
        return False
    step = int(summary["step"])
    best.save(step)
    if thresholds is None:
        objective = config_lib.threshold_objective(run.config.train.threshold_objective)
        thresholds = metrics.tune(source, objective)[0]
    run.reporter.best_thresholds(list(summary["labels"]), thresholds)
    best.record(step, value)
    return True


def figure(summary, name: str) -> float:
    """`name` (`loss`, `hamming_loss`, or `<block>/<name>` such as `macro/f1` or `ranking/precision@1`)
    read from an eval summary; NaN when undefined (e.g. psprecision@k without training label counts)."""
    value = summary
    for key in name.split("/"):
        value = value[key]
    return float("nan") if value is None else float(value)


def _steps_until_next_event(step: int, config, evaluating: bool) -> int:
    """Steps to run before the host must act: log, checkpoint, evaluate or stop."""
    train = config.train
    intervals = [train.steps_per_loop, train.log_every_steps, train.checkpoint_every_steps]
    if evaluating:
        intervals.append(train.eval_every_steps)
    nearest = min(interval - step % interval for interval in intervals)
    return min(nearest, train.train_steps - step)


class _Progress:
    """The progress line. Its examples/s count only the time spent in the compiled training loops,
    so evaluations and checkpoints in between do not dilute it (they log their own durations)."""

    def __init__(self, train_steps: int, global_batch_size: int, step: int):
        self.train_steps, self.global_batch_size = train_steps, global_batch_size
        self.start_time, self.start_step = time.time(), step
        self.steps = 0  # Steps trained since the last line, and the seconds they took.
        self.seconds = 0.0

    def trained(self, num_steps: int, seconds: float) -> None:
        self.steps += num_steps
        self.seconds += seconds

    def log(self, step: int, loss: float) -> None:
        now = time.time()
        rate = self.steps * self.global_batch_size / max(self.seconds, 1e-9)
        remaining = (self.train_steps - step) * (now - self.start_time) / max(step - self.start_step, 1)
        logging.info(
            "[train] step %d/%d | loss %.4f | %.0f examples/s | elapsed %s | eta %s",
            step,
            self.train_steps,
            loss,
            rate,
            _format_seconds(now - self.start_time),
            _format_seconds(remaining),
        )
        self.steps, self.seconds = 0, 0.0


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _log_label_statistics(split: data.Split) -> None:
    if split.label_counts is None:
        return
    # Over the examples where each label is known (all of them unless the data is partially labelled).
    frequencies = labels.shorten(
        f"{name}={fraction:.3f}" for name, fraction in zip(split.spec.label_names, split.positive_fraction())
    )
    logging.info("Label frequencies in training data: %s", frequencies)
    never = [name for name, count in zip(split.spec.label_names, split.label_counts) if count == 0]
    if never:
        logging.warning(
            "Labels never positive in training data (the model cannot learn them): %s", labels.shorten(never)
        )


def weights_digest(model) -> str:
    """SHA-256 of every weight of `model`, in order: equal on every worker when replicas are in sync."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()
