"""KerasHub backbones for --model=hub_text: the preset (checked, never downloaded), its tokenizer as
the text -> token ids step of the data path and the export, layer-wise learning-rates, XLA check.

A preset is a directory, local or `gs://`, in KerasHub's format (`backbone.save_to_preset` and
`tokenizer.save_to_preset` write it: config.json, model.weights.h5, tokenizer.json, assets/) or
in Hugging Face Transformers' format (config.json with `model_type`, model.safetensors and the
tokenizer files) for the architectures KerasHub converts. `keras_hub` is imported only here and
only when a run uses hub_text; it comes with the `hub` extra (pip install 'mltrain[hub]').
"""

import dataclasses
import json
import os
from typing import List, Optional

import keras
import tensorflow as tf
from absl import logging

from trainer.config import Config, ModelConfig
from trainer.errors import UserError

HUB_MODEL = "hub_text"
# A KerasHub-format preset needs these; a Transformers-format one is checked by KerasHub's loader.
KERAS_PRESET_FILES = ("config.json", "tokenizer.json")
KERAS_WEIGHTS_FILES = ("model.weights.h5", "model.weights.json")  # One file, or a sharded set's index.


def _keras_hub():
    try:
        import keras_hub  # noqa: PLC0415 - an optional dependency, imported only when used.
    except ImportError:
        raise UserError("--model=hub_text needs KerasHub and TensorFlow Text: pip install 'mltrain[hub]'.")
    return keras_hub


def _bad(preset: str, problem: str) -> UserError:
    return UserError(f"--preset={preset}: {problem}")


def check_preset(preset: str) -> None:
    """Raises UserError unless `preset` is a directory (local or gs://) that KerasHub can load
    without downloading anything: its files are there and its backbone class is known."""
    # Anything else would be read by KerasHub as the name of a preset to download.
    if not tf.io.gfile.isdir(preset):
        raise _bad(preset, "is not a directory; give a KerasHub preset directory (local or gs://), never a name.")
    config_path = os.path.join(preset, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise _bad(preset, "has no config.json; save the backbone there with backbone.save_to_preset(DIR).")
    try:
        with tf.io.gfile.GFile(config_path) as f:
            config = json.load(f)
    except ValueError as e:
        raise _bad(preset, f"config.json is not JSON ({e}); save the backbone again with save_to_preset.")
    if "registered_name" not in config:
        return  # Transformers format: KerasHub's converter checks its files and model_type.
    missing = [name for name in KERAS_PRESET_FILES if not tf.io.gfile.exists(os.path.join(preset, name))]
    if not any(tf.io.gfile.exists(os.path.join(preset, name)) for name in KERAS_WEIGHTS_FILES):
        missing.append(KERAS_WEIGHTS_FILES[0])
    if missing:
        raise _bad(
            preset,
            f"is incomplete: {', '.join(missing)} missing; write the backbone and the tokenizer with "
            "backbone.save_to_preset(DIR) and tokenizer.save_to_preset(DIR).",
        )
    keras_hub = _keras_hub()
    known = keras.saving.get_registered_object(config["registered_name"])
    if known is None or not issubclass(known, keras_hub.models.Backbone):
        raise _bad(
            preset,
            f"its backbone {config['registered_name']!r} is not a backbone KerasHub {keras_hub.__version__} "
            "knows; use a KerasHub version that has it, or another preset.",
        )


def _loading(preset: str, what: str, load):
    """Runs `load()`, turning KerasHub's errors about the preset into one UserError line."""
    check_preset(preset)
    try:
        return load()
    except (ValueError, ImportError, OSError, KeyError, TypeError) as e:  # ImportError: e.g. safetensors.
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise _bad(preset, f"cannot load its {what} ({first_line}); check the preset or write it again.")


def load_backbone(preset: str, sequence_length: int):
    """The preset's backbone (pretrained weights, the global precision policy) and its padding id."""
    keras_hub = _keras_hub()
    policy = keras.mixed_precision.global_policy().name
    backbone = _loading(preset, "backbone", lambda: keras_hub.models.Backbone.from_preset(preset, dtype=policy))
    tokenizer = _loading(preset, "tokenizer", lambda: keras_hub.tokenizers.Tokenizer.from_preset(preset))
    for layer in backbone.layers:  # BERT's [CLS] pooler: hub_text pools the tokens itself, so it gets no gradient.
        if layer.name == "pooled_dense":
            layer.trainable = False
    longest = getattr(backbone, "max_sequence_length", None)
    if longest is not None and sequence_length > longest:
        raise UserError(
            f"--sequence_length={sequence_length} is longer than the {longest} positions the backbone in "
            f"{preset} has; set --sequence_length={longest} or less."
        )
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise _bad(preset, "its tokenizer has no padding token, which hub_text needs to mask padding.")
    return backbone, int(tokenizer.pad_token_id)


def backbone_inputs(backbone, tokens, keep):
    """The backbone's named inputs from token ids and their not-padding mask (one text segment)."""
    names = set(backbone.input) if isinstance(backbone.input, dict) else set()
    inputs = {"token_ids": tokens, "padding_mask": keras.ops.cast(keep, "int32")}
    if "segment_ids" in names:
        inputs["segment_ids"] = keras.ops.zeros_like(tokens)
    unknown = names - set(inputs)
    if unknown or "token_ids" not in names:
        raise UserError(
            f"the backbone {type(backbone).__name__} takes inputs {sorted(names)}; hub_text feeds text encoders "
            "that take token_ids and padding_mask (and segment_ids). Use a text encoder preset (BERT family)."
        )
    return inputs


def sequence_output(outputs):
    """The per-token outputs [batch, length, width] of a backbone call."""
    return outputs["sequence_output"] if isinstance(outputs, dict) else outputs


class HubTokenizer(tf.Module):
    """Strings [B] -> int32 token ids [B, sequence_length], packed as the preset's model expects
    (e.g. [CLS] ... [SEP] and padding). A tf.Module, so an export carries it in its graph."""

    def __init__(self, preprocessor):
        super().__init__(name="hub_tokenizer")
        self.preprocessor = preprocessor

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.preprocessor(texts)["token_ids"], tf.int32)


def tokenizer_for(config: Config) -> Optional[HubTokenizer]:
    """The preset's tokenizer when --model=hub_text: the data path and the export use it instead of
    the run's own vocabulary. None for every other model."""
    if config.model.model != HUB_MODEL:
        return None
    keras_hub, preset = _keras_hub(), config.model.preset
    preprocessor = _loading(
        preset,
        "tokenizer",
        lambda: keras_hub.models.TextClassifierPreprocessor.from_preset(
            preset, sequence_length=config.data.sequence_length
        ),
    )
    return HubTokenizer(preprocessor)


def layer_rate_factors(model: keras.Model, config: ModelConfig) -> Optional[List[float]]:
    """Per trainable variable of `model` (in order), the factor of the learning rate under
    --layer_decay, or None when it is off. The head (everything outside the backbone) trains at the
    full rate, transformer layer i (from 1) of L at decay**(L + 1 - i), the rest of the backbone
    (embeddings and their normalisation) at decay**(L + 1): layers nearer the input move less."""
    if config.model != HUB_MODEL or config.layer_decay == 1:
        return None
    keras_hub = _keras_hub()
    backbone = next(layer for layer in model.layers if isinstance(layer, keras_hub.models.Backbone))
    blocks = getattr(backbone, "transformer_layers", None)
    if not blocks:
        raise UserError(
            f"--layer_decay needs a backbone with transformer layers; {type(backbone).__name__} does not list "
            "them. Use --layer_decay=1."
        )
    depth = {id(v): 0 for v in backbone.trainable_variables}
    for index, block in enumerate(blocks, start=1):
        depth.update({id(v): index for v in block.trainable_variables})
    top = len(blocks) + 1
    return [config.layer_decay ** (top - depth.get(id(v), top)) for v in model.trainable_variables]


def xla_fallback(config: Config, model: keras.Model) -> Config:
    """`config`, with --jit_compile off (and a log line saying why) when hub_text's model does not
    lower to XLA; KerasHub backbones of the BERT family do, other architectures may not."""
    if config.model.model != HUB_MODEL or not config.train.jit_compile:
        return config
    if compiles_with_xla(model):
        return config
    logging.warning(
        "The %s backbone does not compile with XLA; training with --jit_compile=false.", config.model.preset
    )
    return dataclasses.replace(config, train=dataclasses.replace(config.train, jit_compile=False))


def compiles_with_xla(model: keras.Model) -> bool:
    """Whether the forward and backward pass of `model` on its `tokens` lower to XLA (HLO), which is
    where an op without an XLA kernel fails; cheaper than a full compile."""
    length = model.input["tokens"].shape[1]
    variables = model.trainable_variables

    @tf.function(jit_compile=True)
    def forward_backward(tokens):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model({"tokens": tokens}, training=False), tf.float32))
        return tape.gradient(loss, variables)

    try:
        forward_backward.experimental_get_compiler_ir(tf.ones([1, length], tf.int32))(stage="hlo")
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
        logging.info("XLA lowering failed: %s", (str(e).strip().splitlines() or [""])[0][:300])
        return False
    return True
