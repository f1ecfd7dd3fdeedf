"""Batching: a Split cut into batches for each worker and then each replica.

Two ways to feed the workers (`train_batches`):
- the global stream (one worker, in-memory data, or --deterministic): every worker reads the
  same seeded stream of global batches and keeps rows [first_replica * per_replica, ...) of
  each. Each global batch holds the same examples whatever the strategy (runs differ only by
  summation order).
- each worker its own part (streamed data, several workers, not --deterministic): worker i
  reads files i, i + N, ... when there are at least as many files as workers, else records
  i, i + N, ..., shuffles them with its own seed and batches them to the per-worker batch. No
  worker parses what another trains on.
With several workers each worker's iterator state is its own (it holds prefetched batches of
its rows), and trainer.checkpoint.input_position saves it beside the checkpoint.
Either way `replica_batch` then hands every local replica its own rows.
"""

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer.data import in_memory
from trainer.data.sparse_labels import SparseLabels, dense_rows
from trainer.data.split import WHOLE, Part, Split, parse_batch
from trainer.distribute import Topology
from trainer.errors import UserError

# A streamed split is shuffled a block at a time, and a block's labels are dense (400 KB an
# example at 100,000 labels): --shuffle_buffer is lowered so that one block takes at most this
# much memory (the pipeline holds about two: one being filled, one being cut into batches).
SHUFFLE_BLOCK_BYTES = 256 << 20


def shuffle_block_size(batches: tf.data.Dataset, shuffle_buffer: int) -> int:
    """--shuffle_buffer, or fewer examples where a block of that many would take more than
    SHUFFLE_BLOCK_BYTES (logged). `batches` are batches of examples (any batch size)."""
    per_example = in_memory.example_bytes(
        tf.nest.map_structure(lambda s: tf.TensorSpec(s.shape[1:], s.dtype), batches.element_spec)
    )
    if not per_example or shuffle_buffer * per_example <= SHUFFLE_BLOCK_BYTES:
        return shuffle_buffer
    size = max(1, SHUFFLE_BLOCK_BYTES // per_example)
    logging.warning(
        "--shuffle_buffer=%d streamed examples of %.0f KB each would take %.1f GB; shuffling blocks of %d instead "
        "(a split within --in_memory_budget_mb is shuffled whole and needs no buffer).",
        shuffle_buffer,
        per_example / 1024,
        shuffle_buffer * per_example / 2**30,
        size,
    )
    return size


def shuffled_indices(num_examples: int, seed: int, batch_size: int) -> tf.data.Dataset:
    """Endless batches of example indices: each epoch a permutation of range(num_examples) drawn
    from (seed, epoch), cut into batches of `batch_size` across epoch ends.

    Whole vectors: an index at a time through tf.data's shuffle and batch cost 7% of an MLP
    step on CPU (bench/vs_keras_fit.py). The iterator state is the epoch and the rest of its
    permutation, so a resume continues the stream exactly.
    """

    def permutation(epoch_index):
        """The order of one epoch."""
        return tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64), seed=_epoch_seed(seed, epoch_index)
        )

    return tf.data.Dataset.counter().map(permutation).rebatch(batch_size, drop_remainder=True)


def _epoch_seed(seed: int, epoch_index):
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch_index)


def shuffled_batches(batches: tf.data.Dataset, block_size: int, seed: int, batch_size: int) -> tf.data.Dataset:
    """Endless batches of `batch_size` examples from `batches` (one epoch's batches, of any size).

    Each epoch, every block of `block_size` consecutive examples is permuted whole, with a seed
    folded from (seed, epoch, block): the stream is a function of the seed alone, and its
    iterator state is positions, so a resume continues it exactly. An example mixes with the
    `block_size` around it, as in a shuffle buffer of that size, and every epoch holds each
    example once. Whole-tensor copies and gathers, where tf.data's shuffle (unbatch, shuffle,
    batch) costs about 3 us an example on one thread: that bounded streamed text input.
    """

    def epoch(epoch_index):
        """One epoch of `batches`, in permuted blocks."""
        epoch_seed = _epoch_seed(seed, epoch_index)

        def permute(block_index, block):
            """The block's examples in an order drawn from its own seed."""
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(block[1])[0]),
                seed=tf.random.experimental.stateless_fold_in(epoch_seed, block_index),
            )
            return tf.nest.map_structure(lambda t: tf.gather(t, order), block)

        return batches.rebatch(block_size).enumerate().map(permute)

    return tf.data.Dataset.counter().flat_map(epoch).rebatch(batch_size, drop_remainder=True)


def _with_options(dataset: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = deterministic
    # Sharding is explicit (each worker slices the global batch); never let tf.data auto-shard.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def _worker_rows(topology: Topology):
    start = topology.first_replica * topology.per_replica_batch_size
    return slice(start, start + topology.per_worker_batch_size)


def _select(features: Dict[str, tf.Tensor], names: List[str]) -> Dict[str, tf.Tensor]:
    return {name: features[name] for name in names}


def reads_own_part(split: Split, topology: Topology, deterministic: bool) -> bool:
    """Whether each worker reads only its own part of `split` rather than the global stream.

    In-memory data costs nothing to gather, and --deterministic promises the batches of one
    device, so both keep the global stream."""
    return split.read_part is not None and topology.num_workers > 1 and not deterministic


def worker_part(split: Split, topology: Topology) -> Part:
    """This worker's part: by file when every worker gets at least one file with examples, else by
    record. Logged. A worker whose part held no example would wait forever for its first batch
    (and the others for it), so that is refused."""
    count, index, num_files = topology.num_workers, topology.worker_index, len(split.files)
    if 0 <= split.num_examples < count:
        raise UserError(
            f"the training split holds {split.num_examples} examples, fewer than the {count} workers: each needs at "
            "least one; use fewer workers, or more data."
        )
    by_file = num_files >= count
    if by_file and split.file_examples:  # Empty files: by file, a worker could get only those.
        by_file = all(sum(split.file_examples[i::count]) > 0 for i in range(count))
    part = Part(count, index, by_file=by_file)
    if part.by_file:
        how = f"reads {len(split.files[index::count])} of {num_files} files (sharded by file)"
    else:
        what = f"{num_files} file{'s' if num_files != 1 else ''}" if num_files else "the TFDS split"
        why = "fewer files than workers" if num_files < count else "some workers' files hold no examples"
        how = f"reads records {index}, {index + count}, ... of {what} (sharded by record: {why})"
    logging.info("Input: worker %d of %d %s.", index, count, how)
    return part


def train_batches(
    split: Split,
    feature_names: List[str],
    topology: Topology,
    shuffle_buffer: int,
    seed: int,
    deterministic: bool,
    cache: bool = False,
) -> tf.data.Dataset:
    """An endless stream of this worker's shuffled batches (the named features only).

    `cache` keeps a streamed split's parsed examples in memory after the first epoch.
    """
    if reads_own_part(split, topology, deterministic):
        return _own_part_batches(split, feature_names, topology, shuffle_buffer, seed, cache)
    rows = _worker_rows(topology)
    if split.arrays is not None:
        # In memory: shuffle indices, not examples, and gather whole batches at once. Each epoch
        # is a full permutation, per-example work disappears, and the checkpointed iterator
        # state is a vector of integers rather than examples.
        features, labels = split.arrays
        label_rows = _label_rows(labels, sum(features[name].nbytes for name in features))
        features = {name: tf.constant(features[name]) for name in feature_names}
        dataset = shuffled_indices(len(labels), seed, topology.global_batch_size).map(
            lambda indices: (
                tf.nest.map_structure(lambda t: tf.gather(t, indices[rows]), features),
                label_rows(indices[rows]),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        # The training order of the whole stream (faster for TFRecord; the same for the rest).
        batches = _streamed_batches(split, WHOLE, cache)
        dataset = shuffled_batches(
            batches, shuffle_block_size(batches, shuffle_buffer), seed, topology.global_batch_size
        ).map(
            lambda features, labels: (
                tf.nest.map_structure(lambda t: t[rows], _select(features, feature_names)),
                labels[rows],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _with_options(dataset.prefetch(tf.data.AUTOTUNE), deterministic)


def _label_rows(labels: SparseLabels, feature_bytes: int):
    """A function from example indices to their dense float32 label rows: a gather from dense int8
    rows when they are small (in_memory.dense_labels), else from the sparse rows."""
    if in_memory.dense_labels(*labels.shape, feature_bytes):
        dense = tf.constant(labels.dense(np.int8))
        return lambda indices: tf.cast(tf.gather(dense, indices), tf.float32)
    label_ids, label_values = labels.ragged()
    return lambda indices: dense_rows(
        tf.gather(label_ids, indices), tf.gather(label_values, indices), labels.num_labels
    )


def _own_part_batches(
    split: Split, feature_names: List[str], topology: Topology, shuffle_buffer: int, seed: int, cache: bool
) -> tf.data.Dataset:
    """This worker's part of a streamed split, shuffled and cut into per-worker batches."""
    batches = _streamed_batches(split, worker_part(split, topology), cache)
    dataset = (
        # A seed of its own per worker: the same seed would shuffle the workers' parts alike.
        shuffled_batches(
            batches,
            shuffle_block_size(batches, shuffle_buffer),
            seed + topology.worker_index,
            topology.per_worker_batch_size,
        )
        .map(lambda features, labels: (_select(features, feature_names), labels), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    # Elements stay in order (parallel work still runs in parallel): sharding by record after the
    # parallel interleave of TFRecord files needs a fixed order, and a worker's stream is then a
    # function of the seed and its part, which is what makes its saved position resume exactly.
    return _with_options(dataset, deterministic=True)


def _streamed_batches(split: Split, part: Part, cache: bool) -> tf.data.Dataset:
    """One epoch of `part` of a streamed split, in batches as parsed; `cache` keeps them in memory
    after the first epoch."""
    if split.read_part is not None:
        batches = split.read_part(part)
    else:  # A filtered stream (data.holdout): one stream of examples, read by every worker.
        batches = split.examples.batch(parse_batch(split.spec.num_labels))
    return batches.cache() if cache else batches


def eval_batches(split: Split, feature_names: List[str], topology: Topology) -> tf.data.Dataset:
    """One pass in order; the last global batch is padded and `mask` marks the real rows.

    Every example is counted exactly once whatever the number of replicas: padding rows
    carry mask 0 and every worker sees the same number of batches.
    """
    global_batch_size, rows = topology.global_batch_size, _worker_rows(topology)

    def pad(features, labels):
        features = _select(features, feature_names)
        real = tf.shape(labels)[0]
        padding = global_batch_size - real

        def pad_rows(t):
            # Copies of the first row, not zeros: every model sees valid inputs (an all-padding
            # token row would make masked average pooling divide 0 by 0); the mask drops them.
            return tf.concat([t, tf.repeat(t[:1], padding, axis=0)], axis=0)

        mask = tf.concat([tf.ones([real]), tf.zeros([padding])], axis=0)
        return tuple(
            tf.nest.map_structure(lambda t: t[rows], x)
            for x in (tf.nest.map_structure(pad_rows, features), pad_rows(labels), mask)
        )

    dataset = (
        split.examples.batch(global_batch_size).map(pad, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    )
    return _with_options(dataset, deterministic=True)


def replica_batch(strategy, topology: Topology, worker_batch: Tuple):
    """Hands each local replica its rows of this worker's batch (call inside a tf.function)."""
    per_replica = topology.per_replica_batch_size

    def rows_for(context):
        local = context.replica_id_in_sync_group - topology.first_replica
        return tf.nest.map_structure(lambda t: t[local * per_replica : (local + 1) * per_replica], worker_batch)

    return strategy.experimental_distribute_values_from_function(rows_for)
