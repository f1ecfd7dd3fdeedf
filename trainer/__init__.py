"""Multi-label classifier trainer for tf.distribute: one CPU to a TPU slice."""
