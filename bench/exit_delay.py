"""How long the trainer takes to exit after its final checkpoint.

Runs `python -m trainer --mode=train` on the default synthetic problem and reads its log as it is
written: the delay is from the moment the final "Saved checkpoint" line arrives to the moment the
process has exited. Python's own shutdown used to wait there for tf.data's background threads
(1-10 s); the trainer now exits as soon as its output is flushed.

    .venv/bin/python bench/exit_delay.py [--runs=3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(model_dir: str, train_steps: int) -> float:
    command = [sys.executable, "-m", "trainer", f"--model_dir={model_dir}", "--mode=train"]
    command += [f"--train_steps={train_steps}", f"--checkpoint_every_steps={train_steps}"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    saved_at = None
    for line in process.stderr:
        if "Saved checkpoint" in line and f"ckpt-{train_steps}" in line:
            saved_at = time.monotonic()
    process.wait()
    if process.returncode != 0 or saved_at is None:
        raise SystemExit(f"the trainer failed (exit {process.returncode}) or saved no final checkpoint")
    return time.monotonic() - saved_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train_steps", type=int, default=300)
    args = parser.parse_args()
    delays = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as model_dir:
            delays.append(one_run(model_dir, args.train_steps))
    print("seconds from the final checkpoint to exit: " + ", ".join(f"{d:.2f}" for d in delays))


if __name__ == "__main__":
    main()
