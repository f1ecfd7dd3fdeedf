"""The optimizer update inside the XLA cluster (one replica) against after it (several), per model.

    .venv/bin/python bench/fused_update.py [--models=mlp,text_bow,text_transformer,cnn --rounds=4]

For each model, the trainer is set up on synthetic data (8,192 examples, 50 labels, the model's
default sizes, float32, XLA) and two train loops (`steps.make_train_loop` with fuse_update True
and False) share its model, optimizer and in-memory stream; they are timed in interleaved rounds.
Prints each loop's examples/s per round and the median ratio fused / apart.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Per model: global batch and steps per timed call (a text_transformer step is 20x an MLP's).
JOBS = {"mlp": (512, 100), "text_bow": (256, 40), "text_transformer": (64, 20), "cnn": (64, 20)}


def measure(model_name: str, rounds: int):
    import tensorflow as tf

    from trainer import config as config_lib
    from trainer import run as run_lib
    from trainer import steps

    batch_size, num_steps = JOBS[model_name]
    config = config_lib.Config(model_dir=os.path.join(tempfile.mkdtemp(), "run"), mode="train")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, synthetic_train_examples=8192, synthetic_labels=50),
        model=dataclasses.replace(config.model, model=model_name),
        train=dataclasses.replace(
            config.train, global_batch_size=batch_size, lr_schedule="constant", train_steps=10**6
        ),  # fmt: skip
    )
    run = run_lib.setup(config_lib.validate(config))
    loops = {
        fuse: steps.make_train_loop(
            run.strategy, run.topology, run.model, run.optimizer, run.loss_fn, run.step, True, fuse_update=fuse
        )
        for fuse in (True, False)
    }
    for loop in loops.values():  # Compile.
        loop(run.train_iterator, tf.constant(3))
    rates = {True: [], False: []}
    for round_index in range(rounds):
        for fuse in (True, False) if round_index % 2 == 0 else (False, True):
            start = time.perf_counter()
            loops[fuse](run.train_iterator, tf.constant(num_steps))
            rates[fuse].append(num_steps * batch_size / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(JOBS))
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {name: measure(name, args.rounds) for name in args.models.split(",")}
    print(f"\n{args.rounds} interleaved rounds, {os.cpu_count()} CPU cores. Examples/s per round:")
    for name, rates in results.items():
        ratio = np.median(np.array(rates[True]) / np.array(rates[False]))
        fused, apart = ([f"{r:,.0f}" for r in rates[fuse]] for fuse in (True, False))
        print(f"{name:<17} fused {', '.join(fused)} | apart {', '.join(apart)} | fused / apart {ratio:.2f}")


if __name__ == "__main__":
    main()
