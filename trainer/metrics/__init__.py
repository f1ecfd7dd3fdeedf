"""The maths of the evaluation figures (docs/metrics.md has every formula).

- `counts`: exact counts at each label's threshold (P/R/F1, hamming loss, subset accuracy).
- `ranking`: the example-wise "ranking" block (precision@k, nDCG@k, their propensity-scored forms,
  scikit-learn's LRAP, coverage error and ranking loss); `propensity`: the label weights.
- `curves`: per-label AP, ROC-AUC, F1-optimal thresholds and PR curves from exact scores
  (`exact.ExactScores`), or from `histogram.Histograms` beyond --exact_metrics_budget, with error
  bounds.

On the devices, `add_batch` and `add_ranking` only add to sums, so replicas, workers and batches add exactly;
`summarize` turns the sums and a curves source into the figures of metrics/<split>-<step>.json.
"""

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from trainer.metrics import counts, curves, exact, histogram, propensity, ranking
from trainer.metrics.curves import pr_curve_counts, precision_recall, tune, tune_thresholds
from trainer.metrics.exact import ExactScores
from trainer.metrics.histogram import Histograms

__all__ = [
    "ExactScores",
    "Histograms",
    "add_batch",
    "add_ranking",
    "counts",
    "curves",
    "exact",
    "histogram",
    "pr_curve_counts",
    "precision_recall",
    "propensity",
    "ranking",
    "statistics_shapes",
    "summarize",
    "tune",
    "tune_thresholds",
]


def statistics_shapes(num_labels: int, num_bins: int = 0) -> Dict[str, tuple]:
    """The shape of each sum `add_batch` adds to, plus the evaluation's `loss_sum`; the flat
    `histograms` only when `num_bins` (the histogram fallback)."""
    shapes = counts.shapes(num_labels)
    shapes.update(ranking.shapes())
    shapes.update(loss_sum=())
    if num_bins:
        shapes.update(histogram.shapes(num_labels, num_bins))
    return shapes


def add_batch(totals: Dict[str, tf.Variable], labels, logits, mask, thresholds, num_bins: int = 0) -> None:
    """Adds one (replica's) batch's counts (and histograms when `num_bins`) to `totals`, variables
    shaped as `statistics_shapes`. XLA-friendly."""
    for name, value in counts.batch_counts(labels, logits, mask, thresholds).items():
        totals[name].assign_add(tf.cast(value, totals[name].dtype))
    if num_bins:
        histogram.add_batch(totals["histograms"], labels, logits, mask, num_bins)


def add_ranking(totals: Dict[str, tf.Variable], labels, logits, mask, inv_propensity, static_shapes: bool) -> None:
    """Adds one (replica's) batch's ranking sums to `totals` (see ranking.batch_sums for `static_shapes`)."""
    for name, value in ranking.batch_sums(labels, logits, mask, inv_propensity, static_shapes).items():
        totals[name].assign_add(value)


def _optional(value) -> object:
    return None if np.isnan(value) else float(value)


def summarize(
    totals: Dict[str, np.ndarray],
    source,
    label_names: List[str],
    thresholds: np.ndarray,
    propensity_scored: bool,
    figures: Optional[Dict[str, np.ndarray]] = None,
) -> Dict:
    """Figures for one split, in the shape of `metrics/<split>-<step>.json`, from the summed
    `totals` and a curves `source` (ExactScores or Histograms). `figures`: the source's
    `curves.all_curve_figures`, when the caller has them already (they do not depend on the
    thresholds); else computed here.

    Labels without positives in the split are listed under `labels_without_positives` and left
    out of every macro average (their recall, F1, AP and AUC are undefined, not zero).
    """
    summary = counts.figures(totals)
    rows = counts.per_label(totals)
    if figures is None:
        figures = curves.all_curve_figures(source)
    present = rows["support"] > 0
    for name in ("average_precision", "roc_auc"):
        summary["macro"][name] = counts.nan_mean(np.where(present, figures[name], np.nan))
    summary["ranking"] = ranking.figures(totals, float(totals["labelled_examples"]), propensity_scored)
    summary["curves"] = {
        "exact": bool(source.exact),
        "bins_per_label": None if source.exact else int(source.num_bins),
        "max_average_precision_bound": _optional(np.nanmax(figures["average_precision_bound"], initial=0.0)),
        "max_roc_auc_bound": _optional(np.nanmax(figures["roc_auc_bound"], initial=0.0)),
    }
    summary["labels_without_positives"] = [name for j, name in enumerate(label_names) if not present[j]]
    labels = {}
    for j, name in enumerate(label_names):
        labels[name] = {
            "precision": float(rows["precision"][j]),
            "recall": float(rows["recall"][j]),
            "f1": float(rows["f1"][j]),
            "average_precision": _optional(figures["average_precision"][j]),
            "roc_auc": _optional(figures["roc_auc"][j]),
            "support": int(rows["support"][j]),
            "threshold": float(thresholds[j]),
        }
        if not source.exact:
            labels[name]["average_precision_bound"] = _optional(figures["average_precision_bound"][j])
            labels[name]["roc_auc_bound"] = _optional(figures["roc_auc_bound"][j])
    summary["labels"] = labels
    return summary
