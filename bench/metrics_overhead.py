"""What per-label statistics cost a training step, at 10, 100 and 1,000 labels.

One XLA-compiled train step (MLP 2x512, batch 512, BCE, Adam, CPU), measured in one run as:
  base     the step alone;
  stats    + `trainer.metrics.batch_statistics` on the step's logits, summed into variables with
           `assign_add` (what a streaming training metric would do): counts and both histograms;
  counts   + the same, keeping only the counts (XLA drops the histograms): splits the cost;
  scatter  + the counts, and both histograms scatter-added straight into one flat variable
           (`Variable.scatter_nd_add`, one update per score, the label picking the half) instead
           of built dense per batch and then added: a candidate for a streaming training metric;
  keras    + `keras.metrics.AUC(multi_label=True, num_labels=L)` updated in the same step.
Each runs `--steps` steps inside a `tf.range` loop; variants are interleaved over `--rounds`
rounds and the median per variant is kept, so load from other processes hits all alike.
Prints step times and overhead percentages over `base`.

    .venv/bin/python bench/metrics_overhead.py [--labels=10,100,1000 --steps=20 --rounds=5]
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # Each variant is its own tf.function: retracing warnings are expected.

from trainer import metrics  # noqa: E402

VARIANTS = ("base", "stats", "counts", "scatter", "keras")


def make_loop(variant: str, num_labels: int, args):
    """A tf.function(features, labels, num_steps) running `num_steps` compiled steps of `variant`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((args.features,))]
        + [keras.layers.Dense(args.hidden, activation="relu") for _ in range(2)]
        + [keras.layers.Dense(num_labels)]
    )
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    thresholds = tf.fill([num_labels], 0.5)
    mask = tf.ones([args.batch])
    shapes = metrics.batch_statistics(tf.zeros([1, num_labels]), tf.zeros([1, num_labels]), tf.ones([1]), thresholds)
    kept = {"stats": tuple(shapes), "counts": metrics.COUNT_KEYS, "scatter": metrics.COUNT_KEYS}.get(variant, ())
    sums = {k: tf.Variable(tf.zeros_like(shapes[k])) for k in kept}
    # Negatives' histogram, then positives': [2 * L * NUM_BINS].
    flat = tf.Variable(tf.zeros([2 * num_labels * metrics.NUM_BINS])) if variant == "scatter" else None
    auc = keras.metrics.AUC(multi_label=True, num_labels=num_labels) if variant == "keras" else None

    @tf.function(jit_compile=True)
    def step(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        if sums:
            statistics = metrics.batch_statistics(labels, logits, mask, thresholds)
            for name, variable in sums.items():
                variable.assign_add(statistics[name])
        if flat is not None:
            bins = tf.clip_by_value(
                tf.cast(tf.floor((logits + metrics.LOGIT_RANGE) * metrics.BINS_PER_LOGIT), tf.int32),
                0,
                metrics.NUM_BINS - 1,
            )
            segments = (
                bins + (tf.range(num_labels)[None, :] + tf.cast(labels, tf.int32) * num_labels) * metrics.NUM_BINS
            )
            flat.scatter_nd_add(
                tf.reshape(segments, [-1, 1]), tf.reshape(tf.broadcast_to(mask[:, None], labels.shape), [-1])
            )
        if auc is not None:
            auc.update_state(labels, tf.sigmoid(logits))
        return loss

    @tf.function
    def loop(features, labels, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss += step(features, labels)
        return loss

    return loop


def measure(num_labels: int, args) -> dict:
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(args.batch, args.features)), tf.float32)
    labels = tf.constant(rng.random((args.batch, num_labels)) < 0.1, tf.float32)
    loops = {v: make_loop(v, num_labels, args) for v in VARIANTS}
    for loop in loops.values():  # Compile and warm up.
        loop(features, labels, tf.constant(2)).numpy()
    times = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant, loop in loops.items():
            start = time.perf_counter()
            loop(features, labels, tf.constant(args.steps)).numpy()
            times[variant].append((time.perf_counter() - start) / args.steps)
    return {v: float(np.median(t)) for v, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="10,100,1000")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"MLP {args.features}-{args.hidden}-{args.hidden}-L, batch {args.batch}, XLA, CPU x{os.cpu_count()}; "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    print(f"{'labels':>6} " + " ".join(f"{v:>16}" for v in VARIANTS) + "   (ms per step, overhead over base)")
    for num_labels in (int(n) for n in args.labels.split(",")):
        seconds = measure(num_labels, args)
        cells = [f"{seconds[v] * 1e3:7.2f} ({100 * (seconds[v] / seconds['base'] - 1):+5.1f}%)" for v in VARIANTS]
        print(f"{num_labels:>6} " + " ".join(f"{c:>16}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
