"""In-memory splits (--in_memory_budget_mb): which path a split takes, the budget fallback, and
that batches, figures and exact resume match the streamed path."""

import numpy as np
import pytest
from helpers import check_ok, read_metrics, resumes_exactly, run_trainer

from trainer import data
from trainer.config import DataConfig
from trainer.data import in_memory
from trainer.distribute import Topology

CSV_FLAGS = ["--hidden_units=32", "--global_batch_size=64", "--steps_per_loop=10", "--log_every_steps=10"]


def write_csv(path, num_examples, num_features=16, num_labels=4, seed=0):
    """A learnable CSV: `num_features` features, `num_labels` `label:` columns that depend on them."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_examples, num_features)).round(4)
    labels = (features[:, :num_labels] + 0.3 * rng.normal(size=(num_examples, num_labels)) > 0.5).astype(int)
    header = [f"f{i}" for i in range(num_features)] + [f"label:l{j}" for j in range(num_labels)]
    lines = [",".join(header)] + [
        ",".join([f"{v:g}" for v in x] + [str(v) for v in y]) for x, y in zip(features, labels)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_file_split_within_the_budget_is_in_memory_and_one_above_it_is_streamed(tmp_path, caplog):
    path = write_csv(tmp_path / "train.csv", 300)
    caplog.set_level("INFO", logger="absl")
    loaded = data.load_split(DataConfig(), "train", path, seed=0)
    assert loaded.arrays is not None and loaded.read_part is None
    assert loaded.arrays[0]["features"].shape == (300, 16) and loaded.arrays[1].shape == (300, 4)
    assert "--train_data: in memory (0.0 MB of arrays, within --in_memory_budget_mb=2048)" in caplog.text

    streamed = data.load_split(DataConfig(in_memory_budget_mb=0), "train", path, seed=0)
    assert streamed.arrays is None and streamed.read_part is not None
    assert "--train_data: streamed from the files (--in_memory_budget_mb=0)" in caplog.text
    # Only a streamed split is told that its numbers are parsed every epoch, and what streams faster.
    assert caplog.text.count("16 numeric columns are parsed from text every epoch") == 1
    assert "TFRecord shards (python -m trainer.prepare)" in caplog.text
    # The same examples, in file order, with the same counts and spec.
    rows = [(f["features"].numpy(), y.numpy()) for f, y in streamed.examples]
    assert np.array_equal(np.stack([r[0] for r in rows]), loaded.arrays[0]["features"])
    assert np.array_equal(np.stack([r[1] for r in rows]), loaded.arrays[1].dense())
    assert np.array_equal(streamed.label_counts, loaded.label_counts)
    assert streamed.spec == loaded.spec


def test_the_size_is_estimated_from_the_count_and_shapes_before_loading(tmp_path, caplog):
    """20,000 examples of 16 float32 features (64 bytes), a row offset (8 bytes) and their positive
    labels (5 bytes each, kept sparse) are over a 1 MB budget, so never loaded."""
    path = write_csv(tmp_path / "train.csv", 20_000)
    caplog.set_level("INFO", logger="absl")
    split = data.load_split(DataConfig(in_memory_budget_mb=1), "train", path, seed=0)
    assert split.arrays is None
    size = (20_000 * (64 + 8) + 5 * split.label_counts.sum()) / 2**20
    assert f"its arrays would take {size:.1f} MB, more than --in_memory_budget_mb=1" in caplog.text
    features_spec, _ = split.examples.element_spec
    assert not in_memory.fits("--train_data", 10**12, features_spec, 0, budget_mb=10**9)
    assert "would not fit the" in caplog.text  # More than the free memory: streamed, never loaded.


def test_text_splits_hold_token_ids_in_memory(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("".join(f"{'good' if i % 2 else 'bad'} day {i}\t{i % 2}\n" for i in range(40)))
    (tmp_path / "labels.txt").write_text("neg\npos\n")
    split = data.load_split(DataConfig(), "train", str(path), seed=0)
    tokens = split.arrays[0]["tokens"]
    assert tokens.dtype == np.int32 and tokens.shape == (40, DataConfig().sequence_length)
    assert split.spec.vocabulary and set(split.arrays[0]) == {"tokens"}


def test_in_memory_and_streamed_epochs_hold_the_same_examples(tmp_path):
    """Both paths parse a file alike: an epoch of either holds every row once, with its labels
    (the orders differ: indices shuffled whole vs streamed blocks)."""
    path = write_csv(tmp_path / "train.csv", 100)
    splits = [data.load_split(DataConfig(in_memory_budget_mb=mb), "train", path, seed=0) for mb in (0, 2048)]
    assert splits[0].arrays is None and splits[1].arrays is not None
    topology = Topology(num_replicas=1, num_workers=1, worker_index=0, is_chief=True, global_batch_size=20)
    epochs = []
    for split in splits:
        rows = [
            np.concatenate([f["features"].numpy(), y.numpy()], axis=1) for f, y in
            data.train_batches(split, ["features"], topology, 1000, seed=5, deterministic=True).take(5)
        ]  # fmt: skip
        epochs.append(np.concatenate(rows))
    file_rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    for rows in epochs:
        np.testing.assert_array_equal(rows[np.lexsort(rows.T[::-1])], file_rows[np.lexsort(file_rows.T[::-1])])
    assert not np.array_equal(epochs[0], file_rows)  # Shuffled.


def test_in_memory_data_keeps_the_global_stream_on_several_workers(tmp_path):
    split = data.load_split(DataConfig(), "train", write_csv(tmp_path / "train.csv", 48), seed=0)
    topology = Topology(num_replicas=2, num_workers=2, worker_index=0, is_chief=True, global_batch_size=8)
    assert not data.reads_own_part(split, topology, deterministic=False)
    streamed = data.load_split(DataConfig(in_memory_budget_mb=0), "train", split.files[0], seed=0)
    assert data.reads_own_part(streamed, topology, deterministic=False)


@pytest.fixture
def csv_job(tmp_path):
    train = write_csv(tmp_path / "train.csv", 1500, seed=1)
    evaluation = write_csv(tmp_path / "eval.csv", 400, seed=2)
    return CSV_FLAGS + [f"--train_data={train}", f"--eval_data={evaluation}", "--deterministic"]


@pytest.mark.e2e
def test_cli_in_memory_and_streamed_evaluations_give_the_same_figures(tmp_path, csv_job):
    """The default (in memory) and --in_memory_budget_mb=0 (streamed) score a checkpoint alike."""
    model_dir = str(tmp_path / "run")
    result = check_ok(run_trainer(csv_job + ["--train_steps=60", f"--model_dir={model_dir}"]))
    assert "--train_data: in memory" in result.stderr and "--eval_data: in memory" in result.stderr
    figures = {}
    for budget in (2048, 0):
        result = check_ok(
            run_trainer(csv_job + ["--mode=eval", f"--in_memory_budget_mb={budget}", f"--model_dir={model_dir}"])
        )
        figures[budget] = read_metrics(model_dir)
    assert "--eval_data: streamed from the files" in result.stderr
    assert figures[2048]["loss"] == pytest.approx(figures[0]["loss"], abs=1e-6)
    assert figures[2048]["macro"] == pytest.approx(figures[0]["macro"], abs=1e-6)


@pytest.mark.e2e
def test_cli_budget_too_small_streams_with_one_log_line(tmp_path, csv_job):
    result = check_ok(
        run_trainer(csv_job + ["--train_steps=20", "--in_memory_budget_mb=0", f"--model_dir={tmp_path / 'run'}"])
    )
    assert result.stderr.count("--train_data: streamed from the files") == 1


@pytest.mark.e2e
@pytest.mark.parametrize("budget, path", [(2048, "in memory"), (0, "streamed from the files")])
def test_cli_sigkilled_file_run_resumes_exactly(tmp_path, csv_job, budget, path):
    """A CSV split, in memory or streamed, SIGKILLed and restarted ends with the weights of an
    uninterrupted run. Streamed: 1,500 rows in blocks of 400, so the kill falls mid-block and
    mid-epoch, and the run crosses epochs (300 steps of 64)."""
    flags = csv_job + [
        "--mode=train",
        "--train_steps=300",
        "--checkpoint_every_steps=40",
        f"--in_memory_budget_mb={budget}",
        "--shuffle_buffer=400",
    ]
    resumes_exactly(flags, tmp_path, rf"--train_data: {path}", r"Saved checkpoint .*ckpt-40")
