"""The real CLI: bad input gives exit 1 and one `error:` line; training runs end to end."""

import json
import os
import subprocess

import pytest
from helpers import TINY, check_ok, error_line, read_metrics, run_trainer, train_losses

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

TWO_WORKERS = json.dumps(
    {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
)


@pytest.mark.parametrize(
    "args, env, fragment",
    [
        (["--model_dir=X", "--mode=fit"], None, "--mode"),
        (["--model_dir=X", "--no_such_flag=1"], None, "no_such_flag"),
        ([], None, "--model_dir is required"),
        (["--model_dir=X", "--hidden_units=a,b"], None, "--hidden_units=a,b must be integers"),
        (["--model_dir=X", "--train_steps=0"], None, "--train_steps must be positive"),
        (["--model_dir=X", "--learning_rate=inf"], None, "--learning_rate must be finite, got inf"),
        (["--model_dir=X", "--in_memory_budget_mb=-1"], None, "--in_memory_budget_mb must be >= 0"),
        (["--model_dir=X", "--strategy=tpu"], None, "needs --tpu"),
        (["--model_dir=X"], {"TF_CONFIG": "{oops"}, "TF_CONFIG is not valid JSON"),
        (["--model_dir=X"], {"TF_CONFIG": json.dumps({"task": {"type": "worker", "index": 0}})}, 'no "cluster"'),
        (
            ["--model_dir=X"],
            {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}})},
            "index 3 is out of range",
        ),
        (["--model_dir=X", "--strategy=default"], {"TF_CONFIG": TWO_WORKERS}, "use --strategy=multi_worker"),
    ],
)
def test_bad_flags_and_tf_config_exit_1_with_one_line(tmp_path, args, env, fragment):
    args = [a.replace("X", str(tmp_path / "run")) for a in args]
    result = run_trainer(args, env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    assert fragment in error_line(result)


def test_a_model_dir_that_cannot_be_written_is_one_line_before_any_work(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    result = run_trainer(TINY + [f"--model_dir={afile}", "--train_steps=10"])
    assert result.returncode == 1
    assert f"--model_dir={afile} is a file; give a directory" in error_line(result)
    assert afile.read_text() == "keep me\n"

    run_dir = tmp_path / "run"
    check_ok(run_trainer(TINY + [f"--model_dir={run_dir}", "--train_steps=10"]))
    before = sorted(os.listdir(run_dir))
    # Immutable: unwritable even for root, which permissions do not stop.
    if subprocess.run(["chattr", "+i", str(run_dir)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE)")
    try:
        for mode in ("train_and_eval", "eval", "predict", "export"):
            flags = [f"--mode={mode}", "--train_steps=20", "--test_data=synthetic"]
            result = run_trainer(TINY + [f"--model_dir={run_dir}"] + flags)
            assert result.returncode == 1, (mode, result.stderr[-2000:])
            assert f"--model_dir={run_dir} is not writable (Operation not permitted)" in error_line(result), mode
        assert sorted(os.listdir(run_dir)) == before
    finally:
        subprocess.run(["chattr", "-i", str(run_dir)], check=True)


def test_a_batch_larger_than_the_training_data_trains_with_a_warning(tmp_path):
    flags = ["--synthetic_train_examples=40", "--train_steps=10", f"--model_dir={tmp_path / 'run'}"]
    result = check_ok(run_trainer(TINY + flags))  # TINY's batch is 64.
    assert "--global_batch_size=64 is larger than the 40 training examples" in result.stderr
    assert "0 steps per epoch" in result.stderr


def test_flagfile_is_read_and_help_lists_every_trainer_flag(tmp_path):
    recipe = tmp_path / "run.flags"
    recipe.write_text("# a recipe\n--hidden_units=16\n--train_steps=0\n")
    result = run_trainer([f"--flagfile={recipe}", f"--model_dir={tmp_path / 'run'}"])
    assert result.returncode == 1
    assert "--train_steps must be positive, got 0" in error_line(result)
    assert not (tmp_path / "run").exists()

    from trainer import flags as config_flags

    helpfull = run_trainer(["--helpfull"])  # absl's help exits 1, as it always has.
    assert "Traceback" not in helpfull.stderr, helpfull.stderr[-2000:]
    for field, _ in config_flags.settings():
        assert f"--{field.name}:" in helpfull.stdout or f"--[no]{field.name}:" in helpfull.stdout, field.name
    assert "--flagfile:" in helpfull.stdout and "--verbosity:" in helpfull.stdout  # absl's own flags stay.
    assert "Try --helpfull" in run_trainer(["--help"]).stdout


def test_batch_that_does_not_divide_by_replicas_is_refused(tmp_path):
    result = run_trainer(
        TINY + [f"--model_dir={tmp_path}", "--strategy=mirrored", "--cpu_replicas=3", "--global_batch_size=64"]
    )
    assert result.returncode == 1
    assert "--global_batch_size=64 does not divide by the 3 replicas" in error_line(result)


def test_missing_worker_ends_in_an_error_not_a_hang(tmp_path):
    lonely = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}})
    result = run_trainer(
        TINY + [f"--model_dir={tmp_path}", "--collective_timeout_seconds=5"], env={"TF_CONFIG": lonely}, timeout=120
    )
    assert result.returncode != 0
    assert "could not reach all 2 workers" in error_line(result)


def test_mixed_float16_trains_without_nan_and_the_loss_goes_down(tmp_path):
    """mixed_float16 trains without NaN, with dynamic loss scaling active (its scale is in the checkpoint)."""
    result = check_ok(
        run_trainer(
            TINY
            + [
                f"--model_dir={tmp_path}",
                "--mode=train",
                "--train_steps=60",
                "--mixed_precision=mixed_float16",
                "--learning_rate=0.01",
            ]
        )
    )
    losses = train_losses(result.stderr)
    assert len(losses) == 6 and all(loss == loss for loss in losses)
    assert losses[-1] < 0.8 * losses[0]
    # Loss scaling is active: the checkpoint carries the dynamic scale.
    import tensorflow as tf

    names = tf.train.load_checkpoint(os.path.join(tmp_path, "checkpoints")).get_variable_to_shape_map()
    assert any("dynamic_scale" in name for name in names)


def test_rerunning_with_the_same_model_dir_resumes(tmp_path):
    flags = TINY + [f"--model_dir={tmp_path}", "--mode=train", "--checkpoint_every_steps=20"]
    check_ok(run_trainer(flags + ["--train_steps=20"]))
    result = check_ok(run_trainer(flags + ["--train_steps=40"]))
    assert "Resuming at step 20 of 40" in result.stderr
    assert "[train] step 30/40" in result.stderr and "[train] step 10/40" not in result.stderr


def test_default_job_beats_chance_by_far(tmp_path):
    """The `make run` job (all defaults), scored against predicting each label at its base rate."""
    result = check_ok(run_trainer([f"--model_dir={tmp_path}"]))
    assert "micro" in result.stdout and "macro" in result.stdout  # The per-label table.
    metrics = read_metrics(str(tmp_path))
    labels = metrics["labels"].values()
    # A chance classifier that flags label j at random with its prevalence p_j has expected
    # precision = recall = F1 = p_j.
    n = metrics["num_examples"]
    chance_macro_f1 = sum(row["support"] / n for row in labels) / len(labels)
    assert metrics["macro"]["f1"] > chance_macro_f1 + 0.4, (metrics["macro"]["f1"], chance_macro_f1)
    assert metrics["macro"]["roc_auc"] > 0.9
    for name in ("config.json", "thresholds.json"):
        assert os.path.exists(os.path.join(tmp_path, name))
