"""Evaluation and prediction passes over a split: every worker takes part; nothing is written here.

Eval batches are padded to the global batch with a mask, so each example counts exactly once
whatever the number of replicas and workers. A split whose examples x labels fit
--exact_metrics_budget has its logits gathered to every worker, so AP, ROC-AUC and the tuned
thresholds come from the exact scores; a larger one from score histograms with stated error
bounds (docs/metrics.md). What the passes return goes to trainer.reporting.
"""

import time
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import config, data, metrics, steps
from trainer.distribute import Topology
from trainer.errors import UserError

SUMMARY_BLOCKS = ("micro", "macro", "weighted", "paper", "hamming_loss", "subset_accuracy")


class Evaluator:
    """The compiled eval and predict steps of one model."""

    def __init__(
        self,
        strategy,
        topology: Topology,
        model,
        loss_fn,
        jit_compile: bool,
        checkpoint: str = "latest",
        exact_metrics_budget: int = 250_000_000,
        inverse_propensity: Optional[np.ndarray] = None,
    ):
        self.strategy, self.model, self.loss_fn, self.jit_compile = strategy, model, loss_fn, jit_compile
        self.topology = topology
        self.checkpoint = checkpoint  # Which checkpoint the figures are of: `latest` or `best`.
        self.exact_metrics_budget = exact_metrics_budget
        # Label weights of the propensity-scored ranking figures, from the training label counts;
        # None when the run has none (those figures are then null).
        self.inverse_propensity = inverse_propensity
        self.input_names = list(model.input.keys())
        self._eval_steps: Dict[int, Tuple] = {}  # num_bins (0: exact) -> (totals, eval_step, read_totals)
        self._predict_step = steps.make_predict_step(strategy, topology, model)

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

    def evaluate(self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int) -> Tuple[Dict, object]:
        """One pass over `split`: (figures as in metrics/<split>-<step>.json, the curves source:
        metrics.ExactScores, or metrics.Histograms beyond --exact_metrics_budget)."""
        summary, source, _, _ = self._evaluate(split_name, split, thresholds, step)
        return summary, source

    def tune(self, split: data.Split, step: int, objective: str = "f1") -> Tuple[Dict, Dict, object, np.ndarray]:
        """Tunes one threshold per label on `split` (the eval split) for `objective`
        (--threshold_objective). Returns (figures at the tuned thresholds, with the 0.5 ones under
        "at_0.5" and the objective under "threshold_objective"; figures at 0.5; the curves source;
        the thresholds)."""
        at_half_thresholds = np.full(split.spec.num_labels, 0.5, np.float32)
        at_half, source, figures, totals = self._evaluate("eval", split, at_half_thresholds, step)
        thresholds, met = metrics.tune(source, config.threshold_objective(objective))
        # At the tuned thresholds only the counts change; AP, ROC-AUC, their bounds, the loss and
        # the ranking figures are the first pass's.
        started = time.time()
        if source.exact:  # The scores are on the host (on every worker): count from them.
            rows_at_once = max(1, metrics.exact.SORT_CHUNK_ENTRIES // split.spec.num_labels)
            totals = dict(totals, **metrics.counts.host_counts(source.logits, source.labels, thresholds, rows_at_once))
            logging.info(
                "[eval] step %d: counted at the tuned thresholds from the scores in %.1fs", step, time.time() - started
            )
        else:  # Histograms: a second pass counts (the exact step with its scores dropped).
            totals, _ = self._pass("eval", split, thresholds, num_bins=0, keep_scores=False)
            _log_pass("eval", step, totals, started)
        tuned = self._summary("eval", split, step, totals, source, figures, thresholds)
        tuned["at_0.5"] = {k: at_half[k] for k in SUMMARY_BLOCKS}
        names = split.spec.label_names
        tuned["threshold_objective"] = {"objective": objective, "not_met": [names[j] for j in np.flatnonzero(~met)]}
        return tuned, at_half, source, thresholds

    def _evaluate(self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int) -> Tuple:
        """`evaluate`, plus the curve figures of the source (metrics.curves.all_curve_figures) and the
        pass's totals."""
        started = time.time()
        num_bins = self._num_bins(split.num_examples, len(split.spec.label_names))
        totals, source = self._pass(split_name, split, thresholds, num_bins)
        _log_pass(split_name, step, totals, started)
        figures = metrics.curves.all_curve_figures(source)
        summary = self._summary(split_name, split, step, totals, source, figures, thresholds)
        return summary, source, figures, totals

    def _pass(
        self, split_name: str, split: data.Split, thresholds: np.ndarray, num_bins: int, keep_scores: bool = True
    ) -> Tuple[Dict[str, np.ndarray], object]:
        """Runs the eval step over `split`: (the summed totals as float64, the curves source). The
        exact step (`num_bins` 0) gathers the scores, kept as the source when `keep_scores` (else the
        source is None: a pass for the counts only)."""
        num_labels, num_examples = len(split.spec.label_names), split.num_examples
        exact = num_bins == 0 and keep_scores
        totals, eval_step, read_totals = self._steps_for(num_bins)
        for total in totals.values():
            total.assign(tf.zeros_like(total))
        propensity_scored = self.inverse_propensity is not None
        weights = tf.constant(self.inverse_propensity if propensity_scored else np.ones(num_labels, np.float32))
        thresholds_tensor = tf.constant(thresholds, tf.float32)
        if exact:
            all_logits = np.empty((num_examples, num_labels), np.float32)
            all_labels = np.empty((num_examples, num_labels), np.int8)  # 1, 0, or -1: unknown.
        rows = 0
        for worker_batch in self._batches(split):
            gathered = eval_step(worker_batch, thresholds_tensor, weights)
            if exact:
                logits, labels, mask = (t.numpy() for t in gathered)
                real = mask > 0
                count = int(real.sum())
                if rows + count > num_examples:
                    raise UserError(f"--{split_name}_data holds more examples than counted ({num_examples}); re-run.")
                if count < len(real):  # Padding: boolean indexing copies (10x slower than a slice).
                    logits, labels = logits[real], labels[real]
                all_logits[rows : rows + count], all_labels[rows : rows + count] = logits, labels
                rows += count
        totals = {name: value.numpy() for name, value in read_totals().items()}
        source = None
        if exact:
            source = metrics.ExactScores(all_logits[:rows], all_labels[:rows])
        elif num_bins:
            source = metrics.Histograms(totals.pop("histograms"), num_labels, num_bins)
        totals = {name: np.asarray(value, np.float64) for name, value in totals.items()}
        if not totals["num_examples"]:
            raise UserError(f"--{split_name}_data has no examples; point it at a non-empty split.")
        return totals, source

    def _summary(self, split_name, split, step, totals, source, figures, thresholds) -> Dict:
        """The figures of one pass from its totals and the curve `figures` of `source`."""
        summary = {
            "step": step,
            "split": split_name,
            "checkpoint": self.checkpoint,
            "loss": metrics.counts.mean_loss(totals),
        }
        propensity_scored = self.inverse_propensity is not None
        names = split.spec.label_names
        summary.update(metrics.summarize(totals, source, names, thresholds, propensity_scored, figures))
        return summary

    def logits(self, split: data.Split) -> Iterator[np.ndarray]:
        """The float32 logits of `split`'s examples, batch by batch, in input order (padding dropped).
        Every worker must drain it: the steps gather across workers."""
        count = 0
        for batch_index, worker_batch in enumerate(self._batches(split)):
            logits, mask = (t.numpy() for t in self._predict_step(worker_batch))
            count += int(mask.sum())
            yield logits[mask > 0]
            if (batch_index + 1) % 100 == 0:
                logging.info("[predict] scored %d examples", count)


def _log_pass(split_name: str, step: int, totals: Dict[str, np.ndarray], started: float) -> None:
    """One line per pass over the model: its examples, seconds and examples/s."""
    seconds, num_examples = time.time() - started, int(totals["num_examples"])
    logging.info(
        "[%s] step %d: %d examples in %.1fs (%.0f examples/s)",
        split_name,
        step,
        num_examples,
        seconds,
        num_examples / max(seconds, 1e-9),
    )
