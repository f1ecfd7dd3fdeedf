"""Model builders: a plain dict from `--model` to a function (ModelConfig, InputSpec) -> keras.Model.

Every model takes a dict of named inputs and emits float32 logits, one per label: the head
stays float32 under mixed precision so the loss and the sigmoid see full precision.
"""

from typing import Callable, Dict

import keras

from trainer.config import ModelConfig
from trainer.data import InputSpec
from trainer.errors import UserError


def _inputs(spec: InputSpec, names):
    specs = spec.feature_specs
    missing = [n for n in names if n not in specs]
    if missing:
        raise UserError(
            f"this model needs input(s) {missing}, but the data has {sorted(specs)}; "
            "pick a --model that matches the data (see the README, 'Models')."
        )
    return {n: keras.Input(shape=specs[n].shape, dtype=specs[n].dtype, name=n) for n in names}


def _logits(x, num_labels: int):
    return keras.layers.Dense(num_labels, dtype="float32", name="logits")(x)


def _hidden_stack(x, config: ModelConfig):
    for i, units in enumerate(config.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout)(x)
    return x


def build_mlp(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Numeric features -> ReLU layers of --hidden_units -> one logit per label."""
    inputs = _inputs(spec, ["features"])
    x = _hidden_stack(inputs["features"], config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="mlp")


def build_text_bow(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Token ids (0 = padding) -> embedding -> masked average pooling -> ReLU layers -> logits."""
    inputs = _inputs(spec, ["tokens"])
    embedded = keras.layers.Embedding(spec.vocab_size, config.embedding_dim, mask_zero=True, name="embedding")(
        inputs["tokens"]
    )
    x = keras.layers.GlobalAveragePooling1D(name="average")(embedded)
    x = _hidden_stack(x, config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="text_bow")


MODELS: Dict[str, Callable[..., keras.Model]] = {
    "mlp": build_mlp,
    "text_bow": build_text_bow,
}
