"""The best checkpoint kept apart (checkpoints/best/, best.json) and async checkpointing, through the real CLI."""

import glob
import json
import os
import re
import signal

from conftest import TINY, check_ok, error_line, max_weight_difference, run_trainer
from test_resume import read_until, start_trainer


def eval_values(model_dir, block, name):
    """{step: value} over metrics/eval-*.json; the final file's figures at 0.5 (before tuning), as compared."""
    values = {}
    for path in glob.glob(os.path.join(model_dir, "metrics", "eval-*.json")):
        with open(path) as f:
            summary = json.load(f)
        values[summary["step"]] = summary.get("at_0.5", summary)[block][name]
    return values


def read_best(model_dir):
    with open(os.path.join(model_dir, "checkpoints", "best", "best.json")) as f:
        return json.load(f)


def test_best_checkpoint_holds_the_best_evaluation_and_survives_a_resume(tmp_path):
    flags = TINY + [f"--model_dir={tmp_path}", "--eval_every_steps=10", "--checkpoint_every_steps=20"]
    check_ok(run_trainer(flags + ["--train_steps=40"]))
    values = eval_values(tmp_path, "macro", "average_precision")
    assert sorted(values) == [10, 20, 30, 40]
    best = read_best(tmp_path)
    best_step = max(values, key=values.get)
    assert best == {"step": best_step, "metric": "macro/average_precision", "value": values[best_step]}
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", "best", f"ckpt-{best_step}.index"))

    # A best value no evaluation can reach: read back at start, so the resumed run keeps it.
    unbeatable = dict(best, value=2.0)
    with open(os.path.join(tmp_path, "checkpoints", "best", "best.json"), "w") as f:
        json.dump(unbeatable, f)
    result = check_ok(run_trainer(flags + ["--train_steps=60"]))
    assert "Resuming at step 40 of 60" in result.stderr
    assert read_best(tmp_path) == unbeatable
    assert "New best" not in result.stderr


def test_a_bad_best_metric_is_one_error_line_and_exit_1(tmp_path):
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", "--best_metric=macro/accuracy"])
    assert result.returncode == 1
    line = error_line(result)
    assert "--best_metric='macro/accuracy'" in line and "macro/f1" in line
    assert not os.listdir(tmp_path)


def test_async_checkpoint_preempted_and_resumed_gives_the_weights_of_a_synchronous_run(tmp_path):
    # A constant learning rate: the weights after N steps do not depend on --train_steps. An epoch of
    # 250 steps: TensorFlow's async save loses the reshuffle state, so exactness holds within an epoch.
    flags = TINY + ["--mode=train", "--deterministic", "--lr_schedule=constant", "--checkpoint_every_steps=30"]
    flags += ["--synthetic_train_examples=16000"]
    run_dir, reference = str(tmp_path / "async"), str(tmp_path / "reference")
    async_flags = flags + [f"--model_dir={run_dir}", "--async_checkpoint"]
    process, lines = start_trainer(async_flags + ["--train_steps=100000"]), []
    read_until(process.stderr, r"\[train\] step 40/", lines)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr[-2000:]
    assert "(writing in the background)" in "".join(lines) + stderr
    step = int(re.search(r"preempted: stopped by SIGTERM at step (\d+)", stderr).group(1))
    # Synced before the exit: the index names the preemption checkpoint and its files are whole.
    with open(os.path.join(run_dir, "checkpoints", "checkpoint")) as f:
        assert f'model_checkpoint_path: "ckpt-{step}"' in f.read()

    end = step + 30
    result = check_ok(run_trainer(async_flags + [f"--train_steps={end}"]))
    assert f"Resuming at step {step} of {end}" in result.stderr
    check_ok(run_trainer(flags + [f"--model_dir={reference}", f"--train_steps={end}"]))
    assert max_weight_difference(reference, run_dir) <= 1e-6
