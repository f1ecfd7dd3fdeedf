"""The compiled steps, in three layers.

1. `replica_*`: pure per-replica maths, `tf.function(jit_compile=...)`.
2. `*_step`: `strategy.run` over the replicas of this worker, plus the reduction.
3. `train_loop`: a `tf.function` running `num_steps` (a tensor, so no retracing) steps with
   `tf.range`, pulling each worker batch from a plain per-worker iterator and staging the next
   step's rows on the replicas' devices while a step runs.
"""

import tensorflow as tf

from trainer import data, metrics
from trainer.distribute import Topology

SUM = tf.distribute.ReduceOp.SUM


def make_train_loop(
    strategy,
    topology: Topology,
    model,
    optimizer,
    loss_fn,
    step,
    jit_compile: bool,
    label_smoothing: float = 0.0,
    average=None,
    fuse_update=None,
):
    """Returns train_loop(iterator, num_steps) -> mean loss over those steps. `average` (a
    trainer.averaging.WeightAverage, or None) is updated after every step.

    With one replica (`fuse_update` None: decided by the topology) there is nothing to all-reduce,
    and the optimizer update compiles into the same XLA cluster as the gradients: its elementwise
    ops then fuse into one pass per variable instead of a dozen kernels each (7% of an MLP step on
    CPU, bench/vs_keras_fit.py). With several, XLA stops at the gradients and the update follows
    the all-reduce.

    The loss of a step is the mean over the global batch's known label entries (labels -1 are
    unknown, trainer.losses): each replica divides its sum by all the batch's entries, and the
    gradients are rescaled by entries / known entries once the global count of unknown entries
    is known, after the all-reduce. With every label known the scale is exactly 1.
    """
    variables = model.trainable_variables
    entries = float(topology.global_batch_size * model.output.shape[-1])

    def gradients_of(features, labels):
        """This replica's loss, gradients and count of unknown label entries."""
        if label_smoothing:  # Training targets only, known entries only: evaluation scores the true labels.
            labels = tf.where(labels >= 0, labels * (1.0 - label_smoothing) + 0.5 * label_smoothing, labels)
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            # Divide by the global batch: the all-reduce below sums the replicas' shares.
            loss = tf.nn.compute_average_loss(loss_fn(labels, logits), global_batch_size=topology.global_batch_size)
            scaled_loss = optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled_loss, variables), tf.reduce_sum(tf.cast(labels < 0, tf.float32))

    def apply(loss, gradients, unknown):
        """The update from gradients summed over the replicas; the loss rescaled as they are."""
        scale = tf.math.divide_no_nan(entries, entries - unknown)  # 0 when the batch has no known entry.
        optimizer.apply([_scaled(g, scale) for g in gradients], variables)
        return loss * scale

    fuse = topology.num_replicas == 1 if fuse_update is None else fuse_update
    if fuse:

        @tf.function(jit_compile=jit_compile)
        def replica_step(features, labels):
            return apply(*gradients_of(features, labels))

        def replica_update(features, labels):
            # A plain function around the compiled one, as replica_eval below.
            return replica_step(features, labels)

    else:
        replica_gradients = tf.function(jit_compile=jit_compile)(gradients_of)

        def replica_update(features, labels):
            loss, gradients, unknown = replica_gradients(features, labels)
            # Summed here, before the optimizer sees them, so clipping and the loss-scale check are global.
            # The count of unknown entries rides in the same all-reduce (no collective of its own).
            gradients, unknown = tf.distribute.get_replica_context().all_reduce(SUM, (gradients, unknown))
            return apply(loss, gradients, unknown)

    def train_step(batch):
        features, labels = batch
        loss = strategy.run(replica_update, args=(features, labels))
        if average is not None:
            average.update(variables)
        step.assign_add(1)
        return strategy.reduce(SUM, loss, axis=None)

    @tf.function
    def train_loop(iterator, num_steps):
        # Staging: the rows of step i + 1 are sliced onto the replicas' devices while step i runs
        # (nothing orders the two), so on GPUs the host-to-device copy overlaps compute. It stops
        # at the call's last step, so between calls, where checkpoints are taken, the iterator
        # stands exactly after the steps taken and exact resume needs nothing more.
        total_loss = tf.constant(0.0)
        batch = data.replica_batch(strategy, topology, next(iterator))
        for _ in tf.range(num_steps - 1):
            total_loss += train_step(batch)
            batch = data.replica_batch(strategy, topology, next(iterator))
        total_loss += train_step(batch)
        return total_loss / tf.cast(num_steps, tf.float32)

    return train_loop


def _scaled(gradient, scale):
    if isinstance(gradient, tf.IndexedSlices):  # Embedding rows.
        return tf.IndexedSlices(gradient.values * scale, gradient.indices, gradient.dense_shape)
    return gradient * scale


def make_eval_totals(strategy, num_labels: int, num_bins: int = 0):
    """Sums of metrics.add_batch over one evaluation pass, one copy per replica (histograms only
    when `num_bins`: the fallback beyond --exact_metrics_budget).

    Each replica adds its batches to its own copy, so a pass costs no collective per batch;
    reading the totals in cross-replica context sums the copies of every replica and worker, once
    per pass. Counts are int32 (exact to 2**31; float32 would stop counting at 2**24 examples in
    a bin); the loss and ranking sums are float32.
    """
    with strategy.scope():
        return {
            name: tf.Variable(
                tf.zeros(shape, tf.float32 if name == "loss_sum" or name.startswith("ranking/") else tf.int32),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
                name=f"eval_{name}".replace("@", "_at_").replace("/", "_"),
            )
            for name, shape in metrics.statistics_shapes(num_labels, num_bins).items()
        }


def make_eval_step(strategy, topology: Topology, model, loss_fn, jit_compile: bool, totals, num_bins: int = 0):
    """Returns eval_step(worker_batch, thresholds, inv_propensity), which adds the batch's statistics
    to `totals` (make_eval_totals) on each replica. Without histograms (`num_bins` 0) it returns
    (logits, labels, mask) of the whole global batch, in order, for the exact curves on the host."""

    static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)

    @tf.function(jit_compile=jit_compile)
    def replica_add_statistics(features, labels, mask, thresholds):
        logits = model(features, training=False)
        metrics.add_batch(totals, labels, logits, mask, thresholds, num_bins)
        totals["loss_sum"].assign_add(tf.reduce_sum(loss_fn(labels, logits) * mask))
        return tf.cast(logits, tf.float32)

    def replica_eval(features, labels, mask, thresholds, inv_propensity):
        # A plain function around the compiled one: handed a tf.function directly,
        # strategy.run would place every replica's XLA cluster on the first device.
        logits = replica_add_statistics(features, labels, mask, thresholds)
        # Outside the XLA cluster (but for TPUs): XLA's CPU sort is slow, and the faster path
        # through each example's positives has dynamic shapes.
        metrics.add_ranking(totals, labels, logits, mask, inv_propensity, static_shapes)
        return logits, labels, mask

    @tf.function
    def eval_step(worker_batch, thresholds, inv_propensity):
        features, labels, mask = data.replica_batch(strategy, topology, worker_batch)
        logits, labels, mask = strategy.run(replica_eval, args=(features, labels, mask, thresholds, inv_propensity))
        if num_bins:
            return None
        # Every worker gets the whole global batch, so every worker computes the same figures.
        return tuple(strategy.gather(t, axis=0) for t in (logits, labels, mask))

    return eval_step


def make_predict_step(strategy, topology: Topology, model):
    """Returns predict_step(worker_batch) -> (logits, mask) of the whole global batch, in order."""

    def replica_logits(features, labels, mask):
        del labels
        return tf.cast(model(features, training=False), tf.float32), mask

    @tf.function
    def predict_step(worker_batch):
        features, labels, mask = data.replica_batch(strategy, topology, worker_batch)
        logits, mask = strategy.run(replica_logits, args=(features, labels, mask))
        return strategy.gather(logits, axis=0), strategy.gather(mask, axis=0)

    return predict_step
