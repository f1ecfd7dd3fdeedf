"""Each worker reads its own part of streamed data: real 2-worker jobs on loopback.

Examples carry their id as feature 0, so the ids a worker's replicas receive show what it read.
"""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, check_ok, run_local_workers, trainer_env

from launch.local import free_ports, tf_config
from trainer import data
from trainer.checkpoint import InputPositions
from trainer.config import DataConfig
from trainer.distribute import Topology

NUM_EXAMPLES = 96  # 48 per worker: 12 steps of 4 examples each, i.e. one epoch of each part.


def write_csv_files(folder, num_files: int) -> str:
    """NUM_EXAMPLES rows `id,noise,label:a,label:b` dealt round-robin over `num_files` files; a glob."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for f in range(num_files):
        with open(folder / f"part-{f}.csv", "w") as out:
            out.write("id,noise,label:a,label:b\n")
            for i in range(f, NUM_EXAMPLES, num_files):
                out.write(f"{i},{rng.normal():.3f},{i % 2},{i // 2 % 2}\n")
    return str(folder / "part-*.csv")


def run_probe(patterns, num_steps: int):
    """The probe as two real workers on loopback; returns their reports, worker 0 first."""
    ports = free_ports(2)
    processes = [
        subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "worker_input_probe.py"), str(num_steps), *patterns],
            cwd=REPO,
            env=trainer_env({"TF_CONFIG": tf_config(ports, index)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-4000:]
        reports.append((json.loads(stdout.split("PROBE ", 1)[1]), stderr))
    return reports


@pytest.mark.e2e
def test_two_workers_read_disjoint_parts_that_together_are_every_example_once_per_epoch(tmp_path):
    """Two real workers, by file (4 files) and by record (1 file): disjoint parts, together every example once."""
    by_file = write_csv_files(tmp_path / "four_files", 4)  # 4 files >= 2 workers: 2 files each.
    by_record = write_csv_files(tmp_path / "one_file", 1)  # 1 file < 2 workers: every 2nd record.
    steps = NUM_EXAMPLES // 8
    reports = run_probe([by_file, by_record], steps)

    assert "Input: worker 0 of 2 reads 2 of 4 files (sharded by file)." in reports[0][1]
    assert "Input: worker 1 of 2 reads 2 of 4 files (sharded by file)." in reports[1][1]
    assert "Input: worker 1 of 2 reads records 1, 3, ... of 1 file (sharded by record" in reports[1][1]
    for pattern in (by_file, by_record):
        parts = []
        for report, _ in reports:
            ids = report[pattern]["ids"]
            # One replica per worker, per-replica batch 4, every step.
            assert [len(replica) for step in ids for replica in step] == [4] * steps
            parts.append(sorted(i for step in ids for replica in step for i in replica))
            # The all-reduce saw both workers' rows: over the epoch, every id once.
            assert sum(report[pattern]["global_sums"]) == sum(range(NUM_EXAMPLES))
        assert not set(parts[0]) & set(parts[1]), pattern
        assert sorted(parts[0] + parts[1]) == list(range(NUM_EXAMPLES)), pattern
        # By file, worker 0 has files 0 and 2 (ids 0 and 2 mod 4); by record, records 0, 2, 4, ...
        assert all(i % 2 == 0 for i in parts[0]), pattern


def worker_stream(pattern: str, worker: int, seed: int, shuffle_buffer: int):
    """The trainer's input pipeline of `worker` (of 2, one replica each, global batch 8), built here."""
    tf.random.set_seed(seed)
    split = data.load_split(DataConfig(in_memory_budget_mb=0), "train", pattern, seed)
    topology = Topology(num_replicas=2, num_workers=2, worker_index=worker, is_chief=worker == 0, global_batch_size=8)
    return topology, data.train_batches(split, ["features"], topology, shuffle_buffer, seed, deterministic=False)


def ids_after(model_dir: str, pattern: str, worker: int, step: int, num_batches: int):
    """The ids of the `num_batches` batches a fresh pipeline gives after restoring the worker's input at `step`."""
    topology, dataset = worker_stream(pattern, worker, seed=3, shuffle_buffer=30)
    iterator = iter(dataset)
    assert InputPositions(model_dir, topology, iterator, keep=5).restore(step)
    return [next(iterator)[0]["features"][:, 0].numpy().astype(int).tolist() for _ in range(num_batches)]


@pytest.mark.e2e
def test_sigkilled_sharded_run_resumes_each_worker_with_its_next_examples(tmp_path):
    """A SIGKILLed 2-worker sharded run resumes each worker's input exactly where its stream would continue."""
    pattern = write_csv_files(tmp_path / "data", 4)
    model_dir = str(tmp_path / "run")
    flags = [
        f"--model_dir={model_dir}",
        f"--train_data={pattern}",
        "--mode=train",
        "--strategy=multi_worker",
        "--hidden_units=8",
        "--global_batch_size=8",
        "--shuffle_buffer=30",
        "--in_memory_budget_mb=0",  # Streamed, so that each worker reads its own part.
        "--seed=3",
        "--steps_per_loop=1",
        "--log_every_steps=1",
        "--checkpoint_every_steps=10",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "launch", "local", "--workers=2", "--", *flags, "--train_steps=100000"],
        cwd=REPO,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        # Worker 0 can finish step 12 only after worker 1 (in the step-11 collective) saved its input at 10.
        if re.search(r"\[worker 0\].*\[train\] step 12/", line):
            break
    os.killpg(process.pid, signal.SIGKILL)  # The launcher and both workers, at once.
    process.communicate()
    output = "".join(lines)
    assert "Input: worker 1 of 2 reads 2 of 4 files (sharded by file)." in output, output[-3000:]

    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    killed_at = int(tf.train.latest_checkpoint(checkpoint_dir).rsplit("-", 1)[1])
    saved = [os.path.exists(f"{checkpoint_dir}/input/worker-{w}-of-2/ckpt-{killed_at}.index") for w in (0, 1)]
    assert saved[0], "the chief saves its input before the main checkpoint"
    final = killed_at + 10
    result = check_ok(run_local_workers(2, flags + [f"--train_steps={final}"]))
    assert f"Resuming at step {killed_at} of {final}" in result.stdout
    for worker in (0, 1):
        restored = f"[worker {worker}]" in result.stdout and re.search(
            rf"\[worker {worker}\].*Input of worker-{worker}-of-2 restored from .*ckpt-{killed_at}", result.stdout
        )
        # A kill between the two saves of a step leaves that worker to a fresh shuffle, with a warning.
        assert bool(restored) == saved[worker], result.stdout[-3000:]

    # Each worker's saved positions continue its uninterrupted stream exactly: the one the killed
    # run saved, and the one the resumed run reached at the end (only an exact continuation from
    # the restore gets there).
    for worker in (0, 1):
        _, dataset = worker_stream(pattern, worker, seed=3, shuffle_buffer=30)
        uninterrupted = [batch[0]["features"][:, 0].numpy().astype(int).tolist() for batch in dataset.take(final + 6)]
        if saved[worker]:
            assert ids_after(model_dir, pattern, worker, killed_at, 6) == uninterrupted[killed_at : killed_at + 6]
            assert ids_after(model_dir, pattern, worker, final, 6) == uninterrupted[final:]


def test_a_missing_worker_input_is_a_warning_and_a_fresh_start(tmp_path, caplog):
    """A worker whose saved input position is missing warns and starts its input from a fresh shuffle."""
    _, dataset = worker_stream(write_csv_files(tmp_path / "data", 4), 1, seed=3, shuffle_buffer=30)
    topology = Topology(num_replicas=3, num_workers=3, worker_index=1, is_chief=False, global_batch_size=9)
    checkpoints = InputPositions(str(tmp_path), topology, iter(dataset), keep=2)
    with caplog.at_level("WARNING"):
        assert not checkpoints.restore(40)
    assert "worker-1-of-3/ckpt-40 does not exist" in caplog.text
    assert "its input restarts from a fresh shuffle" in caplog.text
