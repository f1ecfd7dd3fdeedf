"""--mode=export: the SavedModel, loaded in a fresh process, agrees with --mode=predict."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import TINY, _env, check_ok, run_trainer

from trainer import synthetic

LOAD_AND_SCORE = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
inputs = json.load(open(sys.argv[2]))
serve = loaded.signatures["serving_default"]
arguments = {name: tf.constant(value, dtype=serve.structured_input_signature[1][name].dtype)
             for name, value in inputs.items()}
outputs = serve(**arguments)
names = loaded.signatures["label_names"]()
print(json.dumps({"probabilities": outputs["probabilities"].numpy().tolist(),
                  "logits": outputs["logits"].numpy().tolist(),
                  "labels": outputs["labels"].numpy().tolist(),
                  "label_names": [n.decode() for n in names["label_names"].numpy()],
                  "thresholds": names["thresholds"].numpy().tolist()}))
"""


def score_in_fresh_process(export_dir, inputs, tmp_path):
    inputs_path = tmp_path / "inputs.json"
    inputs_path.write_text(json.dumps(inputs))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, export_dir, str(inputs_path)],
        cwd=str(tmp_path),  # Not the repo: the SavedModel must not need the project's code.
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_predictions(model_dir):
    with open(os.path.join(model_dir, "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


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
    result = run_trainer([f"--model_dir={tmp_path}", "--mode=export"])
    assert result.returncode == 1
    assert "train first" in result.stderr
