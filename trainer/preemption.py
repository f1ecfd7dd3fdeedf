"""Preemption and timed saves: decisions every worker must take at the same step.

SIGTERM (what Kubernetes and most schedulers send) asks the run to stop: the signal handler only
sets a flag; between compiled loops the loop saves a checkpoint at the current step and exits with
EXIT_PREEMPTED. Workers of a multi-worker job may get the signal at different moments, or only one
of them gets it, and a save takes every worker, so the stop is agreed on first:

- MultiWorkerMirroredStrategy: TensorFlow's `PreemptionCheckpointHandler` agrees on the step
  through the coordination service (the signalled worker names the next loop boundary and waits
  until every worker has acknowledged it). Its "save" only tells our loop to save, so the
  checkpoint is ours: `ckpt-<step>`, rotation, the input position, the chief alone writing.
- Everything else (one worker, MirroredStrategy, TPUStrategy, and MultiWorkerMirrored on GCP CPU
  VMs, where the TensorFlow handler does nothing): one all-reduce of the flag per loop.

A timed save (--checkpoint_every_seconds) follows the chief's clock; the chief's decision rides
on the same all-reduce, so with several workers all of them save at the same step.
"""

import shutil
import signal
import tempfile
import threading
from typing import Tuple

import tensorflow as tf
from absl import logging

# Where PreemptionCheckpointHandler finds out the platform; there is no public name for it.
from tensorflow.python.distribute.failure_handling import failure_handling_util

from trainer import distribute


class PreemptionWatcher:
    """Turns SIGTERM, and the chief's clock, into decisions every worker sees at the same step."""

    def __init__(self, strategy, num_workers: int, is_chief: bool):
        self._requested = threading.Event()
        self._is_chief = is_chief
        signal.signal(signal.SIGTERM, self._on_signal)
        self._sum_over_workers = distribute.make_replica_sum(strategy) if num_workers > 1 else None

    def _on_signal(self, signum, frame) -> None:
        del frame
        logging.warning("Received signal %d: saving a checkpoint at the end of the current loop.", signum)
        self._requested.set()

    def _agreed(self, stop: bool, save_due: bool) -> Tuple[bool, bool]:
        """Any worker's stop, and the chief's save_due, seen by every worker (one all-reduce)."""
        if self._sum_over_workers is None:
            return stop, save_due
        local = [1.0 if stop else 0.0, 1.0 if save_due and self._is_chief else 0.0]
        total = self._sum_over_workers(tf.constant(local, tf.float32)).numpy()
        return bool(total[0] > 0), bool(total[1] > 0)

    def agree(self, save_due: bool) -> Tuple[bool, bool]:
        """(stop, save): whether to save and stop here, and whether the chief's timed save is due.
        Every worker must call this at the same steps."""
        return self._agreed(self._requested.is_set(), save_due)


class HandlerWatcher(PreemptionWatcher):
    """MultiWorkerMirrored: the stop step is agreed on by TensorFlow's PreemptionCheckpointHandler.

    What the handler is given, and why:
    - termination_watcher_fn: our SIGTERM flag, polled once a second. Left alone it watches
      SIGTERM only off GCP; on a GCP GPU VM it would poll the maintenance event instead and
      ignore the SIGTERM Kubernetes sends.
    - save_fn: only records that the agreed step has come; the loop then saves with our
      `Checkpoints` (the handler's own save would bypass `ckpt-<step>` rotation).
    - exit_fn: returns; the loop raises Preempted after its save (exit 75, one line).
    - grace_period=0: stop at the agreed step rather than train on towards a deadline.
    - a CheckpointManager over an empty scratch directory: the handler restores its manager's
      latest checkpoint when built, bypassing our fallback from a corrupt newest checkpoint, and
      adds its own run counter to that checkpoint; ours is restored by `Checkpoints` instead.
    """

    def __init__(self, strategy, num_workers: int, is_chief: bool, timed_saves: bool):
        super().__init__(strategy, num_workers, is_chief)
        self._timed_saves = timed_saves
        self._stop_now = threading.Event()
        scratch = tempfile.mkdtemp(prefix="mltrain-preemption-")
        try:
            self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                strategy.cluster_resolver,
                tf.train.CheckpointManager(tf.train.Checkpoint(), scratch, max_to_keep=1),
                termination_config=tf.distribute.experimental.TerminationConfig(
                    termination_watcher_fn=self._requested.is_set,
                    exit_fn=lambda: None,
                    grace_period=0,
                    save_fn=self._stop_now.set,
                ),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def agree(self, save_due: bool) -> Tuple[bool, bool]:
        # Counts one "run" per call: every worker calls it once per loop, so the counts agree.
        self._handler.save_checkpoint_if_preempted()
        stop = self._stop_now.is_set()
        if not self._timed_saves:  # No collective needed: the handler has agreed on the stop.
            return stop, False
        return stop, self._agreed(False, save_due)[1]


def make_watcher(strategy, num_workers: int, is_chief: bool, timed_saves: bool) -> PreemptionWatcher:
    """TensorFlow's handler for MultiWorkerMirrored where it works; ours everywhere else."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or num_workers == 1:
        return PreemptionWatcher(strategy, num_workers, is_chief)
    platform = failure_handling_util.detect_platform()
    if platform in (failure_handling_util.PlatformDevice.GCE_CPU, failure_handling_util.PlatformDevice.GCE_TPU):
        # PreemptionCheckpointHandler.__init__ skips its set-up there and its calls return at once.
        logging.info("On %s PreemptionCheckpointHandler does nothing: using our own.", platform.value)
        return PreemptionWatcher(strategy, num_workers, is_chief)
    return HandlerWatcher(strategy, num_workers, is_chief, timed_saves)
