"""Evaluation figures through the real CLI, against scikit-learn on the model's own logits (from
predictions.jsonl), under each strategy; predictions for any label count; bad input."""

import json
import os

import numpy as np
import pytest
from helpers import TINY, check_ok, error_line, read_metrics, run_local_workers, run_trainer
from sklearn import metrics as sk
from test_metrics import reference_at_k

from trainer import data
from trainer.data import synthetic
from trainer.metrics import propensity, ranking

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

# 1001 eval examples with batch 64: the last global batch holds 41 rows, which does not fill
# both replicas' halves (32 + 9), so padding must be masked, not dropped or counted twice.
# A small training set and a high rate overfit: many test logits end up beyond +-16.
EVAL_FLAGS = TINY + ["--synthetic_eval_examples=1001", "--seed=7"]
OVERFIT_FLAGS = ["--synthetic_train_examples=256", "--learning_rate=0.05", "--train_steps=600", "--steps_per_loop=100"]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("overfit"))
    check_ok(run_trainer(EVAL_FLAGS + OVERFIT_FLAGS + [f"--model_dir={model_dir}", "--mode=train"]))
    return model_dir


def read_predictions(model_dir):
    with open(os.path.join(model_dir, "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_curves_equal_sklearn(summary, labels, logits, tolerance=1e-4):
    checked = 0
    for j, name in enumerate(summary["labels"]):
        row = summary["labels"][name]
        if 0 < labels[:, j].sum() < len(labels):
            assert row["average_precision"] == pytest.approx(
                sk.average_precision_score(labels[:, j], logits[:, j]), abs=tolerance
            )
            assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(labels[:, j], logits[:, j]), abs=tolerance)
            checked += 1
    assert checked >= 6


def assert_ranking_equals_references(block, labels, logits, model_dir):
    assert block["label_ranking_average_precision"] == pytest.approx(
        sk.label_ranking_average_precision_score(labels, logits), abs=1e-5
    )
    assert block["coverage_error"] == pytest.approx(sk.coverage_error(labels, logits), rel=1e-5)
    assert block["ranking_loss"] == pytest.approx(sk.label_ranking_loss(labels, logits), abs=1e-5)
    counts, num_train = data.read_train_label_counts(model_dir)
    inv_propensity = propensity.inverse_propensities(counts, num_train)
    for k in ranking.KS:
        for name, value in reference_at_k(labels, logits, inv_propensity, k).items():
            assert block[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("strategy", ["default", "mirrored", "multi_worker"])
def test_exact_figures_under_each_strategy_equal_sklearn_on_the_logits(overfit, strategy):
    flags = EVAL_FLAGS + [f"--model_dir={overfit}", f"--strategy={strategy}", "--eval_data=", "--test_data=synthetic"]
    if strategy == "mirrored":
        flags.append("--cpu_replicas=2")
    for mode in ("eval", "predict"):
        if strategy == "multi_worker":
            check_ok(run_local_workers(2, flags + [f"--mode={mode}"]))
        else:
            check_ok(run_trainer(flags + [f"--mode={mode}"]))
    summary = read_metrics(overfit, "test")
    predictions = read_predictions(overfit)
    logits = np.array([p["logits"] for p in predictions], np.float32)
    _, labels = synthetic.make_split("test", 1001, 8, 16, 2000, 32, seed=7)
    labels = labels > 0
    assert logits.shape == labels.shape and summary["num_examples"] == 1001  # Every example once, in order.
    assert (np.abs(logits) > 16).mean() > 0.05, "the model should be overconfident"
    assert summary["curves"]["exact"]
    assert_curves_equal_sklearn(summary, labels, logits)
    assert_ranking_equals_references(summary["ranking"], labels, logits, overfit)
    # Probabilities and logits are float32 written in full: they round-trip exactly.
    probabilities = np.array([p["probabilities"] for p in predictions])
    np.testing.assert_array_equal(probabilities.astype(np.float32).astype(np.float64), probabilities)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6, atol=1e-7)


def test_histogram_fallback_beyond_the_budget_stays_within_its_bounds(overfit):
    flags = EVAL_FLAGS + [f"--model_dir={overfit}", "--eval_data=", "--test_data=synthetic"]
    check_ok(run_trainer(flags + ["--mode=predict"]))
    check_ok(run_trainer(flags + ["--mode=eval", "--exact_metrics_budget=1000"]))
    summary = read_metrics(overfit, "test")
    assert not summary["curves"]["exact"] and summary["curves"]["bins_per_label"] == 64
    logits = np.array([p["logits"] for p in read_predictions(overfit)], np.float32)
    labels = synthetic.make_split("test", 1001, 8, 16, 2000, 32, seed=7)[1] > 0
    for j, row in enumerate(summary["labels"].values()):
        if 0 < labels[:, j].sum() < len(labels):
            ap = sk.average_precision_score(labels[:, j], logits[:, j])
            assert abs(row["average_precision"] - ap) <= row["average_precision_bound"] + 1e-9
            assert abs(row["roc_auc"] - sk.roc_auc_score(labels[:, j], logits[:, j])) <= row["roc_auc_bound"] + 1e-9


def test_predict_top_k_writes_the_k_best_labels_and_refuses_more_than_there_are(overfit):
    flags = EVAL_FLAGS + [f"--model_dir={overfit}", "--eval_data=", "--test_data=synthetic", "--mode=predict"]
    check_ok(run_trainer(flags))
    dense = read_predictions(overfit)
    check_ok(run_trainer(flags + ["--predict_top_k=3"]))
    top = read_predictions(overfit)
    names = synthetic.label_names(8)
    assert len(top) == len(dense)
    for row, full in zip(top[:50], dense[:50]):
        assert set(row) == {"top_k", "labels"} and row["labels"] == full["labels"]
        expected = np.argsort(-np.array(full["logits"]), kind="stable")[:3]
        assert [name for name, _ in row["top_k"]] == [names[j] for j in expected]
        assert [p for _, p in row["top_k"]] == [full["probabilities"][j] for j in expected]
    before = open(os.path.join(overfit, "predictions.jsonl")).read()
    result = run_trainer(flags + ["--predict_top_k=9"])
    assert result.returncode == 1
    assert "--predict_top_k=9 is more than the 8 labels" in error_line(result)
    assert open(os.path.join(overfit, "predictions.jsonl")).read() == before


def _snapshot(model_dir):
    return {
        os.path.join(root, name): os.path.getmtime(os.path.join(root, name))
        for root, _, files in os.walk(model_dir)
        for name in files
    }


def test_bad_eval_input_exits_1_and_changes_nothing(overfit, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join([f"f{i}" for i in range(16)] + [f"label:label_{j:02d}" for j in range(8)]) + "\n")
    before = _snapshot(overfit)
    result = run_trainer(EVAL_FLAGS + [f"--model_dir={overfit}", "--mode=eval", "--test_data=", f"--eval_data={empty}"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no examples" in error_line(result)
    assert _snapshot(overfit) == before


def test_a_labels_file_with_duplicate_names_exits_1_and_writes_nothing(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("joy\nanger\njoy\n")
    good = tmp_path / "good.tsv"
    good.write_text("fine text\t0,1\n" * 4)
    model_dir = tmp_path / "run"
    result = run_trainer(
        [f"--model_dir={model_dir}", "--model=text_bow", f"--train_data={good}", f"--eval_data={good}"]
        + [f"--label_names={names}", "--global_batch_size=8"]
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "names 'joy' more than once" in error_line(result)
    assert not model_dir.exists() or not os.listdir(model_dir)


def test_figures_on_real_data_equal_sklearn(shared_data, tmp_path):
    """yeast: the default mlp overfits in a few hundred steps; the eval file's AP/ROC-AUC per label
    equal scikit-learn's on the exact logits of predictions.jsonl."""
    yeast = os.path.join(shared_data, "yeast")
    model_dir = str(tmp_path / "yeast")
    flags = [
        f"--model_dir={model_dir}",
        f"--train_data={yeast}/train.csv",
        f"--eval_data={yeast}/test.csv",
        f"--test_data={yeast}/test.csv",
        "--train_steps=400",
        "--eval_every_steps=400",
        "--learning_rate=0.01",
        "--steps_per_loop=100",
    ]
    check_ok(run_trainer(flags + ["--mode=train"]))
    check_ok(run_trainer(flags + ["--mode=eval", "--eval_data="]))
    check_ok(run_trainer(flags + ["--mode=predict"]))
    summary = read_metrics(model_dir, "test")
    logits = np.array([p["logits"] for p in read_predictions(model_dir)], np.float32)
    header = open(f"{yeast}/test.csv").readline().strip().split(",")
    columns = [i for i, name in enumerate(header) if name.startswith("label:")]
    labels = np.loadtxt(f"{yeast}/test.csv", delimiter=",", skiprows=1, usecols=columns) > 0
    assert logits.shape == labels.shape and summary["curves"]["exact"]
    assert_curves_equal_sklearn(summary, labels, logits)
    assert_ranking_equals_references(summary["ranking"], labels, logits, model_dir)
