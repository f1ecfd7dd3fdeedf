"""What the evaluation figures cost: per step at 10, 100 and 1,000 labels, and per eval pass
(time and peak memory, as ratios to the plain forward pass) at 1,000, 10,000 and 100,000 labels.

MLP 128-512-512-L, batch 512, XLA, CPU. Every variant runs `--steps` steps inside a `tf.range`
loop; variants are interleaved over `--rounds` rounds and the median per variant is kept, so
load from other processes hits all alike. Overheads are over the first variant of each table.

Training step (BCE, Adam):
  train        the step alone. This is the trainer's training step: it computes no statistics.
  +stats       + `trainer.metrics.add_batch` (the counts) in the same compiled step and
               `add_ranking` (the ranking block) after it; the exact AP/ROC-AUC need no more
               on the devices (the eval step returns the logits);
  +hist        + the histograms of the fallback beyond --exact_metrics_budget (1,248 bins a label
               at 100,000 labels, 4,096 at <= 30,000), scattered into variables;
  +keras AUC   + `keras.metrics.AUC(multi_label=True, num_labels=L)` updated in the step.
Evaluation step:
  eval         the forward pass alone;
  +stats, +hist  as above: the trainer's eval step within / beyond the budget;
  +keras AUC   + the Keras metric instead.
Evaluation pass (`--pass_labels`, each variant in a process of its own, so peak memory is its own; the
median of `--pass_repeats` passes after one that compiles, and its ratio to the forward pass timed
alternately with it in the same process, so that the load of other jobs on a shared machine hits
both alike):
  forward      the eval batches of a `--pass_examples`-example split through the model, nothing kept;
  exact        `evaluation.Evaluator.evaluate`: the trainer's pass within --exact_metrics_budget
               (logits gathered to the host, exact curves, every figure of the metrics file);
  histograms   the same pass with the histogram fallback (the split's size unknown, as when streamed);
  tune         `evaluation.Evaluator.tune`, the end of train_and_eval: the exact pass at 0.5, the tuned
               thresholds, and the figures at them.

    .venv/bin/python bench/metrics_overhead.py [--labels=10,100,1000 --steps=20 --rounds=5]
        [--pass_labels=1000,10000,100000 --pass_examples=2000 --pass_repeats=3]
        [--pass_variants=forward,exact,histograms,tune]
(--labels= skips the step tables, --pass_labels= the pass table.)
"""

import argparse
import dataclasses
import json
import os
import resource
import subprocess
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

TRAIN_VARIANTS = ("train", "+stats", "+hist", "+keras AUC")
EVAL_VARIANTS = ("eval", "+stats", "+hist", "+keras AUC")
PASS_VARIANTS = ("forward", "exact", "histograms", "tune")
DEFAULT_BUDGET = 250_000_000


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
    inv_propensity = tf.ones([num_labels])
    mask = tf.ones([args.batch])
    num_bins = metrics.histogram.bins_per_label(DEFAULT_BUDGET, num_labels, 1) if variant == "+hist" else 0
    totals = {
        name: tf.Variable(tf.zeros(shape, tf.float32 if name.startswith("ranking/") else tf.int32))
        for name, shape in metrics.statistics_shapes(num_labels, num_bins).items()
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
        if variant in ("+stats", "+hist"):
            metrics.add_batch(totals, labels, logits, mask, thresholds, num_bins)
        if variant == "+keras AUC":
            auc.update_state(labels, tf.sigmoid(logits))
        return loss, logits

    @tf.function
    def loop(features, labels, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            step_loss, logits = step(features, labels)
            if variant in ("+stats", "+hist"):  # Outside XLA, as the trainer's eval step does it.
                metrics.add_ranking(totals, labels, logits, mask, inv_propensity, static_shapes=False)
            loss += step_loss
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


def eval_pass(variant: str, num_labels: int, args) -> dict:
    """Eval passes of `variant` over a fresh split (run in a process of its own): the median seconds
    of a pass and of the forward pass timed alternately with it (a shared machine's load hits both
    alike), the peak MB."""
    from trainer import data, evaluation
    from trainer.distribute import Topology

    rng = np.random.default_rng(0)
    features = rng.normal(size=(args.pass_examples, args.features)).astype(np.float32)
    # Zipf-like label frequencies, as in tagging data: a few frequent labels, a long tail.
    frequency = np.minimum(0.3, 2.0 / np.arange(1, num_labels + 1))
    labels = (rng.random((args.pass_examples, num_labels)) < frequency).astype(np.float32)
    split = data.from_arrays({"features": features}, labels, [f"l{j}" for j in range(num_labels)])
    del features, labels
    if variant == "histograms":  # Size unknown (a streamed split): the histogram fallback.
        split = dataclasses.replace(split, num_examples=-1)
    strategy = tf.distribute.get_strategy()
    topology = Topology(1, 1, 0, True, args.pass_batch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((args.features,), name="features"), keras.layers.Dense(args.hidden, activation="relu")]
        + [keras.layers.Dense(num_labels)]
    )
    model = keras.Model({"features": model.inputs[0]}, model.outputs[0])
    thresholds = np.full(num_labels, 0.5, np.float32)
    forward = tf.function(lambda features: model(features, training=False), jit_compile=True)

    def run_forward():
        for features_batch, _, _ in data.eval_batches(split, ["features"], topology):
            forward(features_batch).numpy()

    run = run_forward
    if variant != "forward":
        bce = lambda y, logits: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, logits), -1)  # noqa: E731
        evaluator = evaluation.Evaluator(strategy, topology, model, bce, True)

        def run():
            if variant == "tune":
                evaluator.tune(split, 0)
            else:
                evaluator.evaluate("eval", split, thresholds, 0)

    run_forward()  # Compile and warm up.
    run()
    seconds = {run_forward: [], run: []}
    for _ in range(args.pass_repeats):
        for passes, times in seconds.items():
            start = time.perf_counter()
            passes()
            times.append(time.perf_counter() - start)
    return {
        "seconds": float(np.median(seconds[run])),
        "forward_seconds": float(np.median(seconds[run_forward])),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def print_pass_table(args) -> None:
    print(
        f"\nEvaluation pass: {args.pass_examples} examples, batch {args.pass_batch}, "
        f"MLP {args.features}-{args.hidden}-L (seconds, ratio to the forward pass timed alternately with it; "
        "peak resident MB, ratio to the forward process's)"
    )
    variants = args.pass_variants.split(",")
    print(f"{'labels':>7} " + " ".join(f"{v:>24}" for v in variants))
    for num_labels in (int(n) for n in args.pass_labels.split(",")):
        results = {}
        for variant in variants:
            command = [sys.executable, __file__, f"--child={variant}", f"--child_labels={num_labels}"]
            names = ("features", "hidden", "pass_examples", "pass_batch", "pass_repeats")
            command += [f"--{k}={getattr(args, k)}" for k in names]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        base = results["forward"]
        cells = [
            f"{r['seconds']:6.1f}s x{r['seconds'] / r['forward_seconds']:4.1f} "
            f"{r['peak_mb']:6.0f}MB x{r['peak_mb'] / base['peak_mb']:3.1f}"
            for r in results.values()
        ]
        print(f"{num_labels:>7} " + " ".join(f"{c:>24}" for c in cells), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="10,100,1000")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pass_labels", default="1000,10000,100000")
    parser.add_argument("--pass_examples", type=int, default=2000)
    parser.add_argument("--pass_batch", type=int, default=256)
    parser.add_argument("--pass_repeats", type=int, default=3, help="passes measured after the warm-up; the median")
    parser.add_argument("--pass_variants", default=",".join(PASS_VARIANTS), help="forward first: the ratios are to it")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child_labels", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(eval_pass(args.child, args.child_labels, args)))
        return
    print(
        f"MLP {args.features}-{args.hidden}-{args.hidden}-L, batch {args.batch}, XLA, CPU x{os.cpu_count()}; "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    if args.labels:
        print_table("Training step", TRAIN_VARIANTS, True, args)
        print_table("Evaluation step", EVAL_VARIANTS, False, args)
    if args.pass_labels:
        print_pass_table(args)


if __name__ == "__main__":
    main()
