"""Preemption: SIGTERM (what Kubernetes and most schedulers send) asks the run to stop.

The handler only sets a flag; the loop checks it between compiled loops, saves a checkpoint
at the current step and exits with EXIT_PREEMPTED. Workers of a multi-worker job may get the
signal at different moments, so the flag is agreed on with an all-reduce (any worker asked ->
all stop at the same step), keeping the workers in lockstep for the final save.
"""

import signal
import threading

import tensorflow as tf
from absl import logging


class PreemptionWatcher:
    """Turns SIGTERM into a request that every worker sees at the same step."""

    def __init__(self, strategy, num_workers: int):
        self._requested = threading.Event()
        self._num_workers = num_workers
        self._strategy = strategy
        signal.signal(signal.SIGTERM, self._on_signal)
        if num_workers > 1:
            self._any_worker = tf.function(self._any_worker_requested)

    def _on_signal(self, signum, frame) -> None:
        del frame
        logging.warning("Received signal %d: saving a checkpoint at the end of the current loop.", signum)
        self._requested.set()

    def _any_worker_requested(self, local_flag):
        def replica_flag():
            # The copy places the flag on this replica's device, where the collective runs.
            flag = tf.identity(local_flag)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, flag)

        return self._strategy.experimental_local_results(self._strategy.run(replica_flag))[0]

    def stop_requested(self) -> bool:
        """Whether any worker was asked to stop. All workers must call this at the same steps."""
        local = self._requested.is_set()
        if self._num_workers == 1:
            return local
        return bool(self._any_worker(tf.constant(1.0 if local else 0.0)).numpy() > 0)
