"""--ema_decay: the moving average of the weights follows its formula, is the same under every
strategy, resumes exactly, and is what eval, predict and export use (unless --eval_weights=raw)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, check_ok, error_line, run_local_workers, run_trainer

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

DECAY = 0.9
TRAIN = TINY + ["--mode=train", "--deterministic", f"--ema_decay={DECAY}", "--optimizer=sgd", "--learning_rate=0.5"]
TRAIN += ["--lr_schedule=constant"]


def checkpoint_arrays(prefix):
    """(raw weights, averages, number of updates) in the checkpoint `prefix`, in model order."""
    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    count = sum(1 for n in names if n.startswith("weight_average/averages/"))
    raw = [reader.get_tensor(f"optimizer/_trainable_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE") for i in range(count)]
    averages = [reader.get_tensor(f"weight_average/averages/{i}/.ATTRIBUTES/VARIABLE_VALUE") for i in range(count)]
    return raw, averages, int(reader.get_tensor("weight_average/num_updates/.ATTRIBUTES/VARIABLE_VALUE"))


def max_difference(arrays_a, arrays_b):
    return max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(arrays_a, arrays_b))


def test_the_average_follows_its_formula_step_by_step(tmp_path):
    """a_k+1 = d_k a_k + (1 - d_k) w_k+1 with d_k = min(decay, (1 + k) / (10 + k)), checked at every step."""
    model_dir = str(tmp_path / "run")
    steps = ["--train_steps=8", "--checkpoint_every_steps=1", "--keep_checkpoints=10", "--steps_per_loop=1"]
    check_ok(run_trainer(TRAIN + steps + [f"--model_dir={model_dir}"]))
    states = [checkpoint_arrays(os.path.join(model_dir, "checkpoints", f"ckpt-{k}")) for k in range(1, 9)]
    for k in range(1, 8):
        _, average, updates = states[k - 1]
        raw_next, average_next, updates_next = states[k]
        assert (updates, updates_next) == (k, k + 1)
        decay = min(DECAY, (1 + k) / (10 + k))
        expected = [decay * a + (1 - decay) * w for a, w in zip(average, raw_next)]
        assert max_difference(expected, average_next) < 1e-6
        assert max_difference(raw_next, average_next) > 1e-4  # The average is not the weights.


def test_default_mirrored_and_two_workers_keep_the_same_average(tmp_path):
    """The average is the same under every strategy (1e-5, as the weights' parity)."""
    flags = TRAIN + ["--train_steps=12", "--checkpoint_every_steps=12"]
    dirs = [str(tmp_path / name) for name in ("default", "mirrored", "workers")]
    check_ok(run_trainer(flags + [f"--model_dir={dirs[0]}", "--strategy=default"]))
    check_ok(run_trainer(flags + [f"--model_dir={dirs[1]}", "--strategy=mirrored", "--cpu_replicas=2"]))
    check_ok(run_local_workers(2, flags + [f"--model_dir={dirs[2]}", "--strategy=multi_worker"]))
    averages = [checkpoint_arrays(os.path.join(d, "checkpoints", "ckpt-12"))[1] for d in dirs]
    assert max_difference(averages[0], averages[1]) <= 1e-5
    assert max_difference(averages[0], averages[2]) <= 1e-5


def test_a_resumed_run_continues_the_average_exactly(tmp_path):
    """12 steps at once, or 6 and then 6 more after a restart: the same weights and average."""
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    check_ok(run_trainer(TRAIN + ["--train_steps=12", f"--model_dir={whole}"]))
    raw_a, average_a, _ = checkpoint_arrays(os.path.join(whole, "checkpoints", "ckpt-12"))
    check_ok(run_trainer(TRAIN + ["--train_steps=6", f"--model_dir={split}"]))
    check_ok(run_trainer(TRAIN + ["--train_steps=12", f"--model_dir={split}"]))
    raw_b, average_b, updates = checkpoint_arrays(os.path.join(split, "checkpoints", "ckpt-12"))
    assert updates == 12
    assert max_difference(average_a, average_b) <= 1e-6
    assert max_difference(raw_a, raw_b) <= 1e-6


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("averaged"))
    check_ok(run_trainer(TINY + [f"--model_dir={model_dir}", f"--ema_decay={DECAY}", "--train_steps=30"]))
    return model_dir


def predicted(model_dir, *flags):
    check_ok(run_trainer(TINY + [f"--model_dir={model_dir}", "--mode=predict", "--test_data=synthetic", *flags]))
    with open(os.path.join(model_dir, "predictions.jsonl")) as f:
        return np.array([json.loads(line)["probabilities"] for line in f])


def test_predict_and_export_use_the_average_unless_asked_for_the_raw_weights(averaged_run, tmp_path):
    """predict uses the averaged weights by default; --eval_weights=raw the trained ones; export the average."""
    averaged = predicted(averaged_run)
    raw = predicted(averaged_run, "--eval_weights=raw")
    assert np.max(np.abs(averaged - raw)) > 1e-3
    check_ok(run_trainer(TINY + [f"--model_dir={averaged_run}", "--mode=export"]))
    served = tf.saved_model.load(os.path.join(averaged_run, "export")).signatures["serving_default"]
    from trainer.data import synthetic

    features, _ = synthetic.make_split("test", 500, 8, 16, 2000, 32, 42)
    probabilities = served(features=tf.constant(features["features"][:64]))["probabilities"].numpy()
    assert np.max(np.abs(probabilities - averaged[:64])) < 1e-5


@pytest.mark.parametrize("value", ["-0.1", "1.0", "1.5"])
def test_an_ema_decay_outside_0_1_is_one_error_line(value, tmp_path):
    result = run_trainer(TINY + [f"--model_dir={tmp_path}", f"--ema_decay={value}"])
    assert result.returncode == 1
    assert "--ema_decay must be in (0, 1)" in error_line(result)
    assert not os.listdir(tmp_path)
