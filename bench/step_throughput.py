"""Training throughput: our trainer end to end vs the raw compiled step vs Keras `model.fit`.

Same model (an MLP), labels, batch and optimizer for all three, measured in one run:
  (a) `python -m trainer` end to end (input pipeline, distributed step, logging), steady state
      read from its progress lines;
  (b) the limit: one XLA-compiled train step looping with `tf.range` over a single in-memory batch;
  (c) Keras `model.fit` on the same data, compiled with default settings.
Prints examples/sec of each and the ratios (a)/(b) and (a)/(c).

    .venv/bin/python bench/step_throughput.py [--hidden_units=512,512 --labels=100 --batch=512]
"""

import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def trainer_end_to_end(args) -> float:
    """Steady-state examples/sec from the trainer's progress lines (the first interval, which
    includes compilation, is dropped)."""
    command = [
        sys.executable, "-m", "trainer", f"--model_dir={args.workdir}/trainer", "--mode=train",
        f"--hidden_units={args.hidden_units}", f"--synthetic_labels={args.labels}",
        f"--synthetic_features={args.features}", f"--global_batch_size={args.batch}",
        f"--train_steps={args.steps}", f"--steps_per_loop={args.steps_per_loop}",
        f"--log_every_steps={args.steps // 5}", f"--checkpoint_every_steps={args.steps}",
        f"--synthetic_train_examples={args.examples}", "--lr_schedule=constant",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    rates = [float(r) for r in re.findall(r"\| ([0-9.]+) examples/s \|", result.stderr)]
    steady = rates[1:]
    return sum(steady) / len(steady)


def build(args):
    import keras
    import numpy as np

    from trainer import models
    from trainer.config import ModelConfig, TrainConfig
    from trainer.data import from_arrays, synthetic

    features, labels = synthetic.make_split("train", args.examples, args.labels, args.features, 2_000, 32, seed=42)
    split = from_arrays({"features": features["features"]}, labels, synthetic.label_names(args.labels))
    keras.utils.set_random_seed(42)
    config = ModelConfig(hidden_units=tuple(int(u) for u in args.hidden_units.split(",")))
    model = models.build_mlp(config, split.spec)
    train_config = TrainConfig(lr_schedule="constant")
    return model, train_config, features["features"], labels.astype(np.float32)


def raw_compiled_step(args) -> float:
    """(b): forward, loss, backward and update, XLA-compiled, on one batch already in memory."""
    import tensorflow as tf

    from trainer import optimization

    model, train_config, features, labels = build(args)
    optimizer = optimization.make_optimizer(train_config)
    optimizer.build(model.trainable_variables)
    x, y = tf.constant(features[: args.batch]), tf.constant(labels[: args.batch])

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            logits = model({"features": x}, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    @tf.function
    def loop(n):
        for _ in tf.range(n):
            step()

    loop(tf.constant(10))  # Compile.
    start = time.perf_counter()
    loop(tf.constant(args.steps))
    return args.steps * args.batch / (time.perf_counter() - start)


def keras_fit(args) -> float:
    """(c): `model.compile` with defaults (jit_compile="auto") and `model.fit` on a tf.data pipeline."""
    import keras
    import tensorflow as tf

    model, train_config, features, labels = build(args)
    model.compile(optimizer=keras.optimizers.AdamW(train_config.learning_rate, weight_decay=train_config.weight_decay),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))  # fmt: skip
    dataset = (
        tf.data.Dataset.from_tensor_slices(({"features": features}, labels))
        .shuffle(10_000, seed=1)
        .repeat()
        .batch(args.batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    model.fit(dataset, steps_per_epoch=20, epochs=1, verbose=0)  # Compile and warm up.
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden_units", default="512,512")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--steps_per_loop", type=int, default=50)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--workdir", default="/tmp/mltrain-bench")
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", args.workdir], check=True)

    trainer = trainer_end_to_end(args)
    limit = raw_compiled_step(args)
    fit = keras_fit(args)
    print(f"MLP {args.hidden_units}, {args.labels} labels, {args.features} features, batch {args.batch}, "
          f"{args.steps} steps, {os.cpu_count()} CPU cores")  # fmt: skip
    print(f"(a) trainer end to end : {trainer:10.0f} examples/s")
    print(f"(b) raw compiled step  : {limit:10.0f} examples/s")
    print(f"(c) keras model.fit    : {fit:10.0f} examples/s")
    print(f"(a)/(b) = {trainer / limit:.2f}   (target >= 0.90)")
    print(f"(a)/(c) = {trainer / fit:.2f}   (target >= 1.40)")


if __name__ == "__main__":
    main()
