"""The training recipe's knobs: the learning-rate scaling rule, warmup + cosine, label smoothing."""

import dataclasses

import numpy as np
import pytest

from trainer import optimization
from trainer.config import TrainConfig


@pytest.mark.parametrize(
    "scaling, batch, expected",
    [("none", 1024, 1e-3), ("linear", 1024, 4e-3), ("sqrt", 1024, 2e-3), ("sqrt", 64, 5e-4), ("linear", 256, 1e-3)],
)
def test_learning_rate_follows_the_batch_size_rule(scaling, batch, expected):
    config = TrainConfig(learning_rate=1e-3, base_batch_size=256, global_batch_size=batch, lr_scaling=scaling)
    assert optimization.peak_learning_rate(config) == pytest.approx(expected)


def test_schedule_warms_up_linearly_to_the_scaled_peak_then_decays_to_zero():
    config = TrainConfig(learning_rate=1e-3, global_batch_size=1024, lr_scaling="linear", warmup_steps=100,
                         train_steps=1100)  # fmt: skip
    schedule = optimization.learning_rate(config)
    rate = {step: float(schedule(step)) for step in (0, 50, 100, 600, 1100)}
    assert rate[0] == 0 and rate[50] == pytest.approx(2e-3) and rate[100] == pytest.approx(4e-3)
    assert rate[600] == pytest.approx(2e-3, rel=1e-3)  # Half way through the cosine.
    assert rate[1100] == pytest.approx(0, abs=1e-9)
    constant = optimization.learning_rate(dataclasses.replace(config, lr_schedule="constant"))
    assert float(constant(0)) == float(constant(1000)) == pytest.approx(4e-3)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_moves_the_training_targets(smoothing):
    """One SGD step from zero weights: the bias gradient of label j is (0.5 - mean target_j) / L, so
    the step reveals the targets the loss saw: y (1 - s) + s / 2."""
    import keras
    import tensorflow as tf

    from trainer import distribute, losses, steps
    from trainer.config import LossConfig

    num_labels, batch, rate = 3, 8, 1.0
    labels = np.zeros((batch, num_labels), np.float32)
    labels[:, 0] = 1  # Label 0 always on, label 1 never, label 2 half the time.
    labels[::2, 2] = 1
    strategy = tf.distribute.get_strategy()
    topology = distribute.topology(strategy, distribute.cluster_from_env(None), batch)
    inputs = {"features": keras.Input((2,), name="features")}
    model = keras.Model(inputs, keras.layers.Dense(num_labels, kernel_initializer="zeros")(inputs["features"]))
    optimizer = optimization.SGD(rate, momentum=0.0)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    dataset = tf.data.Dataset.from_tensors(({"features": np.ones((batch, 2), np.float32)}, labels)).repeat()
    loss_fn = losses.bce(LossConfig(), None)
    train_loop = steps.make_train_loop(strategy, topology, model, optimizer, loss_fn, step, False, smoothing)
    train_loop(iter(dataset), tf.constant(1))
    targets = labels.mean(axis=0) * (1 - smoothing) + smoothing / 2
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), -rate * (0.5 - targets) / num_labels, atol=1e-6)
