"""What an evaluation leaves behind: the log table, metrics/<split>-<step>.json and .csv,
thresholds.json, and TensorBoard scalars and PR curves. Only the chief calls these."""

import contextlib
import csv
import io
import json
import math
import os
from typing import Dict, Iterator, List, TextIO, Tuple

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from trainer import metrics

TABLE_COLUMNS = ("precision", "recall", "f1", "average_precision", "roc_auc", "threshold")


def _cell(value) -> str:
    return "   -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"


# Beyond this many labels the table, the PNG and TensorBoard show the most and least frequent ones
# (by support) and a summary; every label stays in metrics/<split>-<step>.csv and .json.
MAX_LISTED_LABELS = 50
LISTED_EACH_END = 20


def by_support(summary: Dict) -> List[str]:
    """Label names, most frequent first (ties by name)."""
    return [name for name, _ in sorted(summary["labels"].items(), key=lambda item: (-item[1]["support"], item[0]))]


def listed_labels(summary: Dict) -> Tuple[List[str], List[str]]:
    """(labels to show, labels left out): all of them up to MAX_LISTED_LABELS, else the
    LISTED_EACH_END most and least frequent."""
    names = by_support(summary)
    if len(names) <= MAX_LISTED_LABELS:
        return names, []
    shown = names[:LISTED_EACH_END] + names[-LISTED_EACH_END:]
    return shown, names[LISTED_EACH_END:-LISTED_EACH_END]


def table(summary: Dict, title: str) -> str:
    """A per-label table sorted by support (most frequent first), with micro/macro rows; at many
    labels only the most and least frequent, a summary of the rest, and where the full table is."""
    labels = summary["labels"]
    shown, left_out = listed_labels(summary)
    width = max([len(n) for n in shown] + [12])
    header = f"{'label':<{width}} {'support':>7} " + " ".join(f"{c[:6]:>6}" for c in TABLE_COLUMNS)
    lines = [title, header, "-" * len(header)]
    for i, name in enumerate(shown):
        if left_out and i == LISTED_EACH_END:
            supports = [labels[n]["support"] for n in left_out]
            f1 = [labels[n]["f1"] for n in left_out]
            lines.append(
                f"... {len(left_out)} labels (support {min(supports)}..{max(supports)}, mean F1 "
                f"{float(np.mean(f1)):.3f}) in metrics/{summary['split']}-{summary['step']}.csv ..."
            )
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
    without = summary["labels_without_positives"]
    if without:
        listed = ", ".join(without[:MAX_LISTED_LABELS]) + (
            f", ... ({len(without)} in all)" if len(without) > 50 else ""
        )
        lines.append(f"labels without positives (left out of macro averages): {listed}")
    return "\n".join(lines)


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[TextIO]:
    """A text file written in place of `path` only when the block completes: on an error the old
    `path` is untouched and the partial file removed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_metrics(model_dir: str, split: str, step: int, summary: Dict) -> str:
    """Writes metrics/<split>-<step>.json and .csv; returns the JSON path."""
    stem = os.path.join(model_dir, "metrics", f"{split}-{step}")
    atomic_write(stem + ".json", json.dumps(_json_safe(summary), indent=2) + "\n")
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(("label", "support") + TABLE_COLUMNS)
    for name, row in summary["labels"].items():
        writer.writerow([name, row["support"]] + ["" if row[c] is None else f"{row[c]:.6f}" for c in TABLE_COLUMNS])
    atomic_write(stem + ".csv", rows.getvalue())
    return stem + ".json"


def write_thresholds(directory: str, label_names: List[str], thresholds: np.ndarray) -> None:
    """`directory`/thresholds.json (the model dir, or checkpoints/best/)."""
    text = json.dumps({name: float(t) for name, t in zip(label_names, thresholds)}, indent=2)
    atomic_write(os.path.join(directory, "thresholds.json"), text + "\n")


def read_thresholds(directory: str, label_names: List[str]) -> np.ndarray:
    """Thresholds saved in `directory`, in label order; 0.5 for every label when none were tuned yet."""
    path = os.path.join(directory, "thresholds.json")
    if not os.path.exists(path):
        return np.full(len(label_names), 0.5, np.float32)
    with open(path) as f:
        saved = json.load(f)
    return np.array([saved.get(name, 0.5) for name in label_names], np.float32)


def write_summaries(writer, step: int, summary: Dict) -> None:
    """TensorBoard scalars: loss, micro/macro and ranking figures, and F1/AP of the listed labels
    (`listed_labels`: every label up to MAX_LISTED_LABELS, else the most and least frequent)."""
    with writer.as_default(step=step):
        tf.summary.scalar("loss", summary["loss"])
        for block in ("micro", "macro", "ranking"):
            for name, value in summary.get(block, {}).items():
                if value is not None and not math.isnan(value):
                    tf.summary.scalar(f"{block}/{name}", value)
        for label in listed_labels(summary)[0]:
            row = summary["labels"][label]
            tf.summary.scalar(f"f1/{label}", row["f1"])
            if row["average_precision"] is not None:
                tf.summary.scalar(f"average_precision/{label}", row["average_precision"])
    writer.flush()


def write_pr_curves(writer, step: int, summary: Dict, source, num_thresholds: int = 201) -> None:
    """TensorBoard PR curves (`pr_curve/<label>`) of the listed labels, from the curves `source`
    (metrics.ExactScores or metrics.Histograms) of the evaluation that gave `summary`."""
    names = list(summary["labels"])
    index = {name: j for j, name in enumerate(names)}
    listed = listed_labels(summary)[0]
    curves = metrics.pr_curve_counts(source, [index[name] for name in listed], num_thresholds)
    with writer.as_default(step=step):
        for row, label in enumerate(listed):
            proto = pr_curve_summary.raw_data_pb(
                f"pr_curve/{label}", num_thresholds=num_thresholds, **{k: v[row] for k, v in curves.items()}
            )
            # The plugin builds a TF1 Summary proto; its tensor and metadata go through the TF2 writer.
            for value in proto.value:
                tf.summary.write(value.tag, tf.make_ndarray(value.tensor), metadata=value.metadata)
    writer.flush()
