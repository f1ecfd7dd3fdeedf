"""Weight averaging (--ema_decay): an exponential moving average of the trainable weights.

The average is kept beside the weights (one copy per replica, identical everywhere: it is
computed in cross-replica context from the replicas' identical weights and written to every
copy), saved in the checkpoint (so a resume continues it exactly), and swapped into the model
for evaluation, prediction and export unless --eval_weights=raw.

Early on the decay is min(ema_decay, (1 + n) / (10 + n)) after n updates, as in
tf.train.ExponentialMovingAverage with num_updates: a short run's average is not dominated by
the random initial weights.
"""

import tensorflow as tf


class WeightAverage(tf.Module):
    """The moving average of `variables` (a model's trainable variables). Create inside the strategy scope."""

    def __init__(self, variables, decay: float):
        super().__init__(name="weight_average")
        self.decay = decay
        self.averages = [
            tf.Variable(
                tf.identity(v.value if hasattr(v, "value") else v),
                trainable=False,
                name=f"average_{i}",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for i, v in enumerate(variables)
        ]
        self.num_updates = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="num_updates",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def update(self, variables) -> None:
        """One step of the average; call in cross-replica context after the optimizer's update."""
        n = tf.cast(self.num_updates, tf.float32)
        decay = tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (10.0 + n))
        for average, variable in zip(self.averages, variables):
            average.assign(decay * average + (1.0 - decay) * tf.cast(variable, average.dtype))
        self.num_updates.assign_add(1)

    def reset(self, variables) -> None:
        """Starts the average again at `variables` (after a warm start replaced the initial weights)."""
        for average, variable in zip(self.averages, variables):
            average.assign(variable.value if hasattr(variable, "value") else variable)

    def swap(self, variables) -> None:
        """Exchanges the weights and their averages (twice restores both). Cross-replica context."""
        for average, variable in zip(self.averages, variables):
            weights = tf.identity(variable.value if hasattr(variable, "value") else variable)
            variable.assign(average)
            average.assign(weights)
