"""The one Split type: a split's examples and what a model must know of them (InputSpec).

A split is in memory (`arrays`, e.g. the synthetic problem) or streamed from a reader
(`files` and `read_part`). `input_spec.json` in the model dir keeps the InputSpec, so that an
export can rebuild the model without any data.
"""

import dataclasses
import json
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from trainer import paths
from trainer.data.sparse_labels import SparseLabels, dense_row
from trainer.errors import UserError

# Records a reader parses at once (vectorised), before the examples are unbatched. Text streams 12%
# faster parsed and tokenised 4,096 at a time than 1,024 (docs/benchmarks.md#input-throughput).
PARSE_BATCH = 4096
PARSE_BATCH_BYTES = 64 << 20  # A parsed batch's dense labels, features and texts: at most 64 MB.


def parse_batch(num_labels: int, example_bytes: int = 0) -> int:
    """Records a reader parses at once: PARSE_BATCH, fewer where a parsed batch would pass
    PARSE_BATCH_BYTES. A parsed record's labels are dense until the examples are batched or kept
    sparse in memory (400 KB at 100,000 labels); `example_bytes` counts its features (a decoded
    224 x 224 image is 600 KB) and text (long documents)."""
    return max(16, min(PARSE_BATCH, PARSE_BATCH_BYTES // max(4 * num_labels + example_bytes, 1)))


@dataclasses.dataclass(frozen=True)
class Part:
    """One input pipeline's share of a split: files `index`, `index + count`, ... when `by_file`,
    else records `index`, `index + count`, ... of the whole stream."""

    count: int
    index: int
    by_file: bool


WHOLE = Part(count=1, index=0, by_file=False)  # Every record: the whole stream, for training.


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model must know about the data: named feature shapes, vocabulary size, labels."""

    feature_specs: Dict[str, tf.TensorSpec]
    label_names: List[str]
    vocab_size: int = 0  # For integer `tokens`: ids are in [0, vocab_size), 0 is padding.
    vocabulary: Tuple[str, ...] = ()  # Term of each token id, for text sources (data.text); else ().
    # The header names of the numeric columns in `features`, in order (delimited files); else ().
    feature_names: Tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's examples, in memory or streamed."""

    # Unbatched (features dict, labels float32 [num_labels]: 1 on, 0 off, -1 unknown).
    examples: tf.data.Dataset
    spec: InputSpec
    num_examples: int  # -1 when unknown (streamed).
    label_counts: np.ndarray  # Positives per label.
    arrays: Optional[Tuple[Dict[str, np.ndarray], SparseLabels]] = None  # (features, labels) when in memory.
    files: Tuple[str, ...] = ()  # Streamed from files: their names, sorted.
    # Streamed: one Part's `examples` in batches as parsed (any size), in an order that may differ
    # from theirs where another is faster.
    read_part: Optional[Callable[[Part], tf.data.Dataset]] = None
    unknown_counts: Optional[np.ndarray] = None  # Unknown entries per label; None: none.
    file_examples: Tuple[int, ...] = ()  # Streamed from files: the examples in each of `files`, when counted.

    def positive_fraction(self) -> np.ndarray:
        """Per label, positives over the examples where it is known (what weighted_bce weights by)."""
        unknown = 0 if self.unknown_counts is None else self.unknown_counts
        return self.label_counts / np.maximum(self.num_examples - unknown, 1)


def from_arrays(
    features: Dict[str, np.ndarray],
    labels: Union[np.ndarray, SparseLabels],
    names: List[str],
    vocab_size: int = 0,
) -> Split:
    """An in-memory Split of `features` ({name: [n, ...]}) and `labels`: dense [n, num_labels] (1, 0,
    or -1: unknown), kept as SparseLabels, or SparseLabels already."""
    if not isinstance(labels, SparseLabels):
        labels = SparseLabels.from_dense(labels)
    specs = {k: tf.TensorSpec(v.shape[1:], tf.as_dtype(v.dtype), name=k) for k, v in features.items()}
    ids, values = labels.ragged()
    examples = tf.data.Dataset.from_tensor_slices((features, ids, values)).map(
        lambda example, ids, values: (example, dense_row(ids, values, labels.num_labels))
    )
    return Split(
        examples,
        InputSpec(specs, names, vocab_size),
        num_examples=len(labels),
        label_counts=labels.positives_per_label(),
        arrays=(features, labels),
        unknown_counts=labels.unknown_per_label(),
    )


def write_spec(model_dir: str, spec: InputSpec, train_split: Optional[Split] = None, cached: bool = False) -> str:
    """Saves what the model was built from, so export can rebuild it without any data, and the
    training split's positives per label and examples (when known), for the propensity-scored
    ranking figures of later eval-only runs, and how it was read (`cached`: --cache_train_data),
    which a resume must repeat (data.matching.check_resume)."""
    features = {name: {"shape": list(s.shape), "dtype": s.dtype.name} for name, s in spec.feature_specs.items()}
    saved = {"features": features, "label_names": spec.label_names, "vocab_size": spec.vocab_size}
    if spec.feature_names:
        saved.update(feature_columns=list(spec.feature_names))
    if train_split is not None and train_split.num_examples > 0:
        saved.update(
            train_label_counts=[int(c) for c in train_split.label_counts],
            num_train_examples=train_split.num_examples,
            # The checkpoint's position in the data is saved in the form these give it.
            train_in_memory=train_split.arrays is not None,
            train_cached=cached and train_split.arrays is None,  # --cache_train_data caches streamed splits only.
        )
        if train_split.unknown_counts is not None and train_split.unknown_counts.any():
            saved.update(train_unknown_counts=[int(c) for c in train_split.unknown_counts])
    return paths.atomic_write(paths.input_spec(model_dir), json.dumps(saved))


def read_train_label_counts(model_dir: str) -> Optional[Tuple[np.ndarray, int]]:
    """(positives per label, examples) of the training split, as saved with the spec; None if absent."""
    path = paths.input_spec(model_dir)
    if not tf.io.gfile.exists(path):
        return None
    saved = json.loads(paths.read_text(path))
    if not saved.get("train_label_counts"):
        return None
    return np.asarray(saved["train_label_counts"], np.int64), int(saved["num_train_examples"])


def read_positive_fraction(model_dir: str) -> Optional[np.ndarray]:
    """Per label, the training split's positives over its known entries, as `write_spec` saved them
    (Split.positive_fraction: what --loss=weighted_bce weights by); None if not saved."""
    counts = read_train_label_counts(model_dir)
    if counts is None:
        return None
    saved = json.loads(paths.read_text(paths.input_spec(model_dir)))
    unknown = np.asarray(saved.get("train_unknown_counts", 0), np.int64)
    return counts[0] / np.maximum(counts[1] - unknown, 1)


def read_spec(model_dir: str, vocabulary: Tuple[str, ...]) -> InputSpec:
    """The InputSpec `write_spec` saved in `model_dir`, with the run's `vocabulary`."""
    path = paths.input_spec(model_dir)
    if not tf.io.gfile.exists(path):
        raise UserError(f"{path} is missing: --model_dir holds no trained model; train first (--mode=train).")
    with tf.io.gfile.GFile(path) as f:
        saved = json.load(f)
    specs = {
        name: tf.TensorSpec(feature["shape"], tf.as_dtype(feature["dtype"]), name=name)
        for name, feature in saved["features"].items()
    }
    return InputSpec(
        specs, saved["label_names"], saved["vocab_size"], tuple(vocabulary), tuple(saved.get("feature_columns", ()))
    )
