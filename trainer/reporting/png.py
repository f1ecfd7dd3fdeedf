"""The end-of-run picture: model_dir/report/eval-<step>.png, written by the chief after tuning.

Three panels read top to bottom: per-label F1 at the tuned thresholds beside F1 at 0.5, per-label
average precision, both sorted by support (most frequent first; beyond reporting.table.MAX_LISTED_LABELS
labels only the most and least frequent, the rest being in metrics/<split>-<step>.csv), then the
precision-recall curves of the four most and the four least frequent labels. matplotlib is imported
here, lazily and with the Agg backend, so training never needs a display and `import trainer` stays light.
"""

from typing import Dict, List, Tuple

import numpy as np

from trainer import metrics, paths
from trainer.reporting.table import by_support, listed_labels

MAX_TICK_LABELS = 60  # Beyond this many labels the bar charts drop their names (unreadable anyway).
CURVES_PER_PANEL = 4


def _bars(axis, names: List[str], series: List[Tuple[str, np.ndarray]], title: str, ylabel: str) -> None:
    positions = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (legend, values) in enumerate(series):
        axis.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=legend)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1.05)
    axis.set_xlim(-0.6, len(names) - 0.4)
    axis.grid(axis="y", alpha=0.3)
    if len(names) <= MAX_TICK_LABELS:
        axis.set_xticks(positions)
        axis.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    else:
        axis.set_xlabel(f"{len(names)} labels, most frequent on the left")
    if len(series) > 1:
        axis.legend(loc="upper right", fontsize=8)


def _curves(axis, names: List[str], summary: Dict, source, index: Dict[str, int], title: str) -> None:
    for name in names:
        recall, precision = metrics.precision_recall(source, index[name])
        row = summary["labels"][name]
        axis.step(
            recall, precision, where="post", label=f"{name} (n={row['support']}, AP {row['average_precision']:.3f})"
        )
    axis.set_title(title)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.05)
    axis.grid(alpha=0.3)
    if names:
        axis.legend(loc="lower left", fontsize=8)


def write_png(model_dir: str, tuned: Dict, at_half: Dict, source) -> str:
    """Draws the report for one eval split and returns its path.

    `tuned` and `at_half` are the split's figures (as in metrics/<split>-<step>.json) at the tuned
    thresholds and at 0.5; `source` the evaluation's curves source (metrics.ExactScores or Histograms).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names, left_out = listed_labels(tuned)
    index = {name: j for j, name in enumerate(tuned["labels"])}
    with_positives = [n for n in by_support(tuned) if tuned["labels"][n]["support"] > 0]
    most = with_positives[:CURVES_PER_PANEL]
    least = [n for n in with_positives[::-1] if n not in most][:CURVES_PER_PANEL]

    figure = pyplot.figure(figsize=(float(np.clip(0.3 * len(names), 12, 24)), 14), layout="constrained")
    grid = figure.add_gridspec(3, 2)
    f1_axis, ap_axis = figure.add_subplot(grid[0, :]), figure.add_subplot(grid[1, :])
    f1_tuned = np.array([tuned["labels"][n]["f1"] for n in names])
    f1_half = np.array([at_half["labels"][n]["f1"] for n in names])
    _bars(
        f1_axis,
        names,
        [("tuned thresholds", f1_tuned), ("threshold 0.5", f1_half)],
        f"F1 per label: macro {tuned['macro']['f1']:.3f} tuned vs {at_half['macro']['f1']:.3f} at 0.5",
        "F1",
    )
    # Labels without positives have no AP; they show as empty slots at the right.
    average_precision = np.array([tuned["labels"][n]["average_precision"] or 0.0 for n in names])
    _bars(
        ap_axis,
        names,
        [("AP", average_precision)],
        f"Average precision: macro {tuned['macro']['average_precision']:.3f}",
        "AP",
    )
    _curves(figure.add_subplot(grid[2, 0]), most, tuned, source, index, "PR curves: most frequent labels")
    _curves(figure.add_subplot(grid[2, 1]), least, tuned, source, index, "PR curves: least frequent labels")
    if left_out:
        f1_axis.set_xlabel(
            f"the {len(names) // 2} most and least frequent of {len(tuned['labels'])} labels; "
            f"all in metrics/{tuned['split']}-{tuned['step']}.csv"
        )
    figure.suptitle(
        f"[{tuned['split']}] step {tuned['step']}: {tuned['num_examples']} examples, "
        f"micro-F1 {tuned['micro']['f1']:.3f}, CF1 {tuned['paper']['CF1']:.3f}, OF1 {tuned['paper']['OF1']:.3f}"
    )
    path = paths.report(model_dir, tuned["split"], tuned["step"])
    with paths.atomic_file(path, "wb") as f:
        figure.savefig(f, dpi=100, format="png")
    pyplot.close(figure)
    return path
