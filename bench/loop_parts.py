"""Where an in-memory MLP step's time goes: the trainer's own loop, in one process, interleaved.

    .venv/bin/python bench/loop_parts.py [--rounds=8 --steps=200]

The job of bench/vs_keras_fit.py (CSV of 16,384 rows x 256 features, 100 labels, MLP 512-512,
global batch 512, float32, XLA), loaded by the trainer (`run.setup`). Four variants of
`steps.make_train_loop` over the same model and optimizer, each timed for --steps steps per round,
in --rounds interleaved rounds (the order reversed every other round):
  fused      the trainer as it runs with one replica: the update inside the XLA cluster, fed by
             the in-memory training stream;
  apart      the update after the (here trivial) all-reduce, outside XLA: what several replicas run;
  old input  fused, fed the in-memory stream as it was before 2026-11-30 (fifth session): tf.data's
             shuffle of one index at a time, and labels made dense from sparse rows per batch;
  constant   fused, fed one batch over and over (no input work: the loop's limit);
  raw        the raw compiled step of bench/vs_keras_fit.py (no loop machinery, no input).
Prints the median examples/s of each and its ratio to `fused`, with the range over rounds.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def old_stream(split, batch_size: int):
    """The in-memory training stream as it was: indices shuffled one at a time, sparse label rows."""
    import tensorflow as tf

    from trainer.data.sparse_labels import dense_rows

    features, labels = split.arrays
    features = {name: tf.constant(values) for name, values in features.items()}
    label_ids, label_values = labels.ragged()
    return (
        tf.data.Dataset.range(len(labels))
        .shuffle(len(labels), seed=0, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .map(
            lambda indices: (
                tf.nest.map_structure(lambda t: tf.gather(t, indices), features),
                dense_rows(tf.gather(label_ids, indices), tf.gather(label_values, indices), labels.num_labels),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf
    import vs_keras_fit

    from trainer import config as config_lib
    from trainer import run as run_lib
    from trainer import steps

    workdir = tempfile.mkdtemp()
    config = config_lib.Config(model_dir=os.path.join(workdir, "run"), mode="train")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, train_data=vs_keras_fit.write_csv(workdir)),
        model=dataclasses.replace(config.model, model="mlp", hidden_units=(512, 512)),
        train=dataclasses.replace(config.train, global_batch_size=512, lr_schedule="constant", train_steps=10**6),
    )
    run = run_lib.setup(config_lib.validate(config))
    batch_size = config.train.global_batch_size

    def loop(fuse):
        return steps.make_train_loop(
            run.strategy, run.topology, run.model, run.optimizer, run.loss_fn, run.step, True, fuse_update=fuse
        )

    fused, apart = loop(True), loop(False)
    old_input = iter(old_stream(run.train_split, batch_size))
    constant = iter(tf.data.Dataset.from_tensors(next(run.train_iterator)).repeat())
    job = {"model": "mlp", "hidden_units": (512, 512), "batch": batch_size, "split": run.train_split}
    raw = vs_keras_fit.raw_step(job)
    variants = {
        "fused": lambda n: fused(run.train_iterator, n),
        "apart": lambda n: apart(run.train_iterator, n),
        "old input": lambda n: fused(old_input, n),
        "constant": lambda n: fused(constant, n),
        "raw": raw,
    }
    for variant in variants.values():  # Compile, and fill the input's prefetch buffer.
        variant(tf.constant(20))
    rates = {name: [] for name in variants}
    for round_index in range(args.rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            start = time.perf_counter()
            variants[name](tf.constant(args.steps))
            rates[name].append(args.steps * batch_size / (time.perf_counter() - start))

    print(f"\n{args.rounds} interleaved rounds of {args.steps} steps, {os.cpu_count()} CPU cores. Examples/s:")
    for name, measured in rates.items():
        ratios = np.array(measured) / np.array(rates["fused"])
        print(
            f"{name:<9} median {np.median(measured):>7,.0f} [{min(measured):,.0f}-{max(measured):,.0f}]   "
            f"/ fused {np.median(ratios):.3f} [{ratios.min():.3f}-{ratios.max():.3f}]"
        )


if __name__ == "__main__":
    main()
