"""Model builders: a plain dict from `--model` to a function (ModelConfig, InputSpec) -> keras.Model.

Every model takes a dict of named inputs (`features`, `tokens`, `image`) and emits float32
logits, one per label: the head stays float32 under mixed precision so the loss and the
sigmoid see full precision. Layers of their own live in `trainer.layers`.
"""

from typing import Callable, Dict

import keras
import numpy as np

from trainer import hub, layers
from trainer.config import ModelConfig
from trainer.data import InputSpec, Split
from trainer.errors import UserError

# keras.applications backbones selectable by --cnn_backbone, with the preprocessing their
# weights expect (applied to images in [0, 1] scaled to [0, 255]).
BACKBONES = {
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
    "efficientnet_b0": (keras.applications.EfficientNetB0, keras.applications.efficientnet.preprocess_input),
    "mobilenet_v2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input),
}
MIN_BACKBONE_IMAGE_SIZE = 32  # keras.applications refuses smaller inputs.


def _inputs(spec: InputSpec, names):
    specs = spec.feature_specs
    missing = [n for n in names if n not in specs]
    if missing:
        raise UserError(
            f"this model needs input(s) {missing}, but the data has {sorted(specs)}; "
            "pick a --model that matches the data (see docs/models.md)."
        )
    return {n: keras.Input(shape=specs[n].shape, dtype=specs[n].dtype, name=n) for n in names}


def _logits(x, num_labels: int):
    return keras.layers.Dense(num_labels, dtype="float32", name="logits")(x)


def _hidden_stack(x, config: ModelConfig, name: str = "hidden"):
    for i, units in enumerate(config.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{name}_{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout)(x)
    return x


def _token_embedding(spec: InputSpec, config: ModelConfig, mask_zero: bool):
    """The token embedding; trainer.pretrained may set it from word vectors (fixed with --freeze_embeddings)."""
    return keras.layers.Embedding(
        spec.vocab_size,
        config.embedding_dim,
        mask_zero=mask_zero,
        trainable=not config.freeze_embeddings,
        name="embedding",
    )


def _text_bag(tokens, spec: InputSpec, config: ModelConfig):
    """Token ids (0 = padding; words and word bigrams) -> embedding -> masked average."""
    embedded = _token_embedding(spec, config, mask_zero=True)(tokens)
    return keras.layers.GlobalAveragePooling1D(name="average")(embedded)


def build_mlp(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Numeric features -> normalisation (adapted on the training data) -> ReLU layers -> logits."""
    inputs = _inputs(spec, ["features"])
    x = layers.FeatureNormalization(name="normalization")(inputs["features"])
    x = _hidden_stack(x, config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="mlp")


def build_text_bow(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Token ids -> embedding -> masked average pooling -> ReLU layers -> logits."""
    inputs = _inputs(spec, ["tokens"])
    x = _hidden_stack(_text_bag(inputs["tokens"], spec, config), config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="text_bow")


def build_multi_input(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Text and numeric features, each encoded on its own, concatenated, then shared ReLU layers."""
    inputs = _inputs(spec, ["tokens", "features"])
    text = _text_bag(inputs["tokens"], spec, config)
    numeric = layers.FeatureNormalization(name="normalization")(inputs["features"])
    numeric = keras.layers.Dense(config.embedding_dim, activation="relu", name="numeric")(numeric)
    x = keras.layers.Concatenate(name="merge")([text, numeric])
    x = _hidden_stack(x, config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="multi_input")


def build_text_transformer(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Token ids -> embedding + learned positions -> pre-norm encoder blocks -> masked mean -> logits."""
    inputs = _inputs(spec, ["tokens"])
    tokens = inputs["tokens"]
    if config.embedding_dim % config.transformer_heads:
        raise UserError(
            f"--embedding_dim={config.embedding_dim} must be divisible by --transformer_heads="
            f"{config.transformer_heads} (each head gets embedding_dim / heads dimensions)."
        )
    x = _token_embedding(spec, config, mask_zero=False)(tokens)
    x = layers.PositionEmbedding(name="positions")(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout)(x)
    keep = keras.ops.not_equal(tokens, 0)  # Padding is never attended to nor averaged.
    for i in range(config.transformer_layers):
        x = layers.EncoderBlock(
            config.transformer_heads, 2 * config.embedding_dim, config.dropout, name=f"encoder_{i}"
        )(x, keep)
    x = keras.layers.LayerNormalization(name="final_norm")(x)
    x = layers.MaskedMean(name="average")(x, keep)
    x = _hidden_stack(x, config)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="text_transformer")


def build_hub_text(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Token ids from the preset's tokenizer -> a pretrained KerasHub backbone -> masked mean over the
    tokens -> dropout -> logits. No hidden layers: the usual fine-tuning head (docs/pretrained.md)."""
    inputs = _inputs(spec, ["tokens"])
    tokens = inputs["tokens"]
    backbone, pad_id = hub.load_backbone(config.preset, tokens.shape[1])
    keep = keras.ops.not_equal(tokens, pad_id)
    x = hub.sequence_output(backbone(hub.backbone_inputs(backbone, tokens, keep)))
    x = layers.MaskedMean(name="average")(x, keep)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="hub_text")


def _backbone(config: ModelConfig, shape):
    """A keras.applications network without its classifier, from scratch or from local weights."""
    if min(shape[:2]) < MIN_BACKBONE_IMAGE_SIZE:
        raise UserError(
            f"--cnn_backbone={config.cnn_backbone} needs images of at least {MIN_BACKBONE_IMAGE_SIZE}x"
            f"{MIN_BACKBONE_IMAGE_SIZE}, got {shape[0]}x{shape[1]}; raise --image_size (--synthetic_image_size "
            "for synthetic data) or use --cnn_backbone=resnet_small."
        )
    network, preprocess = BACKBONES[config.cnn_backbone]
    try:
        backbone = network(
            include_top=False, weights=config.pretrained_weights or None, input_shape=shape, pooling="avg"
        )
    except (ValueError, OSError) as e:
        raise UserError(
            f"--pretrained_weights={config.pretrained_weights} cannot be loaded into {config.cnn_backbone} "
            f"({str(e).splitlines()[0][:160]}); give a local .weights.h5/.h5 file of that network without its top."
        )
    return backbone, preprocess


def build_cnn(config: ModelConfig, spec: InputSpec) -> keras.Model:
    """Images in [0, 1] -> a compact ResNet (or a keras.applications backbone) -> pooled -> logits."""
    inputs = _inputs(spec, ["image"])
    image = inputs["image"]
    if config.cnn_backbone == "resnet_small":
        x = layers.compact_resnet(image, config.cnn_width)
    else:
        backbone, preprocess = _backbone(config, tuple(spec.feature_specs["image"].shape))
        x = backbone(keras.layers.Lambda(lambda t: preprocess(t * 255.0), name="preprocess")(image))
    if config.dropout:
        x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _logits(x, spec.num_labels), name="cnn")


MODELS: Dict[str, Callable[..., keras.Model]] = {
    "mlp": build_mlp,
    "text_bow": build_text_bow,
    "multi_input": build_multi_input,
    "text_transformer": build_text_transformer,
    "cnn": build_cnn,
    "hub_text": build_hub_text,
}


def random_states(model: keras.Model):
    """The states of the model's random seed generators (its dropout layers'; hub_text's backbones
    have dropout inside). Saved with the checkpoint so a resumed run draws the same masks as one
    that never stopped; Keras keeps them outside the layers' checkpointed attributes."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


def feature_moments(split: Split):
    """Per-feature mean and variance of a split's numeric `features`, in float64 and a fixed order
    (every worker computes the same values), and whether each feature is binary (only 0 and 1)."""
    if split.arrays is not None:
        features = split.arrays[0]["features"].astype(np.float64)
        return features.mean(axis=0), features.var(axis=0), np.all((features == 0) | (features == 1), axis=0)
    total = total_squares = binary = None
    count = 0
    for batch in split.examples.map(lambda features, labels: features["features"]).batch(4096):
        values = batch.numpy().astype(np.float64)
        total = values.sum(axis=0) if total is None else total + values.sum(axis=0)
        squares = (values**2).sum(axis=0)
        total_squares = squares if total_squares is None else total_squares + squares
        zero_one = np.all((values == 0) | (values == 1), axis=0)
        binary = zero_one if binary is None else binary & zero_one
        count += len(values)
    mean = total / count
    return mean, np.maximum(total_squares / count - mean**2, 0.0), binary


def adapt(model: keras.Model, train_split: Split) -> None:
    """Sets the statistics of the model's normalisation layers from the training data. Called on a
    fresh model only: a restored checkpoint brings the statistics of the run that wrote it.

    Binary features (only 0 and 1 in the training data: word presence, one-hot codes) pass as they
    are: standardising a rare one turns its 1 into 1/sqrt(frequency) (30 at 0.1%), which the first
    layer then over-weights; continuous features are standardised."""
    normalizations = [layer for layer in model.layers if isinstance(layer, layers.FeatureNormalization)]
    if normalizations:
        mean, variance, binary = feature_moments(train_split)
        mean, variance = np.where(binary, 0.0, mean), np.where(binary, 1.0, variance)
        for layer in normalizations:
            layer.set_moments(mean, variance)
