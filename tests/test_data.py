"""The input design: every worker keeps its own rows of the same global batches."""

import numpy as np

from trainer import data
from trainer.distribute import Topology


def example_ids(num_examples):
    features = {"features": np.arange(num_examples, dtype=np.float32)[:, None]}
    labels = np.zeros((num_examples, 2), np.float32)
    return data.from_arrays(features, labels, ["a", "b"])


def test_two_workers_see_disjoint_parts_and_together_all_of_it_once_per_epoch():
    num_examples, global_batch = 640, 64
    split = example_ids(num_examples)
    seen = []
    for worker in range(2):
        topology = Topology(num_replicas=2, num_workers=2, worker_index=worker, is_chief=worker == 0,
                            global_batch_size=global_batch)  # fmt: skip
        batches = data.train_batches(split, ["features"], topology, 1000, seed=3, deterministic=True)
        epoch = [features["features"][:, 0].numpy() for features, _ in batches.take(num_examples // global_batch)]
        assert all(len(rows) == 32 for rows in epoch)
        seen.append(np.concatenate(epoch).astype(int))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(np.concatenate(seen)) == list(range(num_examples))


def test_eval_batches_pad_with_a_mask_so_every_example_counts_once():
    split = example_ids(100)
    rows, masks = [], []
    for worker in range(2):
        topology = Topology(num_replicas=4, num_workers=2, worker_index=worker, is_chief=worker == 0,
                            global_batch_size=32)  # fmt: skip
        for features, _, mask in data.eval_batches(split, ["features"], topology):
            rows.append(features["features"][:, 0].numpy())
            masks.append(mask.numpy())
    real = np.concatenate(rows)[np.concatenate(masks) > 0].astype(int)
    assert sorted(real) == list(range(100))
