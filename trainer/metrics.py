"""Per-label statistics: summed in the distributed step, turned into figures on the host.

`add_batch` runs on each replica and only adds to sums, so adding across replicas, workers
and batches is exact. Each label gets exact counts at its threshold plus histograms of
positives' and negatives' logits; average precision, ROC-AUC and threshold tuning come from
the histograms. Bins are uniform in logit space (fine where probabilities crowd near 0 and
1), 1/256 of a logit wide so that AP and ROC-AUC stay within 1e-3 of the exact figures even
for a barely trained model (tested); probability 0.5 (logit 0) is a bin edge. Logits beyond
+-16 (probabilities within 1e-7 of 0 or 1) share the end bins.

Unknown labels (value -1, partially labelled data) are left out of every sum: each per-label
figure is the one of the rows where that label is known; hamming loss is over the known entries;
an example is an exact match when its known labels are all right, and subset accuracy is over
the examples with at least one known label.
"""

from typing import Dict, List

import numpy as np
import tensorflow as tf

LOGIT_RANGE = 16.0
BINS_PER_LOGIT = 256
NUM_BINS = int(2 * LOGIT_RANGE * BINS_PER_LOGIT)
# Left edge of each bin, as a logit; a score falls in bin k when edge[k] <= logit < edge[k+1].
BIN_EDGES = -LOGIT_RANGE + np.arange(NUM_BINS) / BINS_PER_LOGIT

COUNT_KEYS = ("true_positives", "false_positives", "false_negatives", "support")


def statistics_shapes(num_labels: int) -> Dict[str, tuple]:
    """The shape of each sum `add_batch` adds to (plus the evaluation's `loss_sum`).

    `histograms` is flat, ordered label, then negatives/positives, then bin (see
    `unpack_histograms`), so one scatter fills both halves and a label's updates stay close.
    """
    per_label = (num_labels,)
    shapes = {name: per_label for name in COUNT_KEYS + ("predicted_positives", "known")}
    shapes.update(num_examples=(), labelled_examples=(), exact_matches=(), loss_sum=())
    shapes.update(histograms=(num_labels * 2 * NUM_BINS,))
    return shapes


def known_entries(labels, mask):
    """(known float32 [B, L]: 1 where the label is known in a real row, targets float32 [B, L]:
    labels with unknown (-1) as 0). mask [B]: 1 = real row."""
    labels = tf.cast(labels, tf.float32)
    known = tf.cast(labels >= 0, tf.float32) * tf.cast(mask, tf.float32)[:, None]
    return known, tf.maximum(labels, 0.0)


def batch_counts(labels, logits, mask, thresholds) -> Dict[str, tf.Tensor]:
    """Count sums over one (replica's) batch. labels/logits [B, L] (labels 1, 0, or -1: unknown);
    mask [B] (1 = real row); thresholds [L]."""
    known, labels = known_entries(labels, mask)
    mask = tf.cast(mask, tf.float32)
    predicted = tf.cast(tf.sigmoid(tf.cast(logits, tf.float32)) >= thresholds, tf.float32)
    positives, negatives = labels * known, (1 - labels) * known
    mistakes = tf.reduce_sum(tf.abs(predicted - labels) * known, axis=1)
    labelled = tf.cast(tf.reduce_any(known > 0, axis=1), tf.float32)  # Real rows with a known label.
    return {
        "true_positives": tf.reduce_sum(predicted * positives, axis=0),
        "false_positives": tf.reduce_sum(predicted * negatives, axis=0),
        "false_negatives": tf.reduce_sum((1 - predicted) * positives, axis=0),
        "support": tf.reduce_sum(positives, axis=0),
        "predicted_positives": tf.reduce_sum(predicted * known, axis=0),
        "known": tf.reduce_sum(known, axis=0),
        "num_examples": tf.reduce_sum(mask),
        "labelled_examples": tf.reduce_sum(labelled),
        "exact_matches": tf.reduce_sum(tf.cast(mistakes == 0, tf.float32) * labelled),
    }


def histogram_updates(labels, logits, mask):
    """(indices, counts) adding each score of the batch to its bin of the flat `histograms`; padded
    rows and unknown entries add 0."""
    known, labels = known_entries(labels, mask)
    # Label-major order: consecutive updates land in the same label's bins (faster to scatter).
    logits = tf.transpose(tf.cast(logits, tf.float32))
    is_positive = tf.transpose(tf.cast(labels, tf.int32))
    num_labels = tf.shape(logits)[0]
    bins = tf.clip_by_value(tf.cast(tf.floor((logits + LOGIT_RANGE) * BINS_PER_LOGIT), tf.int32), 0, NUM_BINS - 1)
    indices = (tf.range(num_labels)[:, None] * 2 + is_positive) * NUM_BINS + bins
    counts = tf.transpose(tf.cast(known, tf.int32))
    return tf.reshape(indices, [-1]), tf.reshape(counts, [-1])


def mean_loss(totals: Dict[str, np.ndarray]) -> float:
    """The evaluation loss, the mean over known label entries: `loss_sum` adds per-example losses
    (trainer.losses: sums over known labels / number of labels). 0 when no label is known."""
    known = np.asarray(totals["known"], np.float64)
    return float(totals["loss_sum"] * len(known) / known.sum()) if known.sum() else 0.0


def add_batch(totals: Dict[str, tf.Variable], labels, logits, mask, thresholds) -> None:
    """Adds one (replica's) batch to `totals`, int32 variables shaped as `statistics_shapes`.

    The histograms are scattered straight into their variable: building them dense per batch
    and adding them would move 64 MB per batch at 1,000 labels (bench/metrics_overhead.py).
    Under a tf.distribute strategy `handle` is this replica's copy (sync-on-read variables
    have no scatter methods).
    """
    for name, value in batch_counts(labels, logits, mask, thresholds).items():
        totals[name].assign_add(tf.cast(value, totals[name].dtype))
    indices, counts = histogram_updates(labels, logits, mask)
    tf.raw_ops.ResourceScatterAdd(resource=totals["histograms"].handle, indices=indices, updates=counts)


def unpack_histograms(totals: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """`totals` read to NumPy, with the flat `histograms` split into `positive_histogram` and
    `negative_histogram`, each [L, NUM_BINS]: the form every function below takes."""
    unpacked = dict(totals)
    histograms = np.asarray(unpacked.pop("histograms")).reshape(-1, 2, NUM_BINS)
    unpacked["negative_histogram"], unpacked["positive_histogram"] = histograms[:, 0], histograms[:, 1]
    return unpacked


def _divide(numerator, denominator):
    """Elementwise ratio, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _ranking_scores(positive_histogram: np.ndarray, negative_histogram: np.ndarray):
    """Average precision and ROC-AUC per label from score histograms (ties within a bin grouped,
    as scikit-learn groups equal scores). NaN where undefined (no positives / no negatives)."""
    # Walk thresholds from the highest bin down: cumulative positives/negatives scoring >= bin.
    tp = np.cumsum(positive_histogram[:, ::-1], axis=1)
    fp = np.cumsum(negative_histogram[:, ::-1], axis=1)
    num_pos, num_neg = tp[:, -1:], fp[:, -1:]
    precision = _divide(tp, tp + fp)
    recall = _divide(tp, np.broadcast_to(num_pos, tp.shape))
    recall_step = np.diff(recall, axis=1, prepend=0.0)
    average_precision = np.sum(recall_step * precision, axis=1)
    fpr = _divide(fp, np.broadcast_to(num_neg, fp.shape))
    tpr = recall
    roc_auc = np.trapezoid(
        np.concatenate([np.zeros_like(tpr[:, :1]), tpr], axis=1),
        np.concatenate([np.zeros_like(fpr[:, :1]), fpr], axis=1),
        axis=1,
    )
    average_precision = np.where(num_pos[:, 0] > 0, average_precision, np.nan)
    roc_auc = np.where((num_pos[:, 0] > 0) & (num_neg[:, 0] > 0), roc_auc, np.nan)
    return average_precision, roc_auc


def _prf(tp, fp, fn) -> Dict[str, float]:
    return {
        "precision": float(_divide(tp, tp + fp)),
        "recall": float(_divide(tp, tp + fn)),
        "f1": float(_divide(2 * tp, 2 * tp + fp + fn)),
    }


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def summarize(totals: Dict[str, np.ndarray], label_names: List[str], thresholds: np.ndarray) -> Dict:
    """Figures for one split from summed statistics, in the shape of `metrics/<split>-<step>.json`.

    Labels without positives in the split are listed under `labels_without_positives` and left
    out of every macro average (their recall, F1, AP and AUC are undefined, not zero). Unknown
    label entries count nowhere (`unknown_entries` says how many there were).
    """
    tp, fp, fn, support = (np.asarray(totals[k], np.float64) for k in COUNT_KEYS)
    num_examples = float(totals["num_examples"])
    known = np.asarray(totals["known"], np.float64)
    labelled_examples = float(totals["labelled_examples"])
    precision, recall = _divide(tp, tp + fp), _divide(tp, support)
    f1 = _divide(2 * tp, 2 * tp + fp + fn)
    average_precision, roc_auc = _ranking_scores(
        np.asarray(totals["positive_histogram"], np.float64), np.asarray(totals["negative_histogram"], np.float64)
    )
    present = support > 0
    macro = {
        name: _mean(np.where(present, values, np.nan))
        for name, values in (
            ("precision", precision),
            ("recall", recall),
            ("f1", f1),
            ("average_precision", average_precision),
            ("roc_auc", roc_auc),
        )
    }
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    micro = _prf(tp.sum(), fp.sum(), fn.sum())
    # The figures image-tagging papers report: CF1 is the F1 of the averaged precision and recall
    # (not the average F1), over the labels with positives; OP/OR/OF1 are the micro figures.
    class_precision, class_recall = macro["precision"], macro["recall"]
    paper = {
        "CP": class_precision,
        "CR": class_recall,
        "CF1": float(_divide(2 * class_precision * class_recall, class_precision + class_recall)),
        "OP": micro["precision"],
        "OR": micro["recall"],
        "OF1": micro["f1"],
    }
    labels = {}
    for j, name in enumerate(label_names):
        labels[name] = {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "average_precision": None if np.isnan(average_precision[j]) else float(average_precision[j]),
            "roc_auc": None if np.isnan(roc_auc[j]) else float(roc_auc[j]),
            "support": int(support[j]),
            "threshold": float(thresholds[j]),
        }
    return {
        "num_examples": int(num_examples),
        "micro": micro,
        "macro": macro,
        "paper": paper,
        "weighted": {
            "precision": float(np.sum(weights * precision)),
            "recall": float(np.sum(weights * recall)),
            "f1": float(np.sum(weights * f1)),
        },
        "hamming_loss": float((fp.sum() + fn.sum()) / max(known.sum(), 1)),
        "subset_accuracy": float(totals["exact_matches"] / max(labelled_examples, 1)),
        "unknown_entries": int(num_examples * len(label_names) - known.sum()),
        "label_cardinality": {
            "true": float(support.sum() / max(num_examples, 1)),
            "predicted": float(np.sum(totals["predicted_positives"]) / max(num_examples, 1)),
        },
        "labels_without_positives": [name for j, name in enumerate(label_names) if not present[j]],
        "labels": labels,
    }


def pr_curve_counts(totals: Dict[str, np.ndarray], num_thresholds: int = 201) -> Dict[str, np.ndarray]:
    """Per label, TP/FP/TN/FN/precision/recall at probability thresholds i / (num_thresholds - 1),
    ascending, as TensorBoard's PR-curve plugin wants them; each [L, num_thresholds].

    Each threshold is rounded up to the next bin edge (at most 1/256 logit away); 201 thresholds
    make 0.5 one of them.
    """
    positive = np.asarray(totals["positive_histogram"], np.float64)
    negative = np.asarray(totals["negative_histogram"], np.float64)
    # Counts scoring in bin k or above, with a trailing 0 for "above every bin".
    positive_at_least = np.concatenate([np.cumsum(positive[:, ::-1], axis=1)[:, ::-1], positive[:, :1] * 0], axis=1)
    negative_at_least = np.concatenate([np.cumsum(negative[:, ::-1], axis=1)[:, ::-1], negative[:, :1] * 0], axis=1)
    probabilities = np.linspace(0.0, 1.0, num_thresholds)
    with np.errstate(divide="ignore"):
        logits = np.log(probabilities) - np.log1p(-probabilities)
    first_bin = np.clip(np.ceil((logits + LOGIT_RANGE) * BINS_PER_LOGIT), 0, NUM_BINS).astype(np.int64)
    tp, fp = positive_at_least[:, first_bin], negative_at_least[:, first_bin]
    fn, tn = positive_at_least[:, :1] - tp, negative_at_least[:, :1] - fp
    return {
        "true_positive_counts": tp,
        "false_positive_counts": fp,
        "true_negative_counts": tn,
        "false_negative_counts": fn,
        # Precision is 1 where nothing is predicted positive, as scikit-learn's curve ends.
        "precision": np.where(tp + fp > 0, _divide(tp, tp + fp), 1.0),
        "recall": _divide(tp, tp + fn),
    }


def tune_thresholds(totals: Dict[str, np.ndarray], default: float = 0.5) -> np.ndarray:
    """Per label, the probability threshold (a bin edge) that maximises F1 on these statistics.

    Ties go to the threshold nearest 0.5; labels without positives, or whose best F1 is 0,
    keep `default`.
    """
    positive = np.asarray(totals["positive_histogram"], np.float64)
    negative = np.asarray(totals["negative_histogram"], np.float64)
    # Predicting "on" for scores in bin k and above.
    tp = np.cumsum(positive[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(negative[:, ::-1], axis=1)[:, ::-1]
    fn = positive.sum(axis=1, keepdims=True) - tp
    f1 = _divide(2 * tp, 2 * tp + fp + fn)
    thresholds = np.full(positive.shape[0], default)
    edge_probabilities = 1.0 / (1.0 + np.exp(-BIN_EDGES))
    distance_from_default = np.abs(edge_probabilities - default)
    for j in range(positive.shape[0]):
        best = f1[j].max()
        if best <= 0:
            continue
        candidates = np.flatnonzero(f1[j] >= best - 1e-12)
        thresholds[j] = edge_probabilities[candidates[np.argmin(distance_from_default[candidates])]]
    return thresholds.astype(np.float32)
