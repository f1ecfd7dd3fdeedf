"""--mode=export: the SavedModel, loaded in a fresh process, agrees with --mode=predict."""

import json
import os

import numpy as np
import pytest
from helpers import TINY, check_ok, read_predictions, run_trainer, score_in_fresh_process

from trainer.data import synthetic

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.


def check_agreement(model_dir, served):
    predictions = read_predictions(model_dir)
    with open(os.path.join(model_dir, "thresholds.json")) as f:
        thresholds = json.load(f)
    assert served["label_names"] == list(thresholds)
    np.testing.assert_allclose(served["thresholds"], list(thresholds.values()), rtol=1e-6)
    np.testing.assert_allclose(served["probabilities"], [p["probabilities"] for p in predictions], atol=1e-6)
    np.testing.assert_allclose(served["logits"], [p["logits"] for p in predictions], rtol=1e-5, atol=1e-5)
    names = served["label_names"]
    served_labels = [[names[j] for j, on in enumerate(row) if on] for row in served["labels"]]
    assert served_labels == [p["labels"] for p in predictions]


def test_numeric_model_export_matches_predict(tmp_path):
    """The numeric model's SavedModel, loaded in a fresh process outside the project, serves --mode=predict's output."""
    model_dir = str(tmp_path / "run")
    flags = TINY + [f"--model_dir={model_dir}", "--synthetic_eval_examples=300"]
    check_ok(run_trainer(flags + ["--train_steps=40"]))  # train_and_eval: tunes thresholds.
    check_ok(run_trainer(flags + ["--mode=export"]))
    check_ok(run_trainer(flags + ["--mode=predict", "--test_data=synthetic"]))
    features, _ = synthetic.make_split("test", 300, 8, 16, 2000, 32, seed=42)
    served = score_in_fresh_process(
        os.path.join(model_dir, "export"), {"features": features["features"].tolist()}, tmp_path
    )
    check_agreement(model_dir, served)
    assets = os.listdir(os.path.join(model_dir, "export", "assets"))
    assert sorted(assets) == ["label_names.txt", "thresholds.json"]


def test_text_model_export_takes_raw_strings(tmp_path):
    """A text model's SavedModel takes raw strings and tokenises them as training did, matching --mode=predict."""
    rng = np.random.default_rng(0)
    words = {0: ["happy", "glad", "joy"], 1: ["sad", "cry", "tears"], 2: ["angry", "mad", "rage"]}
    rows = []
    for _ in range(400):
        labels = [j for j in range(3) if rng.random() < 0.4]
        text = " ".join([rng.choice(words[j]) for j in labels] + list(rng.choice(["the", "a", "day", "it"], 4)))
        rows.append(f"{text}\t{','.join(map(str, labels))}\tid")
    data = tmp_path / "data.tsv"
    data.write_text("\n".join(rows) + "\n")
    names = tmp_path / "labels.txt"
    names.write_text("joy\nsadness\nanger\n")
    model_dir = str(tmp_path / "run")
    flags = [
        f"--model_dir={model_dir}",
        "--model=text_bow",
        f"--train_data={data}",
        f"--eval_data={data}",
        f"--label_names={names}",
        "--global_batch_size=32",
        "--hidden_units=16",
        "--sequence_length=16",
        "--max_tokens=100",
        "--learning_rate=0.01",
    ]
    check_ok(run_trainer(flags + ["--train_steps=60"]))
    check_ok(run_trainer(flags + ["--mode=export"]))
    check_ok(run_trainer(flags + ["--mode=predict", f"--test_data={data}"]))
    texts = [row.split("\t")[0] for row in rows]
    served = score_in_fresh_process(os.path.join(model_dir, "export"), {"text": texts}, tmp_path)
    check_agreement(model_dir, served)


def test_export_without_a_trained_model_is_a_clear_error(tmp_path):
    """--mode=export before training is exit 1 with one line saying to train first."""
    result = run_trainer([f"--model_dir={tmp_path}", "--mode=export"])
    assert result.returncode == 1
    assert "train first" in result.stderr
