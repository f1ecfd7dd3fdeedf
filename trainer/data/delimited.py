"""Delimited text files (.tsv, .csv): what the columns mean, a checking pass, and the reader.

Two layouts:
- a text column and a labels cell holding label ids or names separated by `,`: either
  `text<TAB>labels[<TAB>ignored...]` without a header (GoEmotions), or a header naming
  --text_column and --labels_column (other columns are ignored);
- one 0/1 column per label, named with --label_columns_prefix (`label:`); every other column is
  a numeric feature, except a --text_column, which is text, and the --ignore_columns.
The first line is a header when it names --text_column, --labels_column or a prefixed column.
Unknown labels (partially labelled data, docs/data.md): an empty label column cell, or in a labels
cell a label marked `?` (`anger,?joy`: anger on, joy unknown, the others off). Labels are then
float32 1 (on), 0 (off) or -1 (unknown).
A UTF-8 byte-order mark (what Excel writes) before the first line is dropped.
TSV cells are split on tabs exactly (no quoting); CSV cells follow RFC 4180 quoting. A record is
one line (`python -m trainer.prepare` is no different; it writes TFRecords for large data).

`rows` reads every record once in Python so each problem is reported with its file and line;
`read` then streams the same records through `tf.io.decode_csv` without checks. Both parse the
same way (data.cells follows decode_csv's quoting rules), which tests/test_sources.py checks.
`Reader` is the data.sources reader of delimited files.
"""

import collections
import dataclasses
import math
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf

from trainer.config import DataConfig
from trainer.data.cells import BOM, WHITESPACE, numbered_lines, split_cells
from trainer.data.labels import Stats, find_names, read_names, require_labels, shorten
from trainer.data.split import InputSpec, parse_batch
from trainer.errors import UserError

DELIMITERS = {"tsv": "\t", "csv": ","}
_ID = re.compile(r"[0-9]+")

# text, ids of the labels on, numeric features, ids of the unknown labels.
Row = Tuple[str, Tuple[int, ...], Tuple[float, ...], Tuple[int, ...]]
UNKNOWN_MARK = "?"  # Before a label id or name in a labels cell: its value is unknown for this row.
UNKNOWN = -1.0  # The label value of an unknown entry.


@dataclasses.dataclass(frozen=True)
class Layout:
    """What each column of the files holds (column indices; -1: absent)."""

    delimiter: str
    header: Tuple[str, ...]  # () when the files have none.
    num_columns: int
    text: int = -1
    labels: int = -1  # The labels cell: ids or names separated by `,`.
    label_columns: Tuple[int, ...] = ()  # One 0/1 column per label, in label order.
    feature_columns: Tuple[int, ...] = ()

    def column_name(self, index: int) -> str:
        return repr(self.header[index]) if self.header else f"{index + 1}"


def inspect(
    files: Sequence[str], data_format: str, config: DataConfig, flag: str, model_columns: Sequence[str] = ()
) -> Layout:
    """Reads the first line of the first file with one and decides what each column holds.

    `model_columns`, the numeric columns of a trained model, make a header that names them all a
    header even without label columns: data to predict on."""
    delimiter = DELIMITERS[data_format]
    first = next((line for path in files for _, line in numbered_lines(path)), None)
    if first is None:
        raise UserError(f"{flag}: {files[0]}{' ...' if len(files) > 1 else ''} holds no examples; point it at data.")
    cells = split_cells(first, delimiter, f"{files[0]}:1")
    names = tuple(c.strip() for c in cells)
    prefix = config.label_columns_prefix
    label_columns = tuple(i for i, n in enumerate(names) if prefix and n.startswith(prefix))
    unlabelled_numbers = bool(model_columns) and set(model_columns) <= set(names)
    if not (label_columns or unlabelled_numbers or config.text_column in names or config.labels_column in names):
        if config.ignore_columns:
            raise UserError(
                f"--ignore_columns names header columns but {files[0]} has no header; add one, or drop the flag."
            )
        # No header: GoEmotions' `text<TAB>label ids<TAB>comment id`; later columns are ignored.
        return Layout(delimiter, (), len(cells), text=0, labels=1 if len(cells) > 1 else -1)
    unknown = [name for name in config.ignore_columns if name not in names]
    if unknown:
        raise UserError(
            f"--ignore_columns names {shorten(map(repr, unknown))}, not in the header of {files[0]} (columns: "
            f"{shorten(names)}); give header names, separated by commas."
        )
    ignored = {i for i, name in enumerate(names) if name in config.ignore_columns}
    label_columns = tuple(i for i in label_columns if i not in ignored)
    text = names.index(config.text_column) if config.text_column in names else -1
    text = -1 if text in ignored else text
    if label_columns or unlabelled_numbers:
        features = tuple(i for i in range(len(names)) if i not in label_columns and i != text and i not in ignored)
        used = [names[i] for i in label_columns + features]
        twice = sorted(name for name, count in collections.Counter(used).items() if count > 1)
        if twice:
            raise UserError(
                f"{files[0]}: the header names the column {twice[0]!r} more than once; give every label and feature "
                "column its own name (or leave one out with --ignore_columns)."
            )
        return Layout(delimiter, names, len(names), text, label_columns=label_columns, feature_columns=features)
    if text < 0:
        raise UserError(
            f"{files[0]} has a header without the text column {config.text_column!r} (columns: "
            f"{', '.join(names)}); set --text_column, or --label_columns_prefix for 0/1 label columns."
        )
    labels = names.index(config.labels_column) if config.labels_column in names else -1
    return Layout(delimiter, names, len(names), text, labels=-1 if labels in ignored else labels)


def _number(cell: str, where: str, column: str) -> float:
    """A feature cell's value: a finite number, as tf.io.decode_csv reads it."""
    try:
        if "_" in cell:  # Python reads 1_000, tf.io.decode_csv does not.
            raise ValueError
        value = float(cell)
    except ValueError:
        raise UserError(
            f"{where}: column {column} holds {cell!r}, not a number; feature columns must be numeric "
            "(name a text column with --text_column, leave others out with --ignore_columns)."
        )
    if not math.isfinite(value):
        raise UserError(
            f"{where}: column {column} holds {cell.strip()!r}, not a finite number; features must be finite "
            "(fix or drop the row, or leave the column out with --ignore_columns)."
        )
    return value


def _label_value(cell: str, where: str, column: str) -> Optional[bool]:
    """Whether a 0/1 label cell is on; None when it is empty (the label is unknown for this row)."""
    if not cell:  # As tf.io.decode_csv, which then gives the column's default, UNKNOWN.
        return None
    if not cell.strip(WHITESPACE):
        raise UserError(
            f"{where}: label column {column} holds only spaces; write 0 or 1, or leave the cell empty when the "
            "label is unknown."
        )
    try:
        value = float(cell) if "_" not in cell else math.nan
    except ValueError:
        value = math.nan
    if value not in (0.0, 1.0):
        shown = value if not math.isnan(value) else repr(cell.strip())
        raise UserError(
            f"{where}: label column {column} holds {shown}, not 0 or 1; write 0 or 1, or leave the cell empty when the "
            "label is unknown."
        )
    return value == 1.0


def _label_ids(cell: str, index: Dict[str, int], where: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """(ids of the labels on, ids of the labels marked unknown) of one labels cell."""
    ids, unknown = [], []
    for token in cell.split(","):
        token = token.strip(WHITESPACE)
        if not token:
            continue
        marked = token.startswith(UNKNOWN_MARK)
        name = token[len(UNKNOWN_MARK) :].strip(WHITESPACE) if marked else token
        if _ID.fullmatch(name):
            if int(name) >= len(index):
                raise UserError(
                    f"{where}: label id {int(name)} is out of range: there are {len(index)} label names "
                    f"(ids 0..{len(index) - 1}); fix the id, or --label_names."
                )
            label = int(name)
        elif name in index:
            label = index[name]
        elif marked:
            raise UserError(
                f"{where}: {token!r} marks {name!r} unknown but it is not a label name (the names are "
                f"{', '.join(list(index)[:4])}, ...); fix the row, or add the name to --label_names."
            )
        else:
            raise UserError(
                f"{where}: unknown label name {token!r} (the names are {', '.join(list(index)[:4])}, ...); "
                "fix the row, or add the name to --label_names."
            )
        (unknown if marked else ids).append(label)
    both = set(ids) & set(unknown)
    if both:
        raise UserError(
            f"{where}: label {list(index)[min(both)]!r} is both listed and marked unknown ({UNKNOWN_MARK}); keep one."
        )
    return tuple(ids), tuple(unknown)


def rows(files: Sequence[str], layout: Layout, label_names: Sequence[str], first_file: str = "") -> Iterator[Row]:
    """Every record, checked; raises UserError naming the file and line of the first bad one.
    `first_file` is the file the layout was read from (default: files[0])."""
    index = {name: i for i, name in enumerate(label_names)}
    for path in files:
        lines = numbered_lines(path)
        if layout.header:
            number, line = next(lines, (0, ""))
            if number > 1:  # The reader skips line 1 of each file, so the header must be there.
                raise UserError(f"{path}:1 is blank; put the header on the first line.")
            if number and tuple(c.strip() for c in split_cells(line, layout.delimiter, f"{path}:1")) != layout.header:
                raise UserError(
                    f"{path}:1: the header differs from the one of {first_file or files[0]}; give all files the same."
                )
        for number, line in lines:
            where = f"{path}:{number}"
            cells = split_cells(line, layout.delimiter, where)
            if len(cells) != layout.num_columns:
                raise UserError(
                    f"{where} has {len(cells)} columns but {'the header' if layout.header else 'line 1'} has "
                    f"{layout.num_columns}; every row needs the same columns."
                )
            text = cells[layout.text] if layout.text >= 0 else ""
            if layout.labels >= 0:
                ids, unknown = _label_ids(cells[layout.labels], index, where)
            else:
                values = [_label_value(cells[c], where, layout.column_name(c)) for c in layout.label_columns]
                ids = tuple(label for label, value in enumerate(values) if value)
                unknown = tuple(label for label, value in enumerate(values) if value is None)
            features = tuple(_number(cells[c], where, layout.column_name(c)) for c in layout.feature_columns)
            yield text, ids, features, unknown


def check(files: Sequence[str], layout: Layout, label_names: Sequence[str]) -> Stats:
    """The checking pass: counts examples, positives and unknowns per label and empty texts; raises at
    the first bad row."""
    stats = Stats.zeros(len(label_names))
    for path in files:
        before = stats.num_examples
        for text, label_ids, _, unknown_ids in rows([path], layout, label_names, first_file=files[0]):
            stats.add(label_ids, empty_text=layout.text >= 0 and not text.strip(), unknown_ids=unknown_ids)
            stats.text_bytes += len(text.encode("utf-8"))
        stats.file_examples.append(stats.num_examples - before)
    return stats


def multi_hot_from_cells(cells: tf.Tensor, names: tf.lookup.StaticHashTable, num_labels: int) -> tf.Tensor:
    """Labels cells [B] ("3,27", "anger, joy" or "anger,?joy") -> float32 [B, num_labels]: 1 for
    the labels listed, -1 (UNKNOWN) for those marked `?`, 0 for the others."""
    tokens = tf.strings.strip(tf.strings.split(cells, ","))
    tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
    flat = tokens.flat_values
    marked = tf.strings.substr(flat, 0, len(UNKNOWN_MARK)) == UNKNOWN_MARK
    flat = tf.where(marked, tf.strings.strip(tf.strings.substr(flat, len(UNKNOWN_MARK), -1)), flat)
    is_id = tf.strings.regex_full_match(flat, "[0-9]+")
    ids = tf.where(is_id, tf.strings.to_number(tf.where(is_id, flat, "0"), tf.int64), names.lookup(flat))
    # One count over 2 * num_labels slots: label j listed counts in slot j, marked in num_labels + j.
    slots = ids + tf.cast(marked, tf.int64) * num_labels
    counts = tf.math.bincount(
        tokens.with_flat_values(slots),
        minlength=2 * num_labels,
        maxlength=2 * num_labels,
        binary_output=True,
        axis=-1,
        dtype=tf.float32,
    )
    return counts[:, :num_labels] + UNKNOWN * counts[:, num_labels:]


def read(
    files: Sequence[str],
    layout: Layout,
    label_names: Sequence[str],
    batch_size: int,
    record_shard: Tuple[int, int] = (1, 0),
) -> tf.data.Dataset:
    """Batches of ({"text": string [B]} and/or {"features": float32 [B, F]}, labels float32 [B, L]).

    Parsing is vectorised over `batch_size` lines; the caller unbatches. `record_shard` (count,
    index) keeps lines index, index + count, ... (blank ones included, and dropped later): the
    others are dropped before they are parsed.
    """
    num_labels = len(label_names)
    selected = sorted({layout.text, layout.labels, *layout.label_columns, *layout.feature_columns} - {-1})
    position = {column: i for i, column in enumerate(selected)}
    numeric = set(layout.label_columns) | set(layout.feature_columns)
    # An empty label cell (unknown) reads as the default, UNKNOWN.
    defaults = [
        [UNKNOWN] if column in layout.label_columns else [0.0] if column in numeric else [""] for column in selected
    ]
    names = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(label_names), tf.string), tf.range(num_labels, dtype=tf.int64)
        ),
        default_value=-1,
    )

    def parse(lines):
        # Blank lines are dropped here, for a whole batch at once: a per-line filter costs more
        # than the parsing.
        lines = tf.boolean_mask(lines, tf.strings.length(tf.strings.strip(lines)) > 0)
        cells = tf.io.decode_csv(
            lines,
            defaults,
            field_delim=layout.delimiter,
            use_quote_delim=layout.delimiter == ",",
            select_cols=selected,
        )
        features = {}
        if layout.text >= 0:
            features["text"] = cells[position[layout.text]]
        if layout.feature_columns:
            features["features"] = tf.stack([cells[position[c]] for c in layout.feature_columns], axis=1)
        if layout.labels >= 0:
            labels = multi_hot_from_cells(cells[position[layout.labels]], names, num_labels)
        elif layout.label_columns:
            labels = tf.stack([cells[position[c]] for c in layout.label_columns], axis=1)
        else:  # Unlabelled (data to predict on).
            labels = tf.zeros([tf.shape(lines)[0], num_labels])
        return features, labels

    def file_lines(path):
        """The lines of one file, without its header or byte-order mark (the checking pass drops both)."""
        lines = tf.data.TextLineDataset(path)
        if layout.header:
            return lines.skip(1)
        first = lines.take(1).map(lambda line: tf.strings.regex_replace(line, "^" + BOM, ""))
        return first.concatenate(lines.skip(1))

    lines = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(file_lines)
    if record_shard[0] > 1:
        lines = lines.shard(*record_shard)
    return lines.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _label_names(
    config: DataConfig,
    flag: str,
    files: List[str],
    layout: Layout,
    allow_unlabelled: bool,
    model_label_names: Sequence[str] = (),
) -> List[str]:
    """The label names of delimited `files`: from the header's label columns, else --label_names or
    labels.txt; a file of numeric columns alone (to predict on) has the model's, `model_label_names`."""
    if layout.label_columns:
        label_names = [layout.header[i][len(config.label_columns_prefix) :] for i in layout.label_columns]
        if config.label_names and read_names(config.label_names) != label_names:
            named = read_names(config.label_names)
            raise UserError(
                f"{files[0]} has {len(label_names)} label columns ({config.label_columns_prefix}{label_names[0]}, ...) "
                f"but --label_names={config.label_names} lists {len(named)} names"
                + ("" if len(named) != len(label_names) else " that differ from them")
                + "; make the two agree, or leave --label_names empty to take the names from the header."
            )
        if not layout.feature_columns and layout.text < 0:
            raise UserError(f"{files[0]} has label columns but no feature or text column; add the inputs.")
        return label_names
    if layout.feature_columns:  # A header with the model's numeric columns and no label columns.
        require_labels(flag, allow_unlabelled, f"{files[0]} has no {config.label_columns_prefix} columns, so no labels")
        return list(model_label_names)
    label_names = find_names(config.label_names, files)
    if label_names is None:
        raise UserError(
            f"{flag}: {files[0]} holds label ids or names, so the trainer needs their names: pass "
            "--label_names=FILE (one name a line, line i names id i), or put a labels.txt beside the data."
        )
    if layout.labels < 0:
        missing = f"no column {config.labels_column!r}" if layout.header else "a single column"
        require_labels(flag, allow_unlabelled, f"{files[0]} has {missing}, so no labels")
    return label_names


@dataclasses.dataclass(frozen=True)
class Reader:
    """Delimited `files` with their layout and label names (a data.sources reader)."""

    files: Tuple[str, ...]
    layout: Layout
    label_names: List[str]

    def check(self) -> Stats:
        return check(self.files, self.layout, self.label_names)

    def feature_names(self) -> Tuple[str, ...]:
        """The header names of the numeric feature columns, in order; () without a header."""
        return tuple(self.layout.header[c] for c in self.layout.feature_columns) if self.layout.header else ()

    def read(
        self, files: Sequence[str], record_shard: Tuple[int, int], in_order: bool, text_bytes: int = 0
    ) -> tf.data.Dataset:
        del in_order  # Lines are read in order at no extra cost.
        batch_size = parse_batch(len(self.label_names), 4 * len(self.layout.feature_columns) + text_bytes)
        return read(files, self.layout, self.label_names, batch_size, record_shard)


def open_reader(
    config: DataConfig,
    flag: str,
    files: List[str],
    data_format: str,
    allow_unlabelled: bool,
    model: Optional[InputSpec] = None,
) -> Reader:
    """Reads the layout of delimited `files` and their label names; also used by trainer.prepare.
    `model`: the inputs of a trained model, whose numeric columns alone make a file to predict on."""
    model_columns, model_labels = (model.feature_names, model.label_names) if model else ((), ())
    layout = inspect(files, data_format, config, flag, model_columns)
    return Reader(tuple(files), layout, _label_names(config, flag, files, layout, allow_unlabelled, model_labels))
