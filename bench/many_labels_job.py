"""A 100,000-label text job end to end, through the commands a user types, against the goal of
8 GB peak memory and 15 minutes on 2 cores (issue #13).

Writes a TSV problem (`text<TAB>label ids`): --train_examples training rows and --eval_examples
eval rows, label frequencies Zipf-distributed over --labels labels (most labels never occur, as in
tagging or ICD coding), each text made of words that go with its labels plus noise words. Then
runs, each as its own process (peak memory is the process's maximum resident set, from wait4):
  train_and_eval  `python -m trainer --model=text_bow --train_steps=300`: reading and checking the
                  data, 300 steps, the eval passes and the threshold tuning at the end;
  predict         `--mode=predict --test_data=eval.tsv --predict_top_k=5`.

    .venv/bin/python bench/many_labels_job.py [--labels=100000 --train_examples=20000
        --eval_examples=2000 --train_steps=300 --workdir=DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL_SECONDS, GOAL_BYTES = 15 * 60, 8 * 2**30


def write_problem(directory: str, num_labels: int, train_examples: int, eval_examples: int, seed: int = 0):
    """Writes train.tsv, eval.tsv and labels.txt; returns (their paths, label occurrences in train)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_labels + 1) ** 1.1
    weights /= weights.sum()
    permutation = rng.permutation(num_labels)  # Frequent labels anywhere in the id range.
    paths = {}
    occurrences = 0
    for name, count in (("train", train_examples), ("eval", eval_examples)):
        lines = []
        for _ in range(count):
            labels = np.unique(permutation[rng.choice(num_labels, size=rng.integers(1, 9), p=weights)])
            words = [f"w{label}" for label in labels] + [f"n{n}" for n in rng.integers(0, 5000, size=12)]
            rng.shuffle(words)
            lines.append(" ".join(words) + "\t" + ",".join(str(label) for label in labels))
            occurrences += len(labels) if name == "train" else 0
        paths[name] = os.path.join(directory, f"{name}.tsv")
        with open(paths[name], "w") as f:
            f.write("\n".join(lines) + "\n")
    paths["labels"] = os.path.join(directory, "labels.txt")
    with open(paths["labels"], "w") as f:
        f.write("\n".join(f"label_{i}" for i in range(num_labels)) + "\n")
    return paths, occurrences


def run_phase(name: str, flags, log_path: str):
    """Runs the trainer with `flags`; returns (seconds, peak resident bytes)."""
    command = [sys.executable, "-m", "trainer", *flags]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)}); its log: {log_path}")
    return seconds, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--train_examples", type=int, default=20_000)
    parser.add_argument("--eval_examples", type=int, default=2_000)
    parser.add_argument("--train_steps", type=int, default=300)
    parser.add_argument("--workdir", default=None, help="keep the data, model_dir and logs here")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="many_labels_")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    paths, occurrences = write_problem(workdir, args.labels, args.train_examples, args.eval_examples)
    print(f"data: {args.train_examples} + {args.eval_examples} rows, {args.labels} labels, "
          f"{occurrences} label occurrences in train ({time.monotonic() - started:.0f}s to write) in {workdir}")
    model_dir = os.path.join(workdir, "run")
    common = [f"--model_dir={model_dir}", f"--label_names={paths['labels']}", "--model=text_bow"]
    phases = {
        "train_and_eval": [
            *common,
            "--mode=train_and_eval",
            f"--train_data={paths['train']}",
            f"--eval_data={paths['eval']}",
            f"--train_steps={args.train_steps}",
            f"--eval_every_steps={args.train_steps}",
            f"--checkpoint_every_steps={args.train_steps}",
        ],
        "predict": [*common, "--mode=predict", f"--test_data={paths['eval']}", "--predict_top_k=5"],
    }
    total_seconds, peak = 0.0, 0
    print(f"{'phase':<16}{'seconds':>9}{'peak memory':>14}")
    for name, flags in phases.items():
        seconds, peak_bytes = run_phase(name, flags, os.path.join(workdir, f"{name}.log"))
        total_seconds, peak = total_seconds + seconds, max(peak, peak_bytes)
        print(f"{name:<16}{seconds:>8.0f}s{peak_bytes / 2**30:>12.2f} GB")
    verdict = "within" if total_seconds <= GOAL_SECONDS and peak <= GOAL_BYTES else "OUTSIDE"
    print(f"{'total':<16}{total_seconds:>8.0f}s{peak / 2**30:>12.2f} GB   {verdict} the goal (900 s, 8 GB)")


if __name__ == "__main__":
    main()
