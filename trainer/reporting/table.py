"""The per-label table printed after each evaluation."""

import math
from typing import Dict

from trainer.data.labels import shorten

TABLE_COLUMNS = ("precision", "recall", "f1", "average_precision", "roc_auc", "threshold")


def _cell(value) -> str:
    return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"


def table(summary: Dict, title: str) -> str:
    """A per-label table sorted by support (most frequent first), with micro/macro rows."""
    labels = summary["labels"]
    width = max([len(n) for n in labels] + [12])
    header = f"{'label':<{width}} {'support':>7} " + " ".join(f"{c[:6]:>6}" for c in TABLE_COLUMNS)
    lines = [title, header, "-" * len(header)]
    for name, row in sorted(labels.items(), key=lambda item: (-item[1]["support"], item[0])):
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
    if summary["labels_without_positives"]:
        lines.append(
            "labels without positives (left out of macro averages): " + shorten(summary["labels_without_positives"])
        )
    return "\n".join(lines)
