"""Data that does not fit the model is refused before any step, naming the difference: labels or
columns missing, added or in another order, another feature width, other training data on a
resume. And a file of the model's feature columns alone is something to predict on."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import check_ok, error_line, run_trainer
from test_data_in_memory import write_csv
from test_modes import snapshot

from trainer.data import matching
from trainer.data.split import InputSpec, from_arrays
from trainer.errors import UserError

FLAGS = ["--hidden_units=16", "--global_batch_size=32", "--checkpoint_every_steps=10", "--eval_every_steps=10"]


def spec(labels, columns=(), width=None):
    width = len(columns) if width is None else width
    return InputSpec({"features": tf.TensorSpec([width], tf.float32)}, list(labels), feature_names=tuple(columns))


def message(got, expected):
    with pytest.raises(UserError) as raised:
        matching.check_same_inputs(got, expected, "--test_data", "the model in runs/x", "fix it.")
    return str(raised.value)


def test_the_message_names_what_is_missing_added_or_out_of_order():
    model = spec(["a", "b", "c"], ["x", "y"])
    matching.check_same_inputs(spec(["a", "b", "c"], ["x", "y"]), model, "--test_data", "the model", "fix.")
    assert (
        message(spec(["a", "b"], ["x", "y"]), model)
        == "--test_data lacks the labels 'c' of the model in runs/x; fix it."
    )
    assert message(spec(["a", "b", "c", "d"], ["x", "y"]), model) == (
        "--test_data has the labels 'd', which the model in runs/x has not; fix it."
    )
    assert message(spec(["a", "b", "z"], ["x", "y"]), model) == (
        "--test_data lacks the labels 'c' of the model in runs/x and has others ('z'); fix it."
    )
    assert message(spec(["b", "a", "c"], ["x", "y"]), model) == (
        "--test_data has the labels of the model in runs/x in another order (label 1 is 'b', not 'a'); fix it."
    )
    assert message(spec(["a", "b", "c"], ["y", "x"]), model) == (
        "--test_data has the feature columns of the model in runs/x in another order (feature column 1 is 'y', "
        "not 'x'); fix it."
    )
    # Without column names (TFRecord shards), the width still has to agree.
    assert message(spec(["a", "b", "c"], width=3), model) == (
        "--test_data gives the model features [3] where the model in runs/x has features [2]; fix it."
    )


def test_a_long_difference_is_cut_short():
    names = [f"label_{i}" for i in range(100)]
    text = message(spec(names[:50], ["x"]), spec(names, ["x"]))
    assert "'label_50', 'label_51', 'label_52', 'label_53', ... and 46 more of the model" in text


def test_a_resume_needs_the_examples_and_the_path_it_started_with():
    split = from_arrays({"features": np.zeros((10, 2), np.float32)}, np.zeros((10, 3), np.float32), ["a", "b", "c"])
    saved = {"num_train_examples": 10, "train_in_memory": True, "train_cached": False}
    matching.check_resume(saved, split, "runs/x", cached=False)
    matching.check_resume(saved, split, "runs/x", cached=True)  # In memory, there is nothing to cache.
    matching.check_resume({}, split, "runs/x", cached=False)  # A run from before these were saved.
    with pytest.raises(UserError, match="gives 10 training examples but the run in runs/x started with 12"):
        matching.check_resume({"num_train_examples": 12}, split, "runs/x", cached=False)
    streamed = dict(saved, train_in_memory=False)
    with pytest.raises(UserError, match=r"streamed its training data.*--in_memory_budget_mb as the run started \(0"):
        matching.check_resume(streamed, split, "runs/x", cached=False)
    split = dataclasses.replace(split, arrays=None)  # Streamed, as far as the check can tell.
    matching.check_resume(streamed, split, "runs/x", cached=False)
    with pytest.raises(UserError, match="streamed its training data without --cache_train_data.*resume without it"):
        matching.check_resume(streamed, split, "runs/x", cached=True)


def rewrite_columns(source, target, order=None, rename=None, drop=(), rows=None):
    """A copy of CSV `source` with its columns in `order` (names), renamed, some dropped, the first `rows` rows."""
    with open(source) as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    order = [name for name in (order or header) if name not in drop]
    index = [header.index(name) for name in order]
    body = lines[1 : 1 + rows if rows else None]
    out = [",".join((rename or {}).get(name, name) for name in order)]
    out += [",".join(line.split(",")[i] for i in index) for line in body]
    with open(target, "w") as f:
        f.write("\n".join(out) + "\n")
    return str(target)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matching")
    train = write_csv(folder / "train.csv", 300, num_features=6, num_labels=3)
    test = write_csv(folder / "test.csv", 100, num_features=6, num_labels=3, seed=1)
    model_dir = str(folder / "run")
    check_ok(run_trainer(FLAGS + [f"--model_dir={model_dir}", f"--train_data={train}", "--train_steps=20"]))
    return folder, train, test, model_dir


@pytest.mark.e2e
def test_data_that_does_not_fit_the_trained_model_is_one_line_and_changes_nothing(trained, tmp_path):
    folder, train, test, model_dir = trained
    header = open(train).readline().strip().split(",")
    swapped_labels = header[:6] + [header[7], header[6], header[8]]
    swapped_features = [header[1], header[0]] + header[2:]
    before = snapshot(model_dir)
    with open(os.path.join(model_dir, "input_spec.json")) as f:
        started_with = json.load(f)["num_train_examples"]  # 300 rows less the held-out tenth.
    cases = [
        # A resume with the label columns swapped would train output 0 on label 1 from here on.
        (
            [f"--train_data={rewrite_columns(train, tmp_path / 'a.csv', order=swapped_labels)}", "--train_steps=30"],
            "--train_data has the labels of the model in {} in another order (label 1 is 'l1', not 'l0')",
        ),
        # Fewer rows: the checkpoint's indices would point past the end.
        (
            [f"--train_data={rewrite_columns(train, tmp_path / 'b.csv', rows=250)}", "--train_steps=30"],
            "training examples but the run in {} started with " + str(started_with),
        ),
        (
            [f"--train_data={train}", "--train_steps=30", "--in_memory_budget_mb=0"],
            "held its training data in memory",
        ),
        (
            ["--mode=eval", f"--test_data={rewrite_columns(test, tmp_path / 'c.csv', order=swapped_features)}"],
            "--test_data has the feature columns of the model in {} in another order (feature column 1 is 'f1', not "
            "'f0')",
        ),
        (
            ["--mode=eval", f"--test_data={rewrite_columns(test, tmp_path / 'd.csv', rename={'label:l2': 'label:z'})}"],
            "--test_data lacks the labels 'l2' of the model in {} and has others ('z')",
        ),
        (
            ["--mode=predict", f"--test_data={rewrite_columns(test, tmp_path / 'e.csv', drop=['f3'])}"],
            "--test_data lacks the feature columns 'f3' of the model in {}",
        ),
        # Not the synthetic problem, which a model of 6 columns could not read.
        (["--mode=eval"], "--mode=eval has no data to read; give --eval_data or --test_data."),
    ]
    for flags, expected in cases:
        result = run_trainer(FLAGS + [f"--model_dir={model_dir}"] + flags)
        assert result.returncode == 1, (flags, result.stderr[-2000:])
        assert expected.format(model_dir) in error_line(result), flags
        assert snapshot(model_dir) == before, flags


@pytest.mark.e2e
def test_a_file_of_the_feature_columns_alone_is_scored_as_the_labelled_one(trained, tmp_path):
    folder, train, test, model_dir = trained
    header = open(test).readline().strip().split(",")
    # The model's columns, with an id column the model never saw left out by name.
    unlabelled = rewrite_columns(test, tmp_path / "new.csv", drop=[h for h in header if h.startswith("label:")])
    with open(unlabelled) as f:
        lines = f.read().splitlines()
    with open(unlabelled, "w") as f:
        f.write("\n".join([f"id,{lines[0]}"] + [f"{i},{line}" for i, line in enumerate(lines[1:])]) + "\n")
    scored = {}
    for name, path, extra in (("labelled", test, []), ("unlabelled", unlabelled, ["--ignore_columns=id"])):
        out = str(tmp_path / f"{name}.jsonl")
        check_ok(run_trainer(FLAGS + [f"--model_dir={model_dir}", "--mode=predict", f"--test_data={path}"] + extra))
        os.replace(os.path.join(model_dir, "predictions.jsonl"), out)
        with open(out) as f:
            scored[name] = [json.loads(line)["probabilities"] for line in f]
    assert len(scored["unlabelled"]) == 100
    np.testing.assert_allclose(scored["unlabelled"], scored["labelled"], atol=1e-6)
    # Without the flag the id column is a seventh feature the model does not know.
    result = run_trainer(FLAGS + [f"--model_dir={model_dir}", "--mode=predict", f"--test_data={unlabelled}"])
    assert result.returncode == 1
    assert f"--test_data has the feature columns 'id', which the model in {model_dir} has not" in error_line(result)
