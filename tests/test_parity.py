"""Same seed, same data, 24 steps: default vs mirrored (2 logical CPUs) vs 2 real worker processes.

Each global batch holds the same examples under every strategy, so final weights may differ
only by the order of floating-point sums.
"""

import pytest
from helpers import TINY, check_ok, max_weight_difference, run_local_workers, run_trainer, weight_digests

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.

STEPS = ["--mode=train", "--train_steps=24", "--deterministic", "--checkpoint_every_steps=24"]

# float32: summation order only. mixed_bfloat16 computes each replica's half batch in bf16
# (8-bit mantissa), so partial sums round differently: measured 7e-5 here, against 9e-4
# between the bf16 and the float32 run of the same job; 5e-4 separates the two.
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 5e-4}


@pytest.mark.parametrize(
    "precision, optimizer",
    [
        # SGD: the update is linear in the gradient, so a gradient summed twice (or not at all)
        # across replicas shows up at once; Adam would hide a constant factor.
        ("float32", "sgd"),
        ("float32", "adamw"),
        # bf16 with SGD: Adam divides by tiny second moments, turning bf16 rounding into
        # update-sized noise that says nothing about the distribution.
        ("mixed_bfloat16", "sgd"),
    ],
)
def test_default_mirrored_and_multi_worker_end_with_the_same_weights(tmp_path, precision, optimizer):
    """default, mirrored (2 CPUs) and 2 workers end with equal weights: 1e-5 float32, 5e-4 mixed_bfloat16."""
    flags = TINY + STEPS + [f"--mixed_precision={precision}", f"--optimizer={optimizer}", "--learning_rate=0.05"]
    single, mirrored, workers = (str(tmp_path / name) for name in ("default", "mirrored", "workers"))
    check_ok(run_trainer(flags + [f"--model_dir={single}", "--strategy=default"]))
    check_ok(run_trainer(flags + [f"--model_dir={mirrored}", "--strategy=mirrored", "--cpu_replicas=2"]))
    result = check_ok(run_local_workers(2, flags + [f"--model_dir={workers}", "--strategy=multi_worker"]))

    # The chief alone writes into model_dir; the other worker saves to a private temp dir.
    assert "[worker 0]" in result.stdout and "Saved checkpoint" in result.stdout
    assert not any("Saved checkpoint" in line for line in result.stdout.splitlines() if line.startswith("[worker 1]"))
    digests = weight_digests(result.stdout)
    assert len(digests) == 2 and digests[0] == digests[1], "the two workers hold different weights"
    tolerance = TOLERANCE[precision]
    assert max_weight_difference(single, mirrored) <= tolerance
    assert max_weight_difference(single, workers) <= tolerance
    assert max_weight_difference(mirrored, workers) <= tolerance
