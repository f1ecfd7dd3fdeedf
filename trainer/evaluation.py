"""Evaluation and prediction passes over a split: every worker takes part; nothing is written here.

Eval batches are padded to the global batch with a mask, so each example counts exactly once
whatever the number of replicas and workers. What the passes return goes to trainer.reporting.
"""

import time
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import data, metrics, steps
from trainer.distribute import Topology
from trainer.errors import UserError

SUMMARY_BLOCKS = ("micro", "macro", "weighted", "paper", "hamming_loss", "subset_accuracy")


class Evaluator:
    """The compiled eval and predict steps of one model."""

    def __init__(self, strategy, topology: Topology, model, loss_fn, jit_compile: bool, checkpoint: str = "latest"):
        self.topology = topology
        self.checkpoint = checkpoint  # Which checkpoint the figures are of: `latest` or `best`.
        self.input_names = list(model.input.keys())
        self._totals = steps.make_eval_totals(strategy, model.output.shape[-1])
        self._eval_step = steps.make_eval_step(strategy, topology, model, loss_fn, jit_compile, self._totals)
        # Every worker reads the totals at the same point: the read sums over replicas and workers.
        self._read_totals = tf.function(lambda: {name: total.read_value() for name, total in self._totals.items()})
        self._predict_step = steps.make_predict_step(strategy, topology, model)

    def _batches(self, split: data.Split) -> tf.data.Dataset:
        return data.eval_batches(split, self.input_names, self.topology)

    def evaluate(self, split_name: str, split: data.Split, thresholds: np.ndarray, step: int) -> Tuple[Dict, Dict]:
        """One pass over `split`: (figures as in metrics/<split>-<step>.json, the summed statistics)."""
        started = time.time()
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
            "loss": metrics.mean_loss(totals),
        }
        summary.update(metrics.summarize(totals, split.spec.label_names, thresholds))
        seconds = time.time() - started
        logging.info(
            "[%s] step %d: %d examples in %.1fs (%.0f examples/s)",
            split_name,
            step,
            summary["num_examples"],
            seconds,
            summary["num_examples"] / max(seconds, 1e-9),
        )
        return summary, totals

    def tune(self, split: data.Split, step: int) -> Tuple[Dict, Dict, Dict, np.ndarray]:
        """Tunes one threshold per label on `split` (the eval split). Returns (figures at the tuned
        thresholds, with the 0.5 ones under "at_0.5"; figures at 0.5; their summed statistics; the thresholds)."""
        at_half, totals = self.evaluate("eval", split, np.full(split.spec.num_labels, 0.5, np.float32), step)
        thresholds = metrics.tune_thresholds(totals)
        tuned, _ = self.evaluate("eval", split, thresholds, step)
        tuned["at_0.5"] = {k: at_half[k] for k in SUMMARY_BLOCKS}
        return tuned, at_half, totals, thresholds

    def probabilities(self, split: data.Split) -> Iterator[np.ndarray]:
        """The probabilities of `split`'s examples, batch by batch, in input order (padding dropped).
        Every worker must drain it: the steps gather across workers."""
        count = 0
        for batch_index, worker_batch in enumerate(self._batches(split)):
            probabilities, mask = (t.numpy() for t in self._predict_step(worker_batch))
            count += int(mask.sum())
            yield probabilities[mask > 0]
            if (batch_index + 1) % 100 == 0:
                logging.info("[predict] scored %d examples", count)
