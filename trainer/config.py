"""The run's configuration: a frozen dataclass tree, validated once, written as JSON.

Every setting is one field here, declared once: its default, its flag's help text and, for a
choice, the allowed values (`setting(...)`). `trainer.flags` generates the absl flags from these
fields and builds the `Config` back; everything else receives it (or one of its parts) explicitly.
"""

import dataclasses
import json
import math
import os
from typing import Any, Callable, List, Tuple, Union

from trainer.errors import UserError

MODES = ("train", "eval", "train_and_eval", "predict", "export")
# Which checkpoint eval/predict/export use: the newest, or checkpoints/best/ with its own thresholds.
CHECKPOINT_CHOICES = ("latest", "best")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
EVAL_WEIGHTS = ("averaged", "raw")
DATA_FORMATS = ("", "tsv", "csv", "tfrecord")
# --best_metric: a figure of metrics/eval-<step>.json, `<block>/<name>` or a top-level one.
BEST_METRICS = (
    ("loss", "hamming_loss", "subset_accuracy")
    + tuple(f"micro/{n}" for n in ("precision", "recall", "f1"))
    + tuple(f"macro/{n}" for n in ("precision", "recall", "f1", "average_precision", "roc_auc"))
    + tuple(f"weighted/{n}" for n in ("precision", "recall", "f1"))
    + tuple(f"paper/{n}" for n in ("CP", "CR", "CF1", "OP", "OR", "OF1"))
    # The "ranking" block (trainer.metrics.ranking.NAMES; tests keep the two equal).
    + tuple(f"ranking/{kind}@{k}" for kind in ("precision", "ndcg", "psprecision", "psndcg") for k in (1, 3, 5))
    + tuple(f"ranking/{n}" for n in ("label_ranking_average_precision", "coverage_error", "ranking_loss"))
)


# Choices that are a registry's names. The registries import TensorFlow and import this module,
# so they are read when asked for (a flag given, the help shown, validate()), not when this loads.
def model_names() -> Tuple[str, ...]:
    from trainer import models

    return tuple(models.MODELS)


def cnn_backbones() -> Tuple[str, ...]:
    from trainer import models

    return ("resnet_small",) + tuple(models.BACKBONES)  # resnet_small is layers.compact_resnet.


def loss_names() -> Tuple[str, ...]:
    from trainer import losses

    return tuple(losses.LOSSES)


def optimizer_names() -> Tuple[str, ...]:
    from trainer import optimization

    return tuple(optimization.OPTIMIZERS)


def lr_schedules() -> Tuple[str, ...]:
    from trainer import optimization

    return tuple(optimization.LR_SCHEDULES)


def lr_scalings() -> Tuple[str, ...]:
    from trainer import optimization

    return tuple(optimization.LR_SCALINGS)


Choices = Union[Tuple[str, ...], Callable[[], Tuple[str, ...]]]


def setting(default, help: str, choices: Choices = ()):
    """A config field: its default, its flag's help text and, for a choice, the allowed values
    (a tuple, or a function returning a registry's names)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def choices_of(field: dataclasses.Field) -> Tuple[str, ...]:
    """The values a setting allows; empty when any value of its type is allowed."""
    choices = field.metadata.get("choices", ())
    return tuple(choices() if callable(choices) else choices)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    train_data: str = setting("synthetic", "Training data: a path/glob, `synthetic`, or tfds:NAME:SPLIT.")
    eval_data: str = setting(
        "",
        "Evaluation data (thresholds are tuned on it). Empty: `synthetic` when training on synthetic data, else none.",
    )
    test_data: str = setting("", "Test data, scored with the tuned thresholds.")
    data_format: str = setting("", "tsv, csv or tfrecord; default: from the extension.", DATA_FORMATS)
    label_names: str = setting("", "File with one label name a line.")
    text_column: str = setting("text", "Text column of delimited files with a header.")
    labels_column: str = setting("labels", "Labels column: ids or names separated by `,`.")
    label_columns_prefix: str = setting("label:", "Prefix of 0/1 label columns in CSV.")
    ignore_columns: Tuple[str, ...] = setting(
        (),
        "Delimited files with a header: columns to leave out (an id, a date, ...), by header name, "
        "separated by commas.",
    )
    shuffle_buffer: int = setting(
        10_000,
        "A streamed split is shuffled in blocks of this many consecutive examples, each permuted whole, anew "
        "every epoch (lowered to fit 256 MB at many labels).",
    )
    cache_train_data: bool = setting(False, "Keep the parsed training examples in memory after the first epoch.")
    threshold_holdout: float = setting(
        0.1,
        "Training without --eval_data: this fraction of the training split becomes the eval split (evaluations, "
        "the best checkpoint, early stopping, tuned thresholds), never the test split; 0 = none.",
    )
    in_memory_budget_mb: int = setting(
        2048,
        "A split whose parsed arrays fit this many MB is loaded once and batched from memory; larger ones are "
        "streamed. 0: always stream.",
    )
    # Text sources: terms (words, then word bigrams) -> ids through a vocabulary of at most
    # max_tokens ids (padding and out-of-vocabulary included), cut or padded to sequence_length.
    max_tokens: int = setting(20_000, "Text: vocabulary size, padding and out-of-vocabulary included.")
    sequence_length: int = setting(64, "Text: token ids per example (cut or padded).")
    text_bigrams: bool = setting(True, "Text: add word bigrams to the words.")
    # Images: TFRecord `image`, TFDS voc.
    image_size: int = setting(64, "Images are resized to image_size x image_size.")
    # The embedded synthetic problem (used when a split is `synthetic`).
    synthetic_train_examples: int = setting(24_000, "Synthetic training examples.")
    synthetic_eval_examples: int = setting(4_000, "Synthetic eval/test examples.")
    synthetic_labels: int = setting(20, "Labels of the synthetic problem.")
    synthetic_features: int = setting(64, "Numeric features of the synthetic problem.")
    synthetic_vocab_size: int = setting(2_000, "Vocabulary of the synthetic problem's texts.")
    synthetic_sequence_length: int = setting(32, "Tokens per text of the synthetic problem.")
    synthetic_image_size: int = setting(16, "Side of the synthetic problem's images.")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    model: str = setting(
        "mlp",
        "Model: mlp (numeric features), text_bow and text_transformer (text), multi_input (text + numeric), "
        "cnn (images), hub_text (a KerasHub backbone from --preset).",
        model_names,
    )
    hidden_units: Tuple[int, ...] = setting((256, 256), "Hidden layer widths, e.g. 512,512.")
    dropout: float = setting(0.0, "Dropout after each hidden layer.")
    # Also the width of text_transformer.
    embedding_dim: int = setting(64, "Token embedding width (text models).")
    transformer_layers: int = setting(2, "text_transformer: encoder blocks.")
    transformer_heads: int = setting(4, "text_transformer: attention heads.")
    # resnet_small, or a keras.applications network (models.BACKBONES).
    cnn_backbone: str = setting("resnet_small", "cnn: the network.", cnn_backbones)
    cnn_width: int = setting(32, "cnn resnet_small: filters of the first stage.")  # Then 2x, 4x.
    # A local weights file for a keras.applications backbone; empty = from scratch.
    pretrained_weights: str = setting("", "cnn: local weights file of the backbone.")
    # Pretrained encoders (trainer.pretrained, trainer.hub; docs/pretrained.md).
    pretrained_embeddings: str = setting(
        "",
        "text_bow, multi_input, text_transformer: word vectors that initialise the token embeddings on a fresh "
        "start: a GloVe/fastText .txt/.vec file or a .npy array (local or gs://).",
    )
    pretrained_vocabulary: str = setting(
        "", "The word of each row of a .npy --pretrained_embeddings; default: <name>.vocab.txt beside it."
    )
    freeze_embeddings: bool = setting(False, "Keep the --pretrained_embeddings fixed (not trained).")
    preset: str = setting(
        "",
        "hub_text: a KerasHub preset directory (local or gs://) holding the backbone and its tokenizer; "
        "nothing is downloaded.",
    )
    layer_decay: float = setting(
        1.0,
        "hub_text: layer-wise learning-rate decay; the head trains at the full rate, transformer layer i of L "
        "at layer_decay**(L + 1 - i) of it, the embeddings at layer_decay**(L + 1). 1 = off.",
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    global_batch_size: int = setting(256, "Examples per step over all replicas.")
    train_steps: int = setting(1_500, "Total training steps.")
    steps_per_loop: int = setting(50, "Steps per compiled host call.")
    log_every_steps: int = setting(100, "Steps between progress lines.")
    learning_rate: float = setting(1e-3, "Peak learning rate at --base_batch_size.")
    # The rate used is learning_rate * (global_batch_size / base_batch_size) ** p, with p = 1 for
    # `linear` (Goyal et al. 2017, for SGD), 0.5 for `sqrt` (suited to Adam-type optimizers), 0 for `none`.
    lr_scaling: str = setting("sqrt", "Scale the rate with global/base batch size: ^1, ^0.5, off.", lr_scalings)
    base_batch_size: int = setting(256, "Batch size at which --learning_rate applies as is.")
    optimizer: str = setting("adamw", "Optimizer.", optimizer_names)
    weight_decay: float = setting(1e-4, "Decoupled weight decay (adamw).")
    # Linear warmup, then cosine decay to 0 at train_steps; or constant.
    lr_schedule: str = setting("cosine", "Learning-rate schedule.", lr_schedules)
    warmup_steps: int = setting(100, "Linear warmup steps (cosine schedule).")
    clip_norm: float = setting(0.0, "Clip the global gradient norm; 0 = off.")  # After the all-reduce.
    # trainer/averaging.py.
    ema_decay: float = setting(
        0.0, "Keep an exponential moving average of the weights with this decay, e.g. 0.999; 0 = off."
    )
    eval_weights: str = setting(
        "averaged",
        "With --ema_decay: evaluate, predict and export with the averaged weights or the raw ones.",
        EVAL_WEIGHTS,
    )
    seed: int = setting(42, "Seed for initialisation, shuffling and synthetic data.")
    mixed_precision: str = setting("float32", "Compute precision.", PRECISIONS)
    jit_compile: bool = setting(True, "XLA-compile the per-replica step.")
    deterministic: bool = setting(False, "Op determinism: two runs give identical weights.")
    eval_every_steps: int = setting(100, "Steps between evaluations.")
    checkpoint_every_steps: int = setting(500, "Steps between checkpoints.")
    checkpoint_every_seconds: int = setting(
        0, "Also save when this many seconds have passed since the last save (checked between loops); 0 = off."
    )
    keep_checkpoints: int = setting(3, "Checkpoints kept.")
    # train_and_eval keeps the checkpoint of the best periodic evaluation in checkpoints/best/.
    # `loss` and `hamming_loss`: lower is better. Not a flag choice: validate() names the figures.
    best_metric: str = setting(
        "macro/average_precision",
        "Eval figure whose best value's checkpoint is kept in checkpoints/best/: macro/f1, micro/f1, loss, ...",
    )
    early_stopping_patience: int = setting(
        0, "Stop when this many evaluations in a row have not improved --best_metric; 0 = never."
    )
    test_checkpoint: str = setting(
        "best",
        "train_and_eval: score --test_data with the best evaluation's checkpoint and thresholds, or the latest.",
        CHECKPOINT_CHOICES,
    )
    async_checkpoint: bool = setting(False, "Write checkpoints in the background (ignored with several workers).")
    max_nan_rollbacks: int = setting(
        0, "On a NaN/Inf loss, roll back to the last checkpoint and go on this many times; 0 = fail."
    )
    init_checkpoint: str = setting(
        "",
        "Warm start from another run: its model weights (a ckpt-N prefix, a checkpoints directory, or a run's "
        "--model_dir), used when --model_dir has no checkpoint yet; optimizer, step and input start fresh.",
    )
    exact_metrics_budget: int = setting(
        250_000_000,
        "Examples x labels up to which an eval split's AP, ROC-AUC and thresholds come from every exact score "
        "(held on the host as float32: 1 GB at the default); beyond it, from score histograms of at most this "
        "many counts per worker, with a stated error bound (docs/metrics.md).",
    )
    predict_top_k: int = setting(
        0,
        "predict: write only the K most probable labels of each example ([name, probability], best first) "
        "instead of every label's probability and logit; 0 = every label.",
    )
    threshold_objective: str = setting(
        "f1",
        "What each label's tuned threshold maximises: f1, f_beta:B (e.g. f_beta:0.5), precision_at_recall:R "
        "(the best precision with recall >= R), recall_at_precision:P (the best recall with precision >= P; "
        "where P is out of reach, the best precision).",
    )


@dataclasses.dataclass(frozen=True)
class LossConfig:
    loss: str = setting("bce", "Loss.", loss_names)
    label_smoothing: float = setting(0.0, "Training targets y become y(1 - s) + s/2.")
    focal_gamma: float = setting(2.0, "Focal loss focusing parameter.")
    # Asymmetric loss (Ridnik et al. 2021): focusing for positives/negatives, probability margin.
    asl_gamma_pos: float = setting(0.0, "Asymmetric loss: focusing for positives.")
    asl_gamma_neg: float = setting(4.0, "Asymmetric loss: focusing for negatives.")
    asl_clip: float = setting(0.05, "Asymmetric loss: probability margin for negatives.")
    # weighted_bce: positive weight of a label = negatives / positives in training data, capped.
    max_positive_weight: float = setting(100.0, "weighted_bce: cap on a label's weight.")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    strategy: str = setting("auto", "tf.distribute strategy.", STRATEGIES)
    cpu_replicas: int = setting(1, "Split the CPU into this many logical devices.")
    tpu: str = setting("", "TPU name, or `local` on a TPU VM.")
    # A collective that waits longer than this (a dead or missing worker) fails the run.
    collective_timeout_seconds: int = setting(300, "Fail a collective (a missing worker) after this long.")


@dataclasses.dataclass(frozen=True)
class Config:
    model_dir: str = setting("", "Directory the run writes to; re-running with the same one resumes.")
    mode: str = setting("train_and_eval", "What to do.", MODES)
    checkpoint: str = setting(
        "latest",
        "Which checkpoint eval/predict/export use: the latest, or the best evaluation's (checkpoints/best/, "
        "with the thresholds tuned at that evaluation).",
        CHECKPOINT_CHOICES,
    )
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    distribute: DistributeConfig = DistributeConfig()


THRESHOLD_OBJECTIVES = ("f1", "f_beta:B", "precision_at_recall:R", "recall_at_precision:P")


def threshold_objective(text: str) -> Tuple[str, float]:
    """--threshold_objective as (kind, value): ("f_beta", B), ("precision_at_recall", R) or
    ("recall_at_precision", P); f1 is ("f_beta", 1.0). Raises UserError."""
    kind, _, value = text.partition(":")
    if text == "f1":
        return "f_beta", 1.0
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind == "f_beta" and number > 0:
        return kind, number
    if kind in ("precision_at_recall", "recall_at_precision") and 0 < number <= 1:
        return kind, number
    raise UserError(
        f"--threshold_objective={text!r} is not one of {', '.join(THRESHOLD_OBJECTIVES)} "
        "(B > 0; R and P in (0, 1]), e.g. precision_at_recall:0.9."
    )


def effective_eval_data(config: Config) -> str:
    """The split --eval_data names; when it is empty, `synthetic` for a run on the synthetic problem
    (the default job evaluates too), else "" (no eval split).

    A synthetic eval split by default would break runs on real data: `--mode=eval --test_data=FILE`
    on a trained text run would evaluate synthetic data first. So in --mode=eval an empty
    --eval_data means synthetic only when --test_data is empty too.
    """
    data = config.data
    if data.eval_data or data.train_data != "synthetic":
        return data.eval_data
    if config.mode == "eval" and data.test_data:
        return ""
    return "synthetic" if config.mode in ("train_and_eval", "eval") else ""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(flag: str, value: str, choices: Tuple[str, ...]) -> None:
    _require(value in choices, f"--{flag}={value!r} is not one of {', '.join(c for c in choices if c)}.")


def _positive(flag: str, value: float) -> None:
    _require(value > 0, f"--{flag} must be positive, got {value}.")
    _require(math.isfinite(value), f"--{flag} must be finite, got {value}.")


def validate(config: Config) -> Config:
    """Checks everything that can be checked before the run starts; returns `config`.

    Choices that are a registry's names (--model, --loss, ...) are checked last: that imports TensorFlow."""
    _require(bool(config.model_dir), "--model_dir is required: the directory the run writes to.")
    data, model, train, dist = config.data, config.model, config.train, config.distribute
    _check_choices(config, registries=False)
    _require(
        config.checkpoint == "latest" or config.mode in ("eval", "predict", "export"),
        f"--checkpoint=best is for --mode=eval, predict or export; --mode={config.mode} always resumes from "
        "the latest checkpoint.",
    )
    _require(
        not train.init_checkpoint or config.mode in ("train", "train_and_eval"),
        f"--init_checkpoint starts a training run; --mode={config.mode} uses this --model_dir's own checkpoint.",
    )
    _require(data.max_tokens > 2, f"--max_tokens must exceed 2 (padding and out-of-vocabulary), got {data.max_tokens}.")
    for flag in ("sequence_length", "image_size", "shuffle_buffer", "synthetic_image_size"):
        _positive(flag, getattr(data, flag))
    if config.mode in ("train", "train_and_eval"):
        _require(bool(data.train_data), f"--mode={config.mode} needs --train_data (a path, glob or `synthetic`).")
    if config.mode == "eval":
        _require(bool(effective_eval_data(config) or data.test_data), "--mode=eval needs --eval_data or --test_data.")
    if config.mode == "predict":
        _require(bool(data.test_data), "--mode=predict needs --test_data: the examples to score.")
    for flag in ("embedding_dim", "transformer_layers", "transformer_heads", "cnn_width"):
        _positive(flag, getattr(model, flag))
    _require(
        not model.pretrained_weights or os.path.isfile(model.pretrained_weights),
        f"--pretrained_weights={model.pretrained_weights} is not a file; give a local weights file "
        "(downloads are not used).",
    )
    _require(
        not model.pretrained_weights or model.cnn_backbone != "resnet_small",
        "--pretrained_weights needs a keras.applications --cnn_backbone (resnet50, efficientnet_b0, mobilenet_v2).",
    )
    _validate_pretrained(config)
    _require(bool(model.hidden_units), "--hidden_units needs at least one width, e.g. 256,256.")
    _require(all(u > 0 for u in model.hidden_units), f"--hidden_units must be positive, got {model.hidden_units}.")
    _require(0.0 <= model.dropout < 1.0, f"--dropout must be in [0, 1), got {model.dropout}.")
    for flag in (
        "global_batch_size",
        "train_steps",
        "steps_per_loop",
        "log_every_steps",
        "learning_rate",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
    ):
        _positive(flag, getattr(train, flag))
    _require(
        data.in_memory_budget_mb >= 0,
        f"--in_memory_budget_mb must be >= 0 (0 = always stream), got {data.in_memory_budget_mb}.",
    )
    _require(
        train.checkpoint_every_seconds >= 0,
        f"--checkpoint_every_seconds must be >= 0 (0 = off), got {train.checkpoint_every_seconds}.",
    )
    _require(
        0 <= data.threshold_holdout < 1,
        f"--threshold_holdout must be in [0, 1) (0 = no held-out split), got {data.threshold_holdout}.",
    )
    _require(
        train.early_stopping_patience >= 0,
        f"--early_stopping_patience must be >= 0 (0 = never stop early), got {train.early_stopping_patience}.",
    )
    _require(train.max_nan_rollbacks >= 0, f"--max_nan_rollbacks must be >= 0, got {train.max_nan_rollbacks}.")
    _require(train.weight_decay >= 0, f"--weight_decay must be >= 0, got {train.weight_decay}.")
    _positive("base_batch_size", train.base_batch_size)
    _require(
        train.best_metric in BEST_METRICS,
        f"--best_metric={train.best_metric!r} is not an eval figure; use one of {', '.join(BEST_METRICS)}.",
    )
    _positive("exact_metrics_budget", train.exact_metrics_budget)
    threshold_objective(train.threshold_objective)
    _require(train.predict_top_k >= 0, f"--predict_top_k must be >= 0 (0 = every label), got {train.predict_top_k}.")
    _require(train.warmup_steps >= 0, f"--warmup_steps must be >= 0, got {train.warmup_steps}.")
    _require(train.clip_norm >= 0, f"--clip_norm must be >= 0 (0 = off), got {train.clip_norm}.")
    _require(
        0 <= train.ema_decay < 1,
        f"--ema_decay must be in (0, 1), e.g. 0.999, or 0 to keep no average; got {train.ema_decay}.",
    )
    loss = config.loss
    for flag in ("focal_gamma", "asl_gamma_pos", "asl_gamma_neg"):
        _require(getattr(loss, flag) >= 0, f"--{flag} must be >= 0, got {getattr(loss, flag)}.")
    _require(0 <= loss.label_smoothing < 1, f"--label_smoothing must be in [0, 1), got {loss.label_smoothing}.")
    _require(0 <= loss.asl_clip < 1, f"--asl_clip must be in [0, 1), got {loss.asl_clip}.")
    _require(loss.max_positive_weight >= 1, f"--max_positive_weight must be >= 1, got {loss.max_positive_weight}.")
    _positive("cpu_replicas", dist.cpu_replicas)
    _positive("collective_timeout_seconds", dist.collective_timeout_seconds)
    # --strategy=tpu without --tpu: distribute.choose_strategy, which also resolves `auto`.
    _check_choices(config, registries=True)  # Last: reading a registry's names imports TensorFlow.
    return config


TOKEN_EMBEDDING_MODELS = ("text_bow", "multi_input", "text_transformer")


def _validate_pretrained(config: Config) -> None:
    model = config.model
    _require(
        not model.pretrained_embeddings or model.model in TOKEN_EMBEDDING_MODELS,
        f"--pretrained_embeddings is for --model={', '.join(TOKEN_EMBEDDING_MODELS)}, not {model.model}.",
    )
    _require(
        not model.freeze_embeddings or model.pretrained_embeddings,
        "--freeze_embeddings keeps pretrained vectors fixed; give them with --pretrained_embeddings.",
    )
    _require(
        not model.pretrained_vocabulary or model.pretrained_embeddings.endswith(".npy"),
        "--pretrained_vocabulary names the words of a .npy --pretrained_embeddings; text vector files name their own.",
    )
    hub_text = model.model == "hub_text"
    _require(
        hub_text == bool(model.preset),
        "--model=hub_text needs --preset=DIR (a KerasHub preset directory)."
        if hub_text
        else f"--preset is for --model=hub_text, not {model.model}.",
    )
    _require(0 < model.layer_decay <= 1, f"--layer_decay must be in (0, 1] (1 = off), got {model.layer_decay}.")
    _require(hub_text or model.layer_decay == 1, "--layer_decay is for --model=hub_text.")
    read = (config.data.eval_data, config.data.test_data)
    read += (config.data.train_data,) if config.mode in ("train", "train_and_eval") else ()
    _require(
        not hub_text or "synthetic" not in read,
        "--model=hub_text reads raw text with its preset's tokenizer; synthetic data has token ids only: give "
        "--train_data (and --eval_data) as text files.",
    )


def _check_choices(config: Config, registries: bool) -> None:
    """Checks the settings whose choices are a tuple, or (`registries`) a registry's names."""
    for section in (config, config.data, config.model, config.train, config.loss, config.distribute):
        for field in dataclasses.fields(section):
            if callable(field.metadata.get("choices")) == registries and choices_of(field):
                _choice(field.name, getattr(section, field.name), choices_of(field))


def to_json(config: Config) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


# Settings that shape the checkpoint: resuming with any of them changed cannot work.
_CHECKPOINT_SHAPING = {
    "model": (
        "model",
        "hidden_units",
        "embedding_dim",
        "transformer_layers",
        "transformer_heads",
        "cnn_backbone",
        "cnn_width",
        "freeze_embeddings",
        "preset",
        "dropout",  # 0 or not decides whether a model has its Dropout layer, which shifts the layers after it.
    ),
    "train": ("optimizer", "mixed_precision", "ema_decay"),
    "data": (
        "synthetic_labels",
        "synthetic_features",
        "synthetic_vocab_size",
        "synthetic_image_size",
        "label_names",
        "text_bigrams",
        "max_tokens",
        "sequence_length",
        "image_size",
    ),
}


def check_resumable(saved_json: str, config: Config) -> None:
    """Raises UserError naming the first setting that differs from the run that wrote `saved_json`."""
    saved = json.loads(saved_json)
    current = json.loads(to_json(config))
    for section, keys in _CHECKPOINT_SHAPING.items():
        for key in keys:
            before, now = saved.get(section, {}).get(key), current[section][key]
            if before is not None and before != now:
                raise UserError(
                    f"--{key}={now} differs from the checkpoint in {config.model_dir} (written with "
                    f"--{key}={before}); use a new --model_dir or the original --{key}."
                )


def adopt_trained_settings(config: Config, saved_json: str) -> Config:
    """`config` with the model-shaping settings of the run that wrote `saved_json` (its config.json),
    so that eval, predict and export rebuild exactly the model that was trained, and its loss."""
    saved = json.loads(saved_json)
    sections = {}
    for section, keys in _CHECKPOINT_SHAPING.items():
        values = {key: saved[section][key] for key in keys if key in saved.get(section, {})}
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
        sections[section] = dataclasses.replace(getattr(config, section), **values)
    # The loss, so that an evaluation reports the loss the run trained with (trainer.losses).
    known = {field.name for field in dataclasses.fields(LossConfig)}
    sections["loss"] = dataclasses.replace(
        config.loss, **{key: value for key, value in saved.get("loss", {}).items() if key in known}
    )
    # What the model was trained on: `effective_eval_data` evaluates the synthetic problem by default
    # only for a model trained on it, never a model of real data (whose inputs it would not fit).
    trained_on = saved.get("data", {}).get("train_data")
    if trained_on:
        sections["data"] = dataclasses.replace(sections["data"], train_data=trained_on)
    return dataclasses.replace(config, **sections)


def ignored_settings(given: Config, adopted: Config) -> List[Tuple[str, Any, Any]]:
    """(flag, value given, value used) of each setting the user gave that `adopt_trained_settings`
    replaced: a flag that silently did nothing would mislead."""
    ignored = []
    for section in ("model", "train", "loss", "data"):
        before, after = getattr(given, section), getattr(adopted, section)
        for field in dataclasses.fields(before):
            value, used = getattr(before, field.name), getattr(after, field.name)
            if field.name != "train_data" and value != used and value != field.default:
                ignored.append((field.name, value, used))
    return ignored
