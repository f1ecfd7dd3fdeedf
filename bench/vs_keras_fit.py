"""`python -m trainer` against Keras `model.fit` on the same files, and against the raw compiled step.

    .venv/bin/python bench/vs_keras_fit.py [--steps=2000 --short=100 --rounds=3 --formats=csv,tfrecord,tsv]

Each side reads the same file:
- csv: 16,384 rows x 256 features with 100 `label:` columns (generated here, in a temp dir), MLP
  512-512, global batch 512. Keras: the CSV loaded with NumPy, then `from_tensor_slices().cache()
  .repeat().shuffle().batch().prefetch()` (the "Load CSV data" way of Keras/TensorFlow's docs).
- tfrecord: the same rows as 8 TFRecord shards (`trainer.prepare`). Keras: `TFRecordDataset`
  `.map(parse_example)` with the same tf.data chain.
- tsv: GoEmotions train.tsv (../shared/data) or a generated stand-in of its size, `text_bow`
  (embedding 64, pooling, 256-256), global batch 256. Keras: a `TextVectorization` layer (words
  and bigrams, 20,000 ids, 64 per text) adapted on the texts and mapped over the tf.data chain.
Time is the marginal time of N extra steps: (a run of short + N steps) minus (a run of `short`
steps), which removes start-up (imports, checking pass, compilation) from both sides. Ours runs
as the user runs it (`python -m trainer --mode=train`, in memory by default, and streamed with
--in_memory_budget_mb=0); Keras runs `model.fit` in this process (a warm-up fit of `short` steps,
then N). Each side also reports its best 50 steps (our progress lines; Keras fits of 50 steps),
which other jobs sharing the CPU slow less than the whole. The raw compiled step is the MLP's
forward, backward and update, XLA-compiled, looping over one batch already in memory. Every
measurement is repeated in --rounds interleaved rounds; prints the median examples/s of each
side and, for each ratio, its median and range over the rounds, all measured in one run.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
GOEMOTIONS = os.path.join(os.path.dirname(REPO), "shared", "data", "goemotions")
ROWS, FEATURES, LABELS = 16_384, 256, 100


def write_csv(folder: str) -> str:
    """The MLP job's CSV: features from a normal, labels from a random linear teacher."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    logits = features @ rng.normal(size=(FEATURES, LABELS)) / np.sqrt(FEATURES) - 1.5
    labels = (logits + rng.logistic(size=logits.shape) > 0).astype(np.int8)
    path = os.path.join(folder, "mlp.csv")
    header = ",".join([f"f{i}" for i in range(FEATURES)] + [f"label:l{j}" for j in range(LABELS)])
    table = np.concatenate([features.round(5), labels], axis=1)
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt=["%.5g"] * FEATURES + ["%d"] * LABELS)
    return path


def text_data(folder: str):
    """(TSV path, labels.txt path): GoEmotions' train split, or a generated stand-in of its size."""
    if os.path.exists(os.path.join(GOEMOTIONS, "train.tsv")):
        return os.path.join(GOEMOTIONS, "train.tsv"), os.path.join(GOEMOTIONS, "labels.txt")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30_000)]
    tsv, names = os.path.join(folder, "generated.tsv"), os.path.join(folder, "labels.txt")
    with open(names, "w") as f:
        f.write("".join(f"label_{i}\n" for i in range(28)))
    with open(tsv, "w") as f:
        for i in range(43_410):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
            f.write(f"{text}\t{','.join(str(rng.randrange(28)) for _ in range(rng.randint(1, 3)))}\tid{i}\n")
    return tsv, names


def ours(job: dict, steps: int, workdir: str, extra=()):
    """Wall seconds of `python -m trainer --mode=train` for `steps` steps of `job`, and the
    examples/s of each of its progress lines (time inside the compiled loops)."""
    model_dir = tempfile.mkdtemp(dir=workdir)
    command = [
        sys.executable, "-m", "trainer", f"--model_dir={model_dir}", "--mode=train", f"--train_steps={steps}",
        f"--checkpoint_every_steps={steps}", "--log_every_steps=50", "--steps_per_loop=50",
        "--lr_schedule=constant", *job["flags"], *extra,
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    rates = [float(r) for r in re.findall(r"\| ([0-9.]+) examples/s \|", result.stderr)]
    return time.perf_counter() - start, rates


def ours_rate(job: dict, args, workdir: str, extra=()):
    """(examples/s over the marginal time of args.steps extra steps, the best progress line's)."""
    short, _ = ours(job, args.short, workdir, extra)
    long, rates = ours(job, args.short + args.steps, workdir, extra)
    return args.steps * job["batch"] / max(long - short, 1e-9), max(rates[1:])


def keras_model(job: dict):
    """The model ours trains (trainer.models), compiled as Keras' docs show, with our optimizer settings."""
    import keras

    from trainer import models
    from trainer.config import ModelConfig, TrainConfig

    keras.utils.set_random_seed(0)
    model = models.MODELS[job["model"]](ModelConfig(hidden_units=job["hidden_units"]), job["split"].spec)
    models.adapt(model, job["split"])
    train = TrainConfig(lr_schedule="constant")
    model.compile(
        optimizer=keras.optimizers.AdamW(train.learning_rate, weight_decay=train.weight_decay),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def fit_rate(job: dict, dataset, args):
    """(examples/s of `model.fit` over args.steps steps after a warm-up fit of args.short steps,
    the best of its fits of 50 steps): marginal and best, as for ours."""
    import tensorflow as tf

    model = keras_model(job)
    dataset = dataset.cache().repeat().shuffle(10_000, seed=1).batch(job["batch"]).prefetch(tf.data.AUTOTUNE)
    model.fit(dataset, steps_per_epoch=args.short, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    marginal = args.steps * job["batch"] / (time.perf_counter() - start)
    best = 0.0
    for _ in range(min(args.steps // 50, 10)):  # Ten windows of 50 steps are enough to find a quiet one.
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=50, epochs=1, verbose=0)
        best = max(best, 50 * job["batch"] / (time.perf_counter() - start))
    return marginal, best


def keras_csv(path: str):
    import tensorflow as tf

    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    return tf.data.Dataset.from_tensor_slices(({"features": table[:, :FEATURES]}, table[:, FEATURES:]))


def keras_tfrecord(pattern: str):
    import tensorflow as tf

    spec = {
        "features": tf.io.FixedLenFeature([FEATURES], tf.float32),
        "label_ids": tf.io.VarLenFeature(tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        ids = tf.sparse.to_dense(example["label_ids"])
        labels = tf.reduce_max(tf.one_hot(ids, LABELS), axis=0)
        return {"features": example["features"]}, tf.ensure_shape(labels, [LABELS])

    files = sorted(tf.io.gfile.glob(pattern))
    return tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def keras_tsv(path: str, num_labels: int):
    import keras
    import tensorflow as tf

    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            texts.append(cells[0])
            row = np.zeros(num_labels, np.float32)
            row[[int(i) for i in cells[1].split(",") if i]] = 1
            labels.append(row)
    vectorize = keras.layers.TextVectorization(max_tokens=20_000, ngrams=2, output_sequence_length=64)
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    dataset = tf.data.Dataset.from_tensor_slices((texts, np.stack(labels)))
    return dataset.map(
        lambda text, label: ({"tokens": tf.cast(vectorize(text[None])[0], tf.int32)}, label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def raw_step(job: dict):
    """The limit: loop(n) runs n steps of forward, loss, backward and update, XLA-compiled, on one
    in-memory batch, in a tf.range loop."""
    import tensorflow as tf

    from trainer import optimization
    from trainer.config import TrainConfig

    model = keras_model(job)
    optimizer = optimization.make_optimizer(TrainConfig(lr_schedule="constant"))
    optimizer.build(model.trainable_variables)
    features, labels = job["split"].arrays
    x = {name: tf.constant(value[: job["batch"]]) for name, value in features.items()}
    y = tf.constant(labels[: job["batch"]].dense())

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=model(x, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    @tf.function
    def loop(n):
        for _ in tf.range(n):
            step()

    return loop


def raw_step_rate(job: dict, args):
    """(examples/s of the raw step over args.steps steps, its best 50 steps)."""
    import tensorflow as tf

    loop = raw_step(job)
    loop(tf.constant(args.short))
    start = time.perf_counter()
    loop(tf.constant(args.steps))
    marginal = args.steps * job["batch"] / (time.perf_counter() - start)
    best = 0.0
    for _ in range(min(args.steps // 50, 10)):  # Ten windows of 50 steps are enough to find a quiet one.
        start = time.perf_counter()
        loop(tf.constant(50))
        best = max(best, 50 * job["batch"] / (time.perf_counter() - start))
    return marginal, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="N: the extra steps timed.")
    parser.add_argument("--short", type=int, default=100, help="Steps of the short run (and of Keras' warm-up).")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds of every measurement.")
    parser.add_argument("--formats", default="csv,tfrecord,tsv")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from trainer import data, prepare
    from trainer.config import DataConfig

    jobs = []  # (name, job, Keras' dataset, whether to time the raw step)
    with tempfile.TemporaryDirectory() as workdir:
        csv = write_csv(workdir)
        mlp = {"model": "mlp", "hidden_units": (512, 512), "batch": 512}
        mlp["split"] = data.load_split(DataConfig(), "train", csv, seed=0)
        mlp["flags"] = ["--model=mlp", "--hidden_units=512,512", "--global_batch_size=512"]
        formats = args.formats.split(",")
        if "csv" in formats:
            jobs.append(
                ("csv, mlp 512-512", dict(mlp, flags=mlp["flags"] + [f"--train_data={csv}"]), keras_csv(csv), True)
            )
        if "tfrecord" in formats:
            shards = os.path.join(workdir, "shards")
            prepare.prepare(DataConfig(), csv, shards, num_shards=8, name="mlp")
            pattern = os.path.join(shards, "mlp-*.tfrecord")
            jobs.append(("tfrecord x8, mlp 512-512", dict(mlp, flags=mlp["flags"] + [f"--train_data={pattern}"]),
                         keras_tfrecord(pattern), False))  # fmt: skip
        if "tsv" in formats:
            tsv, names = text_data(workdir)
            text = {"model": "text_bow", "hidden_units": (256, 256), "batch": 256}
            text["split"] = data.load_split(DataConfig(label_names=names), "train", tsv, seed=0)
            text["flags"] = [
                "--model=text_bow", "--hidden_units=256,256", "--global_batch_size=256", f"--train_data={tsv}",
                f"--label_names={names}",
            ]  # fmt: skip
            jobs.append((f"tsv {os.path.basename(tsv)}, text_bow", text,
                         keras_tsv(tsv, text["split"].spec.num_labels), False))  # fmt: skip

        # Every round measures every side of every job in turn, so that a slow spell of the
        # machine falls on all sides of a round; ratios are taken within each round.
        rounds = {name: [] for name, *_ in jobs}
        for round_index in range(args.rounds):
            for name, job, keras_dataset, with_raw in jobs:
                fit = fit_rate(job, keras_dataset, args)
                memory = ours_rate(job, args, workdir)
                streamed = ours_rate(job, args, workdir, ["--in_memory_budget_mb=0"])
                raw = raw_step_rate(job, args) if with_raw else None
                rounds[name].append((memory, streamed, fit, raw))
                print(f"round {round_index + 1}, {name}: ours {memory}, streamed {streamed}, fit {fit}, raw {raw}",
                      flush=True)  # fmt: skip
    report(rounds, args)


def report(rounds, args) -> None:
    """Median examples/s of each side, and the median [lowest-highest] over rounds of each ratio."""
    print(f"\n{args.steps} extra steps, {args.rounds} interleaved rounds, {os.cpu_count()} CPU cores, float32.")
    print("Examples/s (median over rounds), marginal (best 50 steps):")
    print(f"{'file, model':<26} {'ours':>16} {'streamed':>16} {'model.fit':>16} {'raw step':>16}")
    for name, measured in rounds.items():
        cells = []
        for side in range(4):
            if measured[0][side] is None:
                cells.append(f"{'':>16}")
                continue
            marginal, best = (float(np.median([m[side][k] for m in measured])) for k in (0, 1))
            cells.append(f"{marginal:>7,.0f} ({best:>6,.0f})")
        print(f"{name:<26} {' '.join(cells)}")
    print("Ratios within each round: median [lowest-highest], marginal; best 50 steps:")
    for name, measured in rounds.items():
        cells = []
        for label, a, b in (("ours/fit", 0, 2), ("streamed/fit", 1, 2), ("ours/raw", 0, 3)):
            if measured[0][b] is None:
                continue
            for k, how in ((0, "marginal"), (1, "best 50")):
                ratios = [m[a][k] / m[b][k] for m in measured]
                cells.append(f"{label} {how} {np.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
        print(f"{name}:\n  " + "\n  ".join(cells))
    print("goals: ours/fit >= 1.4 (files, and in memory); ours/raw >= 0.9 (in memory)")


if __name__ == "__main__":
    main()
