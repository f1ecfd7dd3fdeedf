"""Checkpoint cost vs model size: save and restore time, and the training stall per save, sync vs async.

For MLPs of about 1M, 10M and 50M parameters (AdamW, so a checkpoint holds ~3x the weights),
with the trainer's own pieces (`Checkpoints`, `steps.make_train_loop`, the checkpointed input
iterator), measured in one run:
  - save: a synchronous `Checkpoints.save` on its own; restore: `restore_latest` of that checkpoint;
  - stall: (one train-loop call followed by a save) minus (one train-loop call alone), median of a
    few repeats. For async the save returns once the variables are copied to host memory; the file
    is written in the background while the next loop runs, so the stall is measured over
    save + the next loop call (the write competes with training for the CPU), and the wait that is
    left at `sync()` is shown apart.

    .venv/bin/python bench/checkpoint_cost.py [--widths=1000,3150,7050 --steps_per_loop=5 --batch=64]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NUM_FEATURES, NUM_LABELS = 64, 20


def directory_megabytes(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2**20


def measure(width: int, args, workdir: str) -> dict:
    import tensorflow as tf

    from trainer import checkpoint, data, distribute, losses, models, optimization, steps
    from trainer.config import DistributeConfig, LossConfig, ModelConfig, TrainConfig
    from trainer.data import synthetic

    features, labels = synthetic.make_split("train", 4 * args.batch, NUM_LABELS, NUM_FEATURES, 2_000, 32, seed=42)
    split = data.from_arrays({"features": features["features"]}, labels, synthetic.label_names(NUM_LABELS))
    cluster = distribute.cluster_from_env(None)
    strategy = distribute.make_strategy(DistributeConfig(strategy="default"), cluster)
    topology = distribute.topology(strategy, cluster, args.batch)
    with strategy.scope():
        model = models.build_mlp(ModelConfig(hidden_units=(width, width)), split.spec)
        optimizer = optimization.make_optimizer(TrainConfig(lr_schedule="constant"))
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    loss_fn = losses.LOSSES["bce"](LossConfig(), split.label_counts / split.num_examples)
    iterator = iter(data.train_batches(split, ["features"], topology, 1_000, 42, False))
    train_loop = steps.make_train_loop(strategy, topology, model, optimizer, loss_fn, step, True)
    trackables = dict(model=model, optimizer=optimizer, step=step, train_iterator=iterator)
    sync_dir, async_dir = os.path.join(workdir, f"sync-{width}"), os.path.join(workdir, f"async-{width}")
    sync = checkpoint.Checkpoints(sync_dir, True, 1, **trackables)
    background = checkpoint.Checkpoints(async_dir, True, 1, async_save=True, **trackables)
    num_steps = tf.constant(args.steps_per_loop, tf.int32)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def loop():
        float(train_loop(iterator, num_steps))  # float(): wait for the result.

    def saved(saver):
        return lambda: saver.save(int(step.numpy()))

    loop()  # Compile.
    sync.save(0)  # First saves build their save functions (and the async host copies).
    background.save(0)
    background.sync()
    plain, save_alone, sync_cycle, async_cycle, async_wait, restore = [], [], [], [], [], []
    for _ in range(args.repeats):
        plain.append(timed(loop))
        save_alone.append(timed(saved(sync)))
        sync_cycle.append(timed(lambda: (loop(), saved(sync)())))
        async_cycle.append(timed(lambda: (saved(background)(), loop())))
        async_wait.append(timed(background.sync))
        restore.append(timed(sync.restore_latest))
    return {
        "parameters": model.count_params(),
        "megabytes": directory_megabytes(os.path.join(sync_dir, "checkpoints")),
        "loop": statistics.median(plain),
        "save": statistics.median(save_alone),
        "restore": statistics.median(restore),
        "stall_sync": statistics.median(sync_cycle) - statistics.median(plain),
        "stall_async": statistics.median(async_cycle) - statistics.median(plain),
        "async_wait": statistics.median(async_wait),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="1000,3150,7050", help="Two hidden layers of each width: ~1M, 10M, 50M.")
    parser.add_argument("--steps_per_loop", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    workdir = tempfile.mkdtemp(prefix="checkpoint-cost-")
    try:
        rows = [measure(int(w), args, workdir) for w in args.widths.split(",")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nseconds, median of {args.repeats}; a train-loop call = {args.steps_per_loop} steps of batch {args.batch}")
    header = ("params", "ckpt MB", "save", "restore", "loop", "stall sync", "stall async", "async wait at sync")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        print(
            f"{r['parameters'] / 1e6:.1f}M | {r['megabytes']:.0f} | {r['save']:.2f} | {r['restore']:.2f} | "
            f"{r['loop']:.2f} | {r['stall_sync']:.2f} | {r['stall_async']:.2f} | {r['async_wait']:.2f}"
        )


if __name__ == "__main__":
    main()
