"""Timed saves and preemption decisions that every worker must take at the same step."""

import os
import re
import signal

import pytest
from helpers import (
    TINY,
    check_ok,
    error_line,
    max_weight_difference,
    read_until,
    run_local_workers,
    run_trainer,
    start_trainer,
    start_workers,
)

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

# Saves only by the clock: the step interval is never reached.
TIMED = TINY + [
    "--mode=train",
    "--checkpoint_every_steps=100000",
    "--checkpoint_every_seconds=1",
    "--keep_checkpoints=1000",
]


def saved_steps(output: str, worker: str = ""):
    return [int(s) for s in re.findall(rf"{worker}.*Saved checkpoint .*ckpt-(\d+)", output)]


def save_times(output: str):
    """Seconds of the day at which each save was logged (absl's `Ihhmm dd hh:mm:ss.us` prefix)."""
    found = re.findall(r"(\d\d):(\d\d):(\d\d\.\d+) +\d+ checkpoint\.py:\d+\] Saved checkpoint", output)
    return [int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in found]


def test_checkpoint_every_seconds_saves_between_loops(tmp_path):
    """Timed saves land at loop boundaries, never less than --checkpoint_every_seconds apart."""
    # Runs until three saves by the clock, whatever the machine's speed, then stops by SIGTERM.
    process, lines = start_trainer(TIMED + [f"--model_dir={tmp_path}", "--train_steps=100000000"]), []
    for _ in range(3):
        read_until(process.stderr, r"Saved checkpoint .*ckpt-\d+", lines)
    process.send_signal(signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=120)[1]
    assert process.returncode == 75, output[-3000:]
    steps, times = saved_steps(output), save_times(output)
    assert len(steps) >= 4 and steps == sorted(set(steps)), steps  # Three by the clock, one at the stop.
    assert all(s % 10 == 0 for s in steps), steps  # At loop boundaries (--steps_per_loop=10).
    assert all(later - earlier >= 1.0 for earlier, later in zip(times[:2], times[1:3])), times  # Never early.
    for s in steps:
        assert os.path.exists(os.path.join(tmp_path, "checkpoints", f"ckpt-{s}.index"))


def test_timed_saves_are_taken_by_both_workers_at_the_chiefs_steps(tmp_path):
    """With two workers (TensorFlow's preemption handler in place), both save at the chief's timed steps."""
    process, lines = start_workers(2, TIMED + [f"--model_dir={tmp_path}", "--train_steps=100000000"]), []
    for _ in range(3):
        read_until(process.stdout, r"\[worker 0\].*Saved checkpoint .*ckpt-\d+", lines)
    worker_pids = [int(pid) for pid in re.findall(r"\[launch\] worker \d: pid (\d+)", "".join(lines))]
    for pid in worker_pids:
        os.kill(pid, signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 75, output[-3000:]
    chief = saved_steps(output, r"\[worker 0\]")
    other = [int(s) for s in re.findall(r"\[worker 1\].*Took part in the save of checkpoint (\d+)", output)]
    assert len(chief) >= 4 and chief == other, output[-4000:]
    # MultiWorkerMirrored agrees on preemption through TensorFlow's handler.
    assert "PreemptionCheckpointHandler initialized" in output


def test_sigterm_to_every_worker_stops_all_at_one_step(tmp_path):
    """SIGTERM to every worker at once (a deleted Kubernetes job) stops all at one step, exit 75."""
    # What Kubernetes does when a job is deleted or its nodes drained: every pod gets SIGTERM.
    flags = TINY + [
        f"--model_dir={tmp_path}",
        "--mode=train",
        "--train_steps=100000",
        "--checkpoint_every_steps=100000",
    ]
    process, lines = start_workers(2, flags), []
    pids = [int(read_until(process.stdout, rf"\[launch\] worker {i}: pid (\d+)", lines).group(1)) for i in (0, 1)]
    read_until(process.stdout, r"\[worker 1\].*\[train\] step 20/", lines)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 75, output[-3000:]
    steps = {int(s) for s in re.findall(r"\[worker [01]\] preempted: stopped by SIGTERM at step (\d+)", output)}
    assert len(steps) == 1 and len(re.findall(r"preempted: stopped by SIGTERM", output)) == 2, output[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", f"ckpt-{steps.pop()}.index"))


def test_two_workers_preempted_and_restarted_give_the_weights_of_an_uninterrupted_run(tmp_path):
    """A 2-worker --deterministic job stopped by SIGTERM and restarted ends with uninterrupted weights (<= 1e-6)."""
    # The handler only picks the step; the checkpoint is ours, with the input position in it.
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    flags = TINY + ["--mode=train", "--deterministic", "--train_steps=600"]
    check_ok(run_local_workers(2, flags + [f"--model_dir={reference}"]))

    process, lines = start_workers(2, flags + [f"--model_dir={interrupted}"]), []
    worker_1 = int(read_until(process.stdout, r"\[launch\] worker 1: pid (\d+)", lines).group(1))
    read_until(process.stdout, r"\[worker 1\].*\[train\] step 20/", lines)
    os.kill(worker_1, signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 75, output[-3000:]
    stopped_at = int(re.search(r"preempted: stopped by SIGTERM at step (\d+)", output).group(1))

    resumed = check_ok(run_local_workers(2, flags + [f"--model_dir={interrupted}"]))
    assert f"Resuming at step {stopped_at} of 600" in resumed.stdout + resumed.stderr
    assert max_weight_difference(reference, interrupted) <= 1e-6


def test_negative_checkpoint_every_seconds_is_a_user_error(tmp_path):
    """A negative --checkpoint_every_seconds is one error: line, exit 1, nothing written."""
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", "--checkpoint_every_seconds=-1"])
    assert result.returncode == 1
    assert "--checkpoint_every_seconds must be >= 0" in error_line(result)
    assert not os.listdir(tmp_path)
