"""Entry point: absl flags -> validated Config -> loop.run, with the documented exit codes.

Flags are read here and nowhere else; their defaults come from the config dataclasses.
"""

import os
import sys

from absl import app, flags, logging

from trainer import config as config_lib
from trainer.config import Config, DataConfig, DistributeConfig, LossConfig, ModelConfig, TrainConfig
from trainer.errors import EXIT_PREEMPTED, EXIT_TRAINING_FAILED, EXIT_USER_ERROR, Preempted, TrainingFailed, UserError

_DATA, _MODEL, _TRAIN, _LOSS, _DIST = DataConfig(), ModelConfig(), TrainConfig(), LossConfig(), DistributeConfig()

flags.DEFINE_string("model_dir", None, "Directory the run writes to; re-running with the same one resumes.")
flags.DEFINE_enum("mode", Config.mode, config_lib.MODES, "What to do.")
flags.DEFINE_enum(
    "checkpoint",
    Config.checkpoint,
    config_lib.CHECKPOINT_CHOICES,
    "Which checkpoint eval/predict/export use: the latest, or the best evaluation's (checkpoints/best/, "
    "with the thresholds tuned at that evaluation).",
)
# Data.
flags.DEFINE_string("train_data", _DATA.train_data, "Training data: a path/glob, `synthetic`, or tfds:NAME:SPLIT.")
flags.DEFINE_string("eval_data", _DATA.eval_data, "Evaluation data (thresholds are tuned on it).")
flags.DEFINE_string("test_data", _DATA.test_data, "Test data, scored with the tuned thresholds.")
flags.DEFINE_string("data_format", _DATA.data_format, "tsv, csv or tfrecord; default: from the extension.")
flags.DEFINE_string("label_names", _DATA.label_names, "File with one label name a line.")
flags.DEFINE_string("text_column", _DATA.text_column, "Text column of delimited files with a header.")
flags.DEFINE_string("labels_column", _DATA.labels_column, "Labels column: ids or names separated by `,`.")
flags.DEFINE_string("label_columns_prefix", _DATA.label_columns_prefix, "Prefix of 0/1 label columns in CSV.")
flags.DEFINE_integer("shuffle_buffer", _DATA.shuffle_buffer, "Examples in the shuffle buffer.")
flags.DEFINE_boolean(
    "cache_train_data", _DATA.cache_train_data, "Keep the parsed training examples in memory after the first epoch."
)
flags.DEFINE_integer("max_tokens", _DATA.max_tokens, "Text: vocabulary size, padding and out-of-vocabulary included.")
flags.DEFINE_integer("sequence_length", _DATA.sequence_length, "Text: token ids per example (cut or padded).")
flags.DEFINE_boolean("text_bigrams", _DATA.text_bigrams, "Text: add word bigrams to the words.")
flags.DEFINE_integer("image_size", _DATA.image_size, "Images are resized to image_size x image_size.")
flags.DEFINE_integer("synthetic_labels", _DATA.synthetic_labels, "Labels of the synthetic problem.")
flags.DEFINE_integer("synthetic_train_examples", _DATA.synthetic_train_examples, "Synthetic training examples.")
flags.DEFINE_integer("synthetic_eval_examples", _DATA.synthetic_eval_examples, "Synthetic eval/test examples.")
flags.DEFINE_integer("synthetic_features", _DATA.synthetic_features, "Numeric features of the synthetic problem.")
flags.DEFINE_integer("synthetic_image_size", _DATA.synthetic_image_size, "Side of the synthetic problem's images.")
# Model.
flags.DEFINE_enum(
    "model",
    _MODEL.model,
    config_lib.MODEL_NAMES,
    "Model: mlp (numeric features), text_bow and text_transformer (text), multi_input (text + numeric), cnn (images), "
    "hub_text (a KerasHub backbone from --preset).",
)
flags.DEFINE_list("hidden_units", list(map(str, _MODEL.hidden_units)), "Hidden layer widths, e.g. 512,512.")
flags.DEFINE_float("dropout", _MODEL.dropout, "Dropout after each hidden layer.")
flags.DEFINE_integer("embedding_dim", _MODEL.embedding_dim, "Token embedding width (text models).")
flags.DEFINE_integer("transformer_layers", _MODEL.transformer_layers, "text_transformer: encoder blocks.")
flags.DEFINE_integer("transformer_heads", _MODEL.transformer_heads, "text_transformer: attention heads.")
flags.DEFINE_enum("cnn_backbone", _MODEL.cnn_backbone, config_lib.CNN_BACKBONES, "cnn: the network.")
flags.DEFINE_integer("cnn_width", _MODEL.cnn_width, "cnn resnet_small: filters of the first stage.")
flags.DEFINE_string("pretrained_weights", _MODEL.pretrained_weights, "cnn: local weights file of the backbone.")
# Pretrained encoders: the help text is the config field's (until trainer/flags.py generates these).
for _name in ("pretrained_embeddings", "pretrained_vocabulary", "preset"):
    flags.DEFINE_string(_name, getattr(_MODEL, _name), ModelConfig.__dataclass_fields__[_name].metadata["help"])
flags.DEFINE_boolean(
    "freeze_embeddings",
    _MODEL.freeze_embeddings,
    ModelConfig.__dataclass_fields__["freeze_embeddings"].metadata["help"],
)
flags.DEFINE_float("layer_decay", _MODEL.layer_decay, ModelConfig.__dataclass_fields__["layer_decay"].metadata["help"])
# Training.
flags.DEFINE_integer("global_batch_size", _TRAIN.global_batch_size, "Examples per step over all replicas.")
flags.DEFINE_integer("train_steps", _TRAIN.train_steps, "Total training steps.")
flags.DEFINE_integer("steps_per_loop", _TRAIN.steps_per_loop, "Steps per compiled host call.")
flags.DEFINE_integer("log_every_steps", _TRAIN.log_every_steps, "Steps between progress lines.")
flags.DEFINE_float("learning_rate", _TRAIN.learning_rate, "Peak learning rate at --base_batch_size.")
flags.DEFINE_enum(
    "lr_scaling",
    _TRAIN.lr_scaling,
    config_lib.LR_SCALINGS,
    "Scale the rate with global/base batch size: ^1, ^0.5, off.",
)
flags.DEFINE_integer("base_batch_size", _TRAIN.base_batch_size, "Batch size at which --learning_rate applies as is.")
flags.DEFINE_enum("optimizer", _TRAIN.optimizer, config_lib.OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("weight_decay", _TRAIN.weight_decay, "Decoupled weight decay (adamw).")
flags.DEFINE_enum("lr_schedule", _TRAIN.lr_schedule, config_lib.LR_SCHEDULES, "Learning-rate schedule.")
flags.DEFINE_integer("warmup_steps", _TRAIN.warmup_steps, "Linear warmup steps (cosine schedule).")
flags.DEFINE_float("clip_norm", _TRAIN.clip_norm, "Clip the global gradient norm; 0 = off.")
flags.DEFINE_integer("seed", _TRAIN.seed, "Seed for initialisation, shuffling and synthetic data.")
flags.DEFINE_enum("mixed_precision", _TRAIN.mixed_precision, config_lib.PRECISIONS, "Compute precision.")
flags.DEFINE_boolean("jit_compile", _TRAIN.jit_compile, "XLA-compile the per-replica step.")
flags.DEFINE_boolean("deterministic", _TRAIN.deterministic, "Op determinism: two runs give identical weights.")
flags.DEFINE_integer("eval_every_steps", _TRAIN.eval_every_steps, "Steps between evaluations.")
flags.DEFINE_integer("checkpoint_every_steps", _TRAIN.checkpoint_every_steps, "Steps between checkpoints.")
flags.DEFINE_integer(
    "checkpoint_every_seconds",
    _TRAIN.checkpoint_every_seconds,
    "Also save when this many seconds have passed since the last save (checked between loops); 0 = off.",
)
flags.DEFINE_integer("keep_checkpoints", _TRAIN.keep_checkpoints, "Checkpoints kept.")
flags.DEFINE_string(
    "best_metric",
    _TRAIN.best_metric,
    "Eval figure whose best value's checkpoint is kept in checkpoints/best/: macro/f1, micro/f1, loss, ...",
)
flags.DEFINE_boolean(
    "async_checkpoint", _TRAIN.async_checkpoint, "Write checkpoints in the background (ignored with several workers)."
)
flags.DEFINE_integer(
    "max_nan_rollbacks",
    _TRAIN.max_nan_rollbacks,
    "On a NaN/Inf loss, roll back to the last checkpoint and go on this many times; 0 = fail.",
)
flags.DEFINE_string(
    "init_checkpoint",
    _TRAIN.init_checkpoint,
    "Warm start from another run: its model weights (a ckpt-N prefix, a checkpoints directory, or a run's "
    "--model_dir), used when --model_dir has no checkpoint yet; optimizer, step and input start fresh.",
)
# Loss.
flags.DEFINE_enum("loss", _LOSS.loss, config_lib.LOSSES, "Loss.")
flags.DEFINE_float("label_smoothing", _LOSS.label_smoothing, "Training targets y become y(1 - s) + s/2.")
flags.DEFINE_float("focal_gamma", _LOSS.focal_gamma, "Focal loss focusing parameter.")
flags.DEFINE_float("asl_gamma_pos", _LOSS.asl_gamma_pos, "Asymmetric loss: focusing for positives.")
flags.DEFINE_float("asl_gamma_neg", _LOSS.asl_gamma_neg, "Asymmetric loss: focusing for negatives.")
flags.DEFINE_float("asl_clip", _LOSS.asl_clip, "Asymmetric loss: probability margin for negatives.")
flags.DEFINE_float("max_positive_weight", _LOSS.max_positive_weight, "weighted_bce: cap on a label's weight.")
# Distribution.
flags.DEFINE_enum("strategy", _DIST.strategy, config_lib.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", _DIST.cpu_replicas, "Split the CPU into this many logical devices.")
flags.DEFINE_string("tpu", _DIST.tpu, "TPU name, or `local` on a TPU VM.")
flags.DEFINE_integer(
    "collective_timeout_seconds",
    _DIST.collective_timeout_seconds,
    "Fail a collective (a missing worker) after this long.",
)

FLAGS = flags.FLAGS


def _hidden_units(values) -> tuple:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise UserError(f"--hidden_units={','.join(values)} must be integers separated by commas, e.g. 512,512.")


def config_from_flags() -> Config:
    """The one place flags become configuration."""
    f = FLAGS
    return config_lib.validate(
        Config(
            model_dir=f.model_dir or "",
            mode=f.mode,
            checkpoint=f.checkpoint,
            data=DataConfig(
                train_data=f.train_data,
                eval_data=f.eval_data,
                test_data=f.test_data,
                data_format=f.data_format,
                label_names=f.label_names,
                text_column=f.text_column,
                labels_column=f.labels_column,
                label_columns_prefix=f.label_columns_prefix,
                shuffle_buffer=f.shuffle_buffer,
                cache_train_data=f.cache_train_data,
                max_tokens=f.max_tokens,
                sequence_length=f.sequence_length,
                text_bigrams=f.text_bigrams,
                image_size=f.image_size,
                synthetic_labels=f.synthetic_labels,
                synthetic_train_examples=f.synthetic_train_examples,
                synthetic_eval_examples=f.synthetic_eval_examples,
                synthetic_features=f.synthetic_features,
                synthetic_image_size=f.synthetic_image_size,
            ),
            model=ModelConfig(
                model=f.model,
                hidden_units=_hidden_units(f.hidden_units),
                dropout=f.dropout,
                embedding_dim=f.embedding_dim,
                transformer_layers=f.transformer_layers,
                transformer_heads=f.transformer_heads,
                cnn_backbone=f.cnn_backbone,
                cnn_width=f.cnn_width,
                pretrained_weights=f.pretrained_weights,
                pretrained_embeddings=f.pretrained_embeddings,
                pretrained_vocabulary=f.pretrained_vocabulary,
                freeze_embeddings=f.freeze_embeddings,
                preset=f.preset,
                layer_decay=f.layer_decay,
            ),
            train=TrainConfig(
                global_batch_size=f.global_batch_size,
                train_steps=f.train_steps,
                steps_per_loop=f.steps_per_loop,
                log_every_steps=f.log_every_steps,
                learning_rate=f.learning_rate,
                lr_scaling=f.lr_scaling,
                base_batch_size=f.base_batch_size,
                optimizer=f.optimizer,
                weight_decay=f.weight_decay,
                lr_schedule=f.lr_schedule,
                warmup_steps=f.warmup_steps,
                clip_norm=f.clip_norm,
                seed=f.seed,
                mixed_precision=f.mixed_precision,
                jit_compile=f.jit_compile,
                deterministic=f.deterministic,
                eval_every_steps=f.eval_every_steps,
                checkpoint_every_steps=f.checkpoint_every_steps,
                checkpoint_every_seconds=f.checkpoint_every_seconds,
                keep_checkpoints=f.keep_checkpoints,
                best_metric=f.best_metric,
                async_checkpoint=f.async_checkpoint,
                max_nan_rollbacks=f.max_nan_rollbacks,
                init_checkpoint=f.init_checkpoint,
            ),
            loss=LossConfig(
                loss=f.loss,
                label_smoothing=f.label_smoothing,
                focal_gamma=f.focal_gamma,
                asl_gamma_pos=f.asl_gamma_pos,
                asl_gamma_neg=f.asl_gamma_neg,
                asl_clip=f.asl_clip,
                max_positive_weight=f.max_positive_weight,
            ),
            distribute=DistributeConfig(
                strategy=f.strategy,
                cpu_replicas=f.cpu_replicas,
                tpu=f.tpu,
                collective_timeout_seconds=f.collective_timeout_seconds,
            ),
        )
    )


def _fail(code: int, message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _describe_failure(error: Exception) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    if type(error).__name__ in ("UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError"):
        return (
            f"lost contact with another worker ({type(error).__name__}: {first_line}); restart the whole "
            "job: it resumes from the last checkpoint."
        )
    return f"{type(error).__name__}: {first_line} (traceback above)."


def main(argv) -> None:
    if len(argv) > 1:
        _fail(EXIT_USER_ERROR, f"unexpected argument(s) {argv[1:]}; flags take the form --name=value.")
    try:
        config = config_from_flags()
        from trainer import run as run_lib  # Imports TensorFlow: after the cheap checks, so bad flags fail fast.

        run_lib.run(config)
    except UserError as e:
        _fail(EXIT_USER_ERROR, str(e))
    except Preempted as e:
        sys.stderr.write(f"preempted: {e}\n")
        sys.exit(EXIT_PREEMPTED)
    except TrainingFailed as e:
        _fail(EXIT_TRAINING_FAILED, str(e))
    except Exception as e:  # Not the user's input: exit 2 so an orchestrator may restart the job.
        logging.exception("Training failed")
        _fail(EXIT_TRAINING_FAILED, _describe_failure(e))
    logging.info("Done.")


def run() -> None:
    """Console script `mltrain` and `python -m trainer`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's C++ start-up chatter out of the log.
    app.define_help_flags()
    try:
        FLAGS(sys.argv)  # Parsed here first so a bad flag is one line and exit 1, not absl's usage dump.
    except flags.Error as e:
        _fail(EXIT_USER_ERROR, f"{e} (see --helpfull).")
    app.run(main)
