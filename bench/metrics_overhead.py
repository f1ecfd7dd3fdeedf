"""What per-label statistics cost a step, at 10, 100 and 1,000 labels.

MLP 128-512-512-L, batch 512, XLA, CPU. Every variant runs `--steps` steps inside a `tf.range`
loop; variants are interleaved over `--rounds` rounds and the median per variant is kept, so
load from other processes hits all alike. Overheads are over the first variant of each table.

Training step (BCE, Adam):
  train        the step alone. This is the trainer's training step: it computes no statistics.
  +stats       + `trainer.metrics.add_batch` (counts, both histograms scattered into variables)
               in the same compiled step: what a streaming training metric would cost;
  +keras AUC   + `keras.metrics.AUC(multi_label=True, num_labels=L)` updated in the step.
Evaluation step:
  eval         the forward pass alone;
  +stats       + `trainer.metrics.add_batch`: the trainer's eval step;
  +keras AUC   + the Keras metric instead.

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

TRAIN_VARIANTS = ("train", "+stats", "+keras AUC")
EVAL_VARIANTS = ("eval", "+stats", "+keras AUC")


def make_loop(variant: str, training: bool, num_labels: int, args):
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
    totals = {
        name: tf.Variable(tf.zeros(shape, tf.int32)) for name, shape in metrics.statistics_shapes(num_labels).items()
    }
    auc = keras.metrics.AUC(multi_label=True, num_labels=num_labels)

    @tf.function(jit_compile=True)
    def step(features, labels):
        if training:
            with tf.GradientTape() as tape:
                logits = model(features, training=True)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        else:
            logits = model(features, training=False)
            loss = tf.reduce_mean(logits)
        if variant == "+stats":
            metrics.add_batch(totals, labels, logits, mask, thresholds)
        if variant == "+keras AUC":
            auc.update_state(labels, tf.sigmoid(logits))
        return loss

    @tf.function
    def loop(features, labels, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss += step(features, labels)
        return loss

    return loop


def measure(variants, training: bool, num_labels: int, args) -> dict:
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(args.batch, args.features)), tf.float32)
    labels = tf.constant(rng.random((args.batch, num_labels)) < 0.1, tf.float32)
    loops = {v: make_loop(v, training, num_labels, args) for v in variants}
    for loop in loops.values():  # Compile and warm up.
        loop(features, labels, tf.constant(2)).numpy()
    times = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, loop in loops.items():
            start = time.perf_counter()
            loop(features, labels, tf.constant(args.steps)).numpy()
            times[variant].append((time.perf_counter() - start) / args.steps)
    return {v: float(np.median(t)) for v, t in times.items()}


def print_table(title: str, variants, training: bool, args) -> None:
    print(f"\n{title} (ms per step, overhead over {variants[0]})")
    print(f"{'labels':>6} " + " ".join(f"{v:>16}" for v in variants))
    for num_labels in (int(n) for n in args.labels.split(",")):
        seconds = measure(variants, training, num_labels, args)
        base = seconds[variants[0]]
        cells = [f"{seconds[v] * 1e3:7.2f} ({100 * (seconds[v] / base - 1):+5.1f}%)" for v in variants]
        print(f"{num_labels:>6} " + " ".join(f"{c:>16}" for c in cells), flush=True)


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
    print_table("Training step", TRAIN_VARIANTS, True, args)
    print_table("Evaluation step", EVAL_VARIANTS, False, args)


if __name__ == "__main__":
    main()
