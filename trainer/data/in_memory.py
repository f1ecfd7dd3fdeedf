"""Keeping a split in memory: whether it fits the budget, and loading it once into arrays.

A split whose arrays fit --in_memory_budget_mb (and the memory the machine has free) is parsed
once, through the reader's own vectorised tf.data parse (text already tokenised), into NumPy
arrays; data.train_batches then gathers shuffled batches from them, with no per-epoch parsing,
and the iterator's saved state is the epoch and the rest of its permutation of indices. A split
that does not fit is streamed.
The decision uses the checking pass's count and the parsed shapes, before anything is loaded,
so a budget too small for the split costs one log line, never an out-of-memory crash.
"""

import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer.data.sparse_labels import SparseLabels
from trainer.errors import UserError

MB = 2**20
# TensorFlow holds copies of the arrays beside NumPy's (the examples dataset, the training
# stream's constants, and its dense labels, no larger than the features: dense_labels); the
# machine's free memory must hold them all.
COPIES = 4


def example_bytes(element_spec) -> Optional[int]:
    """Bytes one unbatched example (any structure of tensors) takes as arrays; None when a shape is not fixed."""
    total = 0
    for spec in tf.nest.flatten(element_spec):
        if not spec.shape.is_fully_defined() or spec.dtype == tf.string:
            return None
        total += spec.shape.num_elements() * spec.dtype.size
    return total


def available_bytes() -> Optional[int]:
    """Memory the machine has free now (Linux), or None where it cannot be read."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def dense_labels(num_examples: int, num_labels: int, feature_bytes: int) -> bool:
    """Whether the training stream holds a split's labels as dense int8 rows: when they take no
    more memory than its features (a byte a label against 4 a feature value; 100,000 labels stay
    sparse). A batch's labels are then one gather, where sparse rows cost a ragged gather and a
    scatter per batch: 10% of an MLP step on CPU (bench/vs_keras_fit.py)."""
    return num_examples * num_labels <= feature_bytes


def fits(flag: str, num_examples: int, features_spec, label_entries: int, budget_mb: int) -> bool:
    """Whether a split of `num_examples` examples of `features_spec` with `label_entries` non-zero
    label entries (positives and unknowns) goes in memory; logs which path it takes and why."""
    if budget_mb <= 0:
        logging.info("%s: streamed from the files (--in_memory_budget_mb=%d).", flag, budget_mb)
        return False
    per_example = example_bytes(features_spec)
    if per_example is None:
        logging.info("%s: streamed from the files (its examples have no fixed shape).", flag)
        return False
    # Labels are kept sparse: a row offset per example, an id and a value per entry.
    size = num_examples * (per_example + 8) + label_entries * 5
    if size > budget_mb * MB:
        logging.info(
            "%s: streamed from the files: its arrays would take %.1f MB, more than --in_memory_budget_mb=%d "
            "(raise it to keep the split in memory).",
            flag,
            size / MB,
            budget_mb,
        )
        return False
    free = available_bytes()
    if free is not None and COPIES * size > free:
        logging.info(
            "%s: streamed from the files: its arrays (%.1f MB, held %d times) would not fit the %.0f MB of free "
            "memory.",
            flag,
            size / MB,
            COPIES,
            free / MB,
        )
        return False
    logging.info(
        "%s: in memory (%.1f MB of arrays, within --in_memory_budget_mb=%d): parsed once, batches gathered "
        "from the arrays.",
        flag,
        size / MB,
        budget_mb,
    )
    return True


def load(flag: str, batches: tf.data.Dataset, num_examples: int) -> Tuple[Dict[str, np.ndarray], SparseLabels]:
    """The (features, labels) arrays of parsed `batches` ((features dict, labels) [B, ...] each),
    which the checking pass counted `num_examples` of; features are filled in place, so memory
    peaks at one copy, and labels kept sparse batch by batch."""
    features_spec, labels_spec = batches.element_spec
    features = {
        name: np.empty((num_examples, *spec.shape[1:]), spec.dtype.as_numpy_dtype)
        for name, spec in features_spec.items()
    }
    labels = []
    filled = 0
    for batch_features, batch_labels in batches.prefetch(tf.data.AUTOTUNE):
        size = int(batch_labels.shape[0])
        if filled + size > num_examples:
            break
        labels.append(SparseLabels.from_dense(batch_labels.numpy()))
        for name, values in batch_features.items():
            features[name][filled : filled + size] = values.numpy()
        filled += size
    else:
        if filled == num_examples:
            return features, SparseLabels.concatenate(labels, labels_spec.shape[1])
    raise UserError(
        f"{flag}: the files changed while being read (the checking pass counted {num_examples} examples, the "
        "loading pass found a different number); leave them unchanged during the run."
    )
