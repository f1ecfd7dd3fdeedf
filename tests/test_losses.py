"""Each loss: value and gradient against a NumPy reference on small inputs, with and without
unknown labels (-1)."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import losses
from trainer.config import LossConfig

CONFIG = LossConfig(focal_gamma=2.0, asl_gamma_pos=1.0, asl_gamma_neg=4.0, asl_clip=0.05, max_positive_weight=10.0)
POSITIVE_FRACTION = np.array([0.5, 0.2, 0.01, 0.0])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_per_label(name, y, x, positive_fraction=POSITIVE_FRACTION):
    """Per-entry losses in float64, written from the papers' formulas (`y` may be soft: smoothing)."""
    p = sigmoid(x)
    if name == "bce":
        per_label = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif name == "weighted_bce":
        fraction = np.asarray(positive_fraction, np.float64)
        w = np.clip((1 - fraction) / np.maximum(fraction, 1e-12), 1, CONFIG.max_positive_weight)
        per_label = -(w * y * np.log(p) + (1 - y) * np.log(1 - p))
    elif name == "focal":
        p_t = y * p + (1 - y) * (1 - p)
        per_label = -((1 - p_t) ** CONFIG.focal_gamma) * np.log(p_t)
    else:  # asl
        p_m = np.maximum(p - CONFIG.asl_clip, 0)
        positive = (1 - p) ** CONFIG.asl_gamma_pos * np.log(p)
        negative = p_m**CONFIG.asl_gamma_neg * np.log(1 - p_m)
        per_label = -(y * positive + (1 - y) * negative)
    return per_label


def reference(name, y, x):
    """Per-example losses: the mean over labels."""
    return reference_per_label(name, y, x).mean(axis=-1)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_value_and_gradient_match_numpy(name):
    rng = np.random.default_rng(0)
    y = (rng.random((5, 4)) < 0.4).astype(np.float64)
    x = rng.normal(scale=2.0, size=(5, 4))
    loss_fn = losses.LOSSES[name](CONFIG, POSITIVE_FRACTION)
    logits = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        value = loss_fn(tf.constant(y, tf.float32), logits)
        total = tf.reduce_sum(value)
    gradient = tape.gradient(total, logits).numpy()
    np.testing.assert_allclose(value.numpy(), reference(name, y, x), rtol=1e-5, atol=1e-6)
    # Central differences of the float64 reference.
    eps = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (reference(name, y, up).sum() - reference(name, y, down).sum()) / (2 * eps)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-5)


def test_losses_stay_finite_for_extreme_logits():
    y = tf.constant([[1.0, 0.0, 1.0, 0.0]])
    x = tf.constant([[-100.0, 100.0, 100.0, -100.0]])
    for name, build in losses.LOSSES.items():
        assert np.all(np.isfinite(build(CONFIG, POSITIVE_FRACTION)(y, x).numpy())), name


def test_positive_weights_follow_label_frequencies_and_are_capped():
    weights = losses.positive_weights(CONFIG, POSITIVE_FRACTION)
    np.testing.assert_allclose(weights, [1.0, 4.0, 10.0, 10.0])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_unknown_entries_add_nothing(name):
    """Labels -1 add nothing: per example, the sum over the known labels / number of labels; the
    value and gradient at unknown entries are 0, whatever the logit."""
    rng = np.random.default_rng(1)
    y = (rng.random((6, 4)) < 0.4).astype(np.float64)
    y[rng.random(y.shape) < 0.3] = -1
    y[2] = -1  # Every label unknown.
    x = rng.normal(scale=2.0, size=(6, 4))
    known = y >= 0
    loss_fn = losses.LOSSES[name](CONFIG, POSITIVE_FRACTION)
    logits = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        value = loss_fn(tf.constant(y, tf.float32), logits)
    gradient = tape.gradient(value, logits).numpy()
    expected = np.where(known, reference_per_label(name, np.maximum(y, 0), x), 0).sum(axis=1) / y.shape[1]
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert value.numpy()[2] == 0 and np.all(gradient[~known] == 0)
    # Changing an unknown entry's logit changes nothing.
    moved = np.where(known, x, x + 5.0).astype(np.float32)
    np.testing.assert_array_equal(loss_fn(tf.constant(y, tf.float32), tf.constant(moved)).numpy(), value.numpy())


def test_with_every_label_known_the_loss_is_bit_for_bit_the_mean_over_labels():
    rng = np.random.default_rng(2)
    y = tf.constant((rng.random((64, 7)) < 0.3).astype(np.float32))
    x = tf.constant(rng.normal(scale=3.0, size=(64, 7)).astype(np.float32))
    value = losses.LOSSES["bce"](CONFIG, POSITIVE_FRACTION)(y, x)
    expected = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x), axis=-1)
    np.testing.assert_array_equal(value.numpy(), expected.numpy())
