"""What evaluations and predictions leave behind, and the only code that writes it.

After each evaluation: the per-label table on stdout, metrics/<name>-<step>.json and .csv,
TensorBoard scalars and PR curves. After tuning: thresholds.json and the PNG report. After a
prediction pass: predictions.jsonl. Only the chief writes; on other workers a `Reporter` still
drains what it is handed (their steps take part in the collectives) and writes nothing.
"""

from typing import Dict, Iterable, List

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import paths
from trainer.data.labels import shorten
from trainer.reporting.files import read_thresholds, write_metrics, write_predictions, write_thresholds
from trainer.reporting.png import write_png
from trainer.reporting.table import table
from trainer.reporting.tensorboard import write_pr_curves, write_summaries

__all__ = ["Reporter", "read_thresholds", "table"]


class Reporter:
    """Writes one run's evaluation outputs under `model_dir`.

    `prefix` names the outputs apart: `best-` for --checkpoint=best (metrics/best-eval-<step>.json,
    tensorboard/best-eval/). `never_replace` (--mode=eval) picks a free name, metrics/eval-<step>-2.json,
    when training already wrote metrics/eval-<step>.json: an evaluation run changes no file of training.
    """

    def __init__(self, model_dir: str, is_chief: bool, prefix: str = "", never_replace: bool = False):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.prefix = prefix
        self.never_replace = never_replace
        self._writers: Dict[str, tf.summary.SummaryWriter] = {}

    def evaluation(self, summary: Dict, source=None) -> None:
        """The table, metrics files and TensorBoard scalars (and PR curves when given the evaluation's
        curves source, metrics.ExactScores or metrics.Histograms)."""
        if not self.is_chief:
            return
        name, step = self.prefix + summary["split"], summary["step"]
        stem = paths.unused_metrics_stem(self.model_dir, name, step) if self.never_replace else f"{name}-{step}"
        title = (
            f"[{name}] step {step}: loss {summary['loss']:.4f}  micro-F1 {summary['micro']['f1']:.4f}  "
            f"macro-F1 {summary['macro']['f1']:.4f}  macro-AP {summary['macro']['average_precision']:.4f}"
        )
        print(table(summary, title, stem), flush=True)
        logging.info("Wrote %s", write_metrics(self.model_dir, stem, summary))
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(paths.tensorboard(self.model_dir, name))
        write_summaries(self._writers[name], step, summary)
        if source is not None:
            write_pr_curves(self._writers[name], step, summary, source)

    def tuned(self, tuned: Dict, at_half: Dict, source, thresholds: np.ndarray) -> None:
        """thresholds.json, the tuned evaluation (with the 0.5 figures beside it) and the PNG report."""
        if not self.is_chief:
            return
        write_thresholds(self.model_dir, list(tuned["labels"]), thresholds)
        self.evaluation(tuned, source)
        logging.info("Wrote %s", write_png(self.model_dir, tuned, at_half, source))
        objective = tuned["threshold_objective"]
        print(
            f"Tuned thresholds ({objective['objective']}) on eval: macro-F1 {at_half['macro']['f1']:.4f} at 0.5 -> "
            f"{tuned['macro']['f1']:.4f}; written to {paths.thresholds(self.model_dir)}",
            flush=True,
        )
        if objective["not_met"]:
            print(
                f"{len(objective['not_met'])} label(s) cannot meet {objective['objective']} on eval and use their best "
                f"precision instead: {shorten(objective['not_met'])}",
                flush=True,
            )

    def best_thresholds(self, label_names: List[str], thresholds: np.ndarray) -> None:
        """checkpoints/best/thresholds.json: tuned on the evaluation that made the checkpoint the best."""
        if self.is_chief:
            write_thresholds(paths.best(self.model_dir), label_names, thresholds)

    def predictions(
        self, label_names: List[str], thresholds: np.ndarray, batches: Iterable[np.ndarray], top_k: int = 0
    ) -> int:
        """predictions.jsonl from batches of logits in input order (only the top_k best labels of each
        when top_k > 0); returns the number of rows."""
        if not self.is_chief:
            return sum(len(batch) for batch in batches)
        path = paths.predictions(self.model_dir)
        count = write_predictions(path, label_names, thresholds, batches, top_k)
        logging.info("Wrote %d predictions to %s", count, path)
        return count
