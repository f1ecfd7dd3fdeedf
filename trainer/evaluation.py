"""Evaluation and prediction over a split: every worker takes part, the chief writes.

Eval batches are padded to the global batch with a mask, so each example counts exactly once
whatever the number of replicas and workers.
"""

import contextlib
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import data, metrics, reporting, steps
from trainer.distribute import Topology
from trainer.errors import UserError
from trainer.report import write_report

SUMMARY_BLOCKS = ("micro", "macro", "weighted", "paper", "hamming_loss", "subset_accuracy")


class Evaluator:
    """Holds the compiled eval/predict steps of one model and where results go."""

    def __init__(
        self,
        strategy,
        topology: Topology,
        model,
        loss_fn,
        jit_compile: bool,
        model_dir: str,
        checkpoint: str = "latest",
    ):
        self.topology = topology
        self.model_dir = model_dir
        # `best` (--checkpoint=best): results go to metrics/best-<split>-<step>.* and tensorboard/best-<split>,
        # apart from the run's own history (the periodic evaluation of that step is there already).
        self.checkpoint = checkpoint
        self.input_names: List[str] = list(model.input.keys())
        self._totals = steps.make_eval_totals(strategy, model.output.shape[-1])
        self._eval_step = steps.make_eval_step(strategy, topology, model, loss_fn, jit_compile, self._totals)
        # Every worker reads the totals at the same point: the read sums over replicas and workers.
        self._read_totals = tf.function(lambda: {name: total.read_value() for name, total in self._totals.items()})
        self._predict_step = steps.make_predict_step(strategy, topology, model)
        self._writers: Dict[str, tf.summary.SummaryWriter] = {}

    def _batches(self, split: data.Split) -> tf.data.Dataset:
        return data.eval_batches(split, self.input_names, self.topology)

    def evaluate(self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int) -> Tuple[Dict, Dict]:
        """One pass over `split`: (figures as in metrics/<split>-<step>.json, the summed statistics)."""
        for total in self._totals.values():
            total.assign(tf.zeros_like(total))
        thresholds_tensor = tf.constant(thresholds, tf.float32)
        for worker_batch in self._batches(split):
            self._eval_step(worker_batch, thresholds_tensor)
        totals = metrics.unpack_histograms({name: value.numpy() for name, value in self._read_totals().items()})
        totals = {name: np.asarray(value, np.float64) for name, value in totals.items()}
        if not totals["num_examples"]:
            raise UserError(f"--{split_name}_data has no examples; point it at a non-empty split.")
        summary = {
            "step": step,
            "split": split_name,
            "checkpoint": self.checkpoint,
            "loss": float(totals["loss_sum"] / totals["num_examples"]),
        }
        summary.update(metrics.summarize(totals, split.spec.label_names, thresholds))
        return summary, totals

    def report(self, summary: Dict, totals: Optional[Dict] = None) -> None:
        """Chief only: the log table, metrics/<split>-<step>.json and .csv (best-<split>-... for
        --checkpoint=best), TensorBoard scalars, and per-label PR curves when given the summed statistics."""
        if not self.topology.is_chief:
            return
        split = summary["split"] if self.checkpoint == "latest" else f"{self.checkpoint}-{summary['split']}"
        title = (
            f"[{split}] step {summary['step']}: loss {summary['loss']:.4f}  "
            f"micro-F1 {summary['micro']['f1']:.4f}  macro-F1 {summary['macro']['f1']:.4f}  "
            f"macro-AP {summary['macro']['average_precision']:.4f}"
        )
        print(reporting.table(summary, title), flush=True)
        logging.info("Wrote %s", reporting.write_metrics(self.model_dir, split, summary["step"], summary))
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(os.path.join(self.model_dir, "tensorboard", split))
        reporting.write_summaries(self._writers[split], summary["step"], summary)
        if totals is not None:
            label_names = list(summary["labels"])
            reporting.write_pr_curves(self._writers[split], summary["step"], label_names, totals)

    def evaluate_and_report(
        self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int
    ) -> Tuple[Dict, Dict]:
        """`evaluate`, then `report`; returns what `evaluate` does."""
        summary, totals = self.evaluate(split_name, split, thresholds, step)
        self.report(summary, totals)
        return summary, totals

    def tune_and_report(self, eval_split: data.Split, test_split: Optional[data.Split], step: int) -> Tuple[Dict, Dict]:
        """Tunes one threshold per label on eval, reports tuned figures (with the 0.5 ones beside
        them), writes thresholds.json, then evaluates test with the tuned thresholds. Returns the
        figures at 0.5, comparable with the periodic evaluations, and their summed statistics."""
        label_names = eval_split.spec.label_names
        at_half, totals = self.evaluate("eval", eval_split, np.full(len(label_names), 0.5, np.float32), step)
        thresholds = metrics.tune_thresholds(totals)
        tuned, tuned_totals = self.evaluate("eval", eval_split, thresholds, step)
        tuned["at_0.5"] = {k: at_half[k] for k in SUMMARY_BLOCKS}
        if self.topology.is_chief:
            reporting.write_thresholds(self.model_dir, label_names, thresholds)
            self.report(tuned, tuned_totals)
            path = write_report(self.model_dir, tuned, at_half, tuned_totals)
            logging.info("Wrote %s", path)
            print(
                f"Tuned thresholds on eval: macro-F1 {at_half['macro']['f1']:.4f} at 0.5 -> "
                f"{tuned['macro']['f1']:.4f}; written to {os.path.join(self.model_dir, 'thresholds.json')}",
                flush=True,
            )
        if test_split is not None:
            self.evaluate_and_report("test", test_split, thresholds, step)
        return at_half, totals

    def predict(self, split: data.Split, thresholds: np.ndarray) -> None:
        """Scores `split` in input order into model_dir/predictions.jsonl, written batch by batch
        (memory stays flat however large the split) and put in place when complete."""
        names = np.array(split.spec.label_names)
        path = os.path.join(self.model_dir, "predictions.jsonl")
        count = 0
        # Every worker runs the steps (they gather across workers); the chief writes.
        with reporting.atomic_file(path) if self.topology.is_chief else contextlib.nullcontext() as out:
            for batch_index, worker_batch in enumerate(self._batches(split)):
                probabilities, mask = (t.numpy() for t in self._predict_step(worker_batch))
                probabilities = probabilities[mask > 0]
                count += len(probabilities)
                if out is not None:
                    rounded = np.round(probabilities.astype(np.float64), 7).tolist()
                    for row, row_rounded in zip(probabilities, rounded):
                        labels = names[row >= thresholds].tolist()
                        out.write(json.dumps({"probabilities": row_rounded, "labels": labels}) + "\n")
                if (batch_index + 1) % 100 == 0:
                    logging.info("[predict] scored %d examples", count)
        if self.topology.is_chief:
            logging.info("Wrote %d predictions to %s", count, path)
