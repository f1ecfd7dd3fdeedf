"""TensorBoard: scalars per evaluation and per-label precision-recall curves."""

import math
from typing import Dict, List

import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from trainer import metrics


def write_summaries(writer, step: int, summary: Dict) -> None:
    """Scalars: loss, micro/macro figures, and F1/AP per label."""
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
    """PR curves (`pr_curve/<label>`), one per label, from the summed statistics."""
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
