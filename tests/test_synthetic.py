"""data.synthetic: the embedded problem as a reader, and its token view with many labels (real CLI)."""

import json

import numpy as np
import pytest
from helpers import check_ok, run_trainer

from trainer import data
from trainer.config import DataConfig
from trainer.data import synthetic


def test_token_vocabulary_grows_only_when_the_keywords_leave_too_few_noise_words():
    assert synthetic.token_vocab_size(20, 2_000) == 2_000  # The default problem is unchanged.
    assert synthetic.token_vocab_size(470, 2_000) == 2_000  # 1 + 470 * 4 keywords, 119 noise words.
    assert synthetic.token_vocab_size(5_000, 2_000) == 1 + 5_000 * 4 + 1_000


def test_reader_reads_the_arrays_of_the_split_in_order_and_by_record_shard():
    config = DataConfig(synthetic_train_examples=50, synthetic_labels=5, synthetic_features=3)
    reader = synthetic.open_reader(config, "train", seed=3)
    split = data.load_split(config, "train", "synthetic", seed=3)
    np.testing.assert_array_equal(split.arrays[1].dense(), reader.labels)
    np.testing.assert_array_equal(reader.check().label_counts, split.label_counts)
    whole = [labels.numpy() for _, labels in reader.read((), (1, 0), in_order=True)]
    np.testing.assert_array_equal(np.concatenate(whole), reader.labels)
    second = np.concatenate([f["features"].numpy() for f, _ in reader.read((), (2, 1), in_order=True)])
    np.testing.assert_array_equal(second, reader.features["features"][1::2])


@pytest.mark.e2e
def test_5000_labels_train_with_a_grown_token_vocabulary_and_bounded_log_lines(tmp_path):
    """Was a traceback (exit 2): 5,000 labels need 20,001 keyword ids, more than the 2,000 of the vocabulary."""
    model_dir = tmp_path / "run"
    flags = ["--mode=train", "--synthetic_labels=5000", "--synthetic_train_examples=256", "--train_steps=2"]
    flags += ["--model=text_bow", "--embedding_dim=8", "--hidden_units=16", "--global_batch_size=64"]
    result = check_ok(run_trainer([f"--model_dir={model_dir}", *flags, "--steps_per_loop=2", "--log_every_steps=2"]))
    assert "Synthetic tokens: a vocabulary of 21001 ids, not 2000" in result.stderr
    with open(model_dir / "input_spec.json") as f:
        assert json.load(f)["vocab_size"] == 21_001
    (frequencies,) = [line for line in result.stderr.splitlines() if "Label frequencies" in line]
    assert frequencies.endswith(", ... and 4980 more") and len(frequencies) < 600, frequencies
