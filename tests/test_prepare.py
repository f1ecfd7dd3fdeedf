"""`python -m trainer.prepare`: shards that read back in the input's order, labels.txt, statistics,
and the same checks (exit 1, one line, nothing written) as the trainer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    LABELS,
    NUM_EXAMPLES,
    REPO,
    error_line,
    example_rows,
    write_lines,
    write_numeric_formats,
    write_text_formats,
)

from trainer import data, prepare
from trainer.config import DataConfig
from trainer.errors import UserError


def _run_prepare(args, program=("trainer.prepare",)):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", *program, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _in_order(path, **config):
    """Every example of `path`, unshuffled: (features, labels) numpy arrays."""
    split = data.load_split(DataConfig(**config), "train", path, seed=0)
    features, labels = next(iter(split.examples.batch(1000)))
    return split, {k: v.numpy() for k, v in features.items()}, labels.numpy()


def test_text_shards_read_back_in_input_order_with_labels_and_statistics(tmp_path):
    rows = example_rows()
    source = write_text_formats(tmp_path, rows)["goemotions_tsv"]
    out = str(tmp_path / "prepared")
    summary = prepare.prepare(DataConfig(), source, out, num_shards=4)

    shards = sorted(f for f in os.listdir(out) if f.endswith(".tfrecord"))
    assert shards == [f"go-{i:05d}-of-00004.tfrecord" for i in range(4)]
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read().split() == LABELS
    with open(os.path.join(out, "go-stats.json")) as f:
        assert json.load(f) == summary
    counts = np.bincount([j for _, ids, _ in rows for j in ids], minlength=len(LABELS))
    assert summary["num_examples"] == NUM_EXAMPLES and summary["empty_texts"] == 1
    assert [summary["labels"][n]["count"] for n in LABELS] == counts.tolist()
    assert summary["labels"]["joy"]["frequency"] == pytest.approx(counts[0] / NUM_EXAMPLES, abs=1e-6)
    assert summary["label_cardinality"] == pytest.approx(counts.sum() / NUM_EXAMPLES, abs=1e-6)

    # The trainer finds labels.txt beside the shards, and reads them back in the TSV's order.
    original, features, labels = _in_order(source)
    prepared, prepared_features, prepared_labels = _in_order(os.path.join(out, "go-*.tfrecord"))
    assert prepared.spec.label_names == LABELS and prepared.spec.vocabulary == original.spec.vocabulary
    np.testing.assert_array_equal(prepared_features["tokens"], features["tokens"])
    np.testing.assert_array_equal(prepared_labels, labels)


def test_numeric_csv_and_as_many_shards_as_examples_but_not_more(tmp_path):
    rows = example_rows()[:3]
    source = write_numeric_formats(tmp_path, rows)["csv"]
    out = str(tmp_path / "prepared")
    # An empty shard would leave a worker reading by file with nothing (it spun, waited for).
    with pytest.raises(UserError, match="--num_shards=5 is more than the 3 examples: a shard would be empty"):
        prepare.prepare(DataConfig(), source, out, num_shards=5, name="train")
    assert not os.path.exists(out)
    prepare.prepare(DataConfig(), source, out, num_shards=3, name="train")
    _, features, labels = _in_order(source)
    _, prepared_features, prepared_labels = _in_order(os.path.join(out, "train-*.tfrecord"))
    np.testing.assert_array_equal(prepared_features["features"], features["features"])
    np.testing.assert_array_equal(prepared_labels, labels)


def test_a_new_run_replaces_the_shards_of_its_name_and_a_failed_one_leaves_them(tmp_path, monkeypatch):
    source = write_text_formats(tmp_path, example_rows())["goemotions_tsv"]
    out = tmp_path / "prepared"
    prepare.prepare(DataConfig(), source, str(out), num_shards=4)
    (out / "other-00000-of-00001.tfrecord").write_bytes(b"")  # Another name's: never touched.
    # Fewer shards: the four old ones would be read by a glob beside the two new ones, every row twice.
    prepare.prepare(DataConfig(), source, str(out), num_shards=2)
    assert sorted(os.listdir(out)) == sorted(
        ["go-00000-of-00002.tfrecord", "go-00001-of-00002.tfrecord", "go-stats.json", "labels.txt"]
        + ["other-00000-of-00001.tfrecord"]
    )
    assert _in_order(str(out / "go-*.tfrecord"))[0].num_examples == NUM_EXAMPLES
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    # A run that fails while writing (here: the disk fills up) leaves the previous output whole.
    from trainer.data import tfrecord

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(tfrecord, "make_example", full_disk)
    with pytest.raises(OSError):
        prepare.prepare(DataConfig(), source, str(out), num_shards=4)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_a_truncated_shard_is_named_as_such(tmp_path):
    source = write_text_formats(tmp_path, example_rows())["goemotions_tsv"]
    out = tmp_path / "prepared"
    prepare.prepare(DataConfig(), source, str(out), num_shards=1)
    shard = out / "go-00000-of-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-7])  # A copy cut short.
    with pytest.raises(UserError, match=r"go-00000-of-00001.tfrecord \(records 0..4095\) is truncated or corrupt"):
        data.load_split(DataConfig(), "train", str(shard), seed=0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_shards": 0}, "--num_shards must be in 1..10000, got 0."),
        ({"num_shards": 20_000}, "--num_shards must be in 1..10000, got 20000."),
        ({"name": "sub/x"}, "--name=sub/x must be a file name prefix, not a path"),
        ({"name": ".."}, "--name=.. must be a file name prefix"),
        ({"output_dir": "FILE"}, "--output_dir=FILE is a file; give a directory"),
    ],
)
def test_bad_settings_are_one_line_before_anything_is_read(tmp_path, changes, message):
    source = write_text_formats(tmp_path, example_rows())["goemotions_tsv"]
    afile = tmp_path / "afile"
    afile.write_text("keep\n")
    settings = dict({"output_dir": str(tmp_path / "out"), "num_shards": 2, "name": ""}, **changes)
    settings["output_dir"] = settings["output_dir"].replace("FILE", str(afile))
    with pytest.raises(UserError) as raised:
        prepare.prepare(DataConfig(), source, **settings)
    assert str(raised.value).startswith(message.replace("FILE", str(afile)))
    assert not (tmp_path / "out").exists() and afile.read_text() == "keep\n"


def test_refuses_an_output_dir_with_other_label_names(tmp_path):
    source = write_text_formats(tmp_path, example_rows())["goemotions_tsv"]
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "labels.txt").write_text("something\nelse\n")
    with pytest.raises(UserError, match="holds other label names"):
        prepare.prepare(DataConfig(), source, str(out), num_shards=2)


@pytest.mark.e2e
def test_cli_converts_and_rejects_a_bad_row_writing_nothing(tmp_path):
    source = write_text_formats(tmp_path, example_rows())["header_tsv"]
    good = _run_prepare([f"--input={source}", f"--output_dir={tmp_path / 'good'}", "--num_shards=2"])
    assert good.returncode == 0, good.stderr[-3000:]
    assert f"Wrote {NUM_EXAMPLES} examples to 2 shards" in good.stdout

    bad_source = write_lines(tmp_path / "bad.tsv", ["a\t0", "b\t2,11"])
    bad = _run_prepare(
        [f"--input={bad_source}", f"--output_dir={tmp_path / 'bad'}", f"--label_names={tmp_path}/labels.txt"]
    )
    assert bad.returncode == 1
    assert "bad.tsv:2: label id 11 is out of range" in error_line(bad)
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_cli_ignore_columns_and_a_byte_order_mark(tmp_path):
    """An Excel CSV (byte-order mark, an id column) converts with --ignore_columns; the features read back."""
    source = tmp_path / "excel.csv"
    source.write_text("\ufeffid,f0,label:a,f1,label:b\nx-1,0.5,1,-2,0\nx-2,1.5,0,4,1\n", encoding="utf-8")
    out = tmp_path / "prepared"
    refused = _run_prepare([f"--input={source}", f"--output_dir={out}"])
    assert refused.returncode == 1 and "excel.csv:2: column 'id' holds 'x-1'" in error_line(refused)
    assert not out.exists()
    done = _run_prepare([f"--input={source}", f"--output_dir={out}", "--num_shards=1", "--ignore_columns=id"])
    assert done.returncode == 0, done.stderr[-3000:]
    split, features, labels = _in_order(str(out / "excel-*.tfrecord"))
    assert split.spec.label_names == ["a", "b"]
    np.testing.assert_array_equal(features["features"], [[0.5, -2.0], [1.5, 4.0]])
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1]])


@pytest.mark.e2e
def test_cli_flags_are_its_own_and_mltrain_prepare_runs_it(tmp_path):
    """prepare's flags (its own FlagValues; the data ones generated from DataConfig) fail as the trainer's do."""
    for args, fragment in [
        (["--input=x.tsv", "--output_dir=o", "--data_format=json"], "--data_format=json: value should be one of"),
        (["--input=x.tsv", "--output_dir=o", "--model=mlp"], "Unknown command line flag 'model'"),
        (["--output_dir=o"], "--input and --output_dir are required"),
    ]:
        result = _run_prepare(args)
        assert result.returncode == 1, result.stderr[-2000:]
        assert fragment in error_line(result)

    source = write_text_formats(tmp_path, example_rows())["header_tsv"]
    out = tmp_path / "prepared"
    result = _run_prepare(
        [f"--input={source}", f"--output_dir={out}", "--num_shards=3"], program=("trainer", "prepare")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Wrote {NUM_EXAMPLES} examples to 3 shards" in result.stdout
    assert (out / "labels.txt").read_text().split() == LABELS
