"""Shared helpers: run the real CLIs in subprocesses and read what they wrote."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

# Small, fast settings for tests that only need the machinery to run.
TINY = [
    "--hidden_units=32",
    "--global_batch_size=64",
    "--synthetic_train_examples=2000",
    "--synthetic_eval_examples=500",
    "--synthetic_labels=8",
    "--synthetic_features=16",
    "--steps_per_loop=10",
    "--log_every_steps=10",
]


def _env(extra=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def run_trainer(args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` in a fresh process (TensorFlow can split the CPU only before it starts)."""
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=REPO,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_local_workers(num_workers, args, extra=(), timeout=600) -> subprocess.CompletedProcess:
    """`python -m launch local --workers N [extra] -- ARGS`: a real N-process MultiWorkerMirrored job."""
    return subprocess.run(
        [sys.executable, "-m", "launch", "local", f"--workers={num_workers}", *extra, "--", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
    )
    return result


def weight_digests(output: str):
    """The `weights sha256` digest each process logged, in order of appearance."""
    return re.findall(r"weights sha256 ([0-9a-f]{64})", output)


def train_losses(output: str):
    return [float(x) for x in re.findall(r"\[train\] step \d+/\d+ \| loss ([0-9.naif]+)", output)]


def model_weights(model_dir: str):
    """{name: array} of the trainable weights in the latest checkpoint.

    The checkpoint names each variable by its shortest path, which for the trainable weights
    runs through the optimizer's list of them.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "_trainable_variables/" in n]
    assert names, "no model variables in the checkpoint"
    return {n: reader.get_tensor(n) for n in names}


def max_weight_difference(dir_a: str, dir_b: str) -> float:
    a, b = model_weights(dir_a), model_weights(dir_b)
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def read_metrics(model_dir: str, split: str = "eval"):
    """The newest metrics/<split>-<step>.json."""
    folder = os.path.join(model_dir, "metrics")
    files = [f for f in os.listdir(folder) if f.startswith(f"{split}-") and f.endswith(".json")]
    newest = max(files, key=lambda f: int(f[len(split) + 1 : -5]))
    with open(os.path.join(folder, newest)) as f:
        return json.load(f)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a user error must print on stderr (TensorFlow's own log lines excluded)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one 'error:' line, got stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real datasets not available at {SHARED_DATA}")
    return SHARED_DATA
