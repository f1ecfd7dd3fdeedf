"""Streamed input throughput of each format against what training consumes, for two jobs:

    .venv/bin/python bench/input_throughput.py [--batches=150]

- text_bow on GoEmotions' train split (../shared/data/goemotions, else a generated one of its
  size), global batch 256, as TSV, CSV and 8 TFRecord shards (trainer.prepare);
- the MLP 512-512 job of bench/vs_keras_fit.py (16,384 rows x 256 numeric features, 100 label
  columns), global batch 512, as CSV and 8 TFRecord shards.

For each source: the checking pass (+ vocabulary) in seconds, once per run, and the examples/s of
the real training stream (data.train_batches: parse, tokenise, shuffle blocks, batch) streamed
from the files (--in_memory_budget_mb=0, what data larger than the budget gets) every epoch, and
with --cache_train_data (from the second epoch on). The consumption rate is the job's compiled
train loop (one device, the update fused) fed one batch from memory. A ratio above 1 means the
input keeps up; the goal is 5. Each figure is the median of 3 rounds, and each round times the
train loop right before the stream, so that a slower moment of the machine (its speed here varies
by a fifth from minute to minute) slows both sides of a ratio. A stream's window starts after 300
batches, past what its buffers gathered while the other side ran.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from vs_keras_fit import text_data, write_csv  # noqa: E402

from trainer import data, losses, models, optimization, prepare, steps  # noqa: E402
from trainer.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from trainer.distribute import Topology  # noqa: E402

flags.DEFINE_integer("batches", 150, "Global batches per timed window (3 windows per source, after 60 to warm up).")
FLAGS = flags.FLAGS


def _text_csv(tsv: str, path: str) -> str:
    """The TSV's texts and labels as a quoted CSV."""
    with open(tsv, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        out.write("text,labels\n")
        for line in source:
            text, labels = line.rstrip("\n").split("\t")[:2]
            out.write('"' + text.replace('"', '""') + '","' + labels + '"\n')
    return path


def _jobs(folder: str):
    """[(job name, model, global batch, feature, {source: (path, DataConfig)})]."""
    streamed = dict(in_memory_budget_mb=0)
    tsv, names = text_data(folder)
    prepare.prepare(DataConfig(label_names=names), tsv, os.path.join(folder, "text"), num_shards=8, name="train")
    mlp_csv = write_csv(folder)
    prepare.prepare(DataConfig(), mlp_csv, os.path.join(folder, "mlp"), num_shards=8, name="train")
    text_sources = {
        "tsv": (tsv, DataConfig(label_names=names, **streamed)),
        "csv": (_text_csv(tsv, os.path.join(folder, "text.csv")), DataConfig(label_names=names, **streamed)),
        "tfrecord x8": (os.path.join(folder, "text", "train-*.tfrecord"), DataConfig(**streamed)),
    }
    mlp_sources = {
        "csv": (mlp_csv, DataConfig(**streamed)),
        "tfrecord x8": (os.path.join(folder, "mlp", "train-*.tfrecord"), DataConfig(**streamed)),
    }
    return [
        ("text_bow 256-256, GoEmotions", ModelConfig(model="text_bow"), 256, "tokens", text_sources),
        ("mlp 512-512, 256 features x 100 labels", ModelConfig(hidden_units=(512, 512)), 512, "features", mlp_sources),
    ]


def _window(iterator, batch_size: int, warm_up: int) -> float:
    """Examples/s of --batches batches of `iterator`, after `warm_up` batches: the first ones come
    from buffers filled while it was idle (and tf.data's autotuning settles in them)."""
    for _ in range(warm_up):
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    return FLAGS.batches * batch_size / (time.perf_counter() - start)


def _training_loop(model_config: ModelConfig, split: data.Split, feature: str, topology: Topology):
    """A function timing --batches steps of the job's jit-compiled train loop (one device, the
    update fused) on one batch held in memory: examples/s."""
    model = models.MODELS[model_config.model](model_config, split.spec)
    optimizer = optimization.make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    loss_fn = losses.LOSSES["bce"](LossConfig(), None)
    strategy = tf.distribute.get_strategy()
    loop = steps.make_train_loop(strategy, topology, model, optimizer, loss_fn, step, jit_compile=True)
    batch = next(iter(data.train_batches(split, [feature], topology, 1000, 0, False)))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    loop(iterator, tf.constant(10))

    def rate() -> float:
        start = time.perf_counter()
        loop(iterator, tf.constant(FLAGS.batches))
        return FLAGS.batches * topology.global_batch_size / (time.perf_counter() - start)

    return rate


def _measure(model_config: ModelConfig, batch_size: int, feature: str, sources: dict):
    """[(source, examples, setup s, training ex/s, streamed ex/s, streamed / training, cached ex/s,
    cached / training)] of one job: medians over 3 rounds, each timing the train loop and then the
    stream, so that a slower moment of the machine slows both sides of a ratio."""
    topology = Topology(1, 1, 0, True, batch_size)
    results, training = [], None
    for name, (path, config) in sources.items():
        start = time.perf_counter()
        split = data.load_split(config, "train", path, seed=0)
        setup = time.perf_counter() - start
        training = training or _training_loop(model_config, split, feature, topology)
        stream = iter(data.train_batches(split, [feature], topology, config.shuffle_buffer, 0, False))
        cached = iter(data.train_batches(split, [feature], topology, config.shuffle_buffer, 0, False, cache=True))
        _window(cached, batch_size, warm_up=split.num_examples // batch_size + 1)  # Fills the cache.
        rounds = []
        for _ in range(3):
            consumed = training()
            streamed = _window(stream, batch_size, warm_up=300)
            from_cache = _window(cached, batch_size, warm_up=300)
            rounds.append((consumed, streamed, streamed / consumed, from_cache, from_cache / consumed))
        medians = [statistics.median(values) for values in zip(*rounds)]
        results.append((name, split.num_examples, setup, *medians))
    return results


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as folder:
        measured = [
            (job, batch, _measure(model, batch, feature, sources))
            for job, model, batch, feature, sources in _jobs(folder)
        ]
    for job, batch_size, results in measured:
        print(f"\n{job}, global batch {batch_size} (medians of 3 rounds):")
        print(
            f"{'source':<12} {'examples':>9} {'check s':>8} {'training ex/s':>14} {'streamed ex/s':>14} "
            f"{'streamed/training':>18} {'cached ex/s':>12} {'cached/training':>16}"
        )
        for name, count, setup, consumed, streamed, ratio, cached, cached_ratio in results:
            print(
                f"{name:<12} {count:>9} {setup:>8.2f} {consumed:>14,.0f} {streamed:>14,.0f} {ratio:>18.2f} "
                f"{cached:>12,.0f} {cached_ratio:>16.2f}"
            )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
