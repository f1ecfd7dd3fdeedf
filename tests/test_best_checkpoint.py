"""The best checkpoint kept apart (checkpoints/best/, best.json) and async checkpointing, through the real CLI."""

import glob
import json
import os
import re
import signal

import numpy as np
import pytest
from helpers import (
    TINY,
    check_ok,
    error_line,
    max_weight_difference,
    read_predictions,
    read_until,
    run_trainer,
    score_in_fresh_process,
    start_trainer,
)

from trainer.data import synthetic

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.


def eval_values(model_dir, block, name):
    """{step: value} over metrics/eval-*.json; the final file's figures at 0.5 (before tuning), as compared."""
    values = {}
    for path in glob.glob(os.path.join(model_dir, "metrics", "eval-*.json")):
        with open(path) as f:
            summary = json.load(f)
        values[summary["step"]] = summary.get("at_0.5", summary)[block][name]
    return values


def read_best(model_dir, name="best.json"):
    with open(os.path.join(model_dir, "checkpoints", "best", name)) as f:
        return json.load(f)


def read_json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


def test_best_checkpoint_holds_the_best_evaluation_and_survives_a_resume(tmp_path):
    """checkpoints/best/ and best.json hold the best evaluation; a resumed run keeps the best value it reads."""
    flags = TINY + [f"--model_dir={tmp_path}", "--eval_every_steps=10", "--checkpoint_every_steps=20"]
    check_ok(run_trainer(flags + ["--train_steps=40"]))
    values = eval_values(tmp_path, "macro", "average_precision")
    assert sorted(values) == [10, 20, 30, 40]
    best = read_best(tmp_path)
    best_step = max(values, key=values.get)
    assert best == {"step": best_step, "metric": "macro/average_precision", "value": values[best_step]}
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", "best", f"ckpt-{best_step}.index"))

    # A best value no evaluation can reach: read back at start, so the resumed run keeps it.
    unbeatable = dict(best, value=2.0)
    with open(os.path.join(tmp_path, "checkpoints", "best", "best.json"), "w") as f:
        json.dump(unbeatable, f)
    result = check_ok(run_trainer(flags + ["--train_steps=60"]))
    assert "Resuming at step 40 of 60" in result.stderr
    assert read_best(tmp_path) == unbeatable
    assert "New best" not in result.stderr


def test_checkpoint_best_evaluates_predicts_and_exports_the_best_checkpoint_with_its_thresholds(tmp_path):
    """--checkpoint=best: eval, predict and export use the best weights and thresholds; eval-<step>.json is kept."""
    flags = TINY + [f"--model_dir={tmp_path}", "--synthetic_eval_examples=300"]
    check_ok(run_trainer(flags + ["--eval_every_steps=10", "--train_steps=30"]))
    # Training on without evaluations: the latest checkpoint moves to step 60, the best stays.
    check_ok(run_trainer(flags + ["--mode=train", "--train_steps=60"]))
    best_step = read_best(tmp_path)["step"]
    best_thresholds = read_best(tmp_path, "thresholds.json")
    periodic = read_json(tmp_path, "metrics", f"eval-{best_step}.json")
    # Tuned on that evaluation's statistics, as thresholds.json is at the end of training.
    assert list(best_thresholds) == list(periodic["labels"])
    assert any(t != 0.5 for t in best_thresholds.values()) and all(0 < t < 1 for t in best_thresholds.values())

    check_ok(run_trainer(flags + ["--mode=eval", "--checkpoint=best"]))
    evaluated = read_json(tmp_path, "metrics", f"best-eval-{best_step}.json")
    assert evaluated["step"] == best_step and evaluated["checkpoint"] == "best"
    # The same weights as that evaluation (AP does not depend on thresholds), scored at the best's own thresholds.
    for name, row in evaluated["labels"].items():
        assert row["threshold"] == np.float32(best_thresholds[name])
        assert row["average_precision"] == periodic["labels"][name]["average_precision"]
    assert read_json(tmp_path, "metrics", f"eval-{best_step}.json") == periodic  # The run's history is kept.

    check_ok(run_trainer(flags + ["--mode=predict", "--test_data=synthetic"]))
    latest_predictions = read_predictions(tmp_path)
    check_ok(run_trainer(flags + ["--mode=predict", "--test_data=synthetic", "--checkpoint=best"]))
    predictions = read_predictions(tmp_path)
    probabilities = np.array([p["probabilities"] for p in predictions])
    assert np.abs(probabilities - [p["probabilities"] for p in latest_predictions]).max() > 1e-3
    names, thresholds = list(best_thresholds), np.array(list(best_thresholds.values()), np.float32)
    assert [p["labels"] for p in predictions] == [
        [names[j] for j in np.flatnonzero(row >= thresholds)] for row in probabilities.astype(np.float32)
    ]

    check_ok(run_trainer(flags + ["--mode=export", "--checkpoint=best"]))
    features, _ = synthetic.make_split("test", 300, 8, 16, 2000, 32, seed=42)
    served = score_in_fresh_process(
        os.path.join(tmp_path, "export"), {"features": features["features"].tolist()}, tmp_path
    )
    np.testing.assert_allclose(served["thresholds"], thresholds, rtol=1e-6)
    np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-6)


def test_checkpoint_best_without_one_or_when_training_is_one_error_line_and_exit_1(tmp_path):
    """--checkpoint=best when training, or without a best checkpoint: one error: line, exit 1, nothing lost."""
    flags = TINY + [f"--model_dir={tmp_path}", "--mode=train", "--train_steps=10"]
    result = run_trainer(flags + ["--checkpoint=best"])
    assert result.returncode == 1
    assert "--checkpoint=best is for --mode=eval, predict or export" in error_line(result)
    assert not os.listdir(tmp_path)
    check_ok(run_trainer(flags))  # No evaluations: no best checkpoint.
    before = sorted(os.listdir(os.path.join(tmp_path, "checkpoints")))
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", "--mode=eval", "--checkpoint=best"])
    assert result.returncode == 1
    assert "holds no checkpoint" in error_line(result) and "--checkpoint=latest" in error_line(result)
    assert sorted(os.listdir(os.path.join(tmp_path, "checkpoints"))) == before


def test_a_bad_best_metric_is_one_error_line_and_exit_1(tmp_path):
    """An unknown --best_metric is one error: line listing the choices, exit 1, nothing written."""
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", "--best_metric=macro/accuracy"])
    assert result.returncode == 1
    line = error_line(result)
    assert "--best_metric='macro/accuracy'" in line and "macro/f1" in line
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("source", ["in memory", "streamed"])
def test_async_checkpoint_preempted_and_resumed_gives_the_weights_of_a_synchronous_run(tmp_path, source):
    """An --async_checkpoint run exits 75 synced on SIGTERM; resumed, it matches a sync run, across
    epoch ends too (epochs of 31.25 steps): the input's order is drawn from (seed, epoch), so the saved
    iterator position is all a resume needs."""
    # A constant learning rate: the weights after N steps do not depend on --train_steps.
    flags = TINY + ["--mode=train", "--deterministic", "--lr_schedule=constant", "--checkpoint_every_steps=30"]
    if source == "streamed":
        features, labels = synthetic.make_split("train", 2000, 8, 16, 2000, 32, seed=42)
        header = ",".join([f"f{i}" for i in range(16)] + [f"label:l{j}" for j in range(8)])
        np.savetxt(tmp_path / "train.csv", np.hstack([features["features"], labels]), delimiter=",", fmt="%g",
                   header=header, comments="")  # fmt: skip
        flags += [f"--train_data={tmp_path / 'train.csv'}", "--in_memory_budget_mb=0", "--threshold_holdout=0"]
    run_dir, reference = str(tmp_path / "async"), str(tmp_path / "reference")
    async_flags = flags + [f"--model_dir={run_dir}", "--async_checkpoint"]
    process, lines = start_trainer(async_flags + ["--train_steps=100000"]), []
    read_until(process.stderr, r"\[train\] step 40/", lines)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr[-2000:]
    assert "(writing in the background)" in "".join(lines) + stderr
    step = int(re.search(r"preempted: stopped by SIGTERM at step (\d+)", stderr).group(1))
    # Synced before the exit: the index names the preemption checkpoint and its files are whole.
    with open(os.path.join(run_dir, "checkpoints", "checkpoint")) as f:
        assert f'model_checkpoint_path: "ckpt-{step}"' in f.read()

    end = step + 40  # Longer than an epoch: the resumed run crosses an epoch end.
    result = check_ok(run_trainer(async_flags + [f"--train_steps={end}"]))
    assert f"Resuming at step {step} of {end}" in result.stderr
    assert source == "in memory" or "--train_data: streamed from the files" in result.stderr
    check_ok(run_trainer(flags + [f"--model_dir={reference}", f"--train_steps={end}"]))
    assert max_weight_difference(reference, run_dir) <= 1e-6
