"""One worker of a real MultiWorkerMirrored job (TF_CONFIG set by the test) that feeds the
trainer's training input through `data.replica_batch` and prints, as one JSON line, the
example ids (feature 0) each of its replicas got per step, and the all-reduced sum of all
ids in each global batch. Run by tests/test_input_position.py; not a test itself."""

import json
import os
import sys

import tensorflow as tf
from absl import logging

from trainer import data, distribute
from trainer.config import DataConfig, DistributeConfig

GLOBAL_BATCH_SIZE = 8


def main(patterns, num_steps: int) -> None:
    logging.set_verbosity(logging.INFO)  # The trainer's start-up does this through absl.app.
    cluster = distribute.cluster_from_env(os.environ["TF_CONFIG"])
    strategy = distribute.make_strategy(DistributeConfig(strategy="multi_worker"), cluster)
    topology = distribute.topology(strategy, cluster, GLOBAL_BATCH_SIZE)
    tf.random.set_seed(7)  # What the trainer does (keras.utils.set_random_seed) before its input.

    @tf.function
    def step(batch):
        def ids_and_global_sum(replica_batch):
            ids = replica_batch[0]["features"][:, 0]
            return ids, tf.distribute.get_replica_context().all_reduce("sum", tf.reduce_sum(ids))

        return strategy.run(ids_and_global_sum, args=(data.replica_batch(strategy, topology, batch),))

    report = {"worker": topology.worker_index}
    for pattern in patterns:
        split = data.load_split(DataConfig(in_memory_budget_mb=0), "train", pattern, seed=7)  # Streamed: parts.
        iterator = iter(data.train_batches(split, ["features"], topology, 50, seed=7, deterministic=False))
        ids, sums = [], []
        for _ in range(num_steps):
            replica_ids, total = step(next(iterator))
            ids.append([t.numpy().astype(int).tolist() for t in strategy.experimental_local_results(replica_ids)])
            sums.append(float(strategy.experimental_local_results(total)[0]))
        report[pattern] = {"ids": ids, "global_sums": sums}
    print("PROBE " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[2:], int(sys.argv[1]))
