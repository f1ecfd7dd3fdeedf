"""The helpers every test module shares: run the real CLIs in subprocesses, read what they wrote,
and write small data files in every format. (Fixtures live in conftest.py.)"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from trainer.data import tfrecord

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


def trainer_env(extra=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def run_trainer(args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` in a fresh process (TensorFlow can split the CPU only before it starts)."""
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=REPO,
        env=trainer_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_local_workers(num_workers, args, extra=(), timeout=600) -> subprocess.CompletedProcess:
    """`python -m launch local --workers N [extra] -- ARGS`: a real N-process MultiWorkerMirrored job."""
    return subprocess.run(
        [sys.executable, "-m", "launch", "local", f"--workers={num_workers}", *extra, "--", *args],
        cwd=REPO,
        env=trainer_env(),
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
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "_trainable_variables/" in n]
    assert names, "no model variables in the checkpoint"
    return {n: reader.get_tensor(n) for n in names}


def max_weight_difference(dir_a: str, dir_b: str) -> float:
    a, b = model_weights(dir_a), model_weights(dir_b)
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def read_metrics(model_dir: str, split: str = "eval"):
    """The newest metrics/<split>-<step>[-<n>].json (an evaluation run adds -<n> beside training's)."""
    folder = os.path.join(model_dir, "metrics")
    found = []
    for name in os.listdir(folder):
        match = re.fullmatch(rf"{re.escape(split)}-(\d+)(?:-(\d+))?\.json", name)
        if match:
            found.append((int(match.group(1)), int(match.group(2) or 1), name))
    with open(os.path.join(folder, max(found)[2])) as f:
        return json.load(f)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a user error must print on stderr (TensorFlow's own log lines excluded)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one 'error:' line, got stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def start_trainer(args):
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", *args], cwd=REPO, env=trainer_env(), stderr=subprocess.PIPE, text=True
    )


def read_until(stream, pattern, lines, timeout=180):
    """Reads `stream` line by line (kept in `lines`) until one matches `pattern`; returns the match."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(lines[-40:])}")


def kill_at(args, *patterns):
    """Starts the trainer and SIGKILLs it once its log has shown each of `patterns` in turn."""
    process, lines = start_trainer(args), []
    for pattern in patterns:
        read_until(process.stderr, pattern, lines)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def resumes_exactly(args, tmp_path, *patterns):
    """`args` run straight through, and killed at `patterns` then run again: the second resumes and
    ends with the weights of the first (<= 1e-6)."""
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    check_ok(run_trainer(args + [f"--model_dir={reference}"]))
    kill_at(args + [f"--model_dir={interrupted}"], *patterns)
    result = check_ok(run_trainer(args + [f"--model_dir={interrupted}"]))
    assert "Resuming at step" in result.stderr
    assert max_weight_difference(reference, interrupted) <= 1e-6
    return result


def start_workers(num_workers, args, extra=()):
    return subprocess.Popen(
        [sys.executable, "-m", "launch", "local", f"--workers={num_workers}", *extra, "--", *args],
        cwd=REPO,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


LOAD_AND_SCORE = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
inputs = json.load(open(sys.argv[2]))
serve = loaded.signatures["serving_default"]
arguments = {name: tf.constant(value, dtype=serve.structured_input_signature[1][name].dtype)
             for name, value in inputs.items()}
outputs = serve(**arguments)
names = loaded.signatures["label_names"]()
print(json.dumps({"probabilities": outputs["probabilities"].numpy().tolist(),
                  "logits": outputs["logits"].numpy().tolist(),
                  "labels": outputs["labels"].numpy().tolist(),
                  "label_names": [n.decode() for n in names["label_names"].numpy()],
                  "thresholds": names["thresholds"].numpy().tolist()}))
"""


def score_in_fresh_process(export_dir, inputs, tmp_path):
    inputs_path = tmp_path / "inputs.json"
    inputs_path.write_text(json.dumps(inputs))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, export_dir, str(inputs_path)],
        cwd=str(tmp_path),  # Not the repo: the SavedModel must not need the project's code.
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_predictions(model_dir):
    with open(os.path.join(model_dir, "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


LABELS = ["joy", "anger", "fear", "love", "grief"]
WORDS = ["happy", "sad", "Angry!", "it's", "Ça", "va", '"quoted"', "a,b", "love", "grief", "so", "much"]
NUM_EXAMPLES = 37
TEXT_FLAGS = ["--model=text_bow", "--global_batch_size=8", "--hidden_units=16", "--embedding_dim=8", "--max_tokens=40"]


def example_rows(seed=0):
    """(text, label ids, features) rows: words with commas and quotes, 0-3 labels, one empty text."""
    rng = random.Random(seed)
    rows = []
    for i in range(NUM_EXAMPLES):
        words = "" if i == 5 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        ids = tuple(sorted(rng.sample(range(len(LABELS)), rng.randint(0, 3))))
        rows.append((words, ids, tuple(round(rng.uniform(-2, 2), 3) for _ in range(3))))
    return rows


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def write_lines(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def write_text_formats(folder, rows):
    """The same text dataset as every text format the trainer reads; returns {name: path}."""
    (folder / "labels.txt").write_text("".join(n + "\n" for n in LABELS))
    paths = {
        # GoEmotions: no header, ids, a comment id the trainer ignores; labels.txt beside it.
        "goemotions_tsv": write_lines(
            folder / "go.tsv", [f"{t}\t{','.join(map(str, ids))}\tid{i}" for i, (t, ids, _) in enumerate(rows)]
        ),
        "header_tsv": write_lines(
            folder / "names.tsv",
            ["id\ttext\tlabels"]
            + [f"{i}\t{t}\t{', '.join(LABELS[j] for j in ids)}" for i, (t, ids, _) in enumerate(rows)],
        ),
        "csv": write_lines(
            folder / "names.csv",
            ["text,labels,id"]
            + [f"{_quote(t)},{_quote(','.join(LABELS[j] for j in ids))},{i}" for i, (t, ids, _) in enumerate(rows)],
        ),
    }
    with tf.io.TFRecordWriter(str(folder / "ids.tfrecord")) as writer:
        for t, ids, _ in rows:
            writer.write(tfrecord.make_example(t, ids))
    paths["tfrecord_ids"] = str(folder / "ids.tfrecord")
    with tf.io.TFRecordWriter(str(folder / "multi_hot.tfrecords")) as writer:
        for t, ids, _ in rows:
            feature = {
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()])),
                "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(j in ids) for j in range(5)])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    paths["tfrecord_multi_hot"] = str(folder / "multi_hot.tfrecords")
    return paths


def write_numeric_formats(folder, rows):
    header = ",".join([f"f{k}" for k in range(3)] + [f"label:{n}" for n in LABELS])
    lines = [",".join([str(v) for v in f] + [str(int(j in ids)) for j in range(5)]) for _, ids, f in rows]
    (folder / "labels.txt").write_text("".join(n + "\n" for n in LABELS))
    with tf.io.TFRecordWriter(str(folder / "numeric.tfrecord")) as writer:
        for _, ids, features in rows:
            writer.write(tfrecord.make_example(None, ids, features))
    return {"csv": write_lines(folder / "numeric.csv", [header] + lines), "tfrecord": str(folder / "numeric.tfrecord")}
