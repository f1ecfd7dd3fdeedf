"""Score histograms: the fallback for AP, ROC-AUC and thresholds when an eval split's examples x
labels exceed --exact_metrics_budget.

The bins cover the whole real line, so saturated scores stay apart: half of a label's bins are
uniform on the logits [-16, 16] (probability 0.5, logit 0, is an edge), and a quarter on each
side are geometric (each bin a constant ratio wider than the last) out to +-1024, the last 8
out to the float32 range.
How many bins a label gets follows from the budget (`bins_per_label`), so memory stays within
it at any label count. Scores that share a bin count as tied; `curves.curve_figures` bounds the
error that causes, per label.
"""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from trainer.metrics.curves import Groups

CENTER_RANGE = 16.0  # Uniform bins on [-16, 16]: probabilities 1e-7 .. 1 - 1e-7.
FAR_RANGE = 1024.0  # Beyond +-1024 (where no trained model's logits go), a few very wide bins.
FAR_BINS = 8  # On each side.
MIN_BINS, MAX_BINS = 64, 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)


def bins_per_label(budget: int, num_labels: int, replicas_per_worker: int) -> int:
    """Bins per label (a multiple of 8, MIN_BINS..MAX_BINS) so that every local replica's positive
    and negative histograms together hold at most `budget` counts."""
    fitting = budget // max(2 * num_labels * replicas_per_worker, 1)
    return int(np.clip(fitting // 8 * 8, MIN_BINS, MAX_BINS))


def _layout(num_bins: int):
    """(bins on each side beyond 16, center bins, center bin width, log ratios of the near and far
    geometric bins)."""
    side = num_bins // 4
    center = num_bins - 2 * side
    near = side - FAR_BINS
    return (
        side,
        center,
        2 * CENTER_RANGE / center,
        np.log(FAR_RANGE / CENTER_RANGE) / near,
        np.log(FLOAT32_MAX / FAR_RANGE) / FAR_BINS,
    )


def edges(num_bins: int) -> np.ndarray:
    """The num_bins - 1 inner bin edges, float32, ascending: bin k holds edge[k-1] <= logit < edge[k]
    (bin 0 is open below, the last open above). Half the bins are uniform on [-16, 16]; a quarter on
    each side are geometric, all but FAR_BINS of them out to 1024, those out to the float32 range."""
    side, center, width, near_log, far_log = _layout(num_bins)
    near = CENTER_RANGE * np.exp(near_log * np.arange(1, side - FAR_BINS + 1))
    far = FAR_RANGE * np.exp(far_log * np.arange(1, FAR_BINS))
    outer = np.concatenate([near, far])  # side - 1 edges beyond 16.
    uniform = -CENTER_RANGE + width * np.arange(center + 1)
    return np.concatenate([-outer[::-1], uniform, outer]).astype(np.float32)


def lower_edges(num_bins: int) -> np.ndarray:
    """Each bin's lower edge as float64 (-inf for bin 0)."""
    return np.concatenate([[-np.inf], edges(num_bins).astype(np.float64)])


def bin_indices(logits, num_bins: int):
    """The bin of each logit (int32, same shape), exact against `edges` (float32 logits)."""
    side, center, width, near_log, far_log = _layout(num_bins)
    logits = tf.cast(logits, tf.float32)
    magnitude = tf.abs(logits)
    # How many outer bins lie between 16 and |logit| (0 inside [-16, 16]).
    outer = tf.where(
        magnitude < FAR_RANGE,
        tf.floor(tf.math.log(tf.maximum(magnitude / CENTER_RANGE, 1.0)) / near_log),
        side - FAR_BINS + tf.floor(tf.math.log(tf.maximum(magnitude / FAR_RANGE, 1.0)) / far_log),
    )
    guess = tf.where(
        logits >= CENTER_RANGE,
        side + center + outer,
        tf.where(logits < -CENTER_RANGE, side - 1 - outer, side + tf.floor((logits + CENTER_RANGE) / width)),
    )
    guess = tf.cast(tf.clip_by_value(tf.where(tf.math.is_nan(guess), 0.0, guess), 0, num_bins - 1), tf.int32)
    # The arithmetic above can miss by one at an edge (float rounding): compare with the edges.
    inner = tf.constant(edges(num_bins))
    below = tf.concat([[-np.inf], inner], axis=0)
    above = tf.concat([inner, [np.inf]], axis=0)
    guess = tf.where(logits < tf.gather(below, guess), guess - 1, guess)
    guess = tf.where(logits >= tf.gather(above, guess), guess + 1, guess)
    return tf.clip_by_value(guess, 0, num_bins - 1)  # +inf passes the last edge.


def shapes(num_labels: int, num_bins: int) -> Dict[str, tuple]:
    """`histograms` is flat, ordered label, then negatives/positives, then bin, so one scatter fills
    both halves and a label's updates stay close."""
    return {"histograms": (num_labels * 2 * num_bins,)}


def updates(labels, logits, mask, num_bins: int):
    """(indices, counts) adding each score of the batch to its bin of the flat `histograms`;
    padded rows, unknown labels (-1) and NaN scores add 0."""
    labels = tf.cast(labels, tf.float32)
    # Label-major order: consecutive updates land in the same label's bins (faster to scatter).
    logits = tf.transpose(tf.cast(logits, tf.float32))
    is_positive = tf.transpose(tf.cast(labels > 0, tf.int32))
    num_labels = tf.shape(logits)[0]
    indices = (tf.range(num_labels)[:, None] * 2 + is_positive) * num_bins + bin_indices(logits, num_bins)
    known = tf.transpose(tf.cast(labels >= 0, tf.int32))
    counts = tf.cast(mask, tf.int32)[None, :] * known * tf.cast(~tf.math.is_nan(logits), tf.int32)
    return tf.reshape(indices, [-1]), tf.reshape(counts, [-1])


def add_batch(histograms: tf.Variable, labels, logits, mask, num_bins: int) -> None:
    """Scatters one (replica's) batch into `histograms` (int32, shaped as `shapes`).

    Scattered straight into the variable: building the histograms dense per batch and adding them
    would move num_labels x 2 x num_bins counts per batch. Under a tf.distribute strategy `handle`
    is this replica's copy (sync-on-read variables have no scatter methods).
    """
    indices, counts = updates(labels, logits, mask, num_bins)
    tf.raw_ops.ResourceScatterAdd(resource=histograms.handle, indices=indices, updates=counts)


class Histograms:
    """Summed histograms as a source of `curves` groups: one group per non-empty bin."""

    exact = False

    def __init__(self, flat_histograms: np.ndarray, num_labels: int, num_bins: int):
        self.histograms = np.asarray(flat_histograms).reshape(num_labels, 2, num_bins)
        self.num_labels, self.num_bins = num_labels, num_bins
        self._lower_edges = lower_edges(num_bins)

    def chunk_size(self) -> int:
        return max(1, (1 << 22) // self.num_bins)

    def positives_per_label(self) -> np.ndarray:
        return self.histograms[:, 1].sum(axis=1)

    def pooled(self, indices: Sequence[int]) -> "Histograms":
        """The labels `indices` as one label: their histograms summed."""
        summed = self.histograms[np.asarray(indices)].sum(axis=0, keepdims=True)
        return Histograms(summed.reshape(-1), 1, self.num_bins)

    def groups(self, indices: Sequence[int], by_probability: bool = False) -> Groups:
        """One group per non-empty bin of the labels `indices`, highest first; a bin's scores are
        >= its lower edge, where its threshold is (`by_probability` changes nothing here)."""
        del by_probability
        chunk = self.histograms[np.asarray(indices)][:, :, ::-1].astype(np.float64)
        negatives, positives = chunk[:, 0], chunk[:, 1]
        occupied = (negatives + positives) > 0
        offsets = np.concatenate([[0], np.cumsum(occupied.sum(axis=1))]).astype(np.int64)
        scores = np.broadcast_to(self._lower_edges[::-1], occupied.shape)[occupied]
        cuts = np.maximum(np.float32(1.0) / (1.0 + np.exp(-scores.astype(np.float32))), 0.0)
        return Groups(offsets, scores, cuts.astype(np.float64), positives[occupied], negatives[occupied])

    def curve_groups(self, indices: Sequence[int]) -> Groups:
        """The groups AP and ROC-AUC are computed from: the same as `groups`."""
        return self.groups(indices)
