"""TFRecord files of `tf.train.Example` (the form `python -m trainer.prepare` writes): checks and reader.

Feature keys (at least one of text/features/image; at most one of label_ids/labels):
    text       bytes, 1 value   UTF-8 text, tokenised like delimited text
    features   float, N values  numeric features, the same N in every record, all finite
    image      bytes, 1 value   an encoded JPEG/PNG/GIF/BMP image, resized to --image_size
    label_ids  int64, any       the ids of the labels that are on (what `prepare` writes)
    labels     float or int64   a multi-hot vector, one 0/1 value per label
    label_mask float or int64   optional: one 0/1 value per label, 0 where the label is unknown
                                (whatever label_ids/labels say there); a record without one has
                                every label known. The first record with one sets its type.
Label names come from --label_names or a labels.txt beside the files. Records without labels
are fine for --test_data in --mode=predict.

Sharded files are read with a deterministic interleave, one record from each file in turn:
`prepare` deals records out to shards round-robin, so this restores the original order.
"""

import dataclasses
import re
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from trainer.config import DataConfig
from trainer.data.labels import Stats, find_names, require_labels
from trainer.data.split import parse_batch
from trainer.errors import UserError

TEXT, FEATURES, IMAGE, LABEL_IDS, LABELS, LABEL_MASK = "text", "features", "image", "label_ids", "labels", "label_mask"
_MAX_INTERLEAVE = 64  # Files read at once; beyond this the order is deterministic but not the original.


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which keys the records hold, from the first record."""

    text: bool
    image: bool
    num_features: int  # 0: no `features`.
    label_key: str  # LABEL_IDS, LABELS, or "" when unlabelled.
    labels_dtype: tf.DType = tf.float32
    # Of `label_mask`: the first record's, else int64 (what `prepare` writes, on rows with unknowns).
    mask_dtype: tf.DType = tf.int64


def make_example(
    text: Optional[str],
    label_ids: Iterable[int],
    features: Sequence[float] = (),
    unknown_ids: Sequence[int] = (),
    num_labels: int = 0,
) -> bytes:
    """A serialized Example with `text` (unless None), `features` (unless empty) and `label_ids`,
    and a `label_mask` of `num_labels` values when some labels (`unknown_ids`) are unknown."""
    feature = {LABEL_IDS: tf.train.Feature(int64_list=tf.train.Int64List(value=list(label_ids)))}
    if len(unknown_ids):
        mask = np.ones(num_labels, np.int64)
        mask[list(unknown_ids)] = 0
        feature[LABEL_MASK] = tf.train.Feature(int64_list=tf.train.Int64List(value=mask.tolist()))
    if text is not None:
        feature[TEXT] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))
    if len(features):
        feature[FEATURES] = tf.train.Feature(float_list=tf.train.FloatList(value=list(features)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _reason(error: tf.errors.OpError) -> str:
    """TensorFlow's message without the op and function names around it."""
    return re.sub(r"\{\{[^}]*\}\}|\[Op:.*$", "", error.message.splitlines()[0]).strip()


def _first_record(files: Sequence[str]) -> Optional[bytes]:
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path).take(1):
                return record.numpy()
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise UserError(f"{path} is not a TFRecord file or is corrupt ({_reason(e)}).")
    return None


def inspect(files: Sequence[str]) -> Optional[Layout]:
    """The layout of the first record, or None when the files hold no record."""
    record = _first_record(files)
    if record is None:
        return None
    try:
        feature = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        raise UserError(f"{files[0]} does not hold tf.train.Example records; see docs/data.md, 'TFRecord'.")
    if not any(key in feature for key in (TEXT, FEATURES, IMAGE)):
        raise UserError(
            f"{files[0]}: records have keys {sorted(feature)} but none of {TEXT}, {FEATURES}, {IMAGE}; "
            "see docs/data.md, 'TFRecord'. for the feature keys."
        )
    label_key = LABEL_IDS if LABEL_IDS in feature else LABELS if LABELS in feature else ""
    labels_dtype = tf.int64 if label_key == LABELS and feature[LABELS].HasField("int64_list") else tf.float32
    num_features = len(feature[FEATURES].float_list.value) if FEATURES in feature else 0
    mask_dtype = tf.float32 if LABEL_MASK in feature and feature[LABEL_MASK].HasField("float_list") else tf.int64
    return Layout(TEXT in feature, IMAGE in feature, num_features, label_key, labels_dtype, mask_dtype)


def _ragged_spec(layout: Layout) -> dict:
    spec = {}
    if layout.text:
        spec[TEXT] = tf.io.RaggedFeature(tf.string)
    if layout.image:
        spec[IMAGE] = tf.io.RaggedFeature(tf.string)
    if layout.num_features:
        spec[FEATURES] = tf.io.RaggedFeature(tf.float32)
    if layout.label_key:
        spec[layout.label_key] = tf.io.RaggedFeature(tf.int64 if layout.label_key == LABEL_IDS else layout.labels_dtype)
        spec[LABEL_MASK] = tf.io.RaggedFeature(layout.mask_dtype)
    return spec


def check(files: Sequence[str], layout: Layout, num_labels: int, batch_size: int = 4096) -> Stats:
    """Reads every record once; raises UserError naming the file and record of the first bad one."""
    stats, spec = Stats.zeros(num_labels), _ragged_spec(layout)

    def summarise(serialized):
        """Values per key and record, the label values, which feature values are not finite, and
        how many texts are blank."""
        parsed = tf.io.parse_example(serialized, spec)
        lengths = {key: value.row_lengths() for key, value in parsed.items()}
        labels = parsed[layout.label_key].flat_values if layout.label_key else tf.zeros([0], tf.int64)
        mask = parsed[LABEL_MASK].flat_values if layout.label_key else tf.zeros([0], layout.mask_dtype)
        non_finite = tf.zeros([0], tf.bool)
        if layout.num_features:
            non_finite = tf.logical_not(tf.math.is_finite(parsed[FEATURES].flat_values))
        empty = text_bytes = tf.zeros([], tf.int64)
        if layout.text:
            blank = tf.strings.length(tf.strings.strip(parsed[TEXT].flat_values)) == 0
            empty = tf.reduce_sum(tf.cast(blank, tf.int64))
            text_bytes = tf.reduce_sum(tf.cast(tf.strings.length(parsed[TEXT].flat_values), tf.int64))
        return lengths, labels, mask, non_finite, empty, text_bytes

    for path in files:
        first = 0
        try:
            batches = tf.data.TFRecordDataset(path).batch(batch_size).map(summarise)
            for lengths, labels, mask, non_finite, empty, text_bytes in batches:
                lengths = {key: value.numpy() for key, value in lengths.items()}
                _check_batch(path, first, lengths, labels.numpy(), mask.numpy(), layout, num_labels, stats)
                _check_finite(path, first, lengths, non_finite.numpy())
                stats.empty_texts += int(empty)
                stats.text_bytes += int(text_bytes)
                first += len(next(iter(lengths.values())))
            stats.file_examples.append(first)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            # Records are checked batch_size at a time: the bad one is in the batch after `first`.
            where = f"{path} (records {first}..{first + batch_size - 1})"
            if LABEL_MASK in e.message and "types" in e.message:
                raise UserError(
                    f"{where}: `{LABEL_MASK}` is not of the type of the first record's "
                    f"({layout.mask_dtype.name}); give every label_mask one type, float or int64."
                )
            if isinstance(e, tf.errors.DataLossError):
                raise UserError(
                    f"{where} is truncated or corrupt ({_reason(e)}); write it again (a `python -m trainer.prepare` "
                    "that was stopped leaves no such shard: it writes them under temporary names)."
                )
            raise UserError(
                f"{where} cannot be read as tf.train.Example records ({_reason(e)}); see docs/data.md, 'TFRecord', "
                "for the feature keys."
            )
    return stats


def _check_batch(
    path: str, first: int, lengths, labels: np.ndarray, mask: np.ndarray, layout: Layout, num_labels: int, stats: Stats
) -> None:
    """Checks one batch of records (`first` is the index of its first in `path`); adds it to `stats`."""

    def fail(bad_rows: np.ndarray, message: str):
        raise UserError(f"{path} record {first + int(np.flatnonzero(bad_rows)[0])}: {message}")

    num_records = len(next(iter(lengths.values())))
    if layout.text:
        if (lengths[TEXT] > 1).any():
            fail(lengths[TEXT] > 1, f"`{TEXT}` must hold one string.")
        stats.empty_texts += int((lengths[TEXT] == 0).sum())  # A record without text counts as empty.
    if layout.image and (lengths[IMAGE] != 1).any():
        fail(lengths[IMAGE] != 1, f"`{IMAGE}` must hold one encoded image.")
    if layout.num_features and (lengths[FEATURES] != layout.num_features).any():
        wrong = lengths[FEATURES] != layout.num_features
        fail(
            wrong,
            f"`{FEATURES}` has {lengths[FEATURES][wrong][0]} values but the first record has "
            f"{layout.num_features}; every record needs the same number of features.",
        )
    multi_hot = np.zeros((num_records, num_labels), np.int64)
    if layout.label_key == LABEL_IDS:
        rows = np.repeat(np.arange(num_records), lengths[LABEL_IDS])
        bad = (labels < 0) | (labels >= num_labels)
        if bad.any():
            fail(
                np.isin(np.arange(num_records), rows[bad]),
                f"label id {labels[bad][0]} is out of range: there are {num_labels} label names "
                f"(ids 0..{num_labels - 1}); fix the data, or --label_names / labels.txt.",
            )
        multi_hot[rows, labels] = 1
    elif layout.label_key == LABELS:
        wrong = lengths[LABELS] != num_labels
        if wrong.any():
            fail(
                wrong,
                f"`{LABELS}` has {lengths[LABELS][wrong][0]} values but there are {num_labels} label names; "
                "give one 0/1 value per label, or fix --label_names / labels.txt.",
            )
        values = labels.reshape(num_records, num_labels)
        if not np.isin(values, (0, 1)).all():
            fail(~np.isin(values, (0, 1)).all(axis=1), f"`{LABELS}` must hold only 0 and 1.")
        multi_hot = values.astype(np.int64)
    if layout.label_key:
        multi_hot = _apply_mask(fail, lengths[LABEL_MASK], mask, multi_hot)
    stats.add_batch(multi_hot)


def _apply_mask(fail, lengths: np.ndarray, mask: np.ndarray, multi_hot: np.ndarray) -> np.ndarray:
    """`multi_hot` [n, L] with -1 where the records' `label_mask` values (`lengths` per record; 0:
    none, every label known) are 0; calls `fail` on a mask of the wrong length or values."""
    num_records, num_labels = multi_hot.shape
    wrong = (lengths != 0) & (lengths != num_labels)
    if wrong.any():
        fail(
            wrong,
            f"`{LABEL_MASK}` has {lengths[wrong][0]} values but there are {num_labels} label names; give one 0/1 "
            "value per label (1 = known), or fix --label_names / labels.txt.",
        )
    if not np.isin(mask, (0, 1)).all():
        records = np.repeat(np.arange(num_records), lengths)
        fail(
            np.isin(np.arange(num_records), records[~np.isin(mask, (0, 1))]), f"`{LABEL_MASK}` must hold only 0 and 1."
        )
    masked = lengths == num_labels
    known = np.ones_like(multi_hot, dtype=bool)
    if masked.any():
        known[masked] = mask.reshape(-1, num_labels) == 1
    return np.where(known, multi_hot, -1)


def _check_finite(path: str, first: int, lengths, non_finite: np.ndarray) -> None:
    """Raises UserError naming the record and position of the first inf or nan among the `features`."""
    if not non_finite.any():
        return
    value = int(np.flatnonzero(non_finite)[0])
    starts = np.concatenate([[0], np.cumsum(lengths[FEATURES])])
    record = int(np.searchsorted(starts, value, side="right")) - 1
    raise UserError(
        f"{path} record {first + record}: `{FEATURES}` value {value - starts[record]} is not finite (inf or nan); "
        "features must be finite: fix or drop the record."
    )


def decode_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded bytes -> float32 [image_size, image_size, 3] in [0, 1]; also used by the export."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.image.resize(tf.cast(image, tf.float32) / 255.0, [image_size, image_size])


def read(
    files: Sequence[str],
    layout: Layout,
    num_labels: int,
    image_size: int,
    batch_size: int,
    record_shard: Tuple[int, int] = (1, 0),
    in_order: bool = True,
) -> tf.data.Dataset:
    """Batches of (features, labels float32 [B, L]); features among text, features, image.

    In order (evaluation, prediction), the files take turns one record at a time, which restores
    the order `prepare` dealt the records out in. Otherwise (training, which shuffles anyway) they
    take turns a block of `batch_size` records at a time: the interleave then handles a block, not
    a record, at a time, which streams about 1.4x the records/s. `record_shard` (count, index)
    keeps units (records, or blocks) index, index + count, ... of the interleaved stream,
    dropping the others before they are parsed (or their images decoded).
    """
    spec = {}
    if layout.text:
        spec[TEXT] = tf.io.FixedLenFeature([], tf.string, default_value="")
    if layout.image:
        spec[IMAGE] = tf.io.FixedLenFeature([], tf.string)
    if layout.num_features:
        spec[FEATURES] = tf.io.FixedLenFeature([layout.num_features], tf.float32)
    if layout.label_key == LABEL_IDS:
        spec[LABEL_IDS] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)  # What bincount takes.
    elif layout.label_key == LABELS:
        spec[LABELS] = tf.io.FixedLenFeature([num_labels], layout.labels_dtype)
    if layout.label_key:  # Absent: every label known.
        spec[LABEL_MASK] = tf.io.FixedLenFeature([num_labels], layout.mask_dtype, default_value=[1] * num_labels)
    image_spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        features = {key: parsed[key] for key in (TEXT, FEATURES) if key in parsed}
        if layout.image:
            features[IMAGE] = tf.map_fn(
                lambda e: decode_image(e, image_size), parsed[IMAGE], fn_output_signature=image_spec
            )
        if layout.label_key == LABEL_IDS:
            labels = tf.math.bincount(
                parsed[LABEL_IDS],
                minlength=num_labels,
                maxlength=num_labels,
                binary_output=True,
                axis=-1,
                dtype=tf.float32,
            )
        elif layout.label_key == LABELS:
            labels = tf.cast(parsed[LABELS], tf.float32)
        else:
            labels = tf.zeros([tf.shape(serialized)[0], num_labels])
        if layout.label_key:
            labels = tf.where(parsed[LABEL_MASK] == 1, labels, -1.0)  # -1: unknown.
        return features, labels

    def open_file(path):
        file_records = tf.data.TFRecordDataset(path)
        return file_records if in_order else file_records.batch(batch_size)

    units = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        open_file,
        cycle_length=min(len(files), _MAX_INTERLEAVE),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE if len(files) > 1 else None,
    )
    if record_shard[0] > 1:
        units = units.shard(*record_shard)
    batches = units.batch(batch_size) if in_order else units
    return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class Reader:
    """TFRecord `files` with their layout and label names (a data.sources reader)."""

    files: Tuple[str, ...]
    layout: Layout
    label_names: List[str]
    image_size: int

    def check(self) -> Stats:
        return check(self.files, self.layout, len(self.label_names))

    def _feature_bytes(self) -> int:
        """Bytes of one parsed record's fixed-size features: float32 features and the decoded image."""
        return 4 * self.layout.num_features + (4 * 3 * self.image_size**2 if self.layout.image else 0)

    def read(
        self, files: Sequence[str], record_shard: Tuple[int, int], in_order: bool, text_bytes: int = 0
    ) -> tf.data.Dataset:
        return read(
            files,
            self.layout,
            len(self.label_names),
            self.image_size,
            parse_batch(len(self.label_names), self._feature_bytes() + text_bytes),
            record_shard,
            in_order,
        )


def open_reader(config: DataConfig, flag: str, files: List[str], allow_unlabelled: bool) -> Reader:
    """Reads the layout of TFRecord `files` (their first record) and finds their label names."""
    layout = inspect(files)
    if layout is None:
        raise UserError(f"{flag}: {files[0]}{' ...' if len(files) > 1 else ''} hold no records; point it at data.")
    label_names = find_names(config.label_names, files)
    if label_names is None:
        raise UserError(
            f"{flag}: TFRecord data needs label names: pass --label_names=FILE, or put a labels.txt beside the "
            "files (python -m trainer.prepare writes one)."
        )
    if not layout.label_key:
        require_labels(flag, allow_unlabelled, f"records in {files[0]} have neither `label_ids` nor `labels`")
    return Reader(tuple(files), layout, label_names, config.image_size)
