"""--threshold_objective: each label's tuned threshold maximises the chosen objective, checked by
brute force with scikit-learn over every threshold the scores allow."""

import json
import os

import numpy as np
import pytest
from helpers import TINY, check_ok, error_line, run_trainer
from sklearn import metrics as sk

from trainer import config, metrics


def scores(seed=0, num_examples=400, num_labels=6):
    rng = np.random.default_rng(seed)
    labels = rng.random((num_examples, num_labels)) < np.linspace(0.05, 0.5, num_labels)
    logits = np.where(labels, 1.0, -1.0) * rng.uniform(0.2, 2.0, num_labels) + rng.normal(size=labels.shape)
    return logits.astype(np.float32), labels


def achieved(probabilities, labels, threshold):
    predicted = probabilities >= threshold
    return (
        sk.precision_score(labels, predicted, zero_division=0),
        sk.recall_score(labels, predicted, zero_division=0),
        predicted,
    )


def every_threshold(probabilities):
    """Each distinct probability, and one above them all: every prediction a threshold can make."""
    return np.append(np.unique(probabilities), np.float32(2.0))


@pytest.mark.parametrize("objective", ["f1", "f_beta:0.5", "f_beta:2", "precision_at_recall:0.8"])
def test_tuned_thresholds_are_optimal_for_the_objective(objective):
    logits, labels = scores()
    kind, value = config.threshold_objective(objective)
    thresholds, met = metrics.tune(metrics.ExactScores(logits, labels), (kind, value))
    probabilities = metrics.curves.sigmoid(logits).astype(np.float32)
    for j in range(labels.shape[1]):
        p, y = probabilities[:, j], labels[:, j]

        def value_at(t, p=p, y=y):
            precision, recall, predicted = achieved(p, y, t)
            if kind == "f_beta":
                return sk.fbeta_score(y, predicted, beta=value, zero_division=0)
            return precision if recall >= value else -1.0

        best = max(value_at(t) for t in every_threshold(p))
        assert value_at(thresholds[j]) == pytest.approx(best, abs=1e-9), (objective, j)
        assert met[j]


def test_recall_at_precision_meets_it_where_it_can_and_falls_back_to_the_best_precision():
    logits, labels = scores(seed=2)
    probabilities = metrics.curves.sigmoid(logits).astype(np.float32)
    thresholds, met = metrics.tune(metrics.ExactScores(logits, labels), ("recall_at_precision", 0.9))
    for j in range(labels.shape[1]):
        p, y = probabilities[:, j], labels[:, j]
        reachable = [t for t in every_threshold(p) if achieved(p, y, t)[0] >= 0.9 and achieved(p, y, t)[2].any()]
        precision, recall, _ = achieved(p, y, thresholds[j])
        if reachable:
            assert met[j] and precision >= 0.9
            assert recall == pytest.approx(max(achieved(p, y, t)[1] for t in reachable))
        else:
            assert not met[j]
            assert precision == pytest.approx(max(achieved(p, y, t)[0] for t in every_threshold(p)))
    assert not met.all() and met.any()  # Both cases occur in this data.


@pytest.mark.parametrize("text", ["f2", "f_beta:0", "precision_at_recall:1.5", "recall_at_precision:x"])
def test_a_bad_objective_is_one_error_naming_the_forms(text):
    with pytest.raises(Exception, match="--threshold_objective=.* is not one of f1, f_beta:B"):
        config.threshold_objective(text)


@pytest.mark.e2e
def test_the_metrics_file_names_the_objective_and_its_labels_reach_the_recall(tmp_path):
    """train_and_eval with precision_at_recall:0.9: every label with positives reaches recall 0.9 on eval."""
    model_dir = str(tmp_path / "run")
    flags = ["--train_steps=30", "--eval_every_steps=30", "--threshold_objective=precision_at_recall:0.9"]
    result = check_ok(run_trainer(TINY + flags + [f"--model_dir={model_dir}"]))
    assert "Tuned thresholds (precision_at_recall:0.9) on eval" in result.stdout
    with open(os.path.join(model_dir, "metrics", "eval-30.json")) as f:
        tuned = json.load(f)
    assert tuned["threshold_objective"] == {"objective": "precision_at_recall:0.9", "not_met": []}
    for name, row in tuned["labels"].items():
        if row["support"]:
            assert row["recall"] >= 0.9, name


@pytest.mark.e2e
def test_a_bad_objective_on_the_command_line_is_exit_1_and_writes_nothing(tmp_path):
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", "--threshold_objective=precision_at_recall:2"])
    assert result.returncode == 1
    assert "--threshold_objective='precision_at_recall:2' is not one of" in error_line(result)
    assert not os.listdir(tmp_path)
