"""The data package: sources read and checked into one Split type, then batched for the replicas.

    split.py      Split, InputSpec, Part, from_arrays, input_spec.json (read_spec / write_spec)
    sources.py    load_split: --*_data -> a reader -> checking pass -> vocabulary -> Split
    delimited.py  .tsv / .csv reader (cells.py: their lines and cells, as TensorFlow reads them)
    tfrecord.py   tf.train.Example reader (what `python -m trainer.prepare` writes)
    tfds.py       tfds:NAME:SPLIT reader and its label adapters
    synthetic.py  the embedded synthetic problem (in memory)
    labels.py     label names (--label_names, labels.txt), counts, short label lists for messages
    sparse_labels.py  the labels of in-memory splits, kept as their non-zero entries
    matching.py   whether a split fits the model's inputs (labels, columns, shapes) and a resume its data
    in_memory.py  whether a split fits --in_memory_budget_mb, and loading it once into arrays
    holdout.py    --threshold_holdout: an eval split held out of the training data
    text.py       tokenizer and vocabulary
    pipeline.py   train_batches, eval_batches, replica_batch, each worker's part

data imports only trainer.config, trainer.distribute (Topology) and trainer.errors: never the
loop, steps, models, checkpoint, evaluation or reporting.
"""

from trainer.data.matching import check_resume, check_same_inputs, read_saved
from trainer.data.pipeline import eval_batches, reads_own_part, replica_batch, train_batches, worker_part
from trainer.data.sources import Reader, file_format, load_split, match_files
from trainer.data.split import (
    WHOLE,
    InputSpec,
    Part,
    Split,
    from_arrays,
    parse_batch,
    read_positive_fraction,
    read_spec,
    read_train_label_counts,
    write_spec,
)

__all__ = [
    "WHOLE",
    "InputSpec",
    "check_resume",
    "check_same_inputs",
    "Part",
    "Reader",
    "Split",
    "eval_batches",
    "file_format",
    "from_arrays",
    "parse_batch",
    "load_split",
    "match_files",
    "read_positive_fraction",
    "read_saved",
    "read_spec",
    "read_train_label_counts",
    "reads_own_part",
    "replica_batch",
    "train_batches",
    "worker_part",
    "write_spec",
]
