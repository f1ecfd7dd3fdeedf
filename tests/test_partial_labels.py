"""Partially labelled data (labels -1 = unknown): the formats that say it, the checks that count it,
the training step's normalisation under every strategy, the metrics on known rows, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    REPO,
    check_ok,
    error_line,
    max_weight_difference,
    read_metrics,
    run_local_workers,
    run_trainer,
    trainer_env,
)
from partial_loss_probe import CASES, LOSS_CONFIG, problem
from sklearn import metrics as sk

from launch.local import free_ports, tf_config
from trainer import data, losses, metrics, prepare
from trainer.config import DataConfig, LossConfig
from trainer.data import labels as labels_lib
from trainer.data import sources
from trainer.errors import UserError

LABELS = ["joy", "anger", "fear"]


def _write(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def _labels_of(split):
    return next(iter(split.examples.batch(10_000)))[1].numpy()


# -- Formats: the same unknowns said three ways, and carried through trainer.prepare.

EXPECTED = np.array([[1, -1, 0], [-1, -1, -1], [0, 1, -1], [0, 0, 0]], np.float32)


def _three_formats(folder):
    names = _write(folder / "names.txt", LABELS)
    csv = _write(folder / "p.csv", ["f0,label:joy,label:anger,label:fear", "1,1,,0", "2,,,", '3,0,1,""', "4,0,0,0"])
    tsv = _write(folder / "p.tsv", ["one\tjoy, ?anger", "two\t?0,?anger,?fear", "three\t?fear,1", "four\t"])
    with tf_record_writer(folder / "p.tfrecord") as writer:
        # int64 `labels` and a float `label_mask`; a record without a mask has every label known.
        for row in EXPECTED:
            writer.write(_example([1.0], labels=np.maximum(row, 0), mask=(row >= 0).astype(np.float32)))
    return names, csv, tsv, str(folder / "p.tfrecord")


def tf_record_writer(path):
    return tf.io.TFRecordWriter(str(path))


def _example(features, labels=None, mask=None, label_ids=None) -> bytes:
    feature = {"features": tf.train.Feature(float_list=tf.train.FloatList(value=list(features)))}
    if labels is not None:
        feature["labels"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in labels]))
    if label_ids is not None:
        feature["label_ids"] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(label_ids)))
    if mask is not None:
        value = np.asarray(mask)
        if value.dtype.kind == "f":
            feature["label_mask"] = tf.train.Feature(float_list=tf.train.FloatList(value=value.tolist()))
        else:
            feature["label_mask"] = tf.train.Feature(int64_list=tf.train.Int64List(value=value.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize("in_memory_budget_mb", [2048, 0])  # Loaded into memory, or streamed.
def test_csv_tsv_and_tfrecord_say_unknown_their_own_way_and_the_checks_count_it(tmp_path, in_memory_budget_mb):
    names, csv, tsv, records = _three_formats(tmp_path)
    for path in (csv, tsv, records):
        label_names = names if not path.endswith(".csv") else ""
        config = DataConfig(label_names=label_names, in_memory_budget_mb=in_memory_budget_mb)
        split = data.load_split(config, "train", path, seed=0)
        assert (split.arrays is not None) == (in_memory_budget_mb > 0), path
        np.testing.assert_array_equal(_labels_of(split), EXPECTED, err_msg=path)
        np.testing.assert_array_equal(split.unknown_counts, [1, 2, 2], err_msg=path)
        np.testing.assert_array_equal(split.label_counts, [1, 1, 0], err_msg=path)
        # weighted_bce's counts are over the known entries: joy is on in 1 of its 3 known rows.
        np.testing.assert_allclose(split.positive_fraction(), [1 / 3, 1 / 2, 0], err_msg=path)
        stats = sources.open_reader(config, "train", path, seed=0)[0].check()
        assert (stats.num_unknown, stats.all_unknown, stats.num_examples) == (5, 1, 4), path


def test_the_start_up_log_reports_unknown_entries_and_all_unknown_rows(tmp_path, caplog):
    _, csv, _, _ = _three_formats(tmp_path)
    with caplog.at_level("INFO"):
        data.load_split(DataConfig(), "train", csv, seed=0)
    assert "--train_data: 5 of 12 label entries are unknown (41.7%)" in caplog.text
    assert "--train_data: 1 of 4 examples have every label unknown; they are kept" in caplog.text


def test_prepare_carries_unknown_labels_through(tmp_path):
    names, csv, tsv, _ = _three_formats(tmp_path)
    for source in (csv, tsv):
        out = str(tmp_path / f"prepared-{os.path.basename(source)}")
        summary = prepare.prepare(DataConfig(label_names=names if source == tsv else ""), source, out, num_shards=2)
        assert summary["unknown_entries"] == 5 and summary["all_unknown_examples"] == 1
        assert [summary["labels"][n]["unknown"] for n in LABELS] == [1, 2, 2]
        assert summary["labels"]["joy"]["frequency"] == pytest.approx(1 / 3, abs=1e-6)  # Over known rows.
        split = data.load_split(DataConfig(), "train", os.path.join(out, "*.tfrecord"), seed=0)
        np.testing.assert_array_equal(_labels_of(split), EXPECTED)


def test_without_unknowns_nothing_changes_in_the_statistics():
    stats = labels_lib.Stats.zeros(3)
    stats.add_batch(np.array([[1, 0, 0], [1, 1, 0]]))
    assert stats.num_unknown == 0 and stats.all_unknown == 0
    summary = stats.summary(LABELS)
    assert summary["labels"]["joy"] == {"count": 2, "frequency": 1.0, "unknown": 0}
    assert summary["label_density"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "lines, message",
    [
        (["a\tjoy,?glee"], "p.tsv:1: '?glee' marks 'glee' unknown but it is not a label name"),
        (["a\tjoy", "b\t?joy,joy"], "p.tsv:2: label 'joy' is both listed and marked unknown (?); keep one."),
        (["a\tjoy", "b\t?7"], "p.tsv:2: label id 7 is out of range"),
    ],
)
def test_bad_unknown_markers_name_file_and_line(tmp_path, lines, message):
    names = _write(tmp_path / "names.txt", LABELS)
    path = _write(tmp_path / "p.tsv", lines)
    with pytest.raises(UserError) as error:
        data.load_split(DataConfig(label_names=names), "train", path, seed=0)
    assert str(error.value).startswith(str(tmp_path / message))


# -- The training step: the mean over the GLOBAL batch's known entries, under every strategy.


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_per_label(name, y, x, positive_fraction):
    """Per-entry losses in float64 from the papers' formulas (as tests/test_losses.py; `y` may be soft)."""
    config, p = LOSS_CONFIG, _sigmoid(x)
    if name == "bce":
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if name == "weighted_bce":
        fraction = np.asarray(positive_fraction, np.float64)
        w = np.clip((1 - fraction) / np.maximum(fraction, 1e-12), 1, config.max_positive_weight)
        return -(w * y * np.log(p) + (1 - y) * np.log(1 - p))
    if name == "focal":
        p_t = y * p + (1 - y) * (1 - p)
        return -((1 - p_t) ** config.focal_gamma) * np.log(p_t)
    p_m = np.maximum(p - config.asl_clip, 0)
    positive = (1 - p) ** config.asl_gamma_pos * np.log(p)
    negative = p_m**config.asl_gamma_neg * np.log(1 - p_m)
    return -(y * positive + (1 - y) * negative)


def _reference_loss(name, smoothing, kernel, bias, features, labels, positive_fraction):
    """float64: sum over the batch's known entries / number of known entries."""
    known = labels >= 0
    targets = np.where(known, labels * (1 - smoothing) + 0.5 * smoothing, 0)
    logits = features.astype(np.float64) @ kernel + bias
    per_entry = reference_per_label(name, targets, logits, positive_fraction)
    return np.where(known, per_entry, 0).sum() / known.sum()


def _reference_step(name, smoothing):
    """(loss, kernel, bias) after one SGD step of rate 1, by central differences in float64."""
    features, labels, kernel, bias = problem()
    kernel, bias = kernel.astype(np.float64), bias.astype(np.float64)
    fraction = (labels > 0).sum(axis=0) / (labels >= 0).sum(axis=0)

    def loss(k, b):
        return _reference_loss(name, smoothing, k, b, features, labels, fraction)

    eps, grad_k, grad_b = 1e-6, np.zeros_like(kernel), np.zeros_like(bias)
    for index in np.ndindex(kernel.shape):
        up, down = kernel.copy(), kernel.copy()
        up[index] += eps
        down[index] -= eps
        grad_k[index] = (loss(up, bias) - loss(down, bias)) / (2 * eps)
    for j in range(len(bias)):
        up, down = bias.copy(), bias.copy()
        up[j] += eps
        down[j] -= eps
        grad_b[j] = (loss(kernel, up) - loss(kernel, down)) / (2 * eps)
    return loss(kernel, bias), kernel - grad_k, bias - grad_b


def _run_probe(strategy: str):
    """The probe's reports: one process, or two real workers on loopback (worker 0's first)."""
    script = [sys.executable, os.path.join(REPO, "tests", "partial_loss_probe.py"), strategy]
    ports = free_ports(2)
    if strategy == "multi_worker":
        envs = [trainer_env({"TF_CONFIG": tf_config(ports, i)}) for i in range(2)]
    else:
        envs = [trainer_env()]
    processes = [
        subprocess.Popen(script, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for env in envs
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-4000:]
        reports.append(json.loads(stdout.split("PROBE ", 1)[1]))
    return reports


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["default", "mirrored", "multi_worker"])
def test_one_step_with_unknowns_equals_the_numpy_reference_under_every_strategy(strategy):
    """Loss and SGD update equal the float64 reference (the mean over the global batch's known
    entries; label smoothing on known entries only) for all four losses, whatever the split of
    the batch over replicas and workers (each replica holds a different number of known entries)."""
    reports = _run_probe(strategy)
    assert reports[0]["replicas"] == {"default": 1, "mirrored": 2, "multi_worker": 2}[strategy]
    for report in reports:  # Every worker holds the same weights.
        for name, smoothing in CASES:
            got = report[f"{name}/{smoothing}"]
            loss, kernel, bias = _reference_step(name, smoothing)
            assert got["loss"] == pytest.approx(loss, rel=1e-5), (name, smoothing)
            np.testing.assert_allclose(got["kernel"], kernel, rtol=1e-4, atol=1e-5, err_msg=f"{name} {smoothing}")
            np.testing.assert_allclose(got["bias"], bias, rtol=1e-4, atol=1e-5, err_msg=f"{name} {smoothing}")


# -- Metrics: every per-label figure is scikit-learn's on the rows where that label is known.


def _totals(labels, logits, thresholds, num_bins=0):
    """metrics.add_batch and add_ranking over one batch (every row real), read back as NumPy float64."""
    shapes = metrics.statistics_shapes(labels.shape[1], num_bins)
    totals = {
        name: tf.Variable(tf.zeros(shape, tf.float32 if name.startswith("ranking/") else tf.int32))
        for name, shape in shapes.items()
    }
    batch = (tf.constant(labels, tf.float32), tf.constant(logits, tf.float32), tf.ones([len(labels)]))
    metrics.add_batch(totals, *batch, tf.constant(thresholds, tf.float32), num_bins)
    metrics.add_ranking(totals, *batch, tf.ones([labels.shape[1]]), False)
    return {name: np.asarray(v.numpy(), np.float64) for name, v in totals.items()}


def _source(labels, logits, totals, num_bins):
    if num_bins:
        return metrics.Histograms(totals.pop("histograms"), labels.shape[1], num_bins)
    return metrics.ExactScores(logits, labels)


@pytest.mark.parametrize("num_bins", [0, 4096])
def test_per_label_figures_equal_sklearn_on_the_rows_where_the_label_is_known(num_bins):
    """Exact curves (num_bins 0) and the histogram fallback alike."""
    rng = np.random.default_rng(5)
    truth = (rng.random((3000, 5)) < [0.4, 0.2, 0.05, 0.3, 0.5]).astype(np.float32)
    logits = (3 * truth - 1.5 + rng.normal(scale=3.0, size=truth.shape)).astype(np.float32)
    labels = np.where(rng.random(truth.shape) < [0.1, 0.5, 0.3, 0.0, 0.9], -1, truth).astype(np.float32)
    labels[:50] = -1  # Rows with every label unknown.
    names = [f"l{j}" for j in range(5)]
    thresholds = np.array([0.5, 0.3, 0.5, 0.7, 0.4], np.float32)
    totals = _totals(labels, logits, thresholds, num_bins)
    source = _source(labels, logits, totals, num_bins)
    summary = metrics.summarize(totals, source, names, thresholds, False)
    tuned = metrics.tune_thresholds(source)
    curves = metrics.pr_curve_counts(source, list(range(5)))
    tolerance = 1e-9 if not num_bins else 1e-3
    probabilities = _sigmoid(logits.astype(np.float64))
    for j, name in enumerate(names):
        rows = labels[:, j] >= 0
        y, x = labels[rows, j], logits[rows, j]
        predicted = probabilities[rows, j] >= thresholds[j]
        row = summary["labels"][name]
        assert row["support"] == y.sum()
        assert row["precision"] == pytest.approx(sk.precision_score(y, predicted, zero_division=0))
        assert row["recall"] == pytest.approx(sk.recall_score(y, predicted, zero_division=0))
        assert row["f1"] == pytest.approx(sk.f1_score(y, predicted, zero_division=0))
        assert row["average_precision"] == pytest.approx(sk.average_precision_score(y, x), abs=tolerance)
        assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(y, x), abs=tolerance)
        # Threshold tuning and PR curves: those of a split holding only the known rows.
        alone_totals = _totals(y[:, None], x[:, None], thresholds[j : j + 1], num_bins)
        alone = _source(y[:, None], x[:, None], alone_totals, num_bins)
        assert tuned[j] == metrics.tune_thresholds(alone)[0]
        for key, values in metrics.pr_curve_counts(alone, [0]).items():
            np.testing.assert_array_equal(curves[key][j], values[0], err_msg=f"{name} {key}")
    known = labels >= 0
    predicted = probabilities >= thresholds
    assert summary["micro"]["f1"] == pytest.approx(sk.f1_score(labels[known], predicted[known]))
    # Hamming loss over the known entries; an exact match is an example whose known labels are all
    # right, over the examples with a known label.
    assert summary["hamming_loss"] == pytest.approx(np.mean(predicted[known] != labels[known]))
    right = np.all((predicted == labels) | ~known, axis=1)
    assert summary["subset_accuracy"] == pytest.approx(right[known.any(axis=1)].mean())
    assert summary["num_examples"] == 3000 and summary["unknown_entries"] == int((~known).sum())


@pytest.mark.parametrize("static_shapes", [False, True])
def test_ranking_figures_leave_unknown_labels_out_of_each_examples_ranking(static_shapes):
    """Each example ranked over its known labels only (scikit-learn's figures on them); examples
    without a known label are left out of the averages."""
    rng = np.random.default_rng(8)
    labels = (rng.random((300, 6)) < 0.3).astype(np.float32)
    labels[rng.random(labels.shape) < 0.4] = -1
    labels[:10] = -1
    logits = rng.normal(size=labels.shape).astype(np.float32)
    shapes = metrics.statistics_shapes(6)
    totals = {name: tf.Variable(tf.zeros(shape, tf.float32)) for name, shape in shapes.items()}
    batch = (tf.constant(labels), tf.constant(logits), tf.ones([300]))
    metrics.add_ranking(totals, *batch, tf.ones([6]), static_shapes)
    metrics.add_batch(totals, *batch, tf.fill([6], 0.5))
    totals = {name: np.asarray(v.numpy(), np.float64) for name, v in totals.items()}
    block = metrics.ranking.figures(totals, float(totals["labelled_examples"]), False)
    lrap, coverage, loss, precision_at_3 = [], [], [], []
    for y, x in zip(labels, logits):
        known = y >= 0
        if not known.any():
            continue
        y_known, x_known = y[known][None, :], x[known][None, :]
        if known.sum() > 1:
            lrap.append(sk.label_ranking_average_precision_score(y_known, x_known))
            coverage.append(sk.coverage_error(y_known, x_known))
            loss.append(sk.label_ranking_loss(y_known, x_known))
        else:  # One known label (scikit-learn takes no single-column input): ranked first.
            lrap.append(1.0)
            coverage.append(float(y_known.sum()))
            loss.append(0.0)
        top = np.argsort(-x_known[0], kind="stable")[:3]
        precision_at_3.append(y_known[0][top].sum() / 3)
    assert totals["labelled_examples"] == len(lrap) == int((labels >= 0).any(axis=1).sum()) < 290
    assert block["label_ranking_average_precision"] == pytest.approx(np.mean(lrap), abs=1e-6)
    assert block["coverage_error"] == pytest.approx(np.mean(coverage), abs=1e-6)
    assert block["ranking_loss"] == pytest.approx(np.mean(loss), abs=1e-6)
    assert block["precision@3"] == pytest.approx(np.mean(precision_at_3), abs=1e-6)


def test_eval_loss_is_the_mean_over_known_entries():
    rng = np.random.default_rng(6)
    labels = np.where(rng.random((40, 3)) < 0.3, -1, rng.random((40, 3)) < 0.5).astype(np.float32)
    logits = rng.normal(size=(40, 3)).astype(np.float32)
    per_example = losses.bce(LossConfig(), None)(tf.constant(labels), tf.constant(logits)).numpy()
    totals = {"loss_sum": per_example.sum(), "known": (labels >= 0).sum(axis=0)}
    known = labels >= 0
    expected = reference_per_label("bce", np.maximum(labels, 0), logits.astype(np.float64), None)[known].mean()
    assert metrics.counts.mean_loss(totals) == pytest.approx(expected, rel=1e-5)


# -- Through the CLI: a CSV with empty label cells under every strategy, and bad input.

NUM_FEATURES, NUM_LABELS = 8, 4
CLI_FLAGS = [
    "--hidden_units=32",
    "--global_batch_size=64",
    "--steps_per_loop=12",
    "--log_every_steps=12",
    "--checkpoint_every_steps=24",
    "--train_steps=24",
    "--deterministic",
    "--optimizer=sgd",
    "--learning_rate=0.05",
]


def _partial_csv(path, num_examples: int, seed: int):
    """A learnable problem (a linear teacher) with ~30% of label cells empty and some rows all empty."""
    rng = np.random.default_rng(seed)
    teacher = np.random.default_rng(0).normal(size=(NUM_FEATURES, NUM_LABELS))
    features = rng.normal(size=(num_examples, NUM_FEATURES))
    truth = (features @ teacher + rng.logistic(size=(num_examples, NUM_LABELS)) > 1.0).astype(int)
    unknown = rng.random(truth.shape) < 0.3
    unknown[::25] = True
    header = ",".join([f"f{i}" for i in range(NUM_FEATURES)] + [f"label:l{j}" for j in range(NUM_LABELS)])
    lines = [header]
    for x, y, u in zip(features, truth, unknown):
        cells = [f"{v:.4f}" for v in x] + ["" if u_j else str(y_j) for y_j, u_j in zip(y, u)]
        lines.append(",".join(cells))
    _write(path, lines)
    return np.where(unknown, -1, truth), int(unknown.sum()), int(unknown.all(axis=1).sum())


@pytest.mark.e2e
def test_a_csv_with_empty_label_cells_trains_alike_under_every_strategy_and_scores_known_rows(tmp_path):
    """default, mirrored (2 CPUs) and 2 workers: the same weights (1e-5), the unknown count in the
    log, and eval figures equal to scikit-learn's on the known rows of the predictions."""
    train = str(tmp_path / "train.csv")
    evaluation = str(tmp_path / "eval.csv")
    _, train_unknown, train_all_unknown = _partial_csv(train, 1000, seed=1)
    # 301 rows: the last global batch is padded (45 rows; 32 + 13 over two replicas).
    eval_labels, _, _ = _partial_csv(evaluation, 301, seed=2)
    flags = CLI_FLAGS + [f"--train_data={train}", f"--eval_data={evaluation}", "--mode=train_and_eval"]
    runs = {
        "default": ["--strategy=default"],
        "mirrored": ["--strategy=mirrored", "--cpu_replicas=2"],
        "multi_worker": ["--strategy=multi_worker"],
    }
    for strategy, extra in runs.items():
        model_dir = str(tmp_path / strategy)
        args = flags + extra + [f"--model_dir={model_dir}"]
        result = check_ok(run_local_workers(2, args) if strategy == "multi_worker" else run_trainer(args))
        log = result.stdout + result.stderr
        assert f"--train_data: {train_unknown} of {1000 * NUM_LABELS} label entries are unknown" in log
        assert f"--train_data: {train_all_unknown} of 1000 examples have every label unknown" in log
        predict = [f"--model_dir={model_dir}", "--mode=predict", f"--test_data={evaluation}", "--eval_data="]
        check_ok(run_local_workers(2, predict + extra) if strategy == "multi_worker" else run_trainer(predict + extra))
        with open(os.path.join(model_dir, "predictions.jsonl")) as f:
            probabilities = np.array([json.loads(line)["probabilities"] for line in f], np.float32)
        summary = read_metrics(model_dir, "eval")
        assert summary["num_examples"] == 301 and summary["unknown_entries"] == int((eval_labels < 0).sum())
        for j in range(NUM_LABELS):
            row, rows = summary["labels"][f"l{j}"], eval_labels[:, j] >= 0
            y, p = eval_labels[rows, j], probabilities[rows, j]
            predicted = p >= row["threshold"]
            assert row["support"] == y.sum(), strategy
            assert row["precision"] == pytest.approx(sk.precision_score(y, predicted, zero_division=0)), strategy
            assert row["recall"] == pytest.approx(sk.recall_score(y, predicted, zero_division=0)), strategy
            assert row["average_precision"] == pytest.approx(sk.average_precision_score(y, p), abs=1e-3), strategy
            assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-3), strategy
    for other in ("mirrored", "multi_worker"):
        assert max_weight_difference(str(tmp_path / "default"), str(tmp_path / other)) <= 1e-5, other


def _bad_partial_inputs(folder):
    names = _write(folder / "names.txt", LABELS)
    tsv = _write(folder / "p.tsv", ["fine\tjoy,?anger", "bad\tjoy,?glee"])
    with tf_record_writer(folder / "length.tfrecord") as writer:
        writer.write(_example([1.0], label_ids=[0], mask=np.array([1, 0, 1])))
        writer.write(_example([2.0], label_ids=[1], mask=np.array([1, 0])))
    with tf_record_writer(folder / "values.tfrecord") as writer:
        writer.write(_example([1.0], label_ids=[0], mask=np.array([1, 0, 2])))
    with tf_record_writer(folder / "type.tfrecord") as writer:
        writer.write(_example([1.0], label_ids=[0], mask=np.array([1, 0, 1])))
        writer.write(_example([2.0], label_ids=[1], mask=np.array([1.0, 0.0, 1.0], np.float32)))
    return {
        "unknown marker on a name not in --label_names": (
            [f"--train_data={tsv}", f"--label_names={names}"],
            f"{folder}/p.tsv:2: '?glee' marks 'glee' unknown but it is not a label name",
        ),
        "label_mask of the wrong length": (
            [f"--train_data={folder}/length.tfrecord", f"--label_names={names}"],
            f"{folder}/length.tfrecord record 1: `label_mask` has 2 values but there are 3 label names",
        ),
        "label_mask not 0/1": (
            [f"--train_data={folder}/values.tfrecord", f"--label_names={names}"],
            f"{folder}/values.tfrecord record 0: `label_mask` must hold only 0 and 1.",
        ),
        "label_mask of two types": (
            [f"--train_data={folder}/type.tfrecord", f"--label_names={names}"],
            f"{folder}/type.tfrecord (records 0..4095): `label_mask` is not of the type of the first record's (int64)",
        ),
    }


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case",
    [
        "unknown marker on a name not in --label_names",
        "label_mask of the wrong length",
        "label_mask not 0/1",
        "label_mask of two types",
    ],
)
def test_bad_partial_labels_exit_1_with_one_line_naming_file_and_row(tmp_path, case):
    flags, expected = _bad_partial_inputs(tmp_path)[case]
    model_dir = tmp_path / "run"
    result = run_trainer([f"--model_dir={model_dir}", "--eval_data=", *flags])
    assert result.returncode == 1, result.stderr[-3000:]
    assert expected in error_line(result)
    assert not model_dir.exists() or not any(model_dir.iterdir())
