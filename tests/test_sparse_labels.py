"""data.sparse_labels, and what keeps many-label data small: in-memory labels kept sparse, the parse
batch and the streamed shuffle buffer bounded by the label count."""

import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import check_ok, read_metrics, read_predictions, run_trainer

from trainer import data
from trainer.config import DataConfig
from trainer.data import in_memory, pipeline
from trainer.data import split as split_lib
from trainer.data.sparse_labels import SparseLabels, dense_row, dense_rows
from trainer.distribute import Topology


def random_labels(rng, rows: int, labels: int) -> np.ndarray:
    """1 (on), 0 (off) and -1 (unknown) entries, with some all-zero rows."""
    values = rng.choice([0.0, 0.0, 0.0, 1.0, -1.0], size=(rows, labels)).astype(np.float32)
    values[::5] = 0.0
    return values


def test_sparse_labels_hold_exactly_the_dense_ones():
    rng = np.random.default_rng(0)
    dense = random_labels(rng, 41, 13)
    sparse = SparseLabels.from_dense(dense)
    assert sparse.shape == (41, 13) and len(sparse.ids) == np.count_nonzero(dense)
    np.testing.assert_array_equal(sparse.dense(), dense)
    np.testing.assert_array_equal(sparse.positives_per_label(), (dense > 0).sum(axis=0))
    np.testing.assert_array_equal(sparse.unknown_per_label(), (dense < 0).sum(axis=0))
    mask = rng.random(41) < 0.5
    np.testing.assert_array_equal(sparse[mask].dense(), dense[mask])
    order = rng.permutation(41)[:17]
    np.testing.assert_array_equal(sparse[order].dense(), dense[order])
    np.testing.assert_array_equal(sparse[3:3].dense(), dense[3:3])
    parts = [SparseLabels.from_dense(dense[a:b]) for a, b in ((0, 10), (10, 10), (10, 41))]
    np.testing.assert_array_equal(SparseLabels.concatenate(parts, 13).dense(), dense)


def test_rows_made_dense_in_tensorflow_equal_the_gathered_dense_rows():
    rng = np.random.default_rng(1)
    dense = random_labels(rng, 30, 9)
    ids, values = SparseLabels.from_dense(dense).ragged()
    indices = tf.constant([4, 0, 29, 5, 5, 17])
    got = dense_rows(tf.gather(ids, indices), tf.gather(values, indices), 9)
    np.testing.assert_array_equal(got.numpy(), dense[indices.numpy()])
    np.testing.assert_array_equal(dense_row(ids[7], values[7], 9).numpy(), dense[7])


@pytest.mark.parametrize("num_features, dense", [(2, True), (1, False)])
def test_an_in_memory_split_keeps_its_labels_sparse_and_trains_on_the_same_batches(num_features, dense):
    """The training stream's labels come from a dense int8 copy when it is no larger than the
    features (6 labels: 6 bytes an example, against 8 or 4 bytes of features), else from the
    sparse rows; the same either way."""
    rng = np.random.default_rng(2)
    labels = random_labels(rng, 64, 6)
    features = {"features": rng.normal(size=(64, num_features)).astype(np.float32)}
    assert in_memory.dense_labels(64, 6, features["features"].nbytes) == dense
    split = data.from_arrays(features, labels, [f"l{j}" for j in range(6)])
    assert isinstance(split.arrays[1], SparseLabels)
    np.testing.assert_array_equal(np.stack([y.numpy() for _, y in split.examples]), labels)
    topology = Topology(num_replicas=1, num_workers=1, worker_index=0, is_chief=True, global_batch_size=16)
    batches = data.train_batches(split, ["features"], topology, shuffle_buffer=100, seed=0, deterministic=True)
    for batch_features, batch_labels in batches.take(6):  # Past one epoch: the rows must still match.
        rows = [
            int(np.flatnonzero((features["features"] == row).all(axis=1))[0])
            for row in batch_features["features"].numpy()
        ]
        np.testing.assert_array_equal(batch_labels.numpy(), labels[rows])


def write_many_label_tsv(directory, num_labels: int, rows: int) -> str:
    rng = np.random.default_rng(3)
    lines = []
    for i in range(rows):
        ids = sorted(set(rng.integers(0, num_labels, size=3).tolist()))
        lines.append(f"word{i % 7} other{i % 3}\t{','.join(map(str, ids))}")
    (directory / "train.tsv").write_text("\n".join(lines) + "\n")
    (directory / "labels.txt").write_text("".join(f"label_{j}\n" for j in range(num_labels)))
    return str(directory / "train.tsv")


def test_a_many_label_file_goes_in_memory_at_the_size_of_its_label_entries(tmp_path, caplog):
    """100,000 labels x 300 rows would be 120 MB as dense float32; the labels that occur are a few KB."""
    caplog.set_level("INFO", logger="absl")
    path = write_many_label_tsv(tmp_path, 100_000, 300)
    split = data.load_split(DataConfig(in_memory_budget_mb=1), "train", path, seed=0)
    assert split.arrays is not None, caplog.text
    assert split.arrays[1].nbytes < 20_000 and split.arrays[1].shape == (300, 100_000)
    streamed = data.load_split(DataConfig(in_memory_budget_mb=0), "train", path, seed=0)
    for (_, kept), (_, read) in zip(split.examples.take(5), streamed.examples.take(5)):
        np.testing.assert_array_equal(kept.numpy(), read.numpy())


def test_the_parse_batch_shrinks_at_many_labels_and_large_features():
    assert data.parse_batch(28) == split_lib.PARSE_BATCH
    assert data.parse_batch(100_000) * 100_000 * 4 <= split_lib.PARSE_BATCH_BYTES
    assert data.parse_batch(10**7) == 16
    image_bytes = 224 * 224 * 3 * 4
    images = data.parse_batch(20, image_bytes)
    assert 100 <= images and images * (image_bytes + 80) <= split_lib.PARSE_BATCH_BYTES


def test_a_streamed_shuffle_block_is_bounded_in_bytes(caplog):
    batches = tf.data.Dataset.from_tensors(({"features": tf.zeros([3, 4])}, tf.zeros([3, 100_000])))
    per_example = 4 * 4 + 4 * 100_000
    assert pipeline.shuffle_block_size(batches, 100) == 100
    size = pipeline.shuffle_block_size(batches, 10_000)
    assert size == pipeline.SHUFFLE_BLOCK_BYTES // per_example
    assert "--shuffle_buffer=10000 streamed examples of 391 KB each would take 3.7 GB" in caplog.text


@pytest.mark.e2e
def test_a_30000_label_text_job_trains_evaluates_and_predicts_through_the_cli(tmp_path):
    """The commands a user types, at many labels: labels in memory at the size of their entries,
    every label in the metrics file, the K best labels of each example in predictions.jsonl."""
    path = write_many_label_tsv(tmp_path, 30_000, 400)
    model_dir = tmp_path / "run"
    flags = [f"--model_dir={model_dir}", f"--label_names={tmp_path / 'labels.txt'}", "--model=text_bow"]
    flags += ["--hidden_units=16", "--embedding_dim=8", "--global_batch_size=64"]
    trained = check_ok(
        run_trainer([*flags, f"--train_data={path}", f"--eval_data={path}", "--train_steps=4", "--steps_per_loop=2"])
    )
    sizes = re.findall(r"--(?:train|eval)_data: in memory \(([0-9.]+) MB of arrays", trained.stderr)
    assert len(sizes) == 2 and all(float(size) < 0.2 for size in sizes), trained.stderr[-3000:]
    summary = read_metrics(str(model_dir))
    assert summary["num_examples"] == 400 and len(summary["labels"]) == 30_000
    predicted = check_ok(run_trainer([*flags, "--mode=predict", f"--test_data={path}", "--predict_top_k=3"]))
    rows = read_predictions(str(model_dir))
    assert len(rows) == 400 and all(len(row["top_k"]) == 3 for row in rows), predicted.stderr[-2000:]
