"""`load_split`: a --*_data flag -> a checked Split, through the reader of its source.

    load_split -> picks the reader (synthetic, tfds:, TFRecord or delimited files)
               -> runs its checking pass: counts, and the first bad record is one UserError line
               -> takes the run's vocabulary, or builds it from the training split (text only)
               -> returns the Split: examples tokenised, and `read_part` for one worker's part.

Every reader (data.delimited, data.tfrecord, data.tfds, data.synthetic) is a `Reader`. Past the
checking pass nothing is parsed in Python: the stream reads the files in sorted order, parses
records in vectorised batches (split.parse_batch); training shuffles and batches them a block at
a time (data.pipeline), evaluation unbatches them (`Split.examples`). A split whose arrays fit
--in_memory_budget_mb goes through that stream once into arrays (data.in_memory); larger ones
are streamed every epoch. The synthetic problem is made in memory.
"""

import dataclasses
import os
from typing import List, Optional, Protocol, Sequence, Tuple

import tensorflow as tf
from absl import logging

from trainer.config import DataConfig
from trainer.data import delimited, in_memory, synthetic, text, tfds, tfrecord
from trainer.data.labels import Stats
from trainer.data.split import InputSpec, Part, Split, from_arrays
from trainer.errors import UserError

EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord", ".tfrec": "tfrecord"}
TFDS_PREFIX = tfds.PREFIX


class Reader(Protocol):
    """One source, opened: its label names and files, a checking pass, and its parsed batches."""

    label_names: List[str]
    files: Tuple[str, ...]  # Sorted; () when the source has no files (TFDS, synthetic).

    def check(self) -> Stats:
        """Reads every record once; raises UserError naming the first bad one; counts."""

    def read(
        self, files: Sequence[str], record_shard: Tuple[int, int], in_order: bool, text_bytes: int = 0
    ) -> tf.data.Dataset:
        """Batches (features, multi-hot labels float32 [B, num_labels]) of `files` (a subset of
        `self.files`), keeping records (or blocks) index, index + count, ... for `record_shard`
        (count, index). `in_order=False` allows a faster order (TFRecord: blocks of records).
        `text_bytes` (an example's text, on average) makes a parsed batch of long documents
        smaller (split.parse_batch)."""


def match_files(flag: str, pattern: str) -> List[str]:
    """The files `pattern` (a path or glob, local or remote) names, sorted; at least one."""
    files = sorted(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
    if not files and tf.io.gfile.isdir(pattern):
        raise UserError(
            f"{flag}={pattern} is a directory; give its files as a quoted glob, e.g. '{pattern.rstrip('/')}/*.csv'."
        )
    if not files:
        raise UserError(
            f"{flag}={pattern} matches no file; check the path (quote a glob so that the trainer, not the shell, "
            "expands it)."
        )
    return files


def file_format(flag: str, files: Sequence[str], data_format: str) -> str:
    """--data_format, or the format the first file's extension names."""
    if data_format:
        return data_format
    extension = os.path.splitext(files[0])[1].lower()
    if extension == ".gz":
        raise UserError(
            f"{flag}: {files[0]} is gzip-compressed; decompress it (gunzip) and point the flag at the result."
        )
    if extension not in EXTENSIONS:
        raise UserError(
            f"{flag}: cannot tell the format of {files[0]} from its extension; name files .tsv, .csv or "
            ".tfrecord, or set --data_format=tsv|csv|tfrecord."
        )
    return EXTENSIONS[extension]


def open_reader(
    config: DataConfig, split: str, path: str, seed: int, model: Optional[InputSpec] = None
) -> Tuple[Reader, str]:
    """The reader of `path` (a --<split>_data flag), and how to describe it in the log. `model`, the
    inputs of a trained model, lets a delimited file to predict on hold its feature columns alone."""
    flag = f"--{split}_data"
    if path == "synthetic":
        return synthetic.open_reader(config, split, seed), path
    if path.startswith(tfds.PREFIX):
        return tfds.open_reader(path, flag, config.image_size), path
    files = match_files(flag, path)
    data_format = file_format(flag, files, config.data_format)
    allow_unlabelled = split == "test"  # Data to predict on.
    if data_format == "tfrecord":
        reader = tfrecord.open_reader(config, flag, files, allow_unlabelled)
    else:
        reader = delimited.open_reader(config, flag, files, data_format, allow_unlabelled, model)
    return reader, f"{path} ({len(files)} {data_format} file{'s' if len(files) > 1 else ''})"


def load_split(
    config: DataConfig,
    split: str,
    path: str,
    seed: int,
    vocabulary: Tuple[str, ...] = (),
    tokenizer=None,
    model: Optional[InputSpec] = None,
) -> Split:
    """Loads `path` (a --*_data flag) for `split` ("train", "eval" or "test").

    `vocabulary` is the run's (saved in the model dir, or built from the training split); text
    sources other than the training split need it. `tokenizer` (strings [B] -> int32 [B, T]),
    when given, turns text into `tokens` instead, with no vocabulary (hub_text's preset). `model`
    is the inputs of the trained model, when there is one (see `open_reader`); the caller checks
    that the split fits them (data.matching).
    """
    flag = f"--{split}_data"
    reader, described = open_reader(config, split, path, seed, model)
    stats = reader.check()
    if stats.num_examples == 0:
        raise UserError(f"{flag}={path} holds no examples; point it at a non-empty split.")
    if stats.empty_texts:
        logging.warning(
            "%s: %d of %d examples have empty text; they are kept, as one out-of-vocabulary token.",
            flag,
            stats.empty_texts,
            stats.num_examples,
        )
    if stats.num_unknown:
        logging.info(
            "%s: %d of %d label entries are unknown (%.1f%%); they are left out of the loss and the metrics.",
            flag,
            stats.num_unknown,
            stats.num_examples * len(reader.label_names),
            100.0 * stats.num_unknown / max(stats.num_examples * len(reader.label_names), 1),
        )
    if stats.all_unknown:
        logging.warning(
            "%s: %d of %d examples have every label unknown; they are kept, and add nothing to the loss or the "
            "metrics.",
            flag,
            stats.all_unknown,
            stats.num_examples,
        )
    if isinstance(reader, synthetic.Reader):  # In memory: data.train_batches gathers batches from the arrays.
        return from_arrays(reader.features, reader.labels, reader.label_names, reader.vocab_size)

    text_bytes = stats.mean_text_bytes()
    batches = reader.read(reader.files, (1, 0), in_order=True, text_bytes=text_bytes)
    if "text" not in batches.element_spec[0]:
        tokenizer, vocabulary = None, ()
    elif tokenizer is not None:
        vocabulary = ()
    else:
        vocabulary = _vocabulary(config, flag, split, batches, vocabulary)
        tokenizer = text.Tokenizer(vocabulary, config.sequence_length, config.text_bigrams)
    num_labels = len(reader.label_names)

    def inputs(batches: tf.data.Dataset) -> tf.data.Dataset:
        """Parsed batches -> batches of model inputs (text becomes token ids)."""
        batches = batches.map(lambda features, labels: (features, tf.ensure_shape(labels, [None, num_labels])))
        if tokenizer is not None:
            batches = batches.map(
                lambda features, labels: (_with_tokens(features, tokenizer), labels),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return batches

    def examples(batches: tf.data.Dataset) -> tf.data.Dataset:
        """Parsed batches -> unbatched model inputs."""
        return inputs(batches).unbatch()

    def read_part(part: Part) -> tf.data.Dataset:
        """One Part's model inputs, for training, in batches as parsed."""
        if part.by_file:
            return inputs(reader.read(reader.files[part.index :: part.count], (1, 0), False, text_bytes))
        # A record at a time when split: blocks would leave a worker without any on a small split.
        return inputs(reader.read(reader.files, (part.count, part.index), part.count > 1, text_bytes))

    logging.info(
        "%s=%s: %d examples, %d labels, %.2f labels per example%s.",
        flag,
        described,
        stats.num_examples,
        num_labels,
        stats.label_counts.sum() / stats.num_examples,
        f", vocabulary of {len(vocabulary)} terms" if vocabulary else "",
    )
    unbatched = examples(batches)
    features_spec, _ = unbatched.element_spec
    specs = {name: tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in features_spec.items()}
    feature_names = reader.feature_names() if isinstance(reader, delimited.Reader) else ()
    spec = InputSpec(specs, list(reader.label_names), len(vocabulary), tuple(vocabulary), feature_names)
    label_entries = int(stats.label_counts.sum() + stats.unknown_counts.sum())
    if in_memory.fits(flag, stats.num_examples, features_spec, label_entries, config.in_memory_budget_mb):
        # The same parse as the stream, once: the arrays hold what streaming would yield, in file order.
        features, labels = in_memory.load(flag, inputs(batches), stats.num_examples)
        loaded = from_arrays(features, labels, spec.label_names, spec.vocab_size)
        return dataclasses.replace(loaded, spec=spec, label_counts=stats.label_counts, files=reader.files)
    if split == "train" and isinstance(reader, delimited.Reader) and reader.layout.feature_columns:
        # Parsing numbers from text costs about 60 ns a value on one core: a wide CSV streams at
        # about the speed an MLP trains, where TFRecord streams 7-8x (docs/benchmarks.md).
        logging.info(
            "%s: its %d numeric columns are parsed from text every epoch, which can hold training back; for data "
            "larger than memory, TFRecord shards (python -m trainer.prepare) stream numbers about 7x faster.",
            flag,
            len(reader.layout.feature_columns),
        )
    return Split(
        unbatched,
        spec,
        stats.num_examples,
        stats.label_counts,
        files=reader.files,
        read_part=read_part,
        unknown_counts=stats.unknown_counts,
        file_examples=tuple(stats.file_examples),
    )


def _vocabulary(
    config: DataConfig, flag: str, split: str, batches: tf.data.Dataset, vocabulary: Tuple[str, ...]
) -> Tuple[str, ...]:
    """The run's vocabulary, or (training split only) one built from the texts of `batches`."""
    if vocabulary:
        return vocabulary
    if split != "train":
        raise UserError(
            f"{flag} holds text but the run has no vocabulary yet ({text.VOCABULARY_FILE} in --model_dir is "
            "written when training on text); train first, or point --model_dir at the trained run."
        )
    texts = batches.map(lambda features, labels: features["text"])
    return text.build_vocabulary(texts, config.max_tokens, config.text_bigrams)


def _with_tokens(features, tokenizer):
    """The model inputs: `text` becomes `tokens`; other features pass through."""
    inputs = {key: value for key, value in features.items() if key != "text"}
    inputs["tokens"] = tokenizer(features["text"])
    return inputs
