"""The default recipe against the classic baseline, on the shared real data.

For each dataset present under ../shared/data (yeast, tmc2007, corel5k: CSV train -> test;
GoEmotions: train.tsv -> dev.tsv), it runs
  (a) the trainer's default recipe through the CLI with the train file and the test file and
      nothing else (GoEmotions: `--model=text_bow`, the default text model); its figures are those
      of metrics/test-<step>.json, at the thresholds the run applied to test;
  (b) scikit-learn's OneVsRestClassifier(LogisticRegression) on standardised features (GoEmotions:
      TF-IDF of words and word bigrams), at threshold 0.5;
and prints one table: micro-F1, macro-F1 and macro AP (macro over the labels with positives in
test), Hamming loss, for both, the difference (default - baseline), and each side's wall time.

    .venv/bin/python bench/vs_logistic_regression.py [--datasets=yeast,tmc2007] [--jobs=N] [--workdir=DIR] [--data=DIR]

Extra trainer flags may follow `--` (for experiments; the recorded table uses none).
"""

import argparse
import concurrent.futures
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DATASETS = ("yeast", "tmc2007", "corel5k", "goemotions")
LABEL_PREFIX = "label:"


def files(data_dir: str, name: str):
    """(train, test, extra trainer flags) of a dataset, or None when it is absent."""
    if name == "goemotions":
        train, test = (os.path.join(data_dir, name, f) for f in ("train.tsv", "dev.tsv"))
        extra = ["--model=text_bow"]
    else:
        train, test = (os.path.join(data_dir, name, f) for f in ("train.csv", "test.csv"))
        extra = []
    return (train, test, extra) if os.path.isfile(train) and os.path.isfile(test) else None


def run_default(name: str, train: str, test: str, extra, workdir: str, more_flags) -> dict:
    """The default recipe through the CLI; returns the test figures it wrote."""
    model_dir = os.path.join(workdir, name)
    command = [
        sys.executable, "-m", "trainer", f"--model_dir={model_dir}",
        f"--train_data={train}", f"--test_data={test}", *extra, *more_flags,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    reports = sorted(
        glob.glob(os.path.join(model_dir, "metrics", "test-*.json")),
        key=lambda p: int(os.path.basename(p)[len("test-") : -len(".json")]),
    )
    if not reports:
        raise SystemExit(f"{model_dir}/metrics holds no test-<step>.json; the run did not score --test_data.")
    with open(reports[-1]) as f:
        summary = json.load(f)
    return {
        "micro_f1": summary["micro"]["f1"],
        "macro_f1": summary["macro"]["f1"],
        "hamming": summary["hamming_loss"],
        "macro_ap": summary["macro"]["average_precision"],
        "checkpoint": f"{summary.get('checkpoint', '?')} step {summary['step']}",
    }


def read_csv(path: str):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        values = np.array([[float(cell) for cell in row] for row in rows], np.float64)
    is_label = np.array([column.startswith(LABEL_PREFIX) for column in header])
    return values[:, ~is_label], values[:, is_label].astype(np.int64)


def read_tsv(path: str, num_labels: int):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            texts.append(cells[0])
            row = np.zeros(num_labels, np.int64)
            row[[int(i) for i in cells[1].split(",")]] = 1
            labels.append(row)
    return texts, np.stack(labels)


def figures(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, f1_score, hamming_loss

    present = y_true.sum(axis=0) > 0  # Macro figures over the labels with positives in test.
    return {
        "micro_f1": f1_score(y_true, y_pred, average="micro", zero_division=0),
        "macro_f1": f1_score(y_true[:, present], y_pred[:, present], average="macro", zero_division=0),
        "hamming": hamming_loss(y_true, y_pred),
        "macro_ap": average_precision_score(y_true[:, present], scores[:, present], average="macro"),
    }


def run_baseline(name: str, train: str, test: str) -> dict:
    """OneVsRestClassifier(LogisticRegression) at threshold 0.5."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    if name == "goemotions":
        with open(os.path.join(os.path.dirname(train), "labels.txt")) as f:
            num_labels = sum(1 for line in f if line.strip())
        train_texts, y_train = read_tsv(train, num_labels)
        test_texts, y_test = read_tsv(test, num_labels)
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x_train, x_test = vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)
    else:
        x_train, y_train = read_csv(train)
        x_test, y_test = read_csv(test)
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    # A label never positive in train cannot be fitted by LogisticRegression: it predicts 0.
    trainable = (y_train.sum(axis=0) > 0) & (y_train.sum(axis=0) < len(y_train))
    classifier = OneVsRestClassifier(LogisticRegression(max_iter=1000), n_jobs=1)
    classifier.fit(x_train, y_train[:, trainable])
    scores = np.zeros(y_test.shape)
    scores[:, trainable] = classifier.predict_proba(x_test)
    return figures(y_test, (scores >= 0.5).astype(np.int64), scores)


def main(argv) -> None:
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="Comma-separated subset of " + str(DATASETS))
    parser.add_argument("--data", default=DATA, help="The shared data directory.")
    parser.add_argument("--jobs", type=int, default=1, help="Datasets run at the same time.")
    parser.add_argument("--no_baseline", action="store_true", help="Run the default recipe only (experiments).")
    parser.add_argument("--workdir", default="", help="Where the trainer runs write (default: a temporary dir).")
    args = parser.parse_args(argv[:split])
    more_flags = argv[split + 1 :]
    workdir = args.workdir or tempfile.mkdtemp(prefix="vs_lr_")
    present = []
    for name in args.datasets.split(","):
        found = files(args.data, name)
        if found is None:
            print(f"{name}: absent from {args.data}, skipped", flush=True)
        else:
            present.append((name, *found))

    def compare(name, train, test, extra):
        started = time.time()
        ours = run_default(name, train, test, extra, workdir, more_flags)
        ours_seconds = time.time() - started
        if args.no_baseline:
            print(f"{name}: default {ours} ({ours_seconds:.0f}s)", flush=True)
            return None
        started = time.time()
        baseline = run_baseline(name, train, test)
        baseline_seconds = time.time() - started
        print(
            f"{name}: default micro-F1 {ours['micro_f1']:.3f} macro-F1 {ours['macro_f1']:.3f} ({ours_seconds:.0f}s, "
            f"{ours['checkpoint']}); baseline micro-F1 {baseline['micro_f1']:.3f} macro-F1 {baseline['macro_f1']:.3f} "
            f"({baseline_seconds:.0f}s)",
            flush=True,
        )
        return name, ours, baseline, ours_seconds, baseline_seconds

    started = time.time()
    # Datasets run side by side with --jobs > 1 (each one's trainer run, then its baseline).
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = [row for row in pool.map(lambda found: compare(*found), present) if row is not None]
    print(f"\nTotal wall time {time.time() - started:.0f} s ({args.jobs} dataset(s) at a time).")
    print()
    print("| data | figure | default recipe | logistic regression | default - LR |")
    print("| --- | --- | --- | --- | --- |")
    for name, ours, baseline, ours_seconds, baseline_seconds in rows:
        for key, label in (
            ("micro_f1", "micro-F1"),
            ("macro_f1", "macro-F1"),
            ("hamming", "Hamming loss (lower is better)"),
            ("macro_ap", "macro AP"),
        ):
            print(f"| {name} | {label} | {ours[key]:.4f} | {baseline[key]:.4f} | {ours[key] - baseline[key]:+.4f} |")
        print(f"| {name} | wall time | {ours_seconds:.0f} s | {baseline_seconds:.0f} s | |")
    checkpoints = ", ".join(f"{row[0]}: {row[1]['checkpoint']}" for row in rows)
    print(f"\nTrainer runs in {workdir}; the default's test figures come from ({checkpoints}).")


if __name__ == "__main__":
    main(sys.argv[1:])
