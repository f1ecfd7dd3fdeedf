"""Exact scores as a source of `curves` groups: every example's logit and label, gathered from the
devices when an eval split fits --exact_metrics_budget.

A group is one distinct score, so ties are grouped exactly as scikit-learn groups them and AP /
ROC-AUC equal `average_precision_score` / `roc_auc_score`. Labels are grouped in chunks of about
SORT_CHUNK_ENTRIES scores, so the host never holds more than one chunk's sorted copy.
"""

from typing import Sequence

import numpy as np

from trainer.metrics.curves import Groups, between, sigmoid

SORT_CHUNK_ENTRIES = 1 << 22  # Examples x labels sorted at once (about 100 MB of work arrays).

# Sort keys (see `descending_keys`): every real score's key is below these two.
NAN_KEY = np.uint32(0xFFFFFFFE)  # NaN scores rank below -inf and tie with each other.
UNKNOWN_KEY = np.uint32(0xFFFFFFFF)  # Unknown entries sort after every known one of their label.


def descending_keys(scores: np.ndarray) -> np.ndarray:
    """uint32 keys whose ascending order is the descending order of the float32 `scores`; equal
    scores (0.0 and -0.0 too) have equal keys. An integer sort of these is several times faster
    than a float argsort, and the keys of several labels can share one sorted array."""
    scores = np.asarray(scores, np.float32) + np.float32(0.0)  # -0.0 + 0.0 is 0.0.
    bits = scores.view(np.uint32)
    # The IEEE bits in the order of the values: positives above negatives, negatives reversed.
    ascending = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
    return np.where(np.isnan(scores), NAN_KEY, ~ascending)


def scores_of(keys: np.ndarray) -> np.ndarray:
    """The float32 scores of `descending_keys` (0.0 for -0.0, a NaN for NAN_KEY)."""
    ascending = ~np.asarray(keys, np.uint32)
    return np.where(ascending >> 31 == 1, ascending & np.uint32(0x7FFFFFFF), ~ascending).view(np.float32)


class ExactScores:
    """Every example's logits [N, L] (float32) and labels [N, L] (bool, or 1/0/-1 where -1 is
    unknown: such an entry is left out of its label's groups)."""

    exact = True

    def __init__(self, logits: np.ndarray, labels: np.ndarray):
        self.logits = np.asarray(logits, np.float32)
        # Kept as given (int8 from the evaluation): a bool copy of each of `labels > 0` and
        # `labels >= 0` would cost 2 x examples x labels bytes; they are taken per chunk instead.
        self.labels = np.asarray(labels)
        self.num_labels = self.logits.shape[1]
        rows_at_once = max(1, SORT_CHUNK_ENTRIES // max(self.num_labels, 1))
        self._positives = np.zeros(self.num_labels, np.int64)
        for start in range(0, len(self.labels), rows_at_once):
            self._positives += np.count_nonzero(self.labels[start : start + rows_at_once] > 0, axis=0)

    def chunk_size(self) -> int:
        return max(1, SORT_CHUNK_ENTRIES // max(len(self.logits), 1))

    def positives_per_label(self) -> np.ndarray:
        return self._positives

    def pooled(self, indices: Sequence[int]):
        """The labels `indices` as one label (their scores side by side, unknown entries still
        unknown); None when that is more than a sort chunk (those labels then keep thresholds of
        their own)."""
        if len(self.logits) * len(indices) > SORT_CHUNK_ENTRIES:
            return None
        return ExactScores(self.logits[:, indices].reshape(-1, 1), self.labels[:, indices].reshape(-1, 1))

    def groups(self, indices: Sequence[int], by_probability: bool = False) -> Groups:
        """The groups of distinct scores of the labels `indices`: distinct logits, or with
        `by_probability` distinct float32 probabilities (what a threshold can tell apart)."""
        logits = self.logits[:, indices].T  # [C, N]
        if by_probability:
            logits = sigmoid(logits).astype(np.float32)
        labels = self.labels[:, indices].T
        # One integer sort of (score key, positive) per label: the highest score first, unknown
        # entries last (dropped). Faster than a float argsort and three gathers by it.
        keys = (descending_keys(logits).astype(np.uint64) << np.uint64(1)) | (labels > 0)
        keys[labels < 0] = np.uint64(UNKNOWN_KEY) << np.uint64(1)
        keys.sort(axis=1)
        known_per_label = np.count_nonzero(labels >= 0, axis=1)
        keys = keys[np.arange(keys.shape[1]) < known_per_label[:, None]]  # Label-major, known only.
        score_keys, is_positive = keys >> np.uint64(1), keys & np.uint64(1)
        label_of = np.repeat(np.arange(len(logits)), known_per_label)
        starts = np.ones(len(keys), bool)
        starts[1:] = (score_keys[1:] != score_keys[:-1]) | (label_of[1:] != label_of[:-1])
        group_ids = np.cumsum(starts) - 1
        num_groups = int(group_ids[-1]) + 1 if group_ids.size else 0
        positives = np.bincount(group_ids, weights=is_positive, minlength=num_groups)
        negatives = np.bincount(group_ids, minlength=num_groups) - positives
        groups_per_label = np.bincount(label_of[starts], minlength=len(logits))
        offsets = np.concatenate([[0], np.cumsum(groups_per_label)]).astype(np.int64)
        group_scores = scores_of(score_keys[starts].astype(np.uint32))
        lower = np.append(group_scores[1:], -np.inf).astype(np.float32)
        lower[offsets[1:] - 1] = -np.inf
        cuts = between(group_scores, lower) if by_probability else sigmoid(between(group_scores, lower))
        return Groups(offsets, group_scores.astype(np.float64), np.asarray(cuts, np.float64), positives, negatives)

    def curve_groups(self, indices: Sequence[int]) -> Groups:
        """The groups of the labels `indices` as AP and ROC-AUC need them, far fewer than `groups`
        gives: each distinct score that has a positive, and before it, as one group, the negatives
        between it and the next higher such score (a last group holds the negatives below the
        lowest). A group without positives adds 0 to both sums and its negatives count only in the
        groups below it, so merging a run of them changes no figure, to the last bit.
        `scores` and `cuts` are NaN: these groups are not thresholds (`groups` has those).

        Instead of sorting each label's scores with their labels, it sorts integer keys (fast) and
        counts, for each positive score, the known scores at or above it and equal to it.
        """
        logits = self.logits[:, indices].T  # [C, N]
        labels = self.labels[:, indices].T
        num_labels, num_examples = logits.shape
        is_positive = labels > 0
        keys = descending_keys(logits)
        keys[labels < 0] = UNKNOWN_KEY
        # One sorted array of (label, key) pairs, label-major: label c owns c*N .. (c+1)*N - 1.
        label_high = np.arange(num_labels, dtype=np.uint64)[:, None] << np.uint64(32)
        positive_keys = np.sort((keys | label_high)[is_positive])
        keys.sort(axis=1)
        all_keys = (keys | label_high).ravel()
        # Groups with positives: their label, size, positives at or above them (TP), and the known
        # scores at or above them and equal to them.
        starts = np.flatnonzero(np.r_[True, positive_keys[1:] != positive_keys[:-1]])
        ends = np.r_[starts[1:], len(positive_keys)]
        group_keys = positive_keys[starts]
        label_of = (group_keys >> np.uint64(32)).astype(np.int64)
        label_start = np.searchsorted(positive_keys, group_keys & ~np.uint64(0xFFFFFFFF))
        positives = (ends - starts).astype(np.float64)
        true_positives = (ends - label_start).astype(np.float64)
        at_or_above = np.searchsorted(all_keys, group_keys, side="right")
        equal = at_or_above - np.searchsorted(all_keys, group_keys, side="left")
        false_positives = (at_or_above - label_of * num_examples) - true_positives
        negatives = equal - positives
        # Label c's groups: a run of negatives and a group with positives, per such group, then the
        # negatives below the lowest one.
        groups_per_label = np.bincount(label_of, minlength=num_labels)
        offsets = 2 * np.r_[0, np.cumsum(groups_per_label)] + np.arange(num_labels + 1)
        first_of_label = np.r_[True, label_of[1:] != label_of[:-1]]
        above = np.where(first_of_label, 0.0, np.r_[0.0, false_positives[:-1]])
        at = 2 * np.arange(len(starts)) + label_of + 1  # Where each group with positives goes.
        group_positives, group_negatives = np.zeros(offsets[-1]), np.zeros(offsets[-1])
        group_positives[at], group_negatives[at] = positives, negatives
        group_negatives[at - 1] = false_positives - negatives - above
        last_of_label = np.r_[label_of[1:] != label_of[:-1], True]
        above_last = np.zeros(num_labels)
        above_last[label_of[last_of_label]] = false_positives[last_of_label]
        group_negatives[offsets[1:] - 1] = np.count_nonzero(labels == 0, axis=1) - above_last
        nan = np.full(offsets[-1], np.nan)
        return Groups(offsets.astype(np.int64), nan, nan, group_positives, group_negatives)
