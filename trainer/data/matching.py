"""Whether data fits a model: the same labels, columns and feature shapes, in the same order.

A model's output j is label j and its input column i is column i, so a split whose labels or
columns differ from the model's, even only in their order, would be scored (or trained) against
the wrong truth without an error from TensorFlow. Every split a run reads is checked against the
model's inputs before any step: the saved input_spec.json of a trained run (resume, eval, predict),
else the run's first split. A resumed run also needs the training data it started with, since its
position in that data is in the checkpoint.
"""

import json
from typing import Dict, Optional, Sequence

import tensorflow as tf

from trainer import paths
from trainer.data.labels import shorten
from trainer.data.split import InputSpec, Split
from trainer.errors import UserError

SHOWN = 4  # Names a message lists before it counts the rest.


def _quoted(names: Sequence[str]) -> str:
    return shorten((repr(name) for name in names), SHOWN)


def names_difference(got: Sequence[str], expected: Sequence[str], kind: str, source: str) -> str:
    """How `got` differs from `expected`, the `kind` ("labels", "columns") of `source`, as the rest
    of a sentence that starts with what holds `got`; "" when they are the same, in the same order."""
    got, expected = list(got), list(expected)
    if got == expected:
        return ""
    missing = [name for name in expected if name not in set(got)]
    extra = [name for name in got if name not in set(expected)]
    if missing and extra:
        return f"lacks the {kind} {_quoted(missing)} of {source} and has others ({_quoted(extra)})"
    if missing:
        return f"lacks the {kind} {_quoted(missing)} of {source}"
    if extra:
        return f"has the {kind} {_quoted(extra)}, which {source} has not"
    if len(got) != len(expected):  # The same names, one of them twice.
        return f"has {len(got)} {kind} where {source} has {len(expected)}"
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    where = f"{kind[:-1]} {first + 1} is {got[first]!r}, not {expected[first]!r}"
    return f"has the {kind} of {source} in another order ({where})"


def _features(spec: InputSpec) -> Dict[str, tuple]:
    return {name: (tuple(s.shape.as_list()), s.dtype.name) for name, s in spec.feature_specs.items()}


def _describe(features: Dict[str, tuple]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, (shape, _) in sorted(features.items()))


def check_same_inputs(got: InputSpec, expected: InputSpec, flag: str, source: str, fix: str) -> None:
    """Raises UserError when the split `flag` read (`got`) does not fit the model's inputs
    (`expected`, which `source` names, e.g. "the model in runs/x" or "--train_data"); `fix` ends
    the message."""
    difference = names_difference(got.label_names, expected.label_names, "labels", source)
    if difference:
        raise UserError(f"{flag} {difference}; {fix}")
    if got.feature_names and expected.feature_names:
        difference = names_difference(got.feature_names, expected.feature_names, "feature columns", source)
        if difference:
            raise UserError(f"{flag} {difference}; {fix}")
    if _features(got) != _features(expected):
        raise UserError(
            f"{flag} gives the model {_describe(_features(got))} where {source} has {_describe(_features(expected))}; "
            f"{fix}"
        )


def read_saved(model_dir: str) -> Optional[dict]:
    """The run's input_spec.json as saved (split.write_spec); None when it has none."""
    path = paths.input_spec(model_dir)
    if not tf.io.gfile.exists(path):
        return None
    return json.loads(paths.read_text(path))


def check_resume(saved: dict, train_split: Split, model_dir: str, cached: bool) -> None:
    """Raises UserError when `train_split` is not the training data the run in `model_dir` started
    with, as far as its size and path (in memory or streamed, `cached` or not) tell: the
    checkpoint's position in the data (indices or a stream's offset) would point elsewhere, or not
    fit at all."""
    before = saved.get("num_train_examples")
    fix = (
        "resume with the training data (and --threshold_holdout) the run started with, or start a new --model_dir "
        f"(--init_checkpoint={model_dir} starts it from this run's weights)."
    )
    if before and train_split.num_examples != before:
        raise UserError(
            f"--train_data gives {train_split.num_examples} training examples but the run in {model_dir} started "
            f"with {before}; {fix}"
        )
    in_memory_before = saved.get("train_in_memory")
    in_memory = train_split.arrays is not None
    if in_memory_before is not None and in_memory != in_memory_before:
        held = "held its training data in memory" if in_memory_before else "streamed its training data"
        raise UserError(
            f"the run in {model_dir} {held}, and its checkpoint's position in the data is saved that way, but this "
            f"run would {'hold it in memory' if in_memory else 'stream it'}; set --in_memory_budget_mb as the run "
            f"started ({'0 to stream' if not in_memory_before else 'large enough to hold it, the default if it fit'})."
        )
    cached_before = saved.get("train_cached")
    cached = cached and not in_memory
    if cached_before is not None and not in_memory and cached != cached_before:
        raise UserError(
            f"the run in {model_dir} streamed its training data {'with' if cached_before else 'without'} "
            f"--cache_train_data, and its checkpoint's position in the data is saved that way; resume "
            f"{'with' if cached_before else 'without'} it."
        )
