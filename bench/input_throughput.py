"""Input throughput of each source against what `text_bow` training consumes.

    .venv/bin/python bench/input_throughput.py [--batches=150] [--examples=43410]

Writes one GoEmotions-sized text dataset (../shared/data/goemotions/train.tsv if present, else a
generated one of the same size) as TSV, CSV and 8 TFRecord shards (trainer.prepare), then for
each: the checking pass + vocabulary (seconds, once per run) and the examples/s of the real
training stream (data.train_batches: shuffle, batch, this worker's rows), streamed from the files
(--in_memory_budget_mb=0, what data larger than the budget gets)
(every epoch) and with --cache_train_data (from the second epoch on). The consumption rate
is the compiled text_bow train loop fed from memory. A ratio above 1 means the input keeps up.
Each rate is the median of three windows, so that a moment of load from another job does not
decide it.
"""

import os
import random
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from trainer import data, losses, models, optimization, prepare, steps  # noqa: E402
from trainer.config import DataConfig, LossConfig, ModelConfig, TrainConfig  # noqa: E402
from trainer.distribute import Topology  # noqa: E402

flags.DEFINE_integer("batches", 150, "Global batches per timed window (3 windows per source, after 60 to warm up).")
flags.DEFINE_integer("examples", 43_410, "Examples to generate when the GoEmotions files are absent.")
flags.DEFINE_integer("global_batch_size", 256, "As in the trainer.")
FLAGS = flags.FLAGS

GOEMOTIONS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "goemotions"
)


def _dataset(folder: str):
    """(TSV path, labels.txt path): the real GoEmotions train split, or a generated stand-in."""
    if os.path.exists(os.path.join(GOEMOTIONS, "train.tsv")):
        return os.path.join(GOEMOTIONS, "train.tsv"), os.path.join(GOEMOTIONS, "labels.txt")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30_000)]
    tsv, names = os.path.join(folder, "generated.tsv"), os.path.join(folder, "labels.txt")
    with open(names, "w") as f:
        f.write("".join(f"label_{i}\n" for i in range(28)))
    with open(tsv, "w") as f:
        for i in range(FLAGS.examples):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
            f.write(f"{text}\t{','.join(str(rng.randrange(28)) for _ in range(rng.randint(1, 3)))}\tid{i}\n")
    return tsv, names


def _write_csv(tsv: str, path: str) -> None:
    with open(tsv, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        out.write("text,labels\n")
        for line in source:
            text, labels = line.rstrip("\n").split("\t")[:2]
            out.write('"' + text.replace('"', '""') + '","' + labels + '"\n')


def _rate(dataset: tf.data.Dataset, batches: int, warm_up: int = 60) -> float:
    """Median examples/s of 3 windows of `batches` global batches, after `warm_up` batches (tf.data's
    autotuning and the shuffle buffer settle in the first ones)."""
    iterator = iter(dataset)
    for _ in range(warm_up):
        next(iterator)
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * FLAGS.global_batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def _consumption(split: data.Split, topology: Topology) -> float:
    """Examples/s of the jit-compiled text_bow train loop on one batch held in memory."""
    strategy = tf.distribute.get_strategy()
    model = models.build_text_bow(ModelConfig(), split.spec)
    optimizer = optimization.make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    loss_fn = losses.LOSSES["bce"](LossConfig(), None)
    loop = steps.make_train_loop(strategy, topology, model, optimizer, loss_fn, step, jit_compile=True)
    batch = next(iter(data.train_batches(split, ["tokens"], topology, 1000, 0, False)))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    loop(iterator, tf.constant(10))
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        loop(iterator, tf.constant(FLAGS.batches))
        rates.append(FLAGS.batches * FLAGS.global_batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv):
    del argv
    topology = Topology(1, 1, 0, True, FLAGS.global_batch_size)
    with tempfile.TemporaryDirectory() as folder:
        tsv, names = _dataset(folder)
        _write_csv(tsv, os.path.join(folder, "train.csv"))
        prepare.prepare(DataConfig(label_names=names), tsv, os.path.join(folder, "shards"), num_shards=8, name="train")
        sources = {
            "tsv": (tsv, DataConfig(label_names=names, in_memory_budget_mb=0)),
            "csv": (os.path.join(folder, "train.csv"), DataConfig(label_names=names, in_memory_budget_mb=0)),
            "tfrecord x8": (os.path.join(folder, "shards", "train-*.tfrecord"), DataConfig(in_memory_budget_mb=0)),
        }
        results, consumption = [], None
        for name, (path, config) in sources.items():
            start = time.perf_counter()
            split = data.load_split(config, "train", path, seed=0)
            setup = time.perf_counter() - start
            stream = data.train_batches(split, ["tokens"], topology, config.shuffle_buffer, 0, False)
            rate = _rate(stream, FLAGS.batches)
            cached = data.train_batches(split, ["tokens"], topology, config.shuffle_buffer, 0, False, cache=True)
            first_epoch = split.num_examples // FLAGS.global_batch_size + 1  # Fills the cache.
            cached_rate = _rate(cached, FLAGS.batches, warm_up=first_epoch + 10)
            results.append((name, split.num_examples, setup, rate, cached_rate))
            consumption = consumption or _consumption(split, topology)
    print(f"\ntext_bow training consumes {consumption:,.0f} examples/s (global batch {FLAGS.global_batch_size}).")
    print(
        f"{'source':<12} {'examples':>9} {'check+vocab s':>14} {'examples/s':>11} {'input/training':>15} "
        f"{'cached ex/s':>12} {'cached/training':>16}"
    )
    for name, count, setup, rate, cached_rate in results:
        print(
            f"{name:<12} {count:>9} {setup:>14.2f} {rate:>11,.0f} {rate / consumption:>15.2f} "
            f"{cached_rate:>12,.0f} {cached_rate / consumption:>16.2f}"
        )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
