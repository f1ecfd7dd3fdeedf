"""Real input sources for `data.load_split`: delimited text, TFRecord files, and TFDS.

A split is read in two passes:
1. a checking pass, once, before training: it stops at the first bad record with one line
   naming the file, the record and the fix (a UserError: exit code 1), and counts examples and
   positives per label (Split.label_counts: weighted_bce and the start-up statistics use them);
2. the tf.data stream the run iterates: files in sorted order, records parsed in vectorised
   batches of PARSE_BATCH, then unbatched. Nothing is loaded whole into Python. `Source.read_part`
   opens one input pipeline's share of the same stream (a subset of the files, or every n-th
   record), so that each worker parses only what it trains on (data.train_batches); its order
   may differ from the stream's where another is faster (TFRecord: see records.read).
Text becomes token ids here (trainer.text), with the run's vocabulary: the one saved in the
model dir, else one built from the training split.
"""

import dataclasses
import os
from typing import Callable, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import delimited, records, text, tfds_source
from trainer.config import DataConfig
from trainer.errors import UserError
from trainer.labels import Stats, find_names, read_names

PARSE_BATCH = 1024
EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord", ".tfrec": "tfrecord"}


@dataclasses.dataclass(frozen=True)
class Part:
    """One input pipeline's share of a split: files `index`, `index + count`, ... when `by_file`,
    else records `index`, `index + count`, ... of the whole stream."""

    count: int
    index: int
    by_file: bool


WHOLE = Part(count=1, index=0, by_file=False)  # Every record: the whole stream, for training.


@dataclasses.dataclass(frozen=True)
class Source:
    examples: tf.data.Dataset  # Unbatched ({"tokens"|"features"|"image": ...}, multi-hot float32 [num_labels]).
    label_names: List[str]
    num_examples: int
    label_counts: np.ndarray  # int64 [num_labels]
    vocabulary: Tuple[str, ...]  # () unless the examples hold text.
    files: Tuple[str, ...]  # The files read, sorted; () for TFDS.
    # The examples of one Part, for training: like `examples`, in an order that may differ (faster).
    read_part: Callable[[Part], tf.data.Dataset]


def match_files(flag: str, pattern: str) -> List[str]:
    """The files `pattern` (a path or glob, local or remote) names, sorted; at least one."""
    files = sorted(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
    if not files:
        raise UserError(
            f"{flag}={pattern} matches no file; check the path (quote a glob so that the trainer, not the shell, "
            "expands it)."
        )
    return files


def file_format(flag: str, files: Sequence[str], data_format: str) -> str:
    if data_format:
        return data_format
    extension = os.path.splitext(files[0])[1].lower()
    if extension not in EXTENSIONS:
        raise UserError(
            f"{flag}: cannot tell the format of {files[0]} from its extension; name files .tsv, .csv or "
            ".tfrecord, or set --data_format=tsv|csv|tfrecord."
        )
    return EXTENSIONS[extension]


def _unlabelled(flag: str, allow_unlabelled: bool, what: str) -> None:
    if not allow_unlabelled:
        raise UserError(
            f"{flag}: {what}; set --labels_column, or --label_columns_prefix for 0/1 label columns "
            "(only --test_data may be unlabelled, for --mode=predict)."
        )


def delimited_layout(
    config: DataConfig, flag: str, files: List[str], data_format: str, allow_unlabelled: bool
) -> Tuple[delimited.Layout, List[str]]:
    """What the columns of delimited `files` hold, and the label names; also used by trainer.prepare."""
    layout = delimited.inspect(files, data_format, config, flag)
    if layout.label_columns:
        label_names = delimited.label_names_from_header(layout, config)
        if config.label_names and read_names(config.label_names) != label_names:
            named = read_names(config.label_names)
            raise UserError(
                f"{files[0]} has {len(label_names)} label columns ({config.label_columns_prefix}{label_names[0]}, ...) "
                f"but --label_names={config.label_names} lists {len(named)} names"
                + ("" if len(named) != len(label_names) else " that differ from them")
                + "; make the two agree, or leave --label_names empty to take the names from the header."
            )
        if not layout.feature_columns and layout.text < 0:
            raise UserError(f"{files[0]} has label columns but no feature or text column; add the inputs.")
        return layout, label_names
    label_names = find_names(config.label_names, files)
    if label_names is None:
        raise UserError(
            f"{flag}: {files[0]} holds label ids or names, so the trainer needs their names: pass "
            "--label_names=FILE (one name a line, line i names id i), or put a labels.txt beside the data."
        )
    if layout.labels < 0:
        missing = f"no column {config.labels_column!r}" if layout.header else "a single column"
        _unlabelled(flag, allow_unlabelled, f"{files[0]} has {missing}, so no labels")
    return layout, label_names


def _delimited(config: DataConfig, flag: str, split: str, files: List[str], data_format: str):
    layout, label_names = delimited_layout(config, flag, files, data_format, allow_unlabelled=split == "test")
    stats = delimited.check(files, layout, label_names)

    def read(part_files, record_shard, in_order=True):
        del in_order  # Lines are read in order at no extra cost.
        return delimited.read(part_files, layout, label_names, PARSE_BATCH, record_shard)

    return read, label_names, stats


def _tfrecord(config: DataConfig, flag: str, split: str, files: List[str]):
    layout = records.inspect(files)
    if layout is None:
        raise UserError(f"{flag}: {files[0]}{' ...' if len(files) > 1 else ''} hold no records; point it at data.")
    label_names = find_names(config.label_names, files)
    if label_names is None:
        raise UserError(
            f"{flag}: TFRecord data needs label names: pass --label_names=FILE, or put a labels.txt beside the "
            "files (python -m trainer.prepare writes one)."
        )
    if not layout.label_key:
        _unlabelled(flag, split == "test", f"records in {files[0]} have neither `label_ids` nor `labels`")
    stats = records.check(files, layout, len(label_names))

    def read(part_files, record_shard, in_order=True):
        return records.read(
            part_files, layout, len(label_names), config.image_size, PARSE_BATCH, record_shard, in_order
        )

    return read, label_names, stats


def _count(batches: tf.data.Dataset, num_labels: int) -> Stats:
    """The checking pass of a TFDS source: its adapter made the labels, so only counting is left."""

    def summarise(features, labels):
        empty = tf.zeros([], tf.int64)
        if "text" in features:
            empty = tf.reduce_sum(tf.cast(tf.strings.length(tf.strings.strip(features["text"])) == 0, tf.int64))
        return labels, empty

    stats = Stats.zeros(num_labels)
    for labels, empty in batches.map(summarise):
        stats.add_batch(labels.numpy(), int(empty))
    return stats


def load(config: DataConfig, split: str, path: str, vocabulary: Tuple[str, ...] = (), tokenizer=None) -> Source:
    """Checks and opens `path` (a --<split>_data flag); `vocabulary` is the run's, () if it has none yet.
    A `tokenizer` (strings [B] -> int32 [B, T]: hub_text's preset) replaces the run's vocabulary."""
    flag = f"--{split}_data"
    if path.startswith(tfds_source.PREFIX):
        open_shard, label_names = tfds_source.read(path, flag, config.image_size)
        files = []

        def read(part_files, record_shard, in_order=True):
            del in_order  # TFDS keeps its own order.
            return open_shard(*record_shard).batch(PARSE_BATCH)

        stats, described = _count(read(files, (1, 0)), len(label_names)), path
    else:
        files = match_files(flag, path)
        data_format = file_format(flag, files, config.data_format)
        if data_format == "tfrecord":
            read, label_names, stats = _tfrecord(config, flag, split, files)
        else:
            read, label_names, stats = _delimited(config, flag, split, files, data_format)
        described = f"{path} ({len(files)} {data_format} file{'s' if len(files) > 1 else ''})"
    if stats.num_examples == 0:
        raise UserError(f"{flag}={path} holds no examples; point it at a non-empty split.")
    if stats.empty_texts:
        logging.warning(
            "%s: %d of %d examples have empty text; they are kept, as one out-of-vocabulary token.",
            flag,
            stats.empty_texts,
            stats.num_examples,
        )
    num_labels = len(label_names)
    batches = read(files, (1, 0))
    has_text = "text" in batches.element_spec[0]
    if has_text and tokenizer is not None:
        vocabulary = ()
    elif has_text:
        if not vocabulary and split != "train":
            raise UserError(
                f"{flag} holds text but the run has no vocabulary yet ({text.VOCABULARY_FILE} in --model_dir is "
                "written when training on text); train first, or point --model_dir at the trained run."
            )
        if not vocabulary:
            texts = batches.map(lambda features, labels: features["text"])
            vocabulary = text.build_vocabulary(texts, config.max_tokens, config.text_bigrams)
        tokenizer = text.Tokenizer(vocabulary, config.sequence_length, config.text_bigrams)
    else:
        vocabulary = ()

    def examples(batches: tf.data.Dataset) -> tf.data.Dataset:
        """Parsed batches -> unbatched model inputs (text becomes token ids)."""
        batches = batches.map(lambda features, labels: (features, tf.ensure_shape(labels, [None, num_labels])))
        if has_text:
            batches = batches.map(
                lambda features, labels: (_with_tokens(features, tokenizer), labels),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return batches.unbatch()

    def read_part(part: Part) -> tf.data.Dataset:
        if part.by_file:
            return examples(read(files[part.index :: part.count], (1, 0), in_order=False))
        # A record at a time when split: blocks would leave a worker without any on a small split.
        return examples(read(files, (part.count, part.index), in_order=part.count > 1))

    logging.info(
        "%s=%s: %d examples, %d labels, %.2f labels per example%s.",
        flag,
        described,
        stats.num_examples,
        num_labels,
        stats.label_counts.sum() / stats.num_examples,
        f", vocabulary of {len(vocabulary)} terms" if vocabulary else "",
    )
    return Source(
        examples(batches),
        list(label_names),
        stats.num_examples,
        stats.label_counts,
        tuple(vocabulary),
        tuple(files),
        read_part,
    )


def _with_tokens(features, tokenizer):
    """The model inputs: `text` becomes `tokens`; other features pass through."""
    inputs = {key: value for key, value in features.items() if key != "text"}
    inputs["tokens"] = tokenizer(features["text"])
    return inputs
