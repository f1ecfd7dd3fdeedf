"""trainer.evaluation in process: what the passes of Evaluator return, against each other.

The figures themselves are checked against scikit-learn in test_metrics.py and through the CLI
under each strategy in test_metrics_cli.py.
"""

import dataclasses
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import data, evaluation
from trainer.distribute import Topology

NUM_LABELS = 40


def bce(labels, logits):
    """Per-example loss over the known labels, as trainer.losses averages it."""
    known = tf.cast(labels >= 0, tf.float32)
    losses = tf.nn.sigmoid_cross_entropy_with_logits(tf.maximum(labels, 0.0), logits)
    return tf.reduce_sum(losses * known, axis=-1) / NUM_LABELS


def make_problem(num_examples=300, num_features=8):
    """A linear model and a split with Zipf label frequencies (some labels without positives) and
    10% unknown entries."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(num_examples, num_features)).astype(np.float32)
    frequency = np.minimum(0.5, 2.0 / np.arange(1, NUM_LABELS + 1))
    labels = (rng.random((num_examples, NUM_LABELS)) < frequency).astype(np.float32)
    labels[rng.random(labels.shape) < 0.1] = -1
    split = data.from_arrays({"features": features}, labels, [f"l{j}" for j in range(NUM_LABELS)])
    keras.utils.set_random_seed(0)
    inputs = keras.Input((num_features,), name="features")
    model = keras.Model({"features": inputs}, keras.layers.Dense(NUM_LABELS)(inputs))
    topology = Topology(1, 1, 0, True, 64)
    return split, evaluation.Evaluator(tf.distribute.get_strategy(), topology, model, bce, jit_compile=True)


def as_text(summary) -> str:
    return json.dumps(summary, sort_keys=True)


@pytest.mark.parametrize("exact", [True, False])
def test_tuned_figures_equal_a_whole_pass_at_the_tuned_thresholds(exact):
    """Evaluator.tune reuses its first pass's curves and counts at the tuned thresholds from the
    gathered scores (exact) or in a second pass that does not gather them (histograms): its
    figures equal, to the bit, those of a new pass at the tuned thresholds, and
    at 0.5 those of a pass at 0.5 (exact scores, or histograms when the split's size is unknown)."""
    split, evaluator = make_problem()
    if not exact:
        split = dataclasses.replace(split, num_examples=-1)
    tuned, at_half, source, thresholds = evaluator.tune(split, 7)
    assert source.exact == exact and (thresholds != 0.5).sum() > 5
    fresh, fresh_source = evaluator.evaluate("eval", split, thresholds, 7)
    assert set(tuned) - set(fresh) == {"at_0.5", "threshold_objective"}
    assert as_text({k: v for k, v in tuned.items() if k in fresh}) == as_text(fresh)
    assert as_text(tuned["at_0.5"]) == as_text({k: at_half[k] for k in evaluation.SUMMARY_BLOCKS})
    half, _ = evaluator.evaluate("eval", split, np.full(NUM_LABELS, 0.5, np.float32), 7)
    assert as_text(at_half) == as_text(half)
    if exact:
        np.testing.assert_array_equal(source.logits, fresh_source.logits)


@pytest.mark.parametrize("exact", [True, False])
def test_each_pass_over_the_model_logs_its_examples_and_rate(exact, caplog):
    """One line per pass with its duration and examples/s; the exact tuning counts from the scores
    (no second pass), the histogram one passes again."""
    caplog.set_level("INFO", logger="absl")
    split, evaluator = make_problem()
    if not exact:
        split = dataclasses.replace(split, num_examples=-1)
    evaluator.tune(split, 7)
    passes = re.findall(r"\[eval\] step 7: 300 examples in [\d.]+s \(\d+ examples/s\)", caplog.text)
    counted = "[eval] step 7: counted at the tuned thresholds from the scores in" in caplog.text
    assert (len(passes), counted) == ((1, True) if exact else (2, False))
