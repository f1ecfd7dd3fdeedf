"""The modes after training: what --mode=eval reads and writes, through the real command."""

import hashlib
import json
import os

import pytest
from helpers import TINY, check_ok, run_trainer

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.


def snapshot(model_dir):
    """{relative path: sha256} of every file under `model_dir`."""
    found = {}
    for folder, _, files in os.walk(model_dir):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, model_dir)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("trained"))
    # Dropout, which the eval runs below do not pass: a Dropout layer shifts the layers after it, so
    # they must rebuild the trained model from its config.json, not from their own flags.
    # And a loss the eval runs do not pass either, whose figure they must report as training did.
    flags = [
        "--train_steps=20",
        "--eval_every_steps=10",
        "--test_data=synthetic",
        "--dropout=0.2",
        "--loss=weighted_bce",
    ]
    check_ok(run_trainer(TINY + flags + [f"--model_dir={model_dir}"]))
    return model_dir


def test_an_eval_run_changes_no_file_that_training_wrote(trained):
    """--mode=eval writes metrics/eval-20-2.json (then -3, ...) beside training's eval-20.json; no file changes."""
    before = snapshot(trained)
    assert {"metrics/eval-20.json", "metrics/test-20.json", "thresholds.json"} <= set(before)
    for number in (2, 3):
        flags = ["--mode=eval", "--eval_data=synthetic", "--test_data=synthetic"]
        check_ok(run_trainer(TINY + flags + [f"--model_dir={trained}"]))
        after = snapshot(trained)
        assert {path: after[path] for path in before} == before
        for split in ("eval", "test"):
            with open(os.path.join(trained, "metrics", f"{split}-20-{number}.json")) as f:
                written = json.load(f)
            with open(os.path.join(trained, "metrics", f"{split}-20.json")) as f:
                by_training = json.load(f)
            assert written["split"] == split and written["step"] == 20
            # Same checkpoint, data and thresholds: the same figures.
            assert abs(written["macro"]["f1"] - by_training["macro"]["f1"]) < 1e-9
            assert abs(written["loss"] - by_training["loss"]) < 1e-6
        before = after


def test_eval_with_only_test_data_scores_it_alone(trained):
    """--mode=eval --test_data=X (no --eval_data) scores X and nothing else."""
    before = set(os.listdir(os.path.join(trained, "metrics")))
    result = check_ok(
        run_trainer(TINY + [f"--model_dir={trained}", "--mode=eval", "--test_data=synthetic", "--eval_data="])
    )
    new = set(os.listdir(os.path.join(trained, "metrics"))) - before
    assert new and all(name.startswith("test-20") for name in new), new
    assert "[test] step 20" in result.stdout
