"""A run with a train file and a test file only: --threshold_holdout, --early_stopping_patience and
--test_checkpoint, through the CLI."""

import json
import os
import re

import numpy as np
import pytest
from helpers import TINY, check_ok, error_line, run_trainer

from trainer.data import synthetic

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

TRAIN_EXAMPLES = 1000


def write_csv(path, split, num_examples):
    """A synthetic split as CSV: 16 numeric feature columns, then 8 `label:` columns."""
    features, labels = synthetic.make_split(split, num_examples, 8, 16, 2000, 32, seed=42)
    header = [f"f{i}" for i in range(16)] + [f"label:l{j}" for j in range(8)]
    rows = np.concatenate([features["features"], labels], axis=1)
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(f"{v:.6g}" for v in row) + "\n")
    return str(path)


def data_flags(tmp_path):
    train = write_csv(tmp_path / "train.csv", "train", TRAIN_EXAMPLES)
    test = write_csv(tmp_path / "test.csv", "test", 300)
    return [f"--train_data={train}", f"--test_data={test}"]


def metrics_files(model_dir, split):
    """{step: figures} of metrics/<split>-<step>.json."""
    folder = os.path.join(model_dir, "metrics")
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = re.fullmatch(rf"{split}-(\d+)\.json", name)
        if match:
            with open(os.path.join(folder, name)) as f:
                found[int(match.group(1))] = json.load(f)
    return found


def test_without_eval_data_a_tenth_of_train_is_held_out_for_evaluation_and_thresholds(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = [*TINY, *data_flags(tmp_path), "--train_steps=40", "--eval_every_steps=20", f"--model_dir={model_dir}"]
    result = check_ok(run_trainer(flags))
    held = int(re.search(r"No --eval_data: (\d+) of the 1000 training examples", result.stderr).group(1))
    assert 70 <= held <= 130  # About --threshold_holdout=0.1 of them.
    evaluations = metrics_files(model_dir, "eval")
    assert sorted(evaluations) == [20, 40]
    assert all(summary["num_examples"] == held for summary in evaluations.values())
    assert os.path.isfile(os.path.join(model_dir, "thresholds.json"))
    (test,) = metrics_files(model_dir, "test").values()
    assert test["num_examples"] == 300
    # Training saw the rest: the label counts of both parts add up to the file's.
    _, labels = synthetic.make_split("train", TRAIN_EXAMPLES, 8, 16, 2000, 32, seed=42)
    frequencies = re.search(r"Label frequencies in training data: (.*)", result.stderr).group(1)
    first = float(re.search(r"l0=([0-9.]+)", frequencies).group(1))
    support = evaluations[40]["labels"]["l0"]["support"]
    assert round(first * (TRAIN_EXAMPLES - held)) + support == int(labels[:, 0].sum())

    # The same command again resumes with the same held-out examples (it trains no further).
    again = check_ok(run_trainer(flags))
    assert f"No --eval_data: {held} of the 1000" in again.stderr


def test_threshold_holdout_zero_trains_on_everything_and_scores_test_at_one_half(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = [*TINY, *data_flags(tmp_path), "--train_steps=20", "--threshold_holdout=0", f"--model_dir={model_dir}"]
    result = check_ok(run_trainer(flags))
    assert "No --eval_data" not in result.stderr
    assert metrics_files(model_dir, "eval") == {}
    (test,) = metrics_files(model_dir, "test").values()
    assert test["step"] == 20 and test["checkpoint"] == "latest"
    assert {figures["threshold"] for figures in test["labels"].values()} == {0.5}


def test_a_holdout_that_leaves_nothing_is_one_error_line_and_exit_1(tmp_path):
    train = write_csv(tmp_path / "train.csv", "train", 3)
    result = run_trainer([*TINY, f"--train_data={train}", "--threshold_holdout=0.01", f"--model_dir={tmp_path}/run"])
    assert result.returncode == 1
    assert "--threshold_holdout" in error_line(result)
    for bad in ("1", "-0.1"):
        result = run_trainer([*TINY, f"--threshold_holdout={bad}", f"--model_dir={tmp_path}/bad"])
        assert result.returncode == 1 and "--threshold_holdout" in error_line(result)


# A learning rate too small to move any weight: no evaluation after the first one improves.
FROZEN = ["--learning_rate=1e-12", "--warmup_steps=0", "--lr_schedule=constant", "--eval_every_steps=10"]


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = [*TINY, *data_flags(tmp_path), *FROZEN, "--train_steps=1000", "--early_stopping_patience=2"]
    result = check_ok(run_trainer([*flags, f"--model_dir={model_dir}"]))
    assert "early stop at step 30" in result.stderr
    assert sorted(metrics_files(model_dir, "eval")) == [10, 20, 30]
    assert os.path.isfile(os.path.join(model_dir, "checkpoints", "ckpt-30.index"))
    with open(os.path.join(model_dir, "checkpoints", "best", "best.json")) as f:
        assert json.load(f)["step"] == 10

    # Patience 0 (the default) never stops early.
    other = str(tmp_path / "other")
    result = check_ok(run_trainer([*TINY, *data_flags(tmp_path), *FROZEN, "--train_steps=40", f"--model_dir={other}"]))
    assert "early stop" not in result.stderr
    assert sorted(metrics_files(other, "eval")) == [10, 20, 30, 40]


def test_test_data_is_scored_with_the_best_checkpoint_and_its_thresholds_by_default(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = [*TINY, *data_flags(tmp_path), *FROZEN, "--train_steps=30"]
    check_ok(run_trainer([*flags, f"--model_dir={model_dir}"]))
    # The best evaluation is the first (nothing improves on it): test is scored at its step.
    (step,) = metrics_files(model_dir, "test")
    assert step == 10
    test = metrics_files(model_dir, "test")[10]
    assert test["checkpoint"] == "best"
    with open(os.path.join(model_dir, "checkpoints", "best", "thresholds.json")) as f:
        best_thresholds = json.load(f)
    assert {name: figures["threshold"] for name, figures in test["labels"].items()} == pytest.approx(best_thresholds)

    latest = str(tmp_path / "latest")
    check_ok(run_trainer([*flags, "--test_checkpoint=latest", f"--model_dir={latest}"]))
    (step,) = metrics_files(latest, "test")
    assert step == 30 and metrics_files(latest, "test")[30]["checkpoint"] == "latest"
    with open(os.path.join(latest, "thresholds.json")) as f:
        final_thresholds = json.load(f)
    assert {name: f["threshold"] for name, f in metrics_files(latest, "test")[30]["labels"].items()} == pytest.approx(
        final_thresholds
    )
