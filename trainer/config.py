"""The run's configuration: a frozen dataclass tree, validated once, written as JSON.

Every default lives here. `trainer.main` builds a `Config` from the flags; everything
else receives it (or one of its parts) explicitly.
"""

import dataclasses
import json
import os
from typing import Tuple

from trainer.errors import UserError

MODEL_NAMES = (
    "mlp",
    "text_bow",
    "multi_input",
    "text_transformer",
    "cnn",
    "hub_text",
)  # The keys of models.MODELS (tests keep the two equal).
MODES = ("train", "eval", "train_and_eval", "predict", "export")
# Which checkpoint eval/predict/export use: the newest, or checkpoints/best/ with its own thresholds.
CHECKPOINT_CHOICES = ("latest", "best")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LOSSES = ("bce", "weighted_bce", "focal", "asl")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")
LR_SCALINGS = ("none", "linear", "sqrt")
CNN_BACKBONES = ("resnet_small", "resnet50", "efficientnet_b0", "mobilenet_v2")
DATA_FORMATS = ("", "tsv", "csv", "tfrecord")
# --best_metric: a figure of metrics/eval-<step>.json, `<block>/<name>` or a top-level one.
BEST_METRICS = (
    ("loss", "hamming_loss", "subset_accuracy")
    + tuple(f"micro/{n}" for n in ("precision", "recall", "f1"))
    + tuple(f"macro/{n}" for n in ("precision", "recall", "f1", "average_precision", "roc_auc"))
    + tuple(f"weighted/{n}" for n in ("precision", "recall", "f1"))
    + tuple(f"paper/{n}" for n in ("CP", "CR", "CF1", "OP", "OR", "OF1"))
)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    train_data: str = "synthetic"
    eval_data: str = "synthetic"
    test_data: str = ""
    data_format: str = ""  # Empty: inferred from the file extension.
    label_names: str = ""
    text_column: str = "text"
    labels_column: str = "labels"
    label_columns_prefix: str = "label:"
    shuffle_buffer: int = 10_000
    cache_train_data: bool = False  # Keep a streamed training split's parsed examples in memory.
    # Text sources: terms (words, then word bigrams) -> ids through a vocabulary of at most
    # max_tokens ids (padding and out-of-vocabulary included), cut or padded to sequence_length.
    max_tokens: int = 20_000
    sequence_length: int = 64
    text_bigrams: bool = True
    image_size: int = 64  # Images (TFRecord `image`, TFDS voc) are resized to image_size x image_size.
    # The embedded synthetic problem (used when a split is `synthetic`).
    synthetic_train_examples: int = 24_000
    synthetic_eval_examples: int = 4_000
    synthetic_labels: int = 20
    synthetic_features: int = 64
    synthetic_vocab_size: int = 2_000
    synthetic_sequence_length: int = 32
    synthetic_image_size: int = 16


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    model: str = "mlp"
    hidden_units: Tuple[int, ...] = (256, 256)
    dropout: float = 0.0
    embedding_dim: int = 64  # Token embedding width; also the width of text_transformer.
    transformer_layers: int = 2
    transformer_heads: int = 4
    cnn_backbone: str = "resnet_small"  # Or a keras.applications network: see CNN_BACKBONES.
    cnn_width: int = 32  # Filters of resnet_small's first stage (then 2x, 4x).
    pretrained_weights: str = ""  # A local weights file for a keras.applications backbone; empty = from scratch.
    # Pretrained encoders (trainer.pretrained, trainer.hub; docs/pretrained.md).
    pretrained_embeddings: str = dataclasses.field(
        default="",
        metadata={
            "help": "text_bow, multi_input, text_transformer: word vectors that initialise the token embeddings "
            "on a fresh start: a GloVe/fastText .txt/.vec file or a .npy array (local or gs://)."
        },
    )
    pretrained_vocabulary: str = dataclasses.field(
        default="",
        metadata={"help": "The word of each row of a .npy --pretrained_embeddings; default: <name>.vocab.txt."},
    )
    freeze_embeddings: bool = dataclasses.field(
        default=False, metadata={"help": "Keep the --pretrained_embeddings fixed (not trained)."}
    )
    preset: str = dataclasses.field(
        default="",
        metadata={
            "help": "hub_text: a KerasHub preset directory (local or gs://) holding the backbone and its "
            "tokenizer; nothing is downloaded."
        },
    )
    layer_decay: float = dataclasses.field(
        default=1.0,
        metadata={
            "help": "hub_text: layer-wise learning-rate decay; the head trains at the full rate, transformer "
            "layer i of L at layer_decay**(L + 1 - i) of it, the embeddings at layer_decay**(L + 1). 1 = off."
        },
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    global_batch_size: int = 256
    train_steps: int = 1_500
    steps_per_loop: int = 50
    log_every_steps: int = 100
    learning_rate: float = 1e-3  # Peak rate at base_batch_size; see lr_scaling.
    # The rate used is learning_rate * (global_batch_size / base_batch_size) ** p, with p = 1 for
    # `linear` (Goyal et al. 2017, for SGD), 0.5 for `sqrt` (suited to Adam-type optimizers), 0 for `none`.
    lr_scaling: str = "sqrt"
    base_batch_size: int = 256
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"  # Linear warmup, then cosine decay to 0 at train_steps; or constant.
    warmup_steps: int = 100
    clip_norm: float = 0.0  # Clip the global gradient norm (after the all-reduce); 0 = off.
    seed: int = 42
    mixed_precision: str = "float32"
    jit_compile: bool = True
    deterministic: bool = False
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 500
    checkpoint_every_seconds: int = 0  # Also save when this long has passed since the last save; 0 = off.
    keep_checkpoints: int = 3
    # train_and_eval keeps the checkpoint of the best periodic evaluation in checkpoints/best/.
    best_metric: str = "macro/average_precision"  # `loss` and `hamming_loss`: lower is better.
    async_checkpoint: bool = False  # Write checkpoints in the background (single worker only).
    max_nan_rollbacks: int = 0  # On a NaN/Inf loss: 0 = stop (exit 2); N = roll back and go on, at most N times.
    # Warm start: model weights from another run's checkpoint, used only when model_dir has none.
    init_checkpoint: str = ""


@dataclasses.dataclass(frozen=True)
class LossConfig:
    loss: str = "bce"
    label_smoothing: float = 0.0  # Training targets become y * (1 - s) + s / 2.
    focal_gamma: float = 2.0
    # Asymmetric loss (Ridnik et al. 2021): focusing for positives/negatives, probability margin.
    asl_gamma_pos: float = 0.0
    asl_gamma_neg: float = 4.0
    asl_clip: float = 0.05
    # weighted_bce: positive weight of a label = negatives / positives in training data, capped.
    max_positive_weight: float = 100.0


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    strategy: str = "auto"
    cpu_replicas: int = 1
    tpu: str = ""
    # A collective that waits longer than this (a dead or missing worker) fails the run.
    collective_timeout_seconds: int = 300


@dataclasses.dataclass(frozen=True)
class Config:
    model_dir: str = ""
    mode: str = "train_and_eval"
    checkpoint: str = "latest"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    distribute: DistributeConfig = DistributeConfig()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(flag: str, value: str, choices: Tuple[str, ...]) -> None:
    _require(value in choices, f"--{flag}={value!r} is not one of {', '.join(c for c in choices if c)}.")


def _positive(flag: str, value: float) -> None:
    _require(value > 0, f"--{flag} must be positive, got {value}.")


def validate(config: Config) -> Config:
    """Checks everything that can be checked before TensorFlow starts; returns `config`."""
    _require(bool(config.model_dir), "--model_dir is required: the directory the run writes to.")
    _choice("mode", config.mode, MODES)
    _choice("checkpoint", config.checkpoint, CHECKPOINT_CHOICES)
    _require(
        config.checkpoint == "latest" or config.mode in ("eval", "predict", "export"),
        f"--checkpoint=best is for --mode=eval, predict or export; --mode={config.mode} always resumes from "
        "the latest checkpoint.",
    )
    data, model, train, dist = config.data, config.model, config.train, config.distribute
    _require(
        not train.init_checkpoint or config.mode in ("train", "train_and_eval"),
        f"--init_checkpoint starts a training run; --mode={config.mode} uses this --model_dir's own checkpoint.",
    )
    _choice("data_format", data.data_format, DATA_FORMATS)
    _require(data.max_tokens > 2, f"--max_tokens must exceed 2 (padding and out-of-vocabulary), got {data.max_tokens}.")
    for flag in ("sequence_length", "image_size", "shuffle_buffer", "synthetic_image_size"):
        _positive(flag, getattr(data, flag))
    if config.mode in ("train", "train_and_eval"):
        _require(bool(data.train_data), f"--mode={config.mode} needs --train_data (a path, glob or `synthetic`).")
    if config.mode == "eval":
        _require(bool(data.eval_data or data.test_data), "--mode=eval needs --eval_data or --test_data.")
    if config.mode == "predict":
        _require(bool(data.test_data), "--mode=predict needs --test_data: the examples to score.")
    _choice("model", model.model, MODEL_NAMES)
    _choice("cnn_backbone", model.cnn_backbone, CNN_BACKBONES)
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
        train.checkpoint_every_seconds >= 0,
        f"--checkpoint_every_seconds must be >= 0 (0 = off), got {train.checkpoint_every_seconds}.",
    )
    _require(train.max_nan_rollbacks >= 0, f"--max_nan_rollbacks must be >= 0, got {train.max_nan_rollbacks}.")
    _require(train.weight_decay >= 0, f"--weight_decay must be >= 0, got {train.weight_decay}.")
    _choice("optimizer", train.optimizer, OPTIMIZERS)
    _choice("lr_schedule", train.lr_schedule, LR_SCHEDULES)
    _choice("lr_scaling", train.lr_scaling, LR_SCALINGS)
    _positive("base_batch_size", train.base_batch_size)
    _require(
        train.best_metric in BEST_METRICS,
        f"--best_metric={train.best_metric!r} is not an eval figure; use one of {', '.join(BEST_METRICS)}.",
    )
    _require(train.warmup_steps >= 0, f"--warmup_steps must be >= 0, got {train.warmup_steps}.")
    _require(train.clip_norm >= 0, f"--clip_norm must be >= 0 (0 = off), got {train.clip_norm}.")
    loss = config.loss
    _choice("loss", loss.loss, LOSSES)
    for flag in ("focal_gamma", "asl_gamma_pos", "asl_gamma_neg"):
        _require(getattr(loss, flag) >= 0, f"--{flag} must be >= 0, got {getattr(loss, flag)}.")
    _require(0 <= loss.label_smoothing < 1, f"--label_smoothing must be in [0, 1), got {loss.label_smoothing}.")
    _require(0 <= loss.asl_clip < 1, f"--asl_clip must be in [0, 1), got {loss.asl_clip}.")
    _require(loss.max_positive_weight >= 1, f"--max_positive_weight must be >= 1, got {loss.max_positive_weight}.")
    _choice("mixed_precision", train.mixed_precision, PRECISIONS)
    _choice("strategy", dist.strategy, STRATEGIES)
    _positive("cpu_replicas", dist.cpu_replicas)
    _positive("collective_timeout_seconds", dist.collective_timeout_seconds)
    if dist.strategy == "tpu":
        _require(bool(dist.tpu), "--strategy=tpu needs --tpu: the TPU name, or `local` on a TPU VM.")
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
    _require(
        not hub_text or "synthetic" not in (config.data.train_data, config.data.eval_data, config.data.test_data),
        "--model=hub_text reads raw text with its preset's tokenizer; synthetic data has token ids only, so give "
        "--train_data and --eval_data as text files (and --eval_data= to skip evaluation).",
    )


def to_json(config: Config) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def write(config: Config, path: str) -> None:
    """Writes `config` as JSON atomically (a crash never leaves half a file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(to_json(config) + "\n")
    os.replace(tmp, path)


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
    ),
    "train": ("optimizer", "mixed_precision"),
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
    so that eval, predict and export rebuild exactly the model that was trained."""
    saved = json.loads(saved_json)
    sections = {}
    for section, keys in _CHECKPOINT_SHAPING.items():
        values = {key: saved[section][key] for key in keys if key in saved.get(section, {})}
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
        sections[section] = dataclasses.replace(getattr(config, section), **values)
    return dataclasses.replace(config, **sections)
