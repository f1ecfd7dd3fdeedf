"""Delimited text files (.tsv, .csv): what the columns mean, a checking pass, and the reader.

Two layouts:
- a text column and a labels cell holding label ids or names separated by `,`: either
  `text<TAB>labels[<TAB>ignored...]` without a header (GoEmotions), or a header naming
  --text_column and --labels_column (other columns are ignored);
- one 0/1 column per label, named with --label_columns_prefix (`label:`); every other column is
  a numeric feature, except a --text_column, which is text.
The first line is a header when it names --text_column, --labels_column or a prefixed column.
TSV cells are split on tabs exactly (no quoting); CSV cells follow RFC 4180 quoting. A record is
one line (`python -m trainer.prepare` is no different; it writes TFRecords for large data).

`rows` reads every record once in Python so each problem is reported with its file and line;
`read` then streams the same records through `tf.io.decode_csv` without checks. Both parse the
same way (`_split_csv` follows decode_csv's quoting rules), which tests/test_sources.py checks.
"""

import dataclasses
import re
from typing import Dict, Iterator, List, Sequence, Tuple

import tensorflow as tf

from trainer.config import DataConfig
from trainer.errors import UserError
from trainer.labels import Stats

DELIMITERS = {"tsv": "\t", "csv": ","}
_WHITESPACE = " \t\n\v\f\r"  # What tf.strings.strip removes, so both passes skip the same blank lines.
_ID = re.compile(r"[0-9]+")

Row = Tuple[str, Tuple[int, ...], Tuple[float, ...]]  # text, label ids, numeric features


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


def _split_csv(line: str) -> List[str]:
    """The cells of one CSV line as tf.io.decode_csv reads them: a cell is either quoted (with
    `""` for a quote) or holds no quote at all; raises ValueError otherwise."""
    cells, i, n = [], 0, len(line)
    while True:
        if line.startswith('"', i):
            parts, start = [], i + 1
            while True:
                end = line.find('"', start)
                if end < 0:
                    raise ValueError("a quoted cell is not closed (a record must fit on one line)")
                parts.append(line[start:end])
                if not line.startswith('"', end + 1):
                    break
                parts.append('"')
                start = end + 2
            cells.append("".join(parts))
            i = end + 1
            if i < n and line[i] != ",":
                raise ValueError("a closing quote must be followed by `,` or the end of the line")
        else:
            end = line.find(",", i)
            end = n if end < 0 else end
            if '"' in line[i:end]:
                raise ValueError('a cell holding `"` must be quoted, with each `"` doubled')
            cells.append(line[i:end])
            i = end
        if i >= n:
            return cells
        i += 1


def split_cells(line: str, delimiter: str, where: str) -> List[str]:
    """The cells of `line`; raises UserError naming `where` (file:line) when CSV quoting is broken."""
    if delimiter == "\t":
        return line.split("\t")
    try:
        return _split_csv(line)
    except ValueError as e:
        raise UserError(f"{where}: {e}.")


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) of each non-blank line, its end removed as tf.data.TextLineDataset does."""
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number} is not UTF-8 text; re-encode the file as UTF-8.")
            if line.strip(_WHITESPACE):
                yield number, line


def inspect(files: Sequence[str], data_format: str, config: DataConfig, flag: str) -> Layout:
    """Reads the first line of the first file with one and decides what each column holds."""
    delimiter = DELIMITERS[data_format]
    first = next((line for path in files for _, line in _lines(path)), None)
    if first is None:
        raise UserError(f"{flag}: {files[0]}{' ...' if len(files) > 1 else ''} holds no examples; point it at data.")
    cells = split_cells(first, delimiter, f"{files[0]}:1")
    names = tuple(c.strip() for c in cells)
    prefix = config.label_columns_prefix
    label_columns = tuple(i for i, n in enumerate(names) if prefix and n.startswith(prefix))
    if not (label_columns or config.text_column in names or config.labels_column in names):
        # No header: GoEmotions' `text<TAB>label ids<TAB>comment id`; later columns are ignored.
        return Layout(delimiter, (), len(cells), text=0, labels=1 if len(cells) > 1 else -1)
    text = names.index(config.text_column) if config.text_column in names else -1
    if label_columns:
        features = tuple(i for i in range(len(names)) if i not in label_columns and i != text)
        return Layout(delimiter, names, len(names), text, label_columns=label_columns, feature_columns=features)
    if text < 0:
        raise UserError(
            f"{files[0]} has a header without the text column {config.text_column!r} (columns: "
            f"{', '.join(names)}); set --text_column, or --label_columns_prefix for 0/1 label columns."
        )
    labels = names.index(config.labels_column) if config.labels_column in names else -1
    return Layout(delimiter, names, len(names), text, labels=labels)


def label_names_from_header(layout: Layout, config: DataConfig) -> List[str]:
    return [layout.header[i][len(config.label_columns_prefix) :] for i in layout.label_columns]


def _number(cell: str, where: str, column: str) -> float:
    try:
        if "_" in cell:  # Python reads 1_000, tf.io.decode_csv does not.
            raise ValueError
        return float(cell)
    except ValueError:
        raise UserError(
            f"{where}: column {column} holds {cell!r}, not a number; feature columns must be numeric "
            "(name a text column with --text_column)."
        )


def _label_ids(cell: str, index: Dict[str, int], where: str) -> Tuple[int, ...]:
    ids = []
    for token in cell.split(","):
        token = token.strip(_WHITESPACE)
        if not token:
            continue
        if _ID.fullmatch(token):
            if int(token) >= len(index):
                raise UserError(
                    f"{where}: label id {int(token)} is out of range: there are {len(index)} label names "
                    f"(ids 0..{len(index) - 1}); fix the id, or --label_names."
                )
            ids.append(int(token))
        elif token in index:
            ids.append(index[token])
        else:
            raise UserError(
                f"{where}: unknown label name {token!r} (the names are {', '.join(list(index)[:4])}, ...); "
                "fix the row, or add the name to --label_names."
            )
    return tuple(ids)


def rows(files: Sequence[str], layout: Layout, label_names: Sequence[str]) -> Iterator[Row]:
    """Every record, checked; raises UserError naming the file and line of the first bad one."""
    index = {name: i for i, name in enumerate(label_names)}
    for path in files:
        lines = _lines(path)
        if layout.header:
            number, line = next(lines, (0, ""))
            if number > 1:  # The reader skips line 1 of each file, so the header must be there.
                raise UserError(f"{path}:1 is blank; put the header on the first line.")
            if number and tuple(c.strip() for c in split_cells(line, layout.delimiter, f"{path}:1")) != layout.header:
                raise UserError(f"{path}:1: the header differs from the one of {files[0]}; give all files the same.")
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
                ids = _label_ids(cells[layout.labels], index, where)
            else:
                ids = []
                for label, column in enumerate(layout.label_columns):
                    value = _number(cells[column], where, layout.column_name(column))
                    if value not in (0.0, 1.0):
                        raise UserError(
                            f"{where}: label column {layout.column_name(column)} holds {value}, not 0 or 1."
                        )
                    if value == 1.0:
                        ids.append(label)
                ids = tuple(ids)
            features = tuple(_number(cells[c], where, layout.column_name(c)) for c in layout.feature_columns)
            yield text, ids, features


def check(files: Sequence[str], layout: Layout, label_names: Sequence[str]) -> Stats:
    """The checking pass: counts examples, positives per label and empty texts; raises at the first bad row."""
    stats = Stats.zeros(len(label_names))
    for text, label_ids, _ in rows(files, layout, label_names):
        stats.add(label_ids, empty_text=layout.text >= 0 and not text.strip())
    return stats


def multi_hot_from_cells(cells: tf.Tensor, names: tf.lookup.StaticHashTable, num_labels: int) -> tf.Tensor:
    """Labels cells [B] ("3,27" or "anger, joy") -> multi-hot float32 [B, num_labels]."""
    tokens = tf.strings.strip(tf.strings.split(cells, ","))
    tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
    flat = tokens.flat_values
    is_id = tf.strings.regex_full_match(flat, "[0-9]+")
    ids = tf.where(is_id, tf.strings.to_number(tf.where(is_id, flat, "0"), tf.int64), names.lookup(flat))
    return tf.math.bincount(
        tokens.with_flat_values(ids),
        minlength=num_labels,
        maxlength=num_labels,
        binary_output=True,
        axis=-1,
        dtype=tf.float32,
    )


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
    defaults = [[0.0] if column in numeric else [""] for column in selected]
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

    skip = 1 if layout.header else 0
    lines = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(lambda f: tf.data.TextLineDataset(f).skip(skip))
    if record_shard[0] > 1:
        lines = lines.shard(*record_shard)
    return lines.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
