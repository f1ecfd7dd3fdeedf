"""The run: set up distribution, data and model, then train / evaluate / predict.

`run` reads top to bottom: the order of the sections is the order things must happen in
(the strategy before any other TensorFlow call; the model, optimizer and restore inside the
strategy scope; the iterator before the restore, since its position is in the checkpoint).
"""

import hashlib
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from trainer import (
    checkpoint,
    data,
    distribute,
    evaluation,
    export,
    losses,
    models,
    optimization,
    reporting,
    steps,
    text,
    worker_input,
)
from trainer import config as config_lib
from trainer.config import Config
from trainer.errors import Preempted, TrainingFailed, UserError
from trainer.preemption import make_watcher


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def weights_digest(model) -> str:
    """SHA-256 of every weight's bytes, in a fixed order: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def _steps_until_next_event(step: int, config: Config) -> int:
    """Steps to run before the host must act: log, checkpoint, evaluate or stop."""
    train = config.train
    intervals = [train.steps_per_loop, train.log_every_steps, train.checkpoint_every_steps]
    if config.mode == "train_and_eval":
        intervals.append(train.eval_every_steps)
    nearest = min(interval - step % interval for interval in intervals)
    return min(nearest, train.train_steps - step)


def _log_label_statistics(split: data.Split) -> None:
    if split.label_counts is None:
        return
    total = max(split.num_examples, 1)
    frequencies = ", ".join(
        f"{name}={count / total:.3f}" for name, count in zip(split.spec.label_names, split.label_counts)
    )
    logging.info("Label frequencies in training data: %s", frequencies)
    never = [name for name, count in zip(split.spec.label_names, split.label_counts) if count == 0]
    if never:
        logging.warning("Labels never positive in training data (the model cannot learn them): %s", ", ".join(never))


def _load_matching(config: Config, split_name: str, path: str, spec: data.InputSpec) -> data.Split:
    split = data.load_split(config.data, split_name, path, config.train.seed, spec.vocabulary)
    if split.spec.label_names != spec.label_names:
        raise UserError(
            f"--{split_name}_data has labels {split.spec.label_names[:4]}... but the model is built "
            f"for {spec.label_names[:4]}...; give every split the same labels (--label_names)."
        )
    return split


def run(config: Config) -> None:
    """Runs `config.mode` to completion; raises UserError / TrainingFailed."""
    train = config.train
    training = config.mode in ("train", "train_and_eval")
    # -- Distribution: first, since it may split the CPU into logical devices.
    cluster = distribute.cluster_from_env(os.environ.get("TF_CONFIG"))
    strategy = distribute.make_strategy(config.distribute, cluster)
    topology = distribute.topology(strategy, cluster, train.global_batch_size)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()

    # -- Config: training refuses to resume a different model; eval/predict/export rebuild the
    # model that was trained, whatever model flags they were given.
    config_path = os.path.join(config.model_dir, "config.json")
    has_checkpoint = tf.train.latest_checkpoint(os.path.join(config.model_dir, checkpoint.CHECKPOINT_SUBDIR))
    if os.path.exists(config_path) and has_checkpoint:
        with open(config_path) as f:
            saved_config = f.read()
        if training:
            config_lib.check_resumable(saved_config, config)
        else:
            config = config_lib.adopt_trained_settings(config, saved_config)
            train = config.train
    keras.mixed_precision.set_global_policy(train.mixed_precision)

    # -- Data: the first split read defines the inputs, labels and vocabulary; the others must
    # match. A text vocabulary is built once, from the training data, and kept in the model dir
    # so that resume, eval, predict and export tokenise as training did.
    if training:
        first_name, first_path = "train", config.data.train_data
    elif config.mode in ("predict", "export"):
        first_name, first_path = "test", config.data.test_data
    else:
        first_name, first_path = next(
            (n, p) for n, p in (("eval", config.data.eval_data), ("test", config.data.test_data)) if p
        )
    # Resume order: 1. this model_dir's checkpoint; 2. --init_checkpoint's model weights (a warm
    # start, whose vocabulary comes along: the embeddings were trained on it); 3. fresh.
    init_prefix = None
    if training and train.init_checkpoint and not has_checkpoint:
        init_prefix = checkpoint.find_init_checkpoint(train.init_checkpoint)
    own_vocabulary = text.read_vocabulary(config.model_dir)
    saved_vocabulary = own_vocabulary or (
        text.read_vocabulary(checkpoint.run_directory(init_prefix)) if init_prefix else ()
    )
    if config.mode == "export":  # No data: the model is rebuilt from what training saved.
        first, spec = None, data.read_spec(config.model_dir, saved_vocabulary)
    else:
        first = data.load_split(config.data, first_name, first_path, train.seed, saved_vocabulary)
        spec = first.spec
    eval_split = test_split = None
    if config.mode in ("train_and_eval", "eval") and config.data.eval_data:
        eval_split = first if first_name == "eval" else _load_matching(config, "eval", config.data.eval_data, spec)
    if config.mode in ("train_and_eval", "eval", "predict") and config.data.test_data:
        test_split = first if first_name == "test" else _load_matching(config, "test", config.data.test_data, spec)

    # -- Model, optimizer, step: every variable is created inside the strategy scope.
    with strategy.scope():
        model = models.MODELS[config.model.model](config.model, spec)
        optimizer = optimization.make_optimizer(train) if training else None
        if optimizer is not None:
            optimizer.build(model.trainable_variables)
        if training and not has_checkpoint:  # A restore brings the statistics of the run that wrote it.
            models.adapt(model, first)
        step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="step", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
        )
    input_names = list(model.input.keys())
    positive_fraction = first.label_counts / max(first.num_examples, 1) if training else None
    loss_fn = losses.LOSSES[config.loss.loss](config.loss, positive_fraction)
    evaluator = evaluation.Evaluator(
        strategy,
        topology,
        model,
        loss_fn,
        train.jit_compile,
        config.model_dir,
        config.checkpoint,
        exact_metrics_budget=train.exact_metrics_budget,
        predict_top_k=train.predict_top_k,
    )

    # -- Restore (resume order: this model_dir's latest checkpoint, else fresh). The train
    # iterator is part of the checkpoint, so it exists before the restore.
    trackables, own_input = {"model": model, "step": step}, None
    if training:
        train_dataset = data.train_batches(
            first,
            input_names,
            topology,
            config.data.shuffle_buffer,
            train.seed,
            train.deterministic,
            cache=config.data.cache_train_data,
        )
        iterator = iter(train_dataset)
        trackables.update(optimizer=optimizer)
        # Several workers: each saves its own position. Even when all read the same global stream,
        # the chief's iterator state holds batches it prefetched with its own rows.
        if topology.num_workers > 1:
            own_input = worker_input.IteratorCheckpoints(
                os.path.join(config.model_dir, checkpoint.CHECKPOINT_SUBDIR), topology, iterator, train.keep_checkpoints
            )
        else:
            trackables.update(train_iterator=iterator)
    async_save = checkpoint.async_allowed(train.async_checkpoint, topology.num_workers, train.deterministic)
    checkpoints = checkpoint.Checkpoints(
        config.model_dir,
        topology.is_chief,
        train.keep_checkpoints,
        async_save=async_save,
        worker_input=own_input,
        **trackables,
    )
    with strategy.scope():
        if config.checkpoint == "best":
            restored = checkpoint.restore_best(config.model_dir, checkpoints.without_input)
        else:
            restored = checkpoints.restore_latest()
        if init_prefix and not restored:  # Replaces the adapted feature statistics too, as trained with.
            checkpoint.warm_start(model, init_prefix)
    if topology.is_chief and training:  # After the data and checkpoint checks: a bad input leaves nothing behind.
        config_lib.write(config, config_path)
        data.write_spec(config.model_dir, spec)
        if spec.vocabulary and not own_vocabulary:
            logging.info("Wrote %s", text.write_vocabulary(config.model_dir, spec.vocabulary))
    # Thresholds go with the checkpoint: the best one has its own, tuned at its evaluation.
    thresholds_dir = checkpoint.best_directory(config.model_dir) if config.checkpoint == "best" else config.model_dir
    best = None
    if config.mode == "train_and_eval" and eval_split is not None:
        best = checkpoint.BestCheckpoint(
            config.model_dir, topology.is_chief, train.best_metric, checkpoints.without_input
        )
        if topology.num_workers > 1:
            best.agree(strategy)
    if not training and not restored:
        raise UserError(
            f"--mode={config.mode} needs a trained model, but {checkpoints.directory} has no "
            "checkpoint; train first (--mode=train_and_eval) or point --model_dir at a trained run."
        )
    current = int(step.numpy())
    if training and restored:
        logging.info("Resuming at step %d of %d from %s", current, train.train_steps, checkpoints.directory)
    num_examples = first.num_examples if first is not None else -1
    steps_per_epoch = num_examples // topology.global_batch_size if num_examples > 0 else "unknown"
    logging.info(
        "Strategy %s: %d replica(s) on %d worker(s), this is worker %d%s; global batch %d = %d per replica; "
        "%s steps per epoch; precision %s; XLA %s; model %s, %d parameters; step %d%s.",
        type(strategy).__name__,
        topology.num_replicas,
        topology.num_workers,
        topology.worker_index,
        " (chief)" if topology.is_chief else "",
        topology.global_batch_size,
        topology.per_replica_batch_size,
        steps_per_epoch,
        train.mixed_precision,
        "on" if train.jit_compile else "off",
        config.model.model,
        model.count_params(),
        current,
        f"; peak learning rate {optimization.peak_learning_rate(train):.3g}" if training else "",
    )

    # -- Train.
    if training:
        _log_label_statistics(first)
        train_loop = steps.make_train_loop(
            strategy, topology, model, optimizer, loss_fn, step, train.jit_compile, config.loss.label_smoothing
        )
        start_time = last_time = time.time()
        start_step = last_step = current
        timed_saves = train.checkpoint_every_seconds > 0
        preemption = make_watcher(strategy, topology.num_workers, topology.is_chief, timed_saves)
        last_save_time = time.time()
        nan_rollbacks = 0
        while current < train.train_steps:
            num_steps = _steps_until_next_event(current, config)
            loss = float(train_loop(iterator, tf.constant(num_steps, tf.int32)))
            current = int(step.numpy())
            if not math.isfinite(loss):
                bad_steps = f"steps {current - num_steps + 1}..{current}"
                if nan_rollbacks >= train.max_nan_rollbacks or not checkpoints.roll_back():
                    raise TrainingFailed(
                        f"loss is {loss} in {bad_steps}; lower --learning_rate, set --clip_norm, check the data "
                        f"of that range, or allow --max_nan_rollbacks. Checkpoints are in {checkpoints.directory}."
                    )
                nan_rollbacks += 1
                current = int(step.numpy())
                logging.warning(
                    "Loss is %s in %s: rolled back to step %d; the input moves on past those batches "
                    "(rollback %d of %d).",
                    loss,
                    bad_steps,
                    current,
                    nan_rollbacks,
                    train.max_nan_rollbacks,
                )
                continue
            if current % train.log_every_steps == 0 or current == train.train_steps:
                now = time.time()
                rate = (current - last_step) * train.global_batch_size / max(now - last_time, 1e-9)
                remaining = (train.train_steps - current) * (now - start_time) / max(current - start_step, 1)
                logging.info(
                    "[train] step %d/%d | loss %.4f | %.0f examples/s | elapsed %s | eta %s",
                    current,
                    train.train_steps,
                    loss,
                    rate,
                    _format_seconds(now - start_time),
                    _format_seconds(remaining),
                )
                last_time, last_step = now, current
            # Agreed by all workers (one all-reduce at most): a save takes every one of them.
            time_due = timed_saves and time.time() - last_save_time >= train.checkpoint_every_seconds
            stop, time_due = preemption.agree(time_due)
            if stop or time_due or current % train.checkpoint_every_steps == 0 or current == train.train_steps:
                checkpoints.save(current)
                last_save_time = time.time()
            if stop:
                checkpoints.sync()
                raise Preempted(
                    f"stopped by SIGTERM at step {current} of {train.train_steps}; checkpoint saved in "
                    f"{checkpoints.directory}; run the same command again to resume."
                )
            if (
                config.mode == "train_and_eval"
                and eval_split is not None
                and current % train.eval_every_steps == 0
                and current < train.train_steps
            ):
                summary, totals = evaluator.evaluate_and_report(
                    "eval", eval_split, np.full(spec.num_labels, 0.5, np.float32), current
                )
                best.update(summary, totals)
        checkpoints.sync()

        # Every worker logs this; equal digests prove the replicas ended in sync.
        logging.info("[train] done at step %d; weights sha256 %s", current, weights_digest(model))

    # -- Evaluate / predict with the tuned (or saved) thresholds.
    if config.mode == "train_and_eval" and eval_split is not None:
        at_half, totals = evaluator.tune_and_report(eval_split, test_split, current)
        if best is not None:  # The final step competes too, at the same 0.5 thresholds as the others.
            best.update(at_half, totals)
    elif config.mode == "eval":
        thresholds = reporting.read_thresholds(thresholds_dir, spec.label_names)
        for name, split in (("eval", eval_split), ("test", test_split)):
            if split is not None:
                evaluator.evaluate_and_report(name, split, thresholds, current)
    elif config.mode == "predict":
        evaluator.predict(test_split, reporting.read_thresholds(thresholds_dir, spec.label_names))
    elif config.mode == "export" and topology.is_chief:
        thresholds = reporting.read_thresholds(thresholds_dir, spec.label_names)
        export.export(model, spec, input_names, thresholds, config.data.sequence_length, config.data.text_bigrams,
                      config.model_dir)  # fmt: skip
