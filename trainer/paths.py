"""Every path under --model_dir, and the one way files there are written (atomically).

The layout (docs/checkpoints.md has what each holds):

    config.json  input_spec.json  vocabulary.txt  thresholds.json  predictions.jsonl
    checkpoints/ckpt-<step>.*            checkpoints/input/worker-<i>-of-<n>/
    checkpoints/best/{ckpt-<step>.*, best.json, thresholds.json}
    metrics/<name>-<step>[-<n>].{json,csv}     report/<name>-<step>.png
    tensorboard/<name>/                  export/

Model dirs may be local or on object storage (`gs://...`, the norm on TPU), so everything goes
through `tf.io.gfile`. A local file is written beside its destination and renamed over it, so a
crash never leaves half a file; an object store makes an object visible only once its upload
completes, so there the file is written in place.
"""

import contextlib
import os
import tempfile
from typing import Iterator, TextIO

import tensorflow as tf

from trainer.errors import UserError

CHECKPOINTS = "checkpoints"
BEST = "best"


def config(model_dir: str) -> str:
    return os.path.join(model_dir, "config.json")


def input_spec(model_dir: str) -> str:
    return os.path.join(model_dir, "input_spec.json")


def vocabulary(model_dir: str) -> str:
    return os.path.join(model_dir, "vocabulary.txt")


def checkpoints(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINTS)


def worker_input(model_dir: str, worker_name: str) -> str:
    """Where one worker keeps its input position (see trainer.checkpoint.input_position)."""
    return os.path.join(model_dir, CHECKPOINTS, "input", worker_name)


def best(model_dir: str) -> str:
    """checkpoints/best/: the best evaluation's checkpoint, best.json and thresholds.json."""
    return os.path.join(model_dir, CHECKPOINTS, BEST)


def best_record(model_dir: str) -> str:
    return os.path.join(best(model_dir), "best.json")


def thresholds(directory: str) -> str:
    """thresholds.json in the model dir, or in checkpoints/best/ for the best checkpoint."""
    return os.path.join(directory, "thresholds.json")


def metrics(model_dir: str, stem: str, extension: str) -> str:
    """metrics/<stem>.<extension>; `stem` is <name>-<step>, see `unused_metrics_stem`."""
    return os.path.join(model_dir, "metrics", f"{stem}.{extension}")


def report(model_dir: str, name: str, step: int) -> str:
    return os.path.join(model_dir, "report", f"{name}-{step}.png")


def tensorboard(model_dir: str, name: str) -> str:
    return os.path.join(model_dir, "tensorboard", name)


def predictions(model_dir: str) -> str:
    return os.path.join(model_dir, "predictions.jsonl")


def export(model_dir: str) -> str:
    return os.path.join(model_dir, "export")


def run_directory(checkpoint_prefix: str) -> str:
    """The model_dir that wrote `checkpoint_prefix` (under checkpoints/ or checkpoints/best/)."""
    directory = os.path.dirname(checkpoint_prefix)
    if os.path.basename(directory) == BEST:
        directory = os.path.dirname(directory)
    return os.path.dirname(directory) if os.path.basename(directory) == CHECKPOINTS else directory


def is_remote(path: str) -> bool:
    return "://" in path


def check_writable(directory: str, flag: str = "--model_dir") -> None:
    """Raises UserError unless the local `directory` (what `flag` names) is a directory this process
    can write in, or can be made one; called before anything is read, so a run that could not save
    stops at once. Object storage is not probed: its first write fails with the storage's own message."""
    if is_remote(directory):
        return
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"{flag}={directory} is a file; give a directory (a new one, or one this tool wrote).")
    fix = "give a directory this user can write to."
    if os.path.isdir(directory):
        try:  # A real write: permissions, read-only mounts and immutable directories all fail it.
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".mltrain-write-test-"):
                pass
        except OSError as e:
            raise UserError(f"{flag}={directory} is not writable ({e.strerror}); {fix}")
        return
    parent = os.path.dirname(os.path.abspath(directory))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag}={directory} cannot be created: {parent} is not a writable directory; {fix}")


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[TextIO]:
    """A file that replaces `path` only when the block completes: on an error the old `path` is
    untouched and the partial file removed. `mode` is "w" (text) or "wb"."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    if is_remote(path):
        with tf.io.gfile.GFile(path, mode) as f:
            yield f
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.gfile.GFile(tmp, mode) as f:
            yield f
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def atomic_write(path: str, content) -> str:
    """Writes `content` (str or bytes) to `path` atomically; returns `path`."""
    with atomic_file(path, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    return path


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def unused_metrics_stem(model_dir: str, name: str, step: int) -> str:
    """`<name>-<step>`, or `<name>-<step>-<n>` with the first free n >= 2 when that is taken: an
    evaluation run never replaces a file that training or an earlier run wrote."""
    stem, number = f"{name}-{step}", 1
    while any(tf.io.gfile.exists(metrics(model_dir, stem, ext)) for ext in ("json", "csv")):
        number += 1
        stem = f"{name}-{step}-{number}"
    return stem
