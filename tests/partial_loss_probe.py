"""One process of a training step on partially labelled data: `default`, `mirrored` (2 CPUs) or
one worker of a 2-worker MultiWorkerMirrored job (TF_CONFIG set by the test). For each loss it
takes one SGD step (rate 1) with trainer.steps.make_train_loop, from fixed weights of a linear
model, on one fixed global batch whose replicas hold different numbers of known labels, and
prints the step's loss and the new weights as one line `PROBE {json}`. Run by
tests/test_partial_labels.py; not a test itself."""

import json
import os
import sys

import numpy as np

from trainer import distribute
from trainer.config import DistributeConfig, LossConfig

GLOBAL_BATCH_SIZE = 8
NUM_FEATURES, NUM_LABELS = 4, 3
LOSS_CONFIG = LossConfig(focal_gamma=2.0, asl_gamma_pos=1.0, asl_gamma_neg=4.0, asl_clip=0.05, max_positive_weight=10.0)
# (loss, label smoothing) pairs the probe steps with.
CASES = [("bce", 0.0), ("weighted_bce", 0.0), ("focal", 0.0), ("asl", 0.0), ("bce", 0.2)]


def problem():
    """(features [8, 4], labels [8, 3] with -1 for unknown, kernel [4, 3], bias [3]), fixed."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(GLOBAL_BATCH_SIZE, NUM_FEATURES)).astype(np.float32)
    labels = (rng.random((GLOBAL_BATCH_SIZE, NUM_LABELS)) < 0.5).astype(np.float32)
    labels[rng.random(labels.shape) < 0.3] = -1
    labels[1] = -1  # A row with every label unknown.
    labels[4:] = np.where(labels[4:] < 0, 0, labels[4:])  # The second half: more known entries.
    kernel = (0.5 * rng.normal(size=(NUM_FEATURES, NUM_LABELS))).astype(np.float32)
    bias = (0.1 * rng.normal(size=NUM_LABELS)).astype(np.float32)
    return features, labels, kernel, bias


def main(strategy_name: str) -> None:
    cluster = distribute.cluster_from_env(os.environ.get("TF_CONFIG"))
    config = DistributeConfig(strategy=strategy_name, cpu_replicas=2 if strategy_name == "mirrored" else 1)
    strategy = distribute.make_strategy(config, cluster)  # Before any other TensorFlow call.
    import keras
    import tensorflow as tf

    from trainer import data, losses, optimization, steps

    topology = distribute.topology(strategy, cluster, GLOBAL_BATCH_SIZE)
    features, labels, kernel, bias = problem()
    split = data.from_arrays({"features": features}, labels, [f"l{j}" for j in range(NUM_LABELS)])
    report = {"replicas": topology.num_replicas}
    for name, smoothing in CASES:
        with strategy.scope():
            inputs = {"features": keras.Input((NUM_FEATURES,), name="features")}
            model = keras.Model(inputs, keras.layers.Dense(NUM_LABELS, name="logits")(inputs["features"]))
            model.get_layer("logits").set_weights([kernel, bias])
            optimizer = optimization.SGD(learning_rate=1.0)  # The trainer's: gradients arrive summed.
            optimizer.build(model.trainable_variables)
            step = tf.Variable(
                0, dtype=tf.int64, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
            )
        loss_fn = losses.LOSSES[name](LOSS_CONFIG, split.positive_fraction())
        train_loop = steps.make_train_loop(
            strategy, topology, model, optimizer, loss_fn, step, jit_compile=False, label_smoothing=smoothing
        )
        batches = data.train_batches(split, ["features"], topology, GLOBAL_BATCH_SIZE, seed=0, deterministic=True)
        loss = float(train_loop(iter(batches), tf.constant(1)))
        new_kernel, new_bias = model.get_layer("logits").get_weights()
        report[f"{name}/{smoothing}"] = {"loss": loss, "kernel": new_kernel.tolist(), "bias": new_bias.tolist()}
    print("PROBE " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
