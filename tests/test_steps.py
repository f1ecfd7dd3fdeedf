"""trainer.steps: with one replica the optimizer update compiles into the gradients' XLA cluster
(fused); it must train exactly as the update applied after the all-reduce does (several replicas).
tests/test_parity.py compares the two through the CLI (default vs mirrored vs 2 workers)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import data, losses, models, optimization, steps
from trainer.config import LossConfig, ModelConfig, TrainConfig
from trainer.data import synthetic
from trainer.distribute import Topology

LABELS, BATCH, STEPS = 6, 32, 12


def _train(model_name: str, precision: str, fuse: bool):
    """Weights (and the loss scale under mixed_float16) after STEPS steps on fixed batches."""
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        features, labels = synthetic.make_split("train", 4 * BATCH, LABELS, 8, 50, 12, seed=0)
        labels[::5, 1] = -1  # Unknown entries: the loss and gradients are rescaled by the known ones.
        split = data.from_arrays(features, labels, synthetic.label_names(LABELS), vocab_size=50)
        model = models.MODELS[model_name](ModelConfig(hidden_units=(16,), embedding_dim=8), split.spec)
        names = [name for name in model.input if name in features]
        config = TrainConfig(learning_rate=0.01, clip_norm=1.0, mixed_precision=precision)
        optimizer = optimization.make_optimizer(config)
        optimizer.build(model.trainable_variables)
        topology = Topology(num_replicas=1, num_workers=1, worker_index=0, is_chief=True, global_batch_size=BATCH)
        loop = steps.make_train_loop(
            tf.distribute.get_strategy(),
            topology,
            model,
            optimizer,
            losses.LOSSES["bce"](LossConfig(), None),
            tf.Variable(0, dtype=tf.int64),
            jit_compile=True,
            label_smoothing=0.1,
            fuse_update=fuse,
        )
        batches = tf.data.Dataset.from_tensor_slices(({n: features[n] for n in names}, labels)).batch(BATCH).repeat()
        initial = [v.numpy() for v in model.trainable_variables]
        loss = float(loop(iter(batches), tf.constant(STEPS)))
        scale = float(optimizer.dynamic_scale.numpy()) if precision == "mixed_float16" else None
        return initial, [v.numpy() for v in model.trainable_variables], loss, scale
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "model_name, precision",
    [
        ("mlp", "float32"),
        ("text_bow", "float32"),  # Embedding gradients are IndexedSlices.
        ("mlp", "mixed_float16"),  # Dynamic loss scaling (a conditional update) inside the cluster.
    ],
)
def test_the_fused_update_trains_as_the_update_after_the_all_reduce(model_name, precision):
    """Equal weights to 1e-6 after 12 AdamW steps with clipping, smoothing and unknown labels
    (measured: 1.5e-8; the weights moved 6.6e-3)."""
    initial, fused, fused_loss, fused_scale = _train(model_name, precision, fuse=True)
    _, apart, apart_loss, apart_scale = _train(model_name, precision, fuse=False)
    assert max(np.abs(a - b).max() for a, b in zip(initial, fused)) > 1e-3  # It trained.
    assert max(np.abs(a - b).max() for a, b in zip(fused, apart)) <= 1e-6
    assert fused_loss == pytest.approx(apart_loss, rel=1e-4)
    assert fused_scale == apart_scale
