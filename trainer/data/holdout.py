"""--threshold_holdout: when a training run has no --eval_data, a fraction of the training split
becomes its eval split (periodic evaluations, the best checkpoint, early stopping and the tuned
thresholds then use examples the model does not train on, never the test split).

An example is held out when a hash of its features (and the seed) falls in the first `fraction`
of the hash range. The choice depends on the content, not on the position: a streamed split's
order may vary between passes (parallel parsing), and identical inputs always land on the same
side, so a duplicate of a training example is never scored as unseen. A resumed run holds out
the same examples.
"""

import dataclasses
from typing import Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer.data import split as split_lib
from trainer.errors import UserError

_BUCKETS = 1 << 30
CACHE_BYTES = 256 << 20  # A streamed held-out part up to this size is kept in memory after its first pass.


def _example_bytes(examples: tf.data.Dataset) -> int:
    """Bytes of one parsed example (features and labels); unbounded when a shape is not static."""
    specs = tf.nest.flatten(examples.element_spec)
    if not all(spec.shape.is_fully_defined() for spec in specs):
        return CACHE_BYTES + 1
    return sum(int(np.prod(spec.shape.as_list() or [1])) * spec.dtype.size for spec in specs)


def _is_held_out(fraction: float, seed: int):
    """A tf.data predicate (features, labels) -> whether the example is held out."""
    salt, limit = tf.constant(f"{seed}:"), tf.constant(int(fraction * _BUCKETS), tf.int64)

    def predicate(features, labels):
        del labels
        content = tf.strings.join([salt] + [tf.io.serialize_tensor(features[name]) for name in sorted(features)])
        return tf.strings.to_hash_bucket_fast(content, _BUCKETS) < limit

    return predicate


def split(train: split_lib.Split, fraction: float, seed: int) -> Tuple[split_lib.Split, split_lib.Split]:
    """(the training part, the held-out part) of `train`; raises UserError when either is empty."""
    held_out = _is_held_out(fraction, seed)
    if train.arrays is not None:
        features, labels = train.arrays
        mask = np.fromiter(train.examples.map(held_out).as_numpy_iterator(), bool, count=len(labels))
        # The full split's spec: from_arrays would drop its vocabulary.
        rest, kept = (
            dataclasses.replace(
                split_lib.from_arrays({name: values[keep] for name, values in features.items()}, labels[keep], []),
                spec=train.spec,
            )
            for keep in (~mask, mask)
        )
    else:
        kept_examples = train.examples.filter(held_out)
        label_counts = np.zeros(train.spec.num_labels, np.int64)
        num_examples = 0
        for labels in kept_examples.map(lambda features, labels: labels).batch(4096):
            label_counts += labels.numpy().sum(axis=0).astype(np.int64)
            num_examples += len(labels)
        if num_examples * _example_bytes(kept_examples) <= CACHE_BYTES:  # Evaluations then skip the filter pass.
            kept_examples = kept_examples.cache()
        # Both parts filter the whole split: every worker reads this global stream (the per-worker
        # file parts of Split.read_part are not used).
        kept = split_lib.Split(kept_examples, train.spec, num_examples, label_counts)
        rest_examples = train.examples.filter(lambda features, labels: tf.logical_not(held_out(features, labels)))
        rest = split_lib.Split(
            rest_examples, train.spec, train.num_examples - num_examples, train.label_counts - label_counts
        )
    if kept.num_examples == 0 or rest.num_examples == 0:
        raise UserError(
            f"--threshold_holdout={fraction} leaves {kept.num_examples} of the {train.num_examples} training "
            "examples for evaluation and the rest for training; one of the two is empty: give --eval_data, "
            "or change --threshold_holdout (0 = no held-out split)."
        )
    logging.info(
        "No --eval_data: %d of the %d training examples (--threshold_holdout=%g) are held out as the eval split; "
        "training uses the other %d.",
        kept.num_examples,
        train.num_examples,
        fraction,
        rest.num_examples,
    )
    return rest, kept
