"""The per-label table printed after each evaluation."""

import math
from typing import Dict, List, Tuple

import numpy as np

from trainer.data.labels import shorten

TABLE_COLUMNS = ("precision", "recall", "f1", "average_precision", "roc_auc", "threshold")
# Beyond this many labels the table, the PNG and TensorBoard show the most and least frequent ones
# (by support) and a summary; every label stays in metrics/<split>-<step>.csv and .json.
MAX_LISTED_LABELS = 50
LISTED_EACH_END = 20


def _cell(value) -> str:
    return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"


def by_support(summary: Dict) -> List[str]:
    """Label names, most frequent first (ties by name)."""
    return [name for name, _ in sorted(summary["labels"].items(), key=lambda item: (-item[1]["support"], item[0]))]


def listed_labels(summary: Dict) -> Tuple[List[str], List[str]]:
    """(labels to show, labels left out): all of them up to MAX_LISTED_LABELS, else the
    LISTED_EACH_END most frequent and the LISTED_EACH_END least frequent that have positives in the
    split. At many labels, many have none (70 of 983 in a Delicious-like test split): listing them
    would show rows without figures, and the summary line counts them anyway."""
    names = by_support(summary)
    if len(names) <= MAX_LISTED_LABELS:
        return names, []
    most = names[:LISTED_EACH_END]
    with_positives = [n for n in names[LISTED_EACH_END:] if summary["labels"][n]["support"] > 0]
    shown = most + with_positives[-LISTED_EACH_END:]
    listed = set(shown)
    return shown, [n for n in names if n not in listed]


def table(summary: Dict, title: str, stem: str) -> str:
    """A per-label table sorted by support (most frequent first), with micro/macro rows; at many
    labels only the most and least frequent, a summary of the rest, and where the full table is
    (metrics/<stem>.csv)."""
    labels = summary["labels"]
    shown, left_out = listed_labels(summary)
    width = max([len(n) for n in shown] + [12])
    header = f"{'label':<{width}} {'support':>7} " + " ".join(f"{c[:6]:>6}" for c in TABLE_COLUMNS)
    lines = [title, header, "-" * len(header)]
    for i, name in enumerate(shown):
        if left_out and i == LISTED_EACH_END:
            supports = [labels[n]["support"] for n in left_out]
            f1 = [labels[n]["f1"] for n in left_out if labels[n]["support"] > 0]
            mean_f1 = f", mean F1 {float(np.mean(f1)):.3f}" if f1 else ""
            span = f"support {min(supports)}..{max(supports)}{mean_f1}"
            lines.append(f"... {len(left_out)} labels ({span}) in metrics/{stem}.csv ...")
        row = labels[name]
        lines.append(f"{name:<{width}} {row['support']:>7} " + " ".join(_cell(row[c]) for c in TABLE_COLUMNS))
    lines.append("-" * len(header))
    total_support = sum(row["support"] for row in labels.values())
    for block in ("micro", "macro", "weighted"):
        figures = summary[block]
        lines.append(f"{block:<{width}} {total_support:>7} " + " ".join(_cell(figures.get(c)) for c in TABLE_COLUMNS))
    lines.append(
        f"hamming_loss={summary['hamming_loss']:.4f} subset_accuracy={summary['subset_accuracy']:.4f} "
        f"examples={summary['num_examples']}"
    )
    if "paper" in summary:
        lines.append(" ".join(f"{name}={value:.4f}" for name, value in summary["paper"].items()))
    if "ranking" in summary:
        lines.append(" ".join(f"{name}={value:.4f}" for name, value in summary["ranking"].items() if value is not None))
    curves = summary.get("curves")
    if curves and not curves["exact"]:
        lines.append(
            f"AP/ROC-AUC from histograms ({curves['bins_per_label']} bins a label, over --exact_metrics_budget): "
            f"within {curves['max_average_precision_bound']} / {curves['max_roc_auc_bound']} of the exact figures"
        )
    if summary["labels_without_positives"]:
        lines.append(
            "labels without positives (left out of macro averages): " + shorten(summary["labels_without_positives"])
        )
    return "\n".join(lines)
