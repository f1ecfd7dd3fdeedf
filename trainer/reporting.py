"""What an evaluation leaves behind: the log table, metrics/<split>-<step>.json and .csv,
thresholds.json, and TensorBoard scalars and PR curves. Only the chief calls these."""

import contextlib
import csv
import io
import json
import math
import os
from typing import Dict, Iterator, List, TextIO

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from trainer import metrics

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
            f"labels without positives (left out of macro averages): {', '.join(summary['labels_without_positives'])}"
        )
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
    """TensorBoard scalars: loss, micro/macro figures, and F1/AP per label."""
    with writer.as_default(step=step):
        tf.summary.scalar("loss", summary["loss"])
        for block in ("micro", "macro"):
            for name, value in summary[block].items():
                if value is not None and not math.isnan(value):
                    tf.summary.scalar(f"{block}/{name}", value)
        for label, row in summary["labels"].items():
            tf.summary.scalar(f"f1/{label}", row["f1"])
            if row["average_precision"] is not None:
                tf.summary.scalar(f"average_precision/{label}", row["average_precision"])
    writer.flush()


def write_pr_curves(writer, step: int, label_names: List[str], totals: Dict, num_thresholds: int = 201) -> None:
    """TensorBoard PR curves (`pr_curve/<label>`), one per label, from the summed histograms."""
    curves = metrics.pr_curve_counts(totals, num_thresholds)
    with writer.as_default(step=step):
        for j, label in enumerate(label_names):
            proto = pr_curve_summary.raw_data_pb(
                f"pr_curve/{label}", num_thresholds=num_thresholds, **{k: v[j] for k, v in curves.items()}
            )
            # The plugin builds a TF1 Summary proto; its tensor and metadata go through the TF2 writer.
            for value in proto.value:
                tf.summary.write(value.tag, tf.make_ndarray(value.tensor), metadata=value.metadata)
    writer.flush()
