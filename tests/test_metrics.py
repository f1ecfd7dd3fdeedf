"""Per-label figures against scikit-learn: in-process, and through the CLI under every strategy."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, check_ok, read_metrics, run_local_workers, run_trainer
from sklearn import metrics as sk

from trainer import metrics
from trainer.data import synthetic

NAMES = [f"l{i}" for i in range(6)]


def _statistics(labels, probabilities, thresholds):
    logits = np.log(probabilities) - np.log1p(-probabilities)
    mask = np.ones(len(labels), np.float32)
    shapes = metrics.statistics_shapes(labels.shape[1])
    totals = {name: tf.Variable(tf.zeros(shape, tf.int32)) for name, shape in shapes.items()}
    metrics.add_batch(
        totals,
        tf.constant(labels, tf.float32),
        tf.constant(logits, tf.float32),
        tf.constant(mask),
        tf.constant(thresholds),
    )
    return {
        k: np.asarray(v, np.float64)
        for k, v in metrics.unpack_histograms({k: v.numpy() for k, v in totals.items()}).items()
    }


def assert_matches_sklearn(summary, labels, probabilities, thresholds):
    predicted = (probabilities >= thresholds).astype(int)
    present = labels.sum(axis=0) > 0
    for j, name in enumerate(summary["labels"]):
        row = summary["labels"][name]
        assert row["support"] == labels[:, j].sum()
        assert row["precision"] == pytest.approx(sk.precision_score(labels[:, j], predicted[:, j], zero_division=0))
        assert row["recall"] == pytest.approx(sk.recall_score(labels[:, j], predicted[:, j], zero_division=0))
        assert row["f1"] == pytest.approx(sk.f1_score(labels[:, j], predicted[:, j], zero_division=0))
        if present[j]:
            assert row["average_precision"] == pytest.approx(
                sk.average_precision_score(labels[:, j], probabilities[:, j]), abs=1e-3
            )
            assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(labels[:, j], probabilities[:, j]), abs=1e-3)
        else:
            assert row["average_precision"] is None and row["roc_auc"] is None
    for average in ("micro", "weighted"):
        assert summary[average]["f1"] == pytest.approx(sk.f1_score(labels, predicted, average=average, zero_division=0))
    # Macro averages leave out labels without positives (stated in the output).
    assert summary["macro"]["f1"] == pytest.approx(
        sk.f1_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    )
    assert summary["macro"]["average_precision"] == pytest.approx(
        sk.average_precision_score(labels[:, present], probabilities[:, present], average="macro"), abs=1e-3
    )
    assert summary["hamming_loss"] == pytest.approx(sk.hamming_loss(labels, predicted))
    assert summary["subset_accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))


def test_figures_equal_sklearn_on_the_same_predictions():
    rng = np.random.default_rng(0)
    labels = (rng.random((3000, len(NAMES))) < [0.5, 0.2, 0.05, 0.01, 0.3, 0.0]).astype(np.float32)
    # Scores that carry signal, squashed towards 0 and 1 as a trained model's are.
    probabilities = 1 / (1 + np.exp(-(3 * labels - 1.5 + rng.normal(scale=1.5, size=labels.shape) * 2)))
    probabilities = probabilities.astype(np.float32)
    thresholds = np.array([0.5, 0.3, 0.5, 0.7, 0.5, 0.5], np.float32)
    summary = metrics.summarize(_statistics(labels, probabilities, thresholds), NAMES, thresholds)
    assert_matches_sklearn(summary, labels, probabilities, thresholds)
    assert summary["labels_without_positives"] == ["l5"]


def test_tuned_thresholds_maximise_f1_over_the_bin_edges():
    rng = np.random.default_rng(1)
    labels = (rng.random((2000, 3)) < [0.3, 0.05, 0.0]).astype(np.float32)
    probabilities = np.clip(0.25 * labels + 0.6 * rng.random(labels.shape), 1e-4, 1 - 1e-4).astype(np.float32)
    totals = _statistics(labels, probabilities, np.full(3, 0.5, np.float32))
    tuned = metrics.tune_thresholds(totals)
    assert tuned[2] == 0.5  # No positives: keeps the default.
    gains = []
    for j in range(2):
        best_f1 = sk.f1_score(labels[:, j], probabilities[:, j] >= tuned[j])
        for edge in 1 / (1 + np.exp(-metrics.BIN_EDGES[::16])):
            assert best_f1 >= sk.f1_score(labels[:, j], probabilities[:, j] >= edge, zero_division=0) - 2e-3
        gains.append(best_f1 - sk.f1_score(labels[:, j], probabilities[:, j] >= 0.5, zero_division=0))
    assert min(gains) >= 0 and max(gains) > 0.01


# 1001 eval examples with batch 64: the last global batch holds 41 rows, which does not fill
# both replicas' halves (32 + 9), so padding must be masked, not dropped or counted twice.
EVAL_FLAGS = TINY + ["--synthetic_eval_examples=1001", "--seed=7"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("trained"))
    check_ok(run_trainer(EVAL_FLAGS + [f"--model_dir={model_dir}", "--mode=train", "--train_steps=30"]))
    return model_dir


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["default", "mirrored", "multi_worker"])
def test_eval_under_each_strategy_equals_sklearn_on_predict_output(trained, strategy):
    flags = EVAL_FLAGS + [f"--model_dir={trained}", f"--strategy={strategy}", "--eval_data=", "--test_data=synthetic"]
    if strategy == "mirrored":
        flags.append("--cpu_replicas=2")
    for mode in ("eval", "predict"):
        if strategy == "multi_worker":
            check_ok(run_local_workers(2, flags + [f"--mode={mode}"]))
        else:
            check_ok(run_trainer(flags + [f"--mode={mode}"]))
    summary = read_metrics(trained, "test")
    with open(os.path.join(trained, "predictions.jsonl")) as f:
        probabilities = np.array([json.loads(line)["probabilities"] for line in f], np.float32)
    _, labels = synthetic.make_split("test", 1001, 8, 16, 2000, 32, seed=7)
    assert probabilities.shape == labels.shape  # Every example once, in input order.
    assert summary["num_examples"] == 1001
    assert_matches_sklearn(summary, labels, probabilities, np.full(8, 0.5, np.float32))


def test_paper_figures_equal_sklearn():
    """CP/CR/CF1 (per-class, over labels with positives) and OP/OR/OF1 (overall) as papers report them."""
    rng = np.random.default_rng(2)
    labels = (rng.random((2000, len(NAMES))) < [0.4, 0.2, 0.05, 0.02, 0.3, 0.0]).astype(np.float32)
    probabilities = np.clip(0.4 * labels + 0.6 * rng.random(labels.shape), 1e-4, 1 - 1e-4).astype(np.float32)
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.45, 0.5], np.float32)
    paper = metrics.summarize(_statistics(labels, probabilities, thresholds), NAMES, thresholds)["paper"]
    predicted = (probabilities >= thresholds).astype(int)
    present = labels.sum(axis=0) > 0
    cp = sk.precision_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    cr = sk.recall_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    assert paper["CP"] == pytest.approx(cp)
    assert paper["CR"] == pytest.approx(cr)
    assert paper["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert paper["OP"] == pytest.approx(sk.precision_score(labels, predicted, average="micro"))
    assert paper["OR"] == pytest.approx(sk.recall_score(labels, predicted, average="micro"))
    assert paper["OF1"] == pytest.approx(sk.f1_score(labels, predicted, average="micro"))


def test_pr_curve_counts_equal_counts_at_each_threshold():
    rng = np.random.default_rng(3)
    labels = (rng.random((1500, 3)) < [0.3, 0.1, 0.0]).astype(np.float32)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 1e-4, 1 - 1e-4).astype(np.float32)
    curves = metrics.pr_curve_counts(_statistics(labels, probabilities, np.full(3, 0.5, np.float32)), 11)
    for i, threshold in enumerate(np.linspace(0, 1, 11)):
        predicted = probabilities >= threshold
        # Thresholds round up to the next bin edge, at most 1/256 logit above: scores in between may differ.
        bin_width = threshold * (1 - threshold) / metrics.BINS_PER_LOGIT * 1.01
        between = (predicted & (probabilities < threshold + bin_width)).sum(0)
        tp_gap = (predicted * labels).sum(0) - curves["true_positive_counts"][:, i]
        fp_gap = (predicted * (1 - labels)).sum(0) - curves["false_positive_counts"][:, i]
        assert np.all(tp_gap >= 0) and np.all(fp_gap >= 0) and np.all(tp_gap + fp_gap <= between)
    total = curves["true_positive_counts"] + curves["false_negative_counts"]
    np.testing.assert_array_equal(total, np.broadcast_to(labels.sum(0)[:, None], total.shape))
    assert np.all(np.diff(curves["recall"], axis=1) <= 0)  # Higher threshold, lower recall.
