"""The labels of an in-memory split, kept as their non-zero entries, so that memory grows with the
labels that occur rather than with examples x labels.

A split of 20,000 examples and 100,000 labels holds 2 * 10^9 label entries: 8 GB as float32, while
its examples carry a few labels each (86,000 entries in all). `SparseLabels` keeps each row's
non-zero entries (CSR: `row_splits`, `ids`, `values`), values 1 (on) or -1 (unknown); every other
entry is 0 (off). The examples dataset turns the rows it takes into dense float32 rows in the
tf.data pipeline, an example at a time; so does the training stream, a batch at a time, unless
the split's labels are small enough to hold dense (data.in_memory.DENSE_LABEL_BYTES).
"""

import dataclasses
from typing import Tuple, Union

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class SparseLabels:
    row_splits: np.ndarray  # int64 [n + 1]: row i owns entries row_splits[i]:row_splits[i + 1].
    ids: np.ndarray  # int32 [entries]: label ids, increasing within a row.
    values: np.ndarray  # int8 [entries]: 1 (on) or -1 (unknown).
    num_labels: int

    @classmethod
    def from_dense(cls, labels: np.ndarray) -> "SparseLabels":
        """From dense labels [n, num_labels] (1 on, 0 off, -1 unknown)."""
        labels = np.asarray(labels)
        rows, ids = np.nonzero(labels)
        row_splits = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(labels)))]).astype(np.int64)
        return cls(row_splits, ids.astype(np.int32), np.sign(labels[rows, ids]).astype(np.int8), labels.shape[1])

    @classmethod
    def concatenate(cls, parts, num_labels: int) -> "SparseLabels":
        """The rows of `parts` (SparseLabels) one after another."""
        parts = list(parts)
        ends = np.cumsum([0] + [p.row_splits[-1] for p in parts])
        splits = [np.zeros(1, np.int64)] + [p.row_splits[1:] + end for p, end in zip(parts, ends)]
        return cls(
            np.concatenate(splits),
            np.concatenate([np.zeros(0, np.int32)] + [p.ids for p in parts]),
            np.concatenate([np.zeros(0, np.int8)] + [p.values for p in parts]),
            num_labels,
        )

    def __len__(self) -> int:
        return len(self.row_splits) - 1

    @property
    def shape(self) -> Tuple[int, int]:
        return len(self), self.num_labels

    @property
    def nbytes(self) -> int:
        return self.row_splits.nbytes + self.ids.nbytes + self.values.nbytes

    def __getitem__(self, rows: Union[np.ndarray, slice]) -> "SparseLabels":
        """The rows selected by a boolean mask, an index array or a slice, in that order."""
        rows = np.arange(len(self))[rows]
        starts, ends = self.row_splits[rows], self.row_splits[rows + 1]
        lengths = ends - starts
        entries = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return SparseLabels(row_splits, self.ids[entries], self.values[entries], self.num_labels)

    def dense(self, dtype=np.float32) -> np.ndarray:
        """[n, num_labels] of `dtype`: for small splits and tests."""
        labels = np.zeros(self.shape, dtype)
        rows = np.repeat(np.arange(len(self)), np.diff(self.row_splits))
        labels[rows, self.ids] = self.values
        return labels

    def positives_per_label(self) -> np.ndarray:
        return np.bincount(self.ids[self.values > 0], minlength=self.num_labels).astype(np.int64)

    def unknown_per_label(self) -> np.ndarray:
        return np.bincount(self.ids[self.values < 0], minlength=self.num_labels).astype(np.int64)

    def ragged(self) -> Tuple[tf.RaggedTensor, tf.RaggedTensor]:
        """(ids, values) as ragged tensors [n, None], for the tf.data pipelines."""
        return (
            tf.RaggedTensor.from_row_splits(tf.constant(self.ids, tf.int64), self.row_splits, validate=False),
            tf.RaggedTensor.from_row_splits(tf.constant(self.values, tf.float32), self.row_splits, validate=False),
        )


def dense_rows(ids: tf.RaggedTensor, values: tf.RaggedTensor, num_labels: int) -> tf.Tensor:
    """Ragged rows (ids, values) [B, None] -> dense float32 labels [B, num_labels]."""
    rows = ids.value_rowids()
    indices = tf.stack([rows, ids.flat_values], axis=1)
    return tf.scatter_nd(indices, values.flat_values, tf.stack([ids.nrows(), num_labels]))


def dense_row(ids: tf.Tensor, values: tf.Tensor, num_labels: int) -> tf.Tensor:
    """One row's ids and values [k] -> dense float32 labels [num_labels]."""
    return tf.scatter_nd(ids[:, None], values, tf.constant([num_labels], tf.int64))
