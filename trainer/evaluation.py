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
from trainer.config import TrainConfig
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
        exact_metrics_budget: int = TrainConfig.exact_metrics_budget,
        predict_top_k: int = 0,
    ):
        self.strategy, self.model, self.loss_fn, self.jit_compile = strategy, model, loss_fn, jit_compile
        # Splits whose examples x labels fit get exact AP/ROC-AUC from gathered scores; larger ones
        # histograms of at most this many counts per worker.
        self.exact_metrics_budget = exact_metrics_budget
        self.predict_top_k = predict_top_k
        self.topology = topology
        self.model_dir = model_dir
        # `best` (--checkpoint=best): results go to metrics/best-<split>-<step>.* and tensorboard/best-<split>,
        # apart from the run's own history (the periodic evaluation of that step is there already).
        self.checkpoint = checkpoint
        self.input_names: List[str] = list(model.input.keys())
        self._eval_steps: Dict[int, Tuple] = {}  # num_bins (0: exact) -> (totals, eval_step, read_totals)
        self._predict_step = steps.make_predict_step(strategy, topology, model)
        self._writers: Dict[str, tf.summary.SummaryWriter] = {}

    def _batches(self, split: data.Split) -> tf.data.Dataset:
        return data.eval_batches(split, self.input_names, self.topology)

    def _steps_for(self, num_bins: int) -> Tuple:
        """(totals, eval_step, read_totals) of an exact (`num_bins` 0) or histogram pass, built once."""
        if num_bins not in self._eval_steps:
            num_labels = self.model.output.shape[-1]
            totals = steps.make_eval_totals(self.strategy, num_labels, num_bins)
            eval_step = steps.make_eval_step(
                self.strategy, self.topology, self.model, self.loss_fn, self.jit_compile, totals, num_bins
            )
            # Every worker reads the totals at the same point: the read sums over replicas and workers.
            read_totals = tf.function(lambda: {name: total.read_value() for name, total in totals.items()})
            self._eval_steps[num_bins] = (totals, eval_step, read_totals)
        return self._eval_steps[num_bins]

    def _num_bins(self, num_examples: int, num_labels: int) -> int:
        """0 (exact curves from the gathered scores) when the split's size is known and its scores fit
        the budget; else the histograms' bins per label."""
        if 0 < num_examples and num_examples * num_labels <= self.exact_metrics_budget:
            return 0
        return metrics.histogram.bins_per_label(
            self.exact_metrics_budget, num_labels, self.topology.replicas_per_worker
        )

    def _inverse_propensities(self, num_labels: int) -> Optional[np.ndarray]:
        """From the training label counts saved in the model dir; None when it holds none."""
        saved = data.read_train_label_counts(self.model_dir)
        if saved is None or len(saved[0]) != num_labels or saved[1] < 2:
            return None
        return metrics.propensity.inverse_propensities(*saved)

    def evaluate(self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int) -> Tuple[Dict, object]:
        """One pass over `split`: (figures as in metrics/<split>-<step>.json, the curves source:
        metrics.ExactScores, or metrics.Histograms beyond --exact_metrics_budget)."""
        num_labels, num_examples = len(split.spec.label_names), split.num_examples
        num_bins = self._num_bins(num_examples, num_labels)
        exact = num_bins == 0
        totals, eval_step, read_totals = self._steps_for(num_bins)
        for total in totals.values():
            total.assign(tf.zeros_like(total))
        inv_propensity = self._inverse_propensities(num_labels)
        propensity_scored = inv_propensity is not None
        weights = tf.constant(inv_propensity if propensity_scored else np.ones(num_labels, np.float32))
        thresholds_tensor = tf.constant(thresholds, tf.float32)
        if exact:
            all_logits = np.empty((num_examples, num_labels), np.float32)
            all_labels = np.empty((num_examples, num_labels), bool)
        rows = 0
        for worker_batch in self._batches(split):
            gathered = eval_step(worker_batch, thresholds_tensor, weights)
            if exact:
                logits, labels, mask = (t.numpy() for t in gathered)
                real = mask > 0
                count = int(real.sum())
                if rows + count > num_examples:
                    raise UserError(f"--{split_name}_data holds more examples than counted ({num_examples}); re-run.")
                all_logits[rows : rows + count], all_labels[rows : rows + count] = logits[real], labels[real] > 0
                rows += count
        totals = {name: value.numpy() for name, value in read_totals().items()}
        if exact:
            source = metrics.ExactScores(all_logits[:rows], all_labels[:rows])
        else:
            source = metrics.Histograms(totals.pop("histograms"), num_labels, num_bins)
        totals = {name: np.asarray(value, np.float64) for name, value in totals.items()}
        if not totals["num_examples"]:
            raise UserError(f"--{split_name}_data has no examples; point it at a non-empty split.")
        summary = {
            "step": step,
            "split": split_name,
            "checkpoint": self.checkpoint,
            "loss": float(totals["loss_sum"] / totals["num_examples"]),
        }
        summary.update(metrics.summarize(totals, source, split.spec.label_names, thresholds, propensity_scored))
        return summary, source

    def report(self, summary: Dict, source=None) -> None:
        """Chief only: the log table, metrics/<split>-<step>.json and .csv (best-<split>-... for
        --checkpoint=best), TensorBoard scalars, and per-label PR curves when given the curves source."""
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
        if source is not None:
            reporting.write_pr_curves(self._writers[split], summary["step"], summary, source)

    def evaluate_and_report(
        self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int
    ) -> Tuple[Dict, object]:
        """`evaluate`, then `report`; returns what `evaluate` does."""
        summary, source = self.evaluate(split_name, split, thresholds, step)
        self.report(summary, source)
        return summary, source

    def tune_and_report(
        self, eval_split: data.Split, test_split: Optional[data.Split], step: int
    ) -> Tuple[Dict, object]:
        """Tunes one threshold per label on eval, reports tuned figures (with the 0.5 ones beside
        them), writes thresholds.json, then evaluates test with the tuned thresholds. Returns the
        figures at 0.5, comparable with the periodic evaluations, and their curves source."""
        label_names = eval_split.spec.label_names
        at_half, source = self.evaluate("eval", eval_split, np.full(len(label_names), 0.5, np.float32), step)
        thresholds = metrics.tune_thresholds(source)
        del source  # The tuned pass gathers the same scores again: hold one copy at a time.
        tuned, tuned_source = self.evaluate("eval", eval_split, thresholds, step)
        tuned["at_0.5"] = {k: at_half[k] for k in SUMMARY_BLOCKS}
        if self.topology.is_chief:
            reporting.write_thresholds(self.model_dir, label_names, thresholds)
            self.report(tuned, tuned_source)
            path = write_report(self.model_dir, tuned, at_half, tuned_source)
            logging.info("Wrote %s", path)
            print(
                f"Tuned thresholds on eval: macro-F1 {at_half['macro']['f1']:.4f} at 0.5 -> "
                f"{tuned['macro']['f1']:.4f}; written to {os.path.join(self.model_dir, 'thresholds.json')}",
                flush=True,
            )
        if test_split is not None:
            self.evaluate_and_report("test", test_split, thresholds, step)
        return at_half, tuned_source

    def predict(self, split: data.Split, thresholds: np.ndarray) -> None:
        """Scores `split` in input order into model_dir/predictions.jsonl, written batch by batch
        (memory stays flat however large the split) and put in place when complete. Each row holds
        the float32 probabilities and logits (exactly: as float64 they round-trip) and the labels at
        `thresholds`; with predict_top_k only the K most probable labels, best first."""
        names = np.array(split.spec.label_names)
        if self.predict_top_k > len(names):
            raise UserError(
                f"--predict_top_k={self.predict_top_k} is more than the {len(names)} labels; "
                f"use at most {len(names)} (0 writes every label)."
            )
        path = os.path.join(self.model_dir, "predictions.jsonl")
        count = 0
        # Every worker runs the steps (they gather across workers); the chief writes.
        with reporting.atomic_file(path) if self.topology.is_chief else contextlib.nullcontext() as out:
            for batch_index, worker_batch in enumerate(self._batches(split)):
                logits, mask = (t.numpy() for t in self._predict_step(worker_batch))
                logits = logits[mask > 0]
                count += len(logits)
                if out is not None:
                    for row in prediction_rows(logits, names, thresholds, self.predict_top_k):
                        out.write(json.dumps(row) + "\n")
                if (batch_index + 1) % 100 == 0:
                    logging.info("[predict] scored %d examples", count)
        if self.topology.is_chief:
            logging.info("Wrote %d predictions to %s", count, path)


def prediction_rows(logits: np.ndarray, names: np.ndarray, thresholds: np.ndarray, top_k: int = 0) -> List[Dict]:
    """predictions.jsonl rows for a batch of float32 logits [B, L]: labels at `thresholds`, then the
    dense probabilities and logits, or (top_k > 0) the top_k [name, probability] pairs, best first
    (by logit; ties: lower label id first)."""
    logits = np.asarray(logits, np.float32)
    probabilities = metrics.curves.sigmoid(logits).astype(np.float32)
    rows = []
    if top_k:
        # By logit: probabilities of saturated scores tie at 1.0 in float32, their logits do not.
        best = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
        for row, top in zip(probabilities, best):
            rows.append(
                {
                    "labels": names[row >= thresholds].tolist(),
                    "top_k": [[str(names[j]), float(row[j])] for j in top],
                }
            )
        return rows
    # float32 -> float64 is exact and json writes float64 in full: the float32 values round-trip.
    for row, row_logits in zip(probabilities, logits):
        rows.append(
            {
                "probabilities": row.astype(np.float64).tolist(),
                "logits": row_logits.astype(np.float64).tolist(),
                "labels": names[row >= thresholds].tolist(),
            }
        )
    return rows
