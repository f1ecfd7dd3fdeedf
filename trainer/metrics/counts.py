"""Counts at each label's threshold: summed on the devices, exact, then P/R/F1 and friends.

`batch_counts` runs on each replica and only produces sums, so adding across replicas,
workers and batches is exact; `figures` turns the summed counts into the threshold-based
figures of metrics/<split>-<step>.json.

Unknown labels (value -1, partially labelled data) count nowhere: each label's counts are over the
rows where it is known; hamming loss is over the known entries; an example is an exact match when
its known labels are all right, and subset accuracy is over the examples with a known label.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

COUNT_KEYS = ("true_positives", "false_positives", "false_negatives", "support", "predicted_positives", "known")
SCALAR_KEYS = ("num_examples", "labelled_examples", "exact_matches")


def shapes(num_labels: int) -> Dict[str, tuple]:
    """The shape of each sum `batch_counts` returns."""
    result = {name: (num_labels,) for name in COUNT_KEYS}
    result.update({name: () for name in SCALAR_KEYS})
    return result


def known_entries(labels, mask):
    """(known float32 [B, L]: 1 where the label is known in a real row, targets float32 [B, L]:
    labels with unknown (-1) as 0). mask [B]: 1 = real row."""
    labels = tf.cast(labels, tf.float32)
    known = tf.cast(labels >= 0, tf.float32) * tf.cast(mask, tf.float32)[:, None]
    return known, tf.maximum(labels, 0.0)


def batch_counts(labels, logits, mask, thresholds) -> Dict[str, tf.Tensor]:
    """Count sums over one (replica's) batch. labels/logits [B, L] (labels 1, 0, or -1: unknown);
    mask [B] (1 = real row); thresholds [L], probabilities: a label is predicted when
    sigmoid(logit) >= its threshold."""
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


def host_counts(
    logits: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, rows_at_once: int
) -> Dict[str, np.ndarray]:
    """The sums of `batch_counts` over every row of `logits` and `labels` held on the host (the
    gathered scores of an exact evaluation), `rows_at_once` rows at a time: the counts at new
    thresholds without another pass over the model."""
    sums = {name: np.zeros(shape, np.float64) for name, shape in shapes(logits.shape[1]).items()}
    thresholds = tf.constant(thresholds, tf.float32)
    for start in range(0, len(logits), rows_at_once):
        chunk = slice(start, start + rows_at_once)
        mask = tf.ones([len(logits[chunk])])
        for name, value in batch_counts(labels[chunk], logits[chunk], mask, thresholds).items():
            sums[name] += value.numpy()
    return sums


def mean_loss(totals: Dict[str, np.ndarray]) -> float:
    """The evaluation loss, the mean over known label entries: `loss_sum` adds per-example losses
    (trainer.losses: sums over known labels / number of labels). 0 when no label is known."""
    known = np.asarray(totals["known"], np.float64)
    return float(totals["loss_sum"] * len(known) / known.sum()) if known.sum() else 0.0


def divide(numerator, denominator):
    """Elementwise ratio, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def nan_mean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values; NaN when there are none."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _prf(tp, fp, fn) -> Dict[str, float]:
    return {
        "precision": float(divide(tp, tp + fp)),
        "recall": float(divide(tp, tp + fn)),
        "f1": float(divide(2 * tp, 2 * tp + fp + fn)),
    }


def per_label(totals: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Per label precision, recall, F1 (0 where undefined) and support, each [L] float64."""
    tp, fp, fn, support = (np.asarray(totals[k], np.float64) for k in COUNT_KEYS[:4])
    return {
        "precision": divide(tp, tp + fp),
        "recall": divide(tp, support),
        "f1": divide(2 * tp, 2 * tp + fp + fn),
        "support": support,
    }


def figures(totals: Dict[str, np.ndarray]) -> Dict:
    """The threshold-based blocks of a metrics file from summed counts: micro, macro (P/R/F1 over
    the labels with positives), weighted, paper, hamming_loss, subset_accuracy, label_cardinality."""
    tp, fp, fn, support = (np.asarray(totals[k], np.float64) for k in COUNT_KEYS[:4])
    num_examples = float(totals["num_examples"])
    known = np.asarray(totals["known"], np.float64)
    rows = per_label(totals)
    present = support > 0
    macro = {name: nan_mean(np.where(present, rows[name], np.nan)) for name in ("precision", "recall", "f1")}
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    micro = _prf(tp.sum(), fp.sum(), fn.sum())
    # The figures image-tagging papers report: CF1 is the F1 of the averaged precision and recall
    # (not the average F1), over the labels with positives; OP/OR/OF1 are the micro figures.
    class_precision, class_recall = macro["precision"], macro["recall"]
    paper = {
        "CP": class_precision,
        "CR": class_recall,
        "CF1": float(divide(2 * class_precision * class_recall, class_precision + class_recall)),
        "OP": micro["precision"],
        "OR": micro["recall"],
        "OF1": micro["f1"],
    }
    return {
        "num_examples": int(num_examples),
        "micro": micro,
        "macro": macro,
        "paper": paper,
        "weighted": {name: float(np.sum(weights * rows[name])) for name in ("precision", "recall", "f1")},
        "hamming_loss": float((fp.sum() + fn.sum()) / max(known.sum(), 1)),
        "subset_accuracy": float(totals["exact_matches"] / max(float(totals["labelled_examples"]), 1)),
        "unknown_entries": int(num_examples * len(support) - known.sum()),
        "label_cardinality": {
            "true": float(support.sum() / max(num_examples, 1)),
            "predicted": float(np.sum(totals["predicted_positives"]) / max(num_examples, 1)),
        },
    }
