"""A run: `setup` builds what every mode needs, in the order it must happen; then one function per
mode (`MODES`) does the work: train.train for training, `evaluate`, `predict` and `export` here.

The order inside `setup` is the point of it:
1. the strategy, before any other TensorFlow call (it may split the CPU into logical devices);
2. the configuration check: training refuses to resume a different model; the other modes
   rebuild the model that was trained from its config.json, whatever model flags they got;
3. the data: a trained run's input_spec.json (resume, eval, predict), else the first split read,
   defines the inputs, labels and vocabulary; every split must match them (data.matching), and a
   resume needs the training data it started with;
4. model, optimizer and step, inside the strategy scope;
5. the train iterator, before the restore, since its position is in the checkpoint;
6. the restore, in the resume order: this model_dir's checkpoint, else --init_checkpoint's
   model weights (a warm start), else fresh;
7. config.json, input_spec.json and vocabulary.txt, written only once all of the above passed,
   so a bad input leaves nothing behind.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from trainer import (
    averaging,
    checkpoint,
    data,
    distribute,
    evaluation,
    export,
    hub,
    losses,
    metrics,
    models,
    optimization,
    paths,
    pretrained,
)
from trainer import config as config_lib
from trainer import train as train_lib
from trainer.config import Config
from trainer.data import holdout, text
from trainer.errors import UserError
from trainer.reporting import Reporter, read_thresholds


@dataclasses.dataclass
class Run:
    """Everything a mode works with; built by `setup`."""

    config: Config
    strategy: Any
    topology: distribute.Topology
    spec: data.InputSpec
    model: keras.Model
    step: tf.Variable
    checkpoints: checkpoint.Checkpoints
    evaluator: evaluation.Evaluator
    reporter: Reporter
    loss_fn: Callable
    train_split: Optional[data.Split] = None
    eval_split: Optional[data.Split] = None
    test_split: Optional[data.Split] = None
    optimizer: Any = None  # Training only.
    train_iterator: Any = None  # Training only.
    average: Optional[averaging.WeightAverage] = None  # With --ema_decay.
    thresholds_dir: str = ""  # Where the thresholds of the restored checkpoint are.


def _training(config: Config) -> bool:
    return config.mode in ("train", "train_and_eval")


def _check_config(config: Config, has_checkpoint: bool) -> Config:
    """Training: refuse to resume a different model. Other modes: the trained model's settings."""
    if not (has_checkpoint and tf.io.gfile.exists(paths.config(config.model_dir))):
        return config
    saved = paths.read_text(paths.config(config.model_dir))
    if _training(config):
        config_lib.check_resumable(saved, config)
        return config
    adopted = config_lib.adopt_trained_settings(config, saved)
    for flag, given, used in config_lib.ignored_settings(config, adopted):
        logging.warning(
            "--%s=%s is ignored: --mode=%s rebuilds the trained model with the run's own --%s=%s (its config.json).",
            flag,
            given,
            config.mode,
            flag,
            used,
        )
    return adopted


# The splits each mode reads; the first one read defines the inputs, labels and vocabulary.
SPLITS = {
    "train": ("train",),
    "train_and_eval": ("train", "eval", "test"),
    "eval": ("eval", "test"),
    "predict": ("test",),
    "export": (),
}


def _load_splits(config: Config, vocabulary, trained: Optional[data.InputSpec]) -> Dict[str, data.Split]:
    """The splits `config.mode` reads, by name. Each must fit the model's inputs: those of the
    trained model (`trained`: a resume, eval or predict), else those of the first split read."""
    flags = {
        "train": config.data.train_data,
        "eval": config_lib.effective_eval_data(config),
        "test": config.data.test_data,
    }
    if trained is None:
        fix = "give every split the same labels and columns, in the same order (--label_names)."
    elif _training(config):
        fix = "resume with the data the run started with, or use a new --model_dir."
    else:
        fix = (
            f"give it the model's labels and columns, in their order ({paths.input_spec(config.model_dir)} lists them)."
        )
    splits: Dict[str, data.Split] = {}
    tokenizer = hub.tokenizer_for(config)  # A hub_text preset's own; None: the run's vocabulary.
    for name in SPLITS[config.mode]:
        if not flags[name]:
            continue
        first = next(iter(splits.items()), None)
        vocabulary = first[1].spec.vocabulary if first else vocabulary
        split = data.load_split(config.data, name, flags[name], config.train.seed, vocabulary, tokenizer, trained)
        if trained is not None:
            data.check_same_inputs(split.spec, trained, f"--{name}_data", f"the model in {config.model_dir}", fix)
        elif first is not None:
            data.check_same_inputs(split.spec, first[1].spec, f"--{name}_data", f"--{first[0]}_data", fix)
        splits[name] = split
    if config.mode == "train_and_eval" and "eval" not in splits and config.data.threshold_holdout > 0:
        splits["train"], splits["eval"] = holdout.split(
            splits["train"], config.data.threshold_holdout, config.train.seed
        )
    return splits


def setup(config: Config) -> Run:
    """Builds the run for `config.mode` (see the module docstring for the order); raises UserError."""
    train = config.train
    training = _training(config)
    # 1. Distribution.
    cluster = distribute.cluster_from_env(os.environ.get("TF_CONFIG"))
    strategy = distribute.make_strategy(config.distribute, cluster)
    topology = distribute.topology(strategy, cluster, train.global_batch_size)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()

    # 2. Configuration.
    has_checkpoint = tf.train.latest_checkpoint(paths.checkpoints(config.model_dir)) is not None
    config = _check_config(config, has_checkpoint)
    train = config.train
    keras.mixed_precision.set_global_policy(train.mixed_precision)

    # 3. Data. A text vocabulary is built once, from the training data, and kept in the model dir
    # so that resume, eval, predict and export tokenise as training did; a warm start brings the
    # vocabulary its embeddings were trained on.
    init_prefix = None
    if training and train.init_checkpoint and not has_checkpoint:
        init_prefix = checkpoint.find_init_checkpoint(train.init_checkpoint)
    own_vocabulary = text.read_vocabulary(config.model_dir)
    vocabulary = own_vocabulary or (text.read_vocabulary(paths.run_directory(init_prefix)) if init_prefix else ())
    saved_spec = data.read_saved(config.model_dir) if has_checkpoint else None
    trained = data.read_spec(config.model_dir, vocabulary) if saved_spec is not None else None
    splits = _load_splits(config, vocabulary, trained)
    if training and saved_spec is not None:
        data.check_resume(saved_spec, splits["train"], config.model_dir, config.data.cache_train_data)
    if config.mode == "export":  # No data: the model is rebuilt from what training saved.
        spec = data.read_spec(config.model_dir, vocabulary)
    elif not splits:
        raise UserError(f"--mode={config.mode} has no data to read; give --eval_data or --test_data.")
    else:
        spec = next(iter(splits.values())).spec
    train_split = splits.get("train")

    # 4. Model, optimizer, step: every variable is created inside the strategy scope.
    with strategy.scope():
        model = models.MODELS[config.model.model](config.model, spec)
        optimizer = optimization.make_optimizer(train) if training else None
        if optimizer is not None:
            optimizer.build(model.trainable_variables)
            optimization.set_rate_factors(optimizer, hub.layer_rate_factors(model, config.model))
        if training and not has_checkpoint:  # A restore brings the statistics of the run that wrote it.
            models.adapt(model, train_split)
            if not init_prefix:  # A warm start brings its own embeddings.
                pretrained.initialise(model, config.model, spec.vocabulary, train.seed)
        step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="step", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
        )
        average = averaging.WeightAverage(model.trainable_variables, train.ema_decay) if train.ema_decay else None
    config = hub.xla_fallback(config, model)
    train = config.train
    # Eval and predict report the loss the run trained with: weighted_bce weights by the training data.
    positive_fraction = train_split.positive_fraction() if training else data.read_positive_fraction(config.model_dir)
    loss_fn = losses.LOSSES[config.loss.loss](config.loss, positive_fraction)

    # 5. The train iterator. With several workers each saves its own position: even when all read
    # the same global stream, the chief's iterator state holds batches prefetched with its rows.
    trackables, own_input, iterator = {"model": model, "step": step}, None, None
    if models.random_states(model):  # Only then: checkpoints of models without dropout keep their keys.
        trackables.update(random_states=models.random_states(model))
    if average is not None:
        trackables.update(weight_average=average)
    if training:
        batches = data.train_batches(
            train_split,
            list(model.input.keys()),
            topology,
            config.data.shuffle_buffer,
            train.seed,
            train.deterministic,
            cache=config.data.cache_train_data,
        )
        iterator = iter(batches)
        trackables.update(optimizer=optimizer)
        if topology.num_workers > 1:
            own_input = checkpoint.InputPositions(config.model_dir, topology, iterator, train.keep_checkpoints)
        else:
            trackables.update(train_iterator=iterator)
    async_save = checkpoint.async_allowed(train.async_checkpoint, topology.num_workers)
    checkpoints = checkpoint.Checkpoints(
        config.model_dir, topology.is_chief, train.keep_checkpoints, async_save, own_input, **trackables
    )

    # 6. Restore.
    with strategy.scope():
        if config.checkpoint == "best":
            restored = bool(checkpoint.restore_best(config.model_dir, checkpoints.without_input))
        else:
            restored = checkpoints.restore_latest()
        if init_prefix and not restored:  # Replaces the adapted feature statistics too, as trained with.
            checkpoint.warm_start(model, init_prefix)
            if average is not None:
                average.reset(model.trainable_variables)
        if average is not None and not training and train.eval_weights == "averaged":
            average.swap(model.trainable_variables)  # For good: this run only evaluates, predicts or exports.
            logging.info(
                "Using the averaged weights (--ema_decay=%g); --eval_weights=raw for the others.", train.ema_decay
            )
    if not training and not restored:
        raise UserError(
            f"--mode={config.mode} needs a trained model, but {checkpoints.directory} has no "
            "checkpoint; train first (--mode=train_and_eval) or point --model_dir at a trained run."
        )

    # 7. What later runs of this model_dir read.
    if topology.is_chief and training:
        paths.atomic_write(paths.config(config.model_dir), config_lib.to_json(config) + "\n")
        data.write_spec(config.model_dir, spec, train_split, config.data.cache_train_data)
        if spec.vocabulary and not own_vocabulary:
            logging.info("Wrote %s", text.write_vocabulary(config.model_dir, spec.vocabulary))

    best = config.checkpoint == "best"
    run = Run(
        config=config,
        strategy=strategy,
        topology=topology,
        spec=spec,
        model=model,
        step=step,
        checkpoints=checkpoints,
        evaluator=evaluation.Evaluator(
            strategy,
            topology,
            model,
            loss_fn,
            train.jit_compile,
            config.checkpoint,
            train.exact_metrics_budget,
            _inverse_propensity(config, train_split, spec.num_labels),
        ),
        reporter=Reporter(config.model_dir, topology.is_chief, "best-" if best else "", config.mode == "eval"),
        loss_fn=loss_fn,
        train_split=train_split,
        eval_split=splits.get("eval"),
        test_split=splits.get("test"),
        optimizer=optimizer,
        train_iterator=iterator,
        average=average,
        thresholds_dir=paths.best(config.model_dir) if best else config.model_dir,
    )
    _log_start(run, restored)
    return run


def _inverse_propensity(config: Config, train_split: Optional[data.Split], num_labels: int):
    """The label weights of the propensity-scored ranking figures, from the training label counts
    (this run's training split, else what training saved with the spec); None when unknown."""
    if train_split is not None and train_split.num_examples > 0:
        counts = (train_split.label_counts, train_split.num_examples)
    else:
        counts = data.read_train_label_counts(config.model_dir)
    if counts is None or len(counts[0]) != num_labels or counts[1] < 2:
        return None
    return metrics.propensity.inverse_propensities(*counts)


def _log_start(run: Run, restored: bool) -> None:
    config, topology, train = run.config, run.topology, run.config.train
    current = int(run.step.numpy())
    if _training(config) and restored:
        logging.info("Resuming at step %d of %d from %s", current, train.train_steps, run.checkpoints.directory)
    epoch = ""
    if _training(config) and run.train_split.num_examples > 0:
        num_examples = run.train_split.num_examples
        epoch = f"; {num_examples // topology.global_batch_size} steps per epoch"
        if num_examples < topology.global_batch_size:
            logging.warning(
                "--global_batch_size=%d is larger than the %d training examples: every batch holds some of them "
                "twice or more; a batch of at most %d sees each once an epoch.",
                topology.global_batch_size,
                num_examples,
                num_examples,
            )
    logging.info(
        "Strategy %s: %d replica(s) on %d worker(s), this is worker %d%s; global batch %d = %d per replica%s; "
        "precision %s; XLA %s; model %s, %d parameters; step %d%s.",
        type(run.strategy).__name__,
        topology.num_replicas,
        topology.num_workers,
        topology.worker_index,
        " (chief)" if topology.is_chief else "",
        topology.global_batch_size,
        topology.per_replica_batch_size,
        epoch,
        train.mixed_precision,
        "on" if train.jit_compile else "off",
        config.model.model,
        run.model.count_params(),
        current,
        f"; peak learning rate {optimization.peak_learning_rate(train):.3g}" if _training(config) else "",
    )


def evaluate(run: Run) -> None:
    """--mode=eval: scores the eval and/or test split at the saved thresholds (never re-tuned), into
    files of their own (an evaluation run changes no file that training wrote)."""
    thresholds = read_thresholds(run.thresholds_dir, run.spec.label_names)
    step = int(run.step.numpy())
    for name, split in (("eval", run.eval_split), ("test", run.test_split)):
        if split is not None:
            summary, totals = run.evaluator.evaluate(name, split, thresholds, step)
            run.reporter.evaluation(summary, totals)


def predict(run: Run) -> None:
    """--mode=predict: scores --test_data into predictions.jsonl at the saved thresholds (only the
    --predict_top_k best labels of each example when it is set)."""
    top_k = run.config.train.predict_top_k
    if top_k > run.spec.num_labels:
        raise UserError(
            f"--predict_top_k={top_k} is more than the {run.spec.num_labels} labels; "
            f"use at most {run.spec.num_labels} (0 writes every label)."
        )
    thresholds = read_thresholds(run.thresholds_dir, run.spec.label_names)
    run.reporter.predictions(run.spec.label_names, thresholds, run.evaluator.logits(run.test_split), top_k)


def export_model(run: Run) -> None:
    """--mode=export: the SavedModel, with the saved thresholds and label names inside."""
    if not run.topology.is_chief:
        return
    thresholds = read_thresholds(run.thresholds_dir, run.spec.label_names)
    data_config = run.config.data
    export.export(
        run.model,
        run.spec,
        list(run.model.input.keys()),
        np.asarray(thresholds),
        data_config.sequence_length,
        data_config.text_bigrams,
        run.config.model_dir,
        tokenizer=hub.tokenizer_for(run.config),
    )


MODES: Dict[str, Callable[[Run], None]] = {
    "train": train_lib.train,
    "train_and_eval": train_lib.train,
    "eval": evaluate,
    "predict": predict,
    "export": export_model,
}


def run(config: Config) -> None:
    """Runs `config.mode` to completion; raises UserError / TrainingFailed / Preempted."""
    paths.check_writable(config.model_dir)
    MODES[config.mode](setup(config))
