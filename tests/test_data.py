"""The input design: the global stream sliced per worker, or (streamed, several workers) each worker its own part."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import data
from trainer.config import DataConfig
from trainer.data import pipeline, tfrecord
from trainer.distribute import Topology
from trainer.errors import UserError


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


def streamed_ids(tmp_path, num_files):
    """A streamed split of 48 examples (feature 0 = id) in `num_files` CSV files."""
    folder = tmp_path / f"files{num_files}"
    folder.mkdir()
    for f in range(num_files):
        rows = "".join(f"{i},{i % 2}\n" for i in range(f, 48, num_files))
        (folder / f"part-{f}.csv").write_text("id,label:a\n" + rows)
    return data.load_split(DataConfig(in_memory_budget_mb=0), "train", str(folder / "part-*.csv"), seed=0)


def test_only_streamed_data_on_several_workers_without_deterministic_is_read_in_parts(tmp_path):
    """Parts only for streamed data on several workers without --deterministic; by file if files >= workers."""
    streamed, in_memory = streamed_ids(tmp_path, 3), example_ids(48)
    workers = [
        Topology(num_replicas=4, num_workers=n, worker_index=0, is_chief=True, global_batch_size=8) for n in (1, 2)
    ]
    assert data.reads_own_part(streamed, workers[1], deterministic=False)
    assert not data.reads_own_part(streamed, workers[1], deterministic=True)
    assert not data.reads_own_part(streamed, workers[0], deterministic=False)
    assert not data.reads_own_part(in_memory, workers[1], deterministic=False)
    # 3 files: by file for 2 or 3 workers (worker 0 of 2 gets files 0 and 2), by record for 4.
    for num_workers, by_file in ((2, True), (3, True), (4, False)):
        topology = Topology(num_replicas=num_workers, num_workers=num_workers, worker_index=0, is_chief=True,
                            global_batch_size=8 * num_workers)  # fmt: skip
        assert data.worker_part(streamed, topology) == data.Part(num_workers, 0, by_file)
    part = [int(f["features"][0]) for f, _ in streamed.read_part(data.Part(2, 0, by_file=True)).unbatch()]
    assert sorted(part) == [i for i in range(48) if i % 3 != 1]


def test_no_worker_is_given_a_part_without_examples(tmp_path):
    """By file, a worker given only empty files would wait forever for its first batch (a 2-worker
    job on shards of 1 and 0 records spun at 100% CPU): such files are sharded by record instead."""
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "a.csv").write_text("id,label:a\n1,0\n2,1\n3,0\n")
    (folder / "b.csv").write_text("id,label:a\n")  # Header only: no example.
    split = data.load_split(DataConfig(in_memory_budget_mb=0), "train", str(folder / "*.csv"), seed=0)
    assert split.file_examples == (3, 0)
    topology = Topology(num_replicas=2, num_workers=2, worker_index=1, is_chief=False, global_batch_size=2)
    part = data.worker_part(split, topology)
    assert part == data.Part(2, 1, by_file=False)
    assert [int(f["features"][0]) for f, _ in split.read_part(part).unbatch()] == [2]
    three = Topology(num_replicas=4, num_workers=4, worker_index=0, is_chief=True, global_batch_size=4)
    with pytest.raises(UserError, match="holds 3 examples, fewer than the 4 workers"):
        data.worker_part(split, three)


def test_cache_keeps_the_batches_of_the_stream(tmp_path):
    """--cache_train_data leaves the training batches unchanged."""
    split = streamed_ids(tmp_path, 2)
    topology = Topology(num_replicas=1, num_workers=1, worker_index=0, is_chief=True, global_batch_size=8)
    batches = [
        [f["features"][:, 0].numpy().tolist() for f, _ in
         data.train_batches(split, ["features"], topology, 20, seed=1, deterministic=True, cache=cache).take(15)]
        for cache in (False, True)
    ]  # fmt: skip
    assert batches[0] == batches[1]


def test_tfrecord_shards_by_record_give_each_record_to_exactly_one_worker(tmp_path):
    """TFRecord by record gives each record to one worker; eval reads record by record, training by block."""
    for f in range(3):  # 3 files, 4 workers: by record, after the interleave of the files.
        with tf.io.TFRecordWriter(str(tmp_path / f"part-{f}.tfrecord")) as writer:
            for i in range(f, 40 + f, 3):
                writer.write(tfrecord.make_example(None, [i % 2], features=[float(i)]))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    split = data.load_split(DataConfig(in_memory_budget_mb=0), "train", str(tmp_path / "*.tfrecord"), seed=0)
    parts = [
        [int(f["features"][0]) for f, _ in split.read_part(data.Part(4, i, by_file=False)).unbatch()] for i in range(4)
    ]
    assert {len(p) for p in parts} == {10, 11}  # 42 records: 11, 11, 10, 10.
    assert sorted(sum(parts, [])) == sorted(int(f["features"][0]) for f, _ in split.examples)

    # Evaluation reads the files a record each in turn: the order `prepare` dealt them out in.
    in_order = [int(f["features"][0]) for f, _ in split.examples]
    assert in_order == list(range(42))
    # Training reads them a block (up to 1,024 records) each in turn: file 0's 14 records come first.
    training_order = [int(f["features"][0]) for f, _ in split.read_part(data.WHOLE).unbatch()]
    assert training_order == list(range(0, 42, 3)) + list(range(1, 42, 3)) + list(range(2, 42, 3))


def test_in_memory_indices_are_a_new_permutation_each_epoch_cut_across_epoch_ends():
    """25 examples in batches of 8: every epoch holds each index once, in its own order drawn from
    the seed; batches run on across epoch ends, losing nothing."""

    def indices(seed, num_batches=25):  # 8 epochs.
        return sum((b.numpy().tolist() for b in pipeline.shuffled_indices(25, seed, 8).take(num_batches)), [])

    ids = indices(seed=0)
    epochs = [ids[i : i + 25] for i in range(0, 200, 25)]
    assert all(sorted(epoch) == list(range(25)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 8 and epochs[0] != list(range(25))
    assert indices(seed=0) == ids and indices(seed=1) != ids


def test_in_memory_indices_resume_exactly_from_a_saved_iterator(tmp_path):
    """The saved iterator (the epoch and the rest of its permutation) continues mid-epoch and across
    an epoch end in a pipeline built anew."""
    reference = [b.numpy().tolist() for b in pipeline.shuffled_indices(50, 1, 6).take(30)]
    iterator = iter(pipeline.shuffled_indices(50, 1, 6))
    for _ in range(11):  # 66 indices: into the second epoch.
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "input"))
    resumed = iter(pipeline.shuffled_indices(50, 1, 6))
    tf.train.Checkpoint(iterator=resumed).restore(path).assert_consumed()
    assert [next(resumed).numpy().tolist() for _ in range(19)] == reference[11:]


def id_batches(num_examples, parsed_batch):
    """One epoch of ({"id": [n]}, labels [n, 1]) in batches of `parsed_batch`, as a reader parses them."""
    ids = tf.range(num_examples)
    return tf.data.Dataset.from_tensor_slices(({"id": ids}, tf.zeros([num_examples, 1]))).batch(parsed_batch)


def shuffled_ids(num_examples, block_size, seed, batch_size, num_batches, parsed_batch=7):
    stream = pipeline.shuffled_batches(id_batches(num_examples, parsed_batch), block_size, seed, batch_size)
    return [f["id"].numpy().tolist() for f, _ in stream.take(num_batches)]


def test_a_streamed_shuffle_permutes_each_block_whole_and_each_epoch_anew():
    """60 examples, blocks of 20, batches of 10: each pair of batches is one block, permuted; every
    epoch holds each example once, in another order; the stream is a function of the seed."""
    batches = shuffled_ids(60, block_size=20, seed=3, batch_size=10, num_batches=18)  # 3 epochs.
    epochs = [sum(batches[i : i + 6], []) for i in (0, 6, 12)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(60))
        for block in range(3):
            assert sorted(epoch[block * 20 : (block + 1) * 20]) == list(range(block * 20, (block + 1) * 20))
    assert epochs[0] != list(range(60)) and len({tuple(e) for e in epochs}) == 3
    assert shuffled_ids(60, 20, 3, 10, 18) == batches
    assert shuffled_ids(60, 20, 4, 10, 18) != batches


def test_a_streamed_shuffle_cuts_batches_across_blocks_and_epochs():
    """Batches of 8 from epochs of 25 (blocks of 10, the last of 5): no example is lost at the seams."""
    ids = sum(shuffled_ids(25, block_size=10, seed=0, batch_size=8, num_batches=25), [])  # 8 epochs.
    assert all(len(ids[i : i + 25]) == 25 and sorted(ids[i : i + 25]) == list(range(25)) for i in range(0, 200, 25))


@pytest.mark.parametrize("cache", [False, True])
def test_a_streamed_shuffle_resumes_exactly_from_a_saved_iterator(tmp_path, cache):
    """The saved iterator (positions, the block being cut, the cache) continues mid-block and
    across an epoch, in a pipeline built anew (a new cache, as in a new process)."""

    def stream():
        batches = id_batches(50, 7)
        return pipeline.shuffled_batches(batches.cache() if cache else batches, 20, 1, 6)

    reference = [f["id"].numpy().tolist() for f, _ in stream().take(30)]
    iterator = iter(stream())
    for _ in range(11):  # 66 examples: into the second epoch, mid-block.
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "input"))
    resumed = iter(stream())
    tf.train.Checkpoint(iterator=resumed).restore(path).assert_consumed()
    assert [next(resumed)[0]["id"].numpy().tolist() for _ in range(19)] == reference[11:]
