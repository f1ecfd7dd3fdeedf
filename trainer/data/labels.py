"""Label names, label statistics and short label lists, shared by every reader and by `trainer.prepare`.

Label names come from `--label_names` (one name a line; line i names label id i) or, when that
flag is empty, from a `labels.txt` beside the data files: `python -m trainer.prepare` writes one
next to its shards, so a job reading them from object storage needs no extra flag.
"""

import collections
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
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        missing = "is a directory" if tf.io.gfile.exists(path) else "does not exist"
        raise UserError(f"{flag}={path} {missing}; point it at a file with one label name a line.")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            lines = f.read().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"{flag}={path} is not UTF-8 text; it must be a text file with one label name a line.")
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise UserError(f"{flag}={path} is empty; it needs one label name a line.")
    if "" in names:
        raise UserError(f"{path}:{names.index('') + 1} is blank; every line of a label names file names a label.")
    duplicates = sorted(name for name, count in collections.Counter(names).items() if count > 1)
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
    """What a checking pass counts: examples, positives and unknown entries per label, examples
    whose labels are all unknown, and examples with empty text."""

    label_counts: np.ndarray  # int64 [num_labels]: positives (known entries equal to 1).
    num_examples: int = 0
    empty_texts: int = 0
    unknown_counts: Optional[np.ndarray] = None  # int64 [num_labels]: unknown entries (zeros when None).
    all_unknown: int = 0  # Examples whose every label is unknown (kept; they add nothing to the loss).
    text_bytes: int = 0  # UTF-8 bytes of all the texts: what bounds a parsed batch of long documents.
    # Examples in each file, in the reader's order (sharding by file must not leave a worker none).
    file_examples: List[int] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.unknown_counts is None:
            self.unknown_counts = np.zeros_like(self.label_counts)

    @classmethod
    def zeros(cls, num_labels: int) -> "Stats":
        return cls(np.zeros(num_labels, np.int64))

    @property
    def num_unknown(self) -> int:
        return int(self.unknown_counts.sum())

    def mean_text_bytes(self) -> int:
        """UTF-8 bytes of an example's text, on average (0 without text)."""
        return self.text_bytes // max(self.num_examples, 1)

    def add(self, label_ids: Iterable[int], empty_text: bool = False, unknown_ids: Iterable[int] = ()) -> None:
        """One example; `label_ids` (on) and `unknown_ids` are valid ids (a repeated id counts once)."""
        unknown = set(unknown_ids)
        self.label_counts[list(set(label_ids) - unknown)] += 1
        self.unknown_counts[list(unknown)] += 1
        self.all_unknown += int(len(unknown) == len(self.label_counts) > 0)
        self.num_examples += 1
        self.empty_texts += int(empty_text)

    def add_batch(self, labels: np.ndarray, empty_texts: int = 0) -> None:
        """A batch of label rows [n, num_labels]: 1 on, 0 off, -1 unknown."""
        labels = np.asarray(labels)
        unknown = labels < 0
        self.label_counts += (labels > 0).sum(axis=0).astype(np.int64)
        self.unknown_counts += unknown.sum(axis=0).astype(np.int64)
        self.all_unknown += int(unknown.all(axis=1).sum()) if labels.shape[-1] else 0
        self.num_examples += len(labels)
        self.empty_texts += int(empty_texts)

    def known_counts(self) -> np.ndarray:
        """Examples whose value of each label is known, per label."""
        return self.num_examples - self.unknown_counts

    def summary(self, names: Sequence[str]) -> Dict:
        """The JSON `prepare` writes: counts per label and label cardinality (mean labels per example).

        A label's frequency is over the examples where it is known; unknown entries are counted
        apart (`unknown`, per label and in all)."""
        total = max(self.num_examples, 1)
        known = self.known_counts()
        return {
            "num_examples": self.num_examples,
            "num_labels": len(names),
            "label_cardinality": round(float(self.label_counts.sum()) / total, 6),
            "label_density": round(float(self.label_counts.sum()) / max(int(known.sum()), 1), 6),
            "empty_texts": self.empty_texts,
            "unknown_entries": self.num_unknown,
            "all_unknown_examples": self.all_unknown,
            "labels": {
                name: {
                    "count": int(count),
                    "frequency": round(float(count) / max(int(known_j), 1), 6),
                    "unknown": int(unknown_j),
                }
                for name, count, known_j, unknown_j in zip(names, self.label_counts, known, self.unknown_counts)
            },
        }
