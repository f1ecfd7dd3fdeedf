"""Label names, label statistics and short label lists, shared by every reader and by `trainer.prepare`.

Label names come from `--label_names` (one name a line; line i names label id i) or, when that
flag is empty, from a `labels.txt` beside the data files: `python -m trainer.prepare` writes one
next to its shards, so a job reading them from object storage needs no extra flag.
"""

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer import paths
from trainer.errors import UserError

LABELS_FILE = "labels.txt"
SHOWN = 20  # Items `shorten` shows before it counts the rest.


def shorten(items: Iterable[str], limit: int = SHOWN) -> str:
    """`items` joined by ", ", cut after the first `limit`: "a, b, ... and 99980 more".

    For log lines and messages that list labels: with 100,000 labels a full list is a megabyte.
    """
    items = list(items)
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... and {len(items) - limit} more"


def read_names(path: str, flag: str = "--label_names") -> List[str]:
    """The label names in `path`; raises UserError for a missing file, blank lines or duplicates."""
    if not tf.io.gfile.exists(path):
        raise UserError(f"{flag}={path} does not exist; point it at a file with one label name a line.")
    with tf.io.gfile.GFile(path, "r") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise UserError(f"{flag}={path} is empty; it needs one label name a line.")
    if "" in names:
        raise UserError(f"{path}:{names.index('') + 1} is blank; every line of a label names file names a label.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{path} names {duplicates[0]!r} more than once; label names must be unique.")
    return names


def find_names(label_names_flag: str, files: Sequence[str]) -> Optional[List[str]]:
    """--label_names if set, else labels.txt beside the first data file, else None."""
    if label_names_flag:
        return read_names(label_names_flag)
    beside = os.path.join(os.path.dirname(files[0]), LABELS_FILE)
    if tf.io.gfile.exists(beside):
        return read_names(beside, flag=f"{LABELS_FILE} beside the data,")
    return None


def require_labels(flag: str, allow_unlabelled: bool, what: str) -> None:
    """Raises UserError (`what` says why there are no labels) unless unlabelled data is allowed here."""
    if not allow_unlabelled:
        raise UserError(
            f"{flag}: {what}; set --labels_column, or --label_columns_prefix for 0/1 label columns "
            "(only --test_data may be unlabelled, for --mode=predict)."
        )


def write_names(path: str, names: Iterable[str]) -> None:
    paths.atomic_write(path, "".join(f"{n}\n" for n in names))


@dataclasses.dataclass
class Stats:
    """What a checking pass counts: examples, positives per label, examples with empty text."""

    label_counts: np.ndarray  # int64 [num_labels]
    num_examples: int = 0
    empty_texts: int = 0

    @classmethod
    def zeros(cls, num_labels: int) -> "Stats":
        return cls(np.zeros(num_labels, np.int64))

    def add(self, label_ids: Iterable[int], empty_text: bool = False) -> None:
        """One example; `label_ids` are valid ids (a repeated id counts once)."""
        self.label_counts[list(set(label_ids))] += 1
        self.num_examples += 1
        self.empty_texts += int(empty_text)

    def add_batch(self, multi_hot: np.ndarray, empty_texts: int = 0) -> None:
        self.label_counts += np.asarray(multi_hot).sum(axis=0).astype(np.int64)
        self.num_examples += len(multi_hot)
        self.empty_texts += int(empty_texts)

    def summary(self, names: Sequence[str]) -> Dict:
        """The JSON `prepare` writes: frequency per label and label cardinality (mean labels per example)."""
        total = max(self.num_examples, 1)
        return {
            "num_examples": self.num_examples,
            "num_labels": len(names),
            "label_cardinality": round(float(self.label_counts.sum()) / total, 6),
            "label_density": round(float(self.label_counts.sum()) / total / max(len(names), 1), 6),
            "empty_texts": self.empty_texts,
            "labels": {
                name: {"count": int(count), "frequency": round(float(count) / total, 6)}
                for name, count in zip(names, self.label_counts)
            },
        }
