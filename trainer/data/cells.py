"""Lines and cells of delimited files, read in Python exactly as tf.data and tf.io.decode_csv read them."""

from typing import Iterator, List, Tuple

import tensorflow as tf

from trainer.errors import UserError

WHITESPACE = " \t\n\v\f\r"  # What tf.strings.strip removes, so both passes skip the same blank lines.
BOM = "\ufeff"  # A UTF-8 byte-order mark, which Excel writes before the first line.


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


GZIP_MAGIC = b"\x1f\x8b"  # The first two bytes of every gzip file.


def numbered_lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) of each non-blank line, its end removed as tf.data.TextLineDataset does."""
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if number == 1 and raw.startswith(GZIP_MAGIC):
                    raise UserError(
                        f"{path} is gzip-compressed; decompress it (gunzip) and point the flag at the result."
                    )
                raise UserError(f"{path}:{number} is not UTF-8 text; re-encode the file as UTF-8.")
            if number == 1 and line.startswith(BOM):
                line = line[1:]
            if line.strip(WHITESPACE):
                yield number, line
