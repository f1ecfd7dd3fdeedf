"""Exact resume, warm start, preemption and crash safety, with real processes and real signals."""

import os
import re
import signal

import pytest
from helpers import (
    TEXT_FLAGS,
    TINY,
    check_ok,
    error_line,
    example_rows,
    max_weight_difference,
    read_until,
    run_trainer,
    start_trainer,
    start_workers,
    write_lines,
)

from trainer.data import text

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

DETERMINISTIC = TINY + ["--mode=train", "--deterministic", "--checkpoint_every_steps=40"]


def test_sigkill_and_restart_give_the_weights_of_an_uninterrupted_run(tmp_path):
    """A --deterministic run SIGKILLed and restarted ends with the weights of an uninterrupted run (<= 1e-6)."""
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    flags = DETERMINISTIC + ["--train_steps=400"]
    check_ok(run_trainer(flags + [f"--model_dir={reference}"]))

    process = start_trainer(flags + [f"--model_dir={interrupted}"])
    read_until(process.stderr, r"Saved checkpoint .*ckpt-40", [])
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    result = check_ok(run_trainer(flags + [f"--model_dir={interrupted}"]))
    resumed_at = int(re.search(r"Resuming at step (\d+) of 400", result.stderr).group(1))
    assert 40 <= resumed_at < 400
    # Same examples in the same order after the restart (the input position is checkpointed),
    # so the weights are those of the run that was never interrupted.
    assert max_weight_difference(reference, interrupted) <= 1e-6


def test_sigterm_saves_at_the_current_step_exits_75_and_resumes_there(tmp_path):
    """SIGTERM saves ckpt-<step> at a loop boundary and exits 75; the same command resumes at that step."""
    model_dir = str(tmp_path)
    flags = TINY + [f"--model_dir={model_dir}", "--mode=train", "--checkpoint_every_steps=100000"]
    process = start_trainer(flags + ["--train_steps=100000"])
    read_until(process.stderr, r"\[train\] step 20/", [])
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr[-2000:]
    step = int(re.search(r"preempted: stopped by SIGTERM at step (\d+)", stderr).group(1))
    assert os.path.exists(os.path.join(model_dir, "checkpoints", f"ckpt-{step}.index"))

    result = check_ok(run_trainer(flags + [f"--train_steps={step + 20}"]))
    assert f"Resuming at step {step} of {step + 20}" in result.stderr


def test_a_corrupt_latest_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    """A truncated newest checkpoint is skipped with a warning and the previous one restored."""
    flags = DETERMINISTIC + [f"--model_dir={tmp_path}", "--checkpoint_every_steps=20"]
    check_ok(run_trainer(flags + ["--train_steps=40"]))
    data_file = next(
        os.path.join(tmp_path, "checkpoints", f)
        for f in os.listdir(os.path.join(tmp_path, "checkpoints"))
        if f.startswith("ckpt-40.data")
    )
    with open(data_file, "r+b") as f:  # A copy cut short.
        f.truncate(os.path.getsize(data_file) // 3)
    result = check_ok(run_trainer(flags + ["--train_steps=60"]))
    assert "ckpt-40 is unreadable" in result.stderr
    assert "Resuming at step 20 of 60" in result.stderr


def test_nan_loss_exits_2_naming_the_steps_and_rollbacks_are_bounded(tmp_path):
    """A NaN loss is exit 2 naming the steps; --max_nan_rollbacks=N rolls back at most N times."""
    flags = TINY + [f"--model_dir={tmp_path}", "--mode=train", "--optimizer=sgd", "--lr_schedule=constant"]
    check_ok(run_trainer(flags + ["--train_steps=20", "--checkpoint_every_steps=20"]))
    diverging = flags + ["--train_steps=60", "--learning_rate=1e30", "--clip_norm=0"]
    failed = run_trainer(diverging)
    assert failed.returncode == 2
    assert re.search(r"error: loss is (nan|inf) in steps 21\.\.30", failed.stderr)

    retried = run_trainer(diverging + ["--max_nan_rollbacks=2"])
    assert retried.returncode == 2
    assert len(re.findall(r"rolled back to step 20", retried.stderr)) == 2


def test_sigterm_to_one_worker_stops_both_at_the_same_step(tmp_path):
    """SIGTERM to one of two workers stops both at one step, with one checkpoint, exit 75."""
    flags = TINY + [
        f"--model_dir={tmp_path}",
        "--mode=train",
        "--train_steps=100000",
        "--checkpoint_every_steps=100000",
    ]
    process, lines = start_workers(2, flags), []
    worker_1 = int(read_until(process.stdout, r"\[launch\] worker 1: pid (\d+)", lines).group(1))
    read_until(process.stdout, r"\[worker 1\].*\[train\] step 20/", lines)
    os.kill(worker_1, signal.SIGTERM)  # Only one worker is told; the other learns it through the all-reduce.
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 75, output[-3000:]
    steps = {int(s) for s in re.findall(r"\[worker [01]\] preempted: stopped by SIGTERM at step (\d+)", output)}
    assert len(steps) == 1 and len(re.findall(r"preempted: stopped by SIGTERM", output)) == 2, output[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", f"ckpt-{steps.pop()}.index"))


def test_killed_worker_group_restarts_and_completes_from_the_checkpoint(tmp_path):
    """launch local --restart-on-failure restarts a group with a killed worker; it resumes and completes."""
    flags = TINY + [f"--model_dir={tmp_path}", "--mode=train", "--train_steps=3000", "--checkpoint_every_steps=100"]
    process, lines = start_workers(2, flags, extra=["--restart-on-failure=1"]), []
    worker_1 = int(read_until(process.stdout, r"\[launch\] worker 1: pid (\d+)", lines).group(1))
    read_until(process.stdout, r"\[worker 0\].*Saved checkpoint .*ckpt-100\b", lines)
    os.kill(worker_1, signal.SIGKILL)
    output = "".join(lines) + process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-4000:]
    assert "restarting all 2 workers" in output
    resumed = [int(s) for s in re.findall(r"\[worker 0\].*Resuming at step (\d+) of 3000", output)]
    assert len(resumed) == 1 and resumed[0] >= 100
    # Nothing trained twice beyond the checkpoint interval: the restart picks up the newest
    # checkpoint, and the first run got at most one interval past it.
    first_run = output[: output.index("restarting all 2 workers")]
    last_logged = max(int(s) for s in re.findall(r"\[worker 0\].*\[train\] step (\d+)/3000", first_run))
    assert last_logged - resumed[0] <= 100
    digests = re.findall(r"weights sha256 ([0-9a-f]{64})", output)
    assert len(digests) == 2 and digests[0] == digests[1]


def test_init_checkpoint_warm_starts_the_model_only_and_an_own_checkpoint_comes_first(tmp_path):
    """--init_checkpoint takes the model weights (<= 1e-5), the step starts at 0, and an own checkpoint wins."""
    source, warm, fresh = (str(tmp_path / name) for name in ("source", "warm", "fresh"))
    flags = TINY + ["--mode=train", "--lr_schedule=constant"]
    check_ok(run_trainer(flags + [f"--model_dir={source}", "--train_steps=30"]))
    # A rate too small to move the weights: after 10 steps they are still the ones warm-started from.
    tiny_steps = flags + ["--train_steps=10", "--learning_rate=1e-9"]
    result = check_ok(run_trainer(tiny_steps + [f"--model_dir={warm}", f"--init_checkpoint={source}"]))
    assert re.search(r"Warm start: model weights from \S+/source/checkpoints/ckpt-30; optimizer, step", result.stderr)
    assert max_weight_difference(source, warm) < 1e-5
    check_ok(run_trainer(tiny_steps + [f"--model_dir={fresh}"]))
    assert max_weight_difference(source, fresh) > 1e-2  # Without the warm start, far from them.
    assert os.path.exists(os.path.join(warm, "checkpoints", "ckpt-10.index"))  # The step started at 0.

    # The run's own checkpoint comes first: --init_checkpoint is not even looked at.
    result = check_ok(
        run_trainer(tiny_steps[:-2] + [f"--model_dir={warm}", "--train_steps=20", "--init_checkpoint=/no"])
    )
    assert "Resuming at step 10 of 20" in result.stderr and "Warm start" not in result.stderr


def test_init_checkpoint_errors_are_one_line_and_write_nothing(tmp_path):
    """A path without a checkpoint, another model, or --mode=eval with --init_checkpoint: exit 1, nothing written."""
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    check_ok(run_trainer(TINY + ["--mode=train", "--train_steps=10", f"--model_dir={source}"]))
    cases = [
        (["--init_checkpoint=/nowhere"], "names no checkpoint"),
        ([f"--init_checkpoint={source}", "--hidden_units=16"], "does not fit this model"),
        ([f"--init_checkpoint={source}/checkpoints/ckpt-10", "--synthetic_labels=5"], "number of labels"),
    ]
    for extra, message in cases:
        result = run_trainer(TINY + ["--mode=train", "--train_steps=10", f"--model_dir={target}", *extra])
        assert result.returncode == 1 and message in error_line(result), result.stderr[-2000:]
        assert not os.path.exists(target) or not os.listdir(target)
    result = run_trainer(TINY + ["--mode=eval", f"--model_dir={source}", f"--init_checkpoint={source}"])
    assert result.returncode == 1 and "--init_checkpoint starts a training run" in error_line(result)


def test_init_checkpoint_brings_the_vocabulary_its_embeddings_were_trained_on(tmp_path):
    """A warm-started text run uses the source run's vocabulary, not one built from its new data."""
    rows = example_rows(seed=0)
    first = write_lines(tmp_path / "first.tsv", [f"{t}\t{j % 5}" for j, (t, _, _) in enumerate(rows)])
    # New data whose own vocabulary would start with a word the first never saw.
    second = write_lines(tmp_path / "second.tsv", [f"zebra zebra {t}\t{j % 5}" for j, (t, _, _) in enumerate(rows)])
    source, warm = str(tmp_path / "source"), str(tmp_path / "warm")
    flags = TEXT_FLAGS + ["--mode=train", "--train_steps=3", "--label_names=" + str(tmp_path / "labels.txt")]
    (tmp_path / "labels.txt").write_text("".join(f"l{j}\n" for j in range(5)))
    check_ok(run_trainer(flags + [f"--train_data={first}", f"--model_dir={source}"]))
    check_ok(run_trainer(flags + [f"--train_data={second}", f"--model_dir={warm}", f"--init_checkpoint={source}"]))
    vocabulary = text.read_vocabulary(warm)
    assert vocabulary == text.read_vocabulary(source) and "zebra" not in vocabulary
