"""Example-wise ranking figures (the "ranking" block): per-batch sums on the devices, ratios on the host.

For an example with scores s over L labels, positives Y (|Y| = n), the top-k labels by score
(ties: lower label id first, as tf.math.top_k) and discount d_r = 1 / log2(r + 1):
  precision@k = |top-k & Y| / k
  ndcg@k      = sum_{r<=k, label r in Y} d_r / sum_{r<=min(k, n)} d_r
  (the extreme-classification definitions, as pyxclib: an example without positives scores 0).
With w_l the inverse propensity of label l (`propensity.py`), pyxclib's normalised forms are
  psprecision@k = sum_examples sum_{top-k & Y} w  /  sum_examples (the k largest w over Y)
  psndcg@k      = sum_examples wDCG@k / Z  /  sum_examples best wDCG@k / Z,  Z = sum_{r<=min(k,n)} d_r
and scikit-learn's, for each positive j with a_j = #labels scoring >= s_j, b_j = #positives scoring >= s_j:
  label_ranking_average_precision = mean_j b_j / a_j   (1 when n = 0 or n = L)
  coverage_error                  = max_j a_j          (0 when n = 0)
  ranking_loss                    = sum_j (a_j - b_j) / (n (L - n))   (0 when n = 0 or n = L)
each averaged over the examples. Every figure is a sum over examples, so replicas, workers and
batches add exactly; padded rows are masked out.

Unknown labels (value -1, partially labelled data) are left out of an example's ranking: L is the
number of its known labels, and unknown ones rank below all of them (a top-k reaching past the
known labels counts misses). Examples without a known label are left out, and the figures are
averaged over the others (`labelled_examples`).
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

KS = (1, 3, 5)
SKLEARN_NAMES = ("label_ranking_average_precision", "coverage_error", "ranking_loss")
NAMES = tuple(f"{kind}@{k}" for kind in ("precision", "ndcg", "psprecision", "psndcg") for k in KS) + SKLEARN_NAMES
# Per-example sums (divided by the number of examples) and the ps pairs (a ratio of two sums).
SUM_NAMES = (
    tuple(f"{kind}@{k}" for kind in ("precision", "ndcg") for k in KS)
    + tuple(f"{kind}@{k}/{part}" for kind in ("psprecision", "psndcg") for k in KS for part in ("found", "best"))
    + SKLEARN_NAMES
)


def shapes() -> Dict[str, tuple]:
    """The shape of each sum `batch_sums` returns: all scalars."""
    return {f"ranking/{name}": () for name in SUM_NAMES}


def _discounts(k: int) -> tf.Tensor:
    return 1.0 / (tf.math.log(tf.range(2, k + 2, dtype=tf.float32)) / np.log(2.0))


def _top_k_sums(labels, logits, mask, inv_propensity, positive_weights) -> Dict[str, tf.Tensor]:
    """`positive_weights` [B, W]: the inverse propensities of each example's positives, 0 elsewhere
    (`labels * inv_propensity`, or only at the positives: far fewer to take the top k of)."""
    num_labels = labels.shape[-1]
    k_max = min(max(KS), num_labels)
    _, top = tf.math.top_k(logits, k_max)
    hits = tf.gather(labels, top, batch_dims=1)  # [B, k]
    weighted_hits = hits * tf.gather(inv_propensity, top)
    positive_weights = tf.pad(positive_weights, [[0, 0], [0, tf.maximum(k_max - tf.shape(positive_weights)[1], 0)]])
    best_weighted, _ = tf.math.top_k(positive_weights, k_max)
    discounts = _discounts(k_max)
    num_positives = tf.reduce_sum(labels, axis=1)
    ideal = tf.cumsum(discounts)  # Z for 1, 2, ... k_max positives.
    sums = {}
    for k in KS:
        kk = min(k, k_max)
        # Examples without positives have DCG 0; any Z > 0 keeps them at 0.
        z = tf.gather(ideal, tf.clip_by_value(tf.cast(tf.minimum(num_positives, kk), tf.int32) - 1, 0, kk - 1))
        per_example = {
            f"precision@{k}": tf.reduce_sum(hits[:, :kk], axis=1) / k,
            f"ndcg@{k}": tf.reduce_sum(hits[:, :kk] * discounts[:kk], axis=1) / z,
            f"psprecision@{k}/found": tf.reduce_sum(weighted_hits[:, :kk], axis=1),
            f"psprecision@{k}/best": tf.reduce_sum(best_weighted[:, :kk], axis=1),
            f"psndcg@{k}/found": tf.reduce_sum(weighted_hits[:, :kk] * discounts[:kk], axis=1) / z,
            f"psndcg@{k}/best": tf.reduce_sum(best_weighted[:, :kk] * discounts[:kk], axis=1) / z,
        }
        sums.update({name: tf.reduce_sum(value * mask) for name, value in per_example.items()})
    return sums


def _sklearn_figures(is_positive, at_least, positives_at_least, num_positives, num_known, mask):
    """The three sums from a_j (`at_least`) and b_j (`positives_at_least`) at the positions where
    `is_positive` is 1 (other positions are ignored)."""
    num_negatives = num_known - num_positives  # Per example: its known labels only.
    ranked_well = num_positives * num_negatives > 0
    lrap = tf.reduce_sum(is_positive * positives_at_least / tf.maximum(at_least, 1.0), axis=1)
    lrap = tf.where(ranked_well, lrap / tf.maximum(num_positives, 1.0), 1.0)
    coverage = tf.reduce_max(is_positive * at_least, axis=1)
    misordered = tf.reduce_sum(is_positive * (at_least - positives_at_least), axis=1)
    loss = tf.where(ranked_well, misordered / tf.maximum(num_positives * num_negatives, 1.0), 0.0)
    return {
        "label_ranking_average_precision": tf.reduce_sum(lrap * mask),
        "coverage_error": tf.reduce_sum(coverage * mask),
        "ranking_loss": tf.reduce_sum(loss * mask),
    }


def _sklearn_sums_sorted(labels, logits, mask, num_known) -> Dict[str, tf.Tensor]:
    """LRAP, coverage error and ranking loss from one sort per example, all static shapes (for XLA:
    TPUs). a_j and b_j count every label / positive up to the end of j's group of equal scores."""
    batch_size, num_labels = tf.shape(logits)[0], labels.shape[-1]
    order = tf.argsort(logits, axis=1, direction="DESCENDING", stable=True)
    scores = tf.gather(logits, order, batch_dims=1)
    is_positive = tf.gather(labels, order, batch_dims=1)
    starts = tf.concat([tf.ones_like(scores[:, :1]), tf.cast(scores[:, 1:] != scores[:, :-1], tf.float32)], axis=1)
    group = tf.cast(tf.cumsum(starts, axis=1), tf.int32) - 1
    flat = group + tf.range(batch_size)[:, None] * num_labels
    segments = batch_size * num_labels
    group_size = tf.reshape(tf.math.unsorted_segment_sum(tf.ones_like(scores), flat, segments), [-1, num_labels])
    group_positives = tf.reshape(tf.math.unsorted_segment_sum(is_positive, flat, segments), [-1, num_labels])
    at_least = tf.gather(tf.cumsum(group_size, axis=1), group, batch_dims=1)
    positives_at_least = tf.gather(tf.cumsum(group_positives, axis=1), group, batch_dims=1)
    num_positives = tf.reduce_sum(labels, axis=1)
    return _sklearn_figures(is_positive, at_least, positives_at_least, num_positives, num_known, mask)


SEARCH_MAX_POSITIVES = 1024  # Beyond this many positives in an example, sorting its scores is cheaper.
SEARCH_BLOCK = 32  # Positive scores searched at once (see `_buckets`).


@tf.function(jit_compile=True)
def _search(ascending, scores):
    """tf.searchsorted(ascending, scores, side="right"), compiled: XLA's search (a vectorised
    count) is about 20x faster on CPU than TF's kernel for a short `ascending`."""
    return tf.searchsorted(ascending, scores, side="right")


def _buckets(ascending, scores):
    """[B, L] int32: how many of each example's `ascending` values [B, K] are <= each of its scores.
    The values are searched SEARCH_BLOCK at a time: beyond 32, XLA's CPU code for the count slows
    down tenfold (measured at K = 64)."""
    total = tf.zeros(tf.shape(scores), tf.int32)
    for start in tf.range(0, tf.shape(ascending)[1], SEARCH_BLOCK):
        total += _search(ascending[:, start : start + SEARCH_BLOCK], scores)
    return total


def _padded(k, num_labels: int):
    """`k` rounded up to a power of two up to SEARCH_BLOCK, to a multiple of it beyond (at most
    `num_labels`), so the compiled search meets few shapes: blocks of 1, 2, 4, ... SEARCH_BLOCK.
    Not to a power of two beyond: b_j compares B x K x K pairs."""
    power = tf.cast(2.0 ** tf.math.ceil(tf.math.log(tf.cast(k, tf.float64)) / np.log(2.0)), tf.int32)
    power = tf.where(power < k, 2 * power, power)  # In case the log rounds down.
    blocks = (k + SEARCH_BLOCK - 1) // SEARCH_BLOCK * SEARCH_BLOCK
    return tf.minimum(tf.where(k <= SEARCH_BLOCK, power, blocks), num_labels)


def _positives(labels, k):
    """(positions, is_positive), each [B, k]: each example's positive labels, lowest id first, then
    label 0 as padding (is_positive 0), as top_k(labels, k) orders them but a scatter of
    tf.where's coordinates (3x faster at 100,000 labels)."""
    where = tf.where(labels > 0)  # [P, 2]: (example, label), example-major.
    examples = where[:, 0]
    first = tf.cumsum(tf.math.count_nonzero(labels > 0, axis=1), exclusive=True)  # Each example's, in `where`.
    index = tf.stack([examples, tf.range(tf.shape(where, tf.int64)[0]) - tf.gather(first, examples)], axis=1)
    shape = tf.stack([tf.shape(labels, tf.int64)[0], tf.cast(k, tf.int64)])
    positions = tf.scatter_nd(index, tf.cast(where[:, 1], tf.int32), shape)
    return positions, tf.scatter_nd(index, tf.ones_like(examples, tf.float32), shape)


def _sklearn_sums_at_positives(labels, logits, mask, num_known, positions, is_positive) -> Dict[str, tf.Tensor]:
    """The same sums, working only at each example's positives `positions` / `is_positive` [B, K]
    (`_positives`; K, the most positives an example of the batch has, padded by `_padded`).
    Dynamic shapes: CPU/GPU, not XLA, but for the search inside, compiled once per shape.

    a_j counts the scores in each bucket between two positive scores (each score counted against
    the K positive scores, B x L x K) and sums the buckets at or above each positive; beyond
    SEARCH_MAX_POSITIVES it searches the positives in the sorted scores instead. b_j compares the
    positives among themselves (B x K x K). Far cheaper than a sort per example when examples
    have few positives, as multi-label data does.
    """
    num_labels = labels.shape[-1]
    num_positives = tf.reduce_sum(labels, axis=1)
    k = tf.shape(positions)[1]
    positive_scores = tf.gather(logits, positions, batch_dims=1)

    def by_buckets():
        # Bucket i holds the scores at or above exactly i of the (ascending) positive scores, so
        # the scores >= the i-th lowest positive are those of buckets i + 1 .. K (equal positive
        # scores leave the buckets between them empty).
        ascending = tf.sort(positive_scores, axis=1)
        buckets = _buckets(ascending, logits)
        per_bucket = tf.math.bincount(buckets, minlength=k + 1, maxlength=k + 1, axis=-1, dtype=tf.float32)
        at_or_above = tf.cumsum(per_bucket, axis=1, reverse=True)[:, 1:]
        return tf.gather(at_or_above, tf.searchsorted(ascending, positive_scores, side="left"), batch_dims=1)

    def by_search():
        ascending = tf.sort(logits, axis=1)
        below = tf.searchsorted(ascending, positive_scores, side="left")
        return tf.cast(num_labels - below, tf.float32)

    at_least = tf.cond(k <= SEARCH_MAX_POSITIVES, by_buckets, by_search)
    pairs = tf.cast(positive_scores[:, None, :] >= positive_scores[:, :, None], tf.float32)
    positives_at_least = tf.reduce_sum(pairs * is_positive[:, None, :], axis=2)
    return _sklearn_figures(is_positive, at_least, positives_at_least, num_positives, num_known, mask)


def batch_sums(labels, logits, mask, inv_propensity, static_shapes: bool = False) -> Dict[str, tf.Tensor]:
    """The sums of one (replica's) batch, keyed as `shapes`. labels/logits [B, L], mask [B] (1 = real
    row), inv_propensity [L] (ones when the training label counts are unknown). `static_shapes` for
    XLA (TPUs): a sort per example; else work at the positives only (faster on CPU, where XLA's
    sort is slow: call it outside jit_compile there)."""
    labels = tf.cast(labels, tf.float32)
    known = labels >= 0
    # Unknown labels rank below every known one, and are not positives.
    logits = tf.where(known, tf.cast(logits, tf.float32), -np.inf)
    labels = tf.maximum(labels, 0.0)
    num_known = tf.reduce_sum(tf.cast(known, tf.float32), axis=1)
    mask = tf.cast(mask, tf.float32) * tf.cast(num_known > 0, tf.float32)
    inv_propensity = tf.cast(inv_propensity, tf.float32)
    if static_shapes:
        sums = _top_k_sums(labels, logits, mask, inv_propensity, labels * inv_propensity)
        sums.update(_sklearn_sums_sorted(labels, logits, mask, num_known))
    else:
        most = tf.maximum(tf.cast(tf.reduce_max(tf.reduce_sum(labels, axis=1)), tf.int32), 1)
        positions, is_positive = _positives(labels, _padded(most, labels.shape[-1]))
        positive_weights = is_positive * tf.gather(inv_propensity, positions)
        sums = _top_k_sums(labels, logits, mask, inv_propensity, positive_weights)
        sums.update(_sklearn_sums_at_positives(labels, logits, mask, num_known, positions, is_positive))
    return {f"ranking/{name}": value for name, value in sums.items()}


def figures(totals: Dict[str, np.ndarray], num_examples: float, propensity_scored: bool) -> Dict[str, Optional[float]]:
    """The "ranking" block from summed `totals`; the ps figures are None unless `propensity_scored`."""
    block: Dict[str, Optional[float]] = {}
    for name in NAMES:
        if name.startswith("ps"):
            found, best = float(totals[f"ranking/{name}/found"]), float(totals[f"ranking/{name}/best"])
            block[name] = found / best if propensity_scored and best > 0 else None
        else:
            block[name] = float(totals[f"ranking/{name}"]) / num_examples if num_examples else None
    return block
