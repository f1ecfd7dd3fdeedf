"""The train loop stages the next step's rows on the replicas while a step runs: the iterator
still stands exactly after the steps taken, so figures and exact resume are unchanged (mirrored
on logical CPU devices; overlap of the copies with compute happens only on real GPUs)."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, resumes_exactly

from trainer import data, losses, models, optimization, steps
from trainer.config import LossConfig, ModelConfig, TrainConfig
from trainer.distribute import Topology


def test_a_loop_call_of_n_steps_takes_exactly_n_batches_from_the_iterator():
    features = {"features": np.arange(64, dtype=np.float32)[:, None]}
    split = data.from_arrays(features, np.zeros((64, 2), np.float32), ["a", "b"])
    topology = Topology(num_replicas=1, num_workers=1, worker_index=0, is_chief=True, global_batch_size=4)
    strategy = tf.distribute.get_strategy()
    model = models.build_mlp(ModelConfig(hidden_units=(4,)), split.spec)
    optimizer = optimization.make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    loop = steps.make_train_loop(
        strategy, topology, model, optimizer, losses.LOSSES["bce"](LossConfig(), None), step, jit_compile=False
    )
    batches = tf.data.Dataset.range(1000).map(lambda i: ({"features": tf.fill([4, 1], tf.cast(i, tf.float32))},
                                                         tf.zeros([4, 2])))  # fmt: skip
    iterator = iter(batches)
    for num_steps in (1, 5, 3):
        loop(iterator, tf.constant(num_steps))
    assert int(step.numpy()) == 9
    assert float(next(iterator)[0]["features"][0, 0]) == 9.0  # Batches 0..8 trained on, none staged ahead.


@pytest.mark.e2e
def test_mirrored_sigkilled_run_resumes_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """--strategy=mirrored --cpu_replicas=2: SIGKILL after a checkpoint and restart; same weights (<= 1e-6)."""
    flags = TINY + ["--mode=train", "--deterministic", "--checkpoint_every_steps=40", "--train_steps=300",
                    "--strategy=mirrored", "--cpu_replicas=2"]  # fmt: skip
    resumes_exactly(flags, tmp_path, r"Saved checkpoint .*ckpt-40")
