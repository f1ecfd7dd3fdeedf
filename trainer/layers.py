"""The layers the models need that Keras does not provide as such."""

import keras
import numpy as np
from keras import ops


class FeatureNormalization(keras.layers.Layer):
    """(x - mean) / sqrt(variance), with the statistics in non-trainable weights.

    Weights rather than constants (as keras.layers.Normalization keeps after `adapt`): the
    checkpoint carries them, so a resumed, evaluating or exporting run normalises exactly as
    training did without seeing the training data again.
    """

    def build(self, input_shape):
        width = input_shape[-1]
        self.mean = self.add_weight(shape=(width,), initializer="zeros", trainable=False, name="mean")
        self.variance = self.add_weight(shape=(width,), initializer="ones", trainable=False, name="variance")

    def set_moments(self, mean: np.ndarray, variance: np.ndarray) -> None:
        self.mean.assign(np.asarray(mean, np.float32))
        # A constant feature keeps its scale: dividing by ~0 would blow it up.
        self.variance.assign(np.where(variance > 1e-12, variance, 1.0).astype(np.float32))

    def call(self, x):
        return (x - ops.cast(self.mean, x.dtype)) * ops.cast(ops.rsqrt(self.variance), x.dtype)


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position to a [batch, length, width] sequence."""

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]), initializer=keras.initializers.RandomNormal(stddev=0.02), name="positions"
        )

    def call(self, x):
        return x + ops.cast(self.positions, x.dtype)


class MaskedMean(keras.layers.Layer):
    """Mean over the positions where `keep` is true: [batch, length, width] -> [batch, width]."""

    def call(self, x, keep):
        weights = ops.cast(keep, x.dtype)[:, :, None]
        # At least one: a text of padding only (which the tokenizer never produces) gives zeros, not NaN.
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


class EncoderBlock(keras.layers.Layer):
    """A pre-norm Transformer encoder block: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, heads: int, hidden_width: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.hidden_width, self.dropout_rate = heads, hidden_width, dropout

    def build(self, input_shape):
        width = input_shape[-1]
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            self.heads, width // self.heads, dropout=self.dropout_rate, name="attention"
        )
        self.feed_forward_norm = keras.layers.LayerNormalization(name="feed_forward_norm")
        self.hidden = keras.layers.Dense(self.hidden_width, activation="gelu", name="hidden")
        self.output_projection = keras.layers.Dense(width, name="output")
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.feed_forward_norm.build(input_shape)
        self.hidden.build(input_shape)
        self.output_projection.build(tuple(input_shape[:-1]) + (self.hidden_width,))

    def call(self, x, keep, training=False):
        # Keys that are padding get no attention; padded queries are computed and ignored later.
        attend = ops.expand_dims(keep, 1)
        normed = self.attention_norm(x)
        x = x + self.dropout(
            self.attention(normed, normed, attention_mask=attend, training=training), training=training
        )
        hidden = self.hidden(self.feed_forward_norm(x))
        return x + self.dropout(self.output_projection(hidden), training=training)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "hidden_width": self.hidden_width,
                "dropout": self.dropout_rate}  # fmt: skip


def _residual_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_norm1")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_norm2", gamma_initializer="zeros")(y)  # Starts as identity.
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_project")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_project_norm")(shortcut)
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))


def compact_resnet(image, width: int):
    """A ResNet for small images: a 3x3 stem, three stages of two residual blocks (width, 2x, 4x;
    the last two halve the resolution), global average pooling. About 0.7M weights at width 32."""
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(image)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_norm")(x))
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, filters, stride, name=f"stage{stage}_block{block}")
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)
