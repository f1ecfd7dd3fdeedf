"""TensorBoard: scalars per evaluation and per-label precision-recall curves."""

import math
from typing import Dict

import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from trainer import metrics
from trainer.reporting.table import listed_labels


def write_summaries(writer, step: int, summary: Dict) -> None:
    """Scalars: loss, micro/macro and ranking figures, and F1/AP of the listed labels
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
    """PR curves (`pr_curve/<label>`) of the listed labels, from the curves `source`
    (metrics.ExactScores or metrics.Histograms) of the evaluation that gave `summary`."""
    index = {name: j for j, name in enumerate(summary["labels"])}
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
