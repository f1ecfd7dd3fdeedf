"""TFDS datasets as sources (reader and label adapters): `tfds:NAME[/CONFIG]:SPLIT`, e.g.
`tfds:goemotions:train`, `tfds:voc/2007:validation`, `tfds:goemotions:train[:90%]`.

Each dataset needs an adapter that says which of its features the models take and how its
labels become a multi-hot vector; ADAPTERS lists them. tensorflow-datasets is optional
(`pip install 'mltrain[tfds]'`) and imported only when a `tfds:` source is used. TFDS prepares
the data on first use in its data directory (TFDS_DATA_DIR, default ~/tensorflow_datasets).
"""

import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

import tensorflow as tf

from trainer.data import in_memory
from trainer.data.labels import Stats
from trainer.data.split import parse_batch
from trainer.errors import UserError

PREFIX = "tfds:"

# GoEmotions' label order in the paper's release (labels.txt: line i is id i), not TFDS's
# alphabetical feature order, so tfds:goemotions and the released TSV files are interchangeable.
GOEMOTIONS_LABELS = (
    "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment "
    "disapproval disgust embarrassment excitement fear gratitude grief joy love nervousness optimism "
    "pride realization relief remorse sadness surprise neutral"
).split()


@dataclasses.dataclass(frozen=True)
class Adapter:
    label_names: List[str]
    convert: Callable  # One TFDS example -> (features dict, multi-hot float32 [num_labels]).


def _goemotions(info, image_size: int) -> Adapter:
    del info, image_size

    def convert(example):
        labels = tf.stack([tf.cast(example[name], tf.float32) for name in GOEMOTIONS_LABELS])
        return {"text": example["comment_text"]}, labels

    return Adapter(list(GOEMOTIONS_LABELS), convert)


def _voc(info, image_size: int) -> Adapter:
    """PASCAL VOC: the classes of the objects in the image (any number of each) -> its label set."""
    names = list(info.features["objects"]["label"].names)

    def convert(example):
        image = tf.image.resize(tf.cast(example["image"], tf.float32) / 255.0, [image_size, image_size])
        ids = example["objects"]["label"]
        labels = tf.math.bincount(ids, minlength=len(names), maxlength=len(names), binary_output=True)
        return {"image": image}, tf.cast(labels, tf.float32)

    return Adapter(names, convert)


ADAPTERS: Dict[str, Callable[..., Adapter]] = {"goemotions": _goemotions, "voc": _voc}


def parse_path(path: str, flag: str) -> Tuple[str, str]:
    """`tfds:voc/2007:train[:80%]` -> ("voc/2007", "train[:80%]")."""
    name, _, split = path[len(PREFIX) :].partition(":")
    if not name or not split:
        raise UserError(f"{flag}={path} is not of the form tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:goemotions:train.")
    return name, split


@dataclasses.dataclass(frozen=True)
class Reader:
    """A TFDS split through its adapter (a data.sources reader).

    Records, not files, are sharded: it works whatever the number of files, and the adapter's
    work (resizing images) is done only for the records kept. The order is the dataset's own.
    """

    examples: tf.data.Dataset  # TFDS's examples, before the adapter.
    convert: Callable
    label_names: List[str]
    files: Tuple[str, ...] = ()

    def read(
        self, files: Sequence[str], record_shard: Tuple[int, int], in_order: bool, text_bytes: int = 0
    ) -> tf.data.Dataset:
        del files, in_order  # No files of its own; TFDS keeps its order.
        count, index = record_shard
        shard = self.examples.shard(count, index) if count > 1 else self.examples
        converted = shard.map(self.convert, num_parallel_calls=tf.data.AUTOTUNE)
        features_spec, _ = converted.element_spec
        example_bytes = (in_memory.example_bytes(features_spec) or 0) + text_bytes
        return converted.batch(parse_batch(len(self.label_names), example_bytes))

    def check(self) -> Stats:
        """The checking pass: the adapter made the labels, so only counting is left."""

        def summarise(features, labels):
            empty = tf.zeros([], tf.int64)
            if "text" in features:
                empty = tf.reduce_sum(tf.cast(tf.strings.length(tf.strings.strip(features["text"])) == 0, tf.int64))
            return labels, empty

        stats = Stats.zeros(len(self.label_names))
        for labels, empty in self.read((), (1, 0), in_order=True).map(summarise):
            stats.add_batch(labels.numpy(), int(empty))
        return stats


def open_reader(path: str, flag: str, image_size: int) -> Reader:
    """Opens the TFDS split `path` names (preparing it on first use) with its dataset's adapter."""
    name, split = parse_path(path, flag)
    base = name.split("/")[0]
    if base not in ADAPTERS:
        raise UserError(
            f"{flag}={path}: no label adapter for TFDS dataset {base!r} (adapters: {', '.join(sorted(ADAPTERS))}); "
            "add one to ADAPTERS in trainer/data/tfds.py, or write the data as TFRecord (docs/data.md)."
        )
    try:
        import tensorflow_datasets as tfds  # Optional dependency: only tfds: sources need it.
    except ImportError:
        raise UserError(f"{flag}={path} needs tensorflow-datasets: pip install 'mltrain[tfds]'.")
    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
        # shuffle_files=False: the same order every time, which --deterministic and resume need.
        examples = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # TFDS raises many types (not found, no split, download failed); all mean the same.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{flag}={path}: TFDS cannot load it ({first_line}); check the name, config and split.")
    adapter = ADAPTERS[base](builder.info, image_size)
    return Reader(examples, adapter.convert, adapter.label_names)
