"""data.delimited: --ignore_columns, a UTF-8 byte-order mark, and the checks of label and feature
cells (in-process, and through the real CLI where a user meets them)."""

import os
import re

import numpy as np
import pytest
from helpers import check_ok, error_line, run_trainer

from trainer import data
from trainer.config import DataConfig
from trainer.data import delimited
from trainer.errors import UserError

BOM = "\ufeff"
HEADER = "id,f0,date,f1,label:a,label:b"
ROWS = ["row-1,0.5,2024-01-01,-1.5,1,0", "row-2,2.0,2024-01-02,3.0,0,1", "row-3,-0.25,,1e3,1,1"]


def write_lines(path, lines, bom=False) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write((BOM if bom else "") + "".join(line + "\n" for line in lines))
    return str(path)


def example_rows(split):
    """Every example of `split` in order: ({name: array}, labels)."""
    features, labels = next(iter(split.examples.batch(1000)))
    return {k: v.numpy() for k, v in features.items()}, labels.numpy()


def test_ignore_columns_leaves_non_numeric_columns_out(tmp_path):
    path = write_lines(tmp_path / "ids.csv", [HEADER, *ROWS])
    with pytest.raises(UserError, match=r"/ids.csv:2: column 'id' holds 'row-1', not a number.*--ignore_columns"):
        data.load_split(DataConfig(), "train", path, seed=0)
    split = data.load_split(DataConfig(ignore_columns=("id", "date")), "train", path, seed=0)
    assert split.spec.label_names == ["a", "b"] and split.spec.feature_specs["features"].shape == (2,)
    features, labels = example_rows(split)
    np.testing.assert_array_equal(features["features"], [[0.5, -1.5], [2.0, 3.0], [-0.25, 1000.0]])
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1], [1, 1]])
    # A text column can be left out too (the other columns are then the features).
    text = write_lines(tmp_path / "text.tsv", ["text\tf0\tlabel:a", "words\t1\t1", "more words\t2\t0"])
    split = data.load_split(DataConfig(ignore_columns=("text",)), "train", text, seed=0)
    assert list(split.spec.feature_specs) == ["features"]


@pytest.mark.parametrize(
    "ignore, lines, message",
    [
        (("id", "nope", "other"), [HEADER, *ROWS], "--ignore_columns names 'nope', 'other', not in the header"),
        (("id",), ["some text\t0", "more\t1"], "--ignore_columns names header columns but"),
    ],
)
def test_ignore_columns_must_name_header_columns(tmp_path, ignore, lines, message):
    path = write_lines(tmp_path / "d.tsv" if "\t" in lines[0] else tmp_path / "d.csv", lines)
    names = write_lines(tmp_path / "names.txt", ["x", "y"])
    with pytest.raises(UserError, match=message):
        data.load_split(DataConfig(ignore_columns=ignore, label_names=names), "train", path, seed=0)


@pytest.mark.parametrize(
    "row, message",
    [
        # An empty cell means unknown (partially labelled data); spaces are a mistake.
        ("1, ,0", "e.csv:3: label column 'label:a' holds only spaces; write 0 or 1, or leave the cell empty"),
        ("1,x,0", "e.csv:3: label column 'label:a' holds 'x', not 0 or 1; write 0 or 1"),
        ("1,2,0", "e.csv:3: label column 'label:a' holds 2.0, not 0 or 1; write 0 or 1"),
    ],
)
def test_label_cells_must_hold_0_or_1_or_nothing(tmp_path, row, message):
    path = write_lines(tmp_path / "e.csv", ["f0,label:a,label:x", "1,1,0", row])
    with pytest.raises(UserError) as error:
        data.load_split(DataConfig(), "train", path, seed=0)
    assert str(error.value).startswith(str(tmp_path / message))


def test_a_column_named_twice_is_refused(tmp_path):
    """Two columns of one name could not be told apart when a later split is matched by name."""
    for header in ("f0,label:a,label:a", "f0,f0,label:a"):
        path = write_lines(tmp_path / "twice.csv", [header, "1,1,0"])
        name = header.split(",")[1]
        with pytest.raises(UserError, match=f"the header names the column '{name}' more than once"):
            data.load_split(DataConfig(), "train", path, seed=0)


def test_a_compressed_file_a_directory_and_a_bad_label_names_file_are_named_as_such(tmp_path):
    import gzip

    with gzip.open(tmp_path / "data.csv", "wt") as f:
        f.write("f0,label:a\n1,1\n")
    with pytest.raises(UserError, match="data.csv is gzip-compressed; decompress it"):
        data.load_split(DataConfig(), "train", str(tmp_path / "data.csv"), seed=0)
    os.rename(tmp_path / "data.csv", tmp_path / "data.csv.gz")
    with pytest.raises(UserError, match="data.csv.gz is gzip-compressed; decompress it"):
        data.load_split(DataConfig(), "train", str(tmp_path / "data.csv.gz"), seed=0)
    with pytest.raises(UserError, match=r"is a directory; give its files as a quoted glob, e.g. '.*/\*.csv'"):
        data.load_split(DataConfig(), "train", str(tmp_path), seed=0)
    texts = write_lines(tmp_path / "texts.tsv", ["some text\t0"])
    with pytest.raises(UserError, match="--label_names=.* is a directory; point it at a file"):
        data.load_split(DataConfig(label_names=str(tmp_path)), "train", texts, seed=0)
    with gzip.open(tmp_path / "names.txt", "wt") as f:
        f.write("a\n")
    with pytest.raises(UserError, match="--label_names=.*names.txt is not UTF-8 text"):
        data.load_split(DataConfig(label_names=str(tmp_path / "names.txt")), "train", texts, seed=0)


@pytest.mark.parametrize("cell", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_features_are_refused_with_file_line_and_column(tmp_path, cell):
    path = write_lines(tmp_path / "nf.csv", ["f0,f1,label:a", "1,2,0", f"3,{cell},1"])
    with pytest.raises(UserError, match=rf"nf.csv:3: column 'f1' holds '{cell}', not a finite number"):
        data.load_split(DataConfig(), "train", path, seed=0)


def _bom_pairs(folder):
    """{name: (path with a byte-order mark, the same file without)} for each layout it can start."""
    files = {
        "numeric csv": [HEADER.replace("id,", "").replace("date,", ""), "0.5,-1.5,1,0", "2,3,0,1"],
        "header tsv": ["text\tlabels", "first row\ta", "second\tb"],
        "headerless tsv": ["first row\t0", "second\t1"],
        "headerless csv, quoted first cell": ['"first, row",0', "second,1"],
    }
    suffix = {"numeric csv": ".csv", "header tsv": ".tsv", "headerless tsv": ".tsv"}
    pairs = {}
    for i, (name, lines) in enumerate(files.items()):
        extension = suffix.get(name, ".csv")
        pairs[name] = (
            write_lines(folder / f"bom{i}{extension}", lines, bom=True),
            write_lines(folder / f"no{i}{extension}", lines),
        )
    return pairs


def test_a_byte_order_mark_is_dropped_by_the_checks_and_by_the_stream(tmp_path):
    """Excel writes one; the header's first column was read as '\\ufefftext' and refused."""
    names = write_lines(tmp_path / "names.txt", ["a", "b"])
    for name, (with_bom, without) in _bom_pairs(tmp_path).items():
        config = DataConfig(label_names=names if "numeric" not in name else "")
        flag = "--train_data"
        files = [with_bom]
        reader = delimited.open_reader(config, flag, files, "csv" if with_bom.endswith(".csv") else "tsv", False)
        assert reader.check().num_examples == 2, name
        first = next(iter(reader.read(files, (1, 0), in_order=True)))[0]
        if "text" in first:  # The raw text the tokenizer sees.
            assert first["text"].numpy()[0].decode() in ("first row", "first, row"), name
        else:
            np.testing.assert_array_equal(first["features"].numpy()[0], [0.5, -1.5])
        split, same = (data.load_split(config, "train", path, seed=0) for path in (with_bom, without))
        assert split.spec == same.spec, name
        for got, expected in zip(example_rows(split), example_rows(same)):
            if isinstance(got, dict):
                for key in got:
                    np.testing.assert_array_equal(got[key], expected[key], err_msg=name)
            else:
                np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.e2e
def test_cli_trains_on_an_excel_csv_with_an_id_column(tmp_path):
    """A numeric CSV as Excel saves it (byte-order mark, an id column): refused before --ignore_columns."""
    rng = np.random.default_rng(0)
    lines = ["id,f0,f1,label:a,label:b"]
    for i in range(64):
        f0, f1 = rng.normal(size=2).round(3)
        lines.append(f"customer-{i},{f0},{f1},{int(f0 > 0)},{int(f1 > 0)}")
    path = write_lines(tmp_path / "excel.csv", lines, bom=True)
    flags = [f"--train_data={path}", "--mode=train", "--train_steps=4", "--global_batch_size=16"]
    flags += ["--hidden_units=8", "--steps_per_loop=2", "--log_every_steps=2"]
    refused = run_trainer([f"--model_dir={tmp_path / 'refused'}", *flags])
    assert refused.returncode == 1
    assert "excel.csv:2: column 'id' holds 'customer-0', not a number" in error_line(refused)
    trained = check_ok(run_trainer([f"--model_dir={tmp_path / 'run'}", *flags, "--ignore_columns=id"]))
    # "2 examples" alone would mean the id column split the rows; a rate like "16312 examples/s" does not.
    assert not re.search(r"(?<![\d,.])2 examples", trained.stderr)
    assert "64 examples, 2 labels" in trained.stderr
    unknown = run_trainer([f"--model_dir={tmp_path / 'unknown'}", *flags, "--ignore_columns=id,ID"])
    assert unknown.returncode == 1
    assert "--ignore_columns names 'ID', not in the header of" in error_line(unknown)
