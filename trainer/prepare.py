"""`python -m trainer.prepare` (`mltrain prepare`): delimited files -> sharded TFRecord files, labels.txt, statistics.

    python -m trainer.prepare --input=../shared/data/goemotions/train.tsv \\
        --label_names=../shared/data/goemotions/labels.txt --output_dir=gs://bucket/goemotions --num_shards=8

writes, under --output_dir (local or object storage):
- `<name>-00000-of-00008.tfrecord`, ...: tf.train.Example records (`text` and/or `features`,
  `label_ids`, and a `label_mask` on rows with unknown labels; see trainer/data/tfrecord.py),
  dealt out to the shards round-robin, so that the trainer, which reads shards one record from
  each in turn, sees the input's order;
- `labels.txt`: the label names, one a line, which the trainer reads when --label_names is empty;
- `<name>-stats.json`: examples, count, frequency and unknown entries per label, label cardinality.
<name> is --name, by default the input's file name without its extension. Every row is checked
as the trainer checks it, before anything is written: a bad row means exit code 1, one line on
stderr, and no output.

Shards are written under temporary names and renamed once all are complete, so an interrupted or
failed run leaves the previous output of the same name as it was (and `*.tmp-<pid>` files, which
no `*.tfrecord` glob reads). A new run replaces it whole: shards of the same name with another
--num_shards are removed, since a glob would read them alongside the new ones.
"""

import json
import os
import sys
from typing import List

from absl import app, flags

from trainer import flags as config_flags
from trainer.config import DataConfig
from trainer.errors import EXIT_USER_ERROR, UserError

# Its own flags, apart from the trainer's (trainer.main.FLAGS): both modules load in one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("input", None, "Delimited file(s) to convert: a path or glob (.tsv or .csv).", flag_values=FLAGS)
flags.DEFINE_string(
    "output_dir", None, "Directory for the shards, labels.txt and <name>-stats.json.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_shards", 8, "TFRecord files to write (a worker reads whole files, so >= workers).", flag_values=FLAGS
)
flags.DEFINE_string(
    "name", "", "Shard name prefix; default: the input's file name without extension.", flag_values=FLAGS
)
# The settings of the delimited layout, as the trainer has them (same names, defaults and help).
DATA_FLAGS = ("data_format", "label_names", "text_column", "labels_column", "label_columns_prefix", "ignore_columns")
config_flags.define_flags(FLAGS, DataConfig, names=DATA_FLAGS)


# Every shard is an open file while the input is dealt out to them.
MAX_SHARDS = 10_000


def shard_paths(output_dir: str, name: str, num_shards: int):
    return [os.path.join(output_dir, f"{name}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]


def _stale_shards(output_dir: str, name: str, shards: List[str]) -> List[str]:
    """Shards of `name` an earlier run wrote with another --num_shards."""
    import tensorflow as tf

    pattern = os.path.join(output_dir, f"{name}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].tfrecord")
    return sorted(set(tf.io.gfile.glob(pattern)) - set(shards))


def prepare(
    config: DataConfig, pattern: str, output_dir: str, num_shards: int, name: str = "", flag: str = "--input"
) -> dict:
    """Converts the delimited files `pattern` names; returns the statistics it wrote."""
    import tensorflow as tf  # After the flag checks, so that mistakes there fail fast.

    from trainer import paths
    from trainer.data import delimited, labels, sources, tfrecord

    if not 1 <= num_shards <= MAX_SHARDS:
        raise UserError(f"--num_shards must be in 1..{MAX_SHARDS}, got {num_shards}.")
    if name and (name != os.path.basename(name) or name in (".", "..")):
        raise UserError(f"--name={name} must be a file name prefix, not a path; the shards go in --output_dir.")
    paths.check_writable(output_dir, "--output_dir")
    files = sources.match_files(flag, pattern)
    data_format = sources.file_format(flag, files, config.data_format)
    if data_format == "tfrecord":
        raise UserError(f"{flag}={pattern} is TFRecord already; prepare converts .tsv and .csv files.")
    reader = delimited.open_reader(config, flag, files, data_format, allow_unlabelled=False)
    layout, label_names = reader.layout, reader.label_names
    stats = reader.check()  # First, so a bad row leaves nothing behind.
    if stats.num_examples == 0:
        raise UserError(f"{flag}={pattern} holds no examples; point it at a non-empty file.")
    if num_shards > stats.num_examples:
        raise UserError(
            f"--num_shards={num_shards} is more than the {stats.num_examples} examples: a shard would be empty, and "
            f"a worker given only empty shards would have nothing to train on; use at most {stats.num_examples}."
        )
    names_path = os.path.join(output_dir, labels.LABELS_FILE)
    if tf.io.gfile.exists(names_path) and labels.read_names(names_path) != label_names:
        raise UserError(f"{names_path} holds other label names than {files[0]}; use another --output_dir.")

    name = name or os.path.splitext(os.path.basename(files[0]))[0]
    tf.io.gfile.makedirs(output_dir)
    shards = shard_paths(output_dir, name, num_shards)
    temporary = [f"{path}.tmp-{os.getpid()}" for path in shards]
    writers = [tf.io.TFRecordWriter(path) for path in temporary]
    try:
        try:
            for i, (text, label_ids, features, unknown_ids) in enumerate(delimited.rows(files, layout, label_names)):
                text = text if layout.text >= 0 else None
                example = tfrecord.make_example(text, label_ids, features, unknown_ids, len(label_names))
                writers[i % num_shards].write(example)
        finally:
            for writer in writers:
                writer.close()
        for path, final in zip(temporary, shards):
            tf.io.gfile.rename(path, final, overwrite=True)
    finally:
        for path in temporary:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
    stale = _stale_shards(output_dir, name, shards)
    for path in stale:
        tf.io.gfile.remove(path)
    if stale:
        print(f"Removed {len(stale)} shards of {name} that an earlier run wrote with another --num_shards.")
    labels.write_names(names_path, label_names)
    summary = dict(stats.summary(label_names), source=pattern, files=[os.path.basename(p) for p in shards])
    paths.atomic_write(os.path.join(output_dir, f"{name}-stats.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected argument(s) {argv[1:]}; flags take the form --name=value.")
    try:
        if not FLAGS.input or not FLAGS.output_dir:
            raise UserError("--input and --output_dir are required, e.g. --input=train.tsv --output_dir=prepared/.")
        summary = prepare(
            config_flags.read_flags(FLAGS, DataConfig), FLAGS.input, FLAGS.output_dir, FLAGS.num_shards, FLAGS.name
        )
    except UserError as e:
        _fail(str(e))
    except Exception as e:  # A file it may not read or write is the user's to fix, not a crash.
        if not (isinstance(e, PermissionError) or type(e).__name__ == "PermissionDeniedError"):
            raise
        _fail(f"permission denied: {str(e).strip().splitlines()[0]}; give it access to --input and --output_dir.")
    print(
        f"Wrote {summary['num_examples']} examples to {len(summary['files'])} shards in {FLAGS.output_dir}: "
        f"{summary['num_labels']} labels, {summary['label_cardinality']:.3f} labels per example"
        + (f", {summary['unknown_entries']} unknown label entries." if summary["unknown_entries"] else "."),
        flush=True,
    )


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_USER_ERROR)


def run(argv: List[str]) -> None:
    """`python -m trainer.prepare FLAGS` and `mltrain prepare FLAGS` (argv[0] is the program's name)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config_flags.parse(FLAGS, argv)  # Here first so a bad flag is one line and exit 1, not absl's usage dump.
    except UserError as e:
        _fail(str(e))
    app.run(main, argv=argv)


if __name__ == "__main__":
    run(sys.argv)
