"""The maths of trainer.metrics against scikit-learn and NumPy references, in-process.

Scores are logits as overconfident models give them: out to +-50, with ties, and labels with no
positives or no negatives. The CLI tests under each strategy are in test_metrics_cli.py.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as sk

from trainer import config, metrics, train
from trainer.checkpoint import best
from trainer.metrics import curves, histogram, propensity, ranking

NAMES = [f"l{i}" for i in range(7)]


def saturated_problem(seed=0, num_examples=3000):
    """Labels (l5 never positive, l6 always) and logits of an overfit model: many beyond +-16,
    ties among the saturated ones and among rounded ones."""
    rng = np.random.default_rng(seed)
    rates = [0.5, 0.2, 0.05, 0.01, 0.3, 0.0, 1.0]
    labels = rng.random((num_examples, len(rates))) < rates
    logits = np.where(labels, 30.0, -30.0) + rng.normal(scale=25, size=labels.shape)
    logits[: num_examples // 5, 0] = 50.0  # A block of ties at the top, positives and negatives.
    logits[:, 1] = np.round(logits[:, 1] / 4)  # Ties everywhere.
    logits[: num_examples // 10, 2] = -50.0
    return labels, logits.astype(np.float32)


def _pad(rows, batch_size):
    """Copies of the first row up to batch_size, as eval batches are padded."""
    return np.concatenate([rows, np.repeat(rows[:1], batch_size - len(rows), axis=0)])


def device_totals(labels, logits, thresholds, inv_propensity=None, num_bins=0, batch_size=512, static_shapes=False):
    """Sums of metrics.add_batch over the batches (the last padded and masked, as eval batches are)."""
    num_labels = labels.shape[1]
    shapes = metrics.statistics_shapes(num_labels, num_bins)
    totals = {
        name: tf.Variable(tf.zeros(shape, tf.float32 if name.startswith("ranking/") else tf.int32))
        for name, shape in shapes.items()
    }
    weights = np.ones(num_labels, np.float32) if inv_propensity is None else inv_propensity
    for start in range(0, len(labels), batch_size):
        batch_labels, batch_logits = labels[start : start + batch_size], logits[start : start + batch_size]
        real = len(batch_labels)
        mask = np.r_[np.ones(real), np.zeros(batch_size - real)].astype(np.float32)
        batch = (tf.constant(_pad(batch_labels, batch_size), tf.float32), tf.constant(_pad(batch_logits, batch_size)))
        metrics.add_batch(totals, *batch, tf.constant(mask), tf.constant(thresholds, tf.float32), num_bins)
        metrics.add_ranking(totals, *batch, tf.constant(mask), tf.constant(weights), static_shapes)
    return {name: v.numpy() for name, v in totals.items()}


def probabilities_of(logits):
    return curves.sigmoid(logits).astype(np.float32)


def test_exact_ap_and_auc_equal_sklearn_on_saturated_logits_with_ties():
    labels, logits = saturated_problem()
    thresholds = np.array([0.5, 0.3, 0.5, 0.7, 0.5, 0.5, 0.5], np.float32)
    totals = device_totals(labels, logits, thresholds)
    totals = {k: np.asarray(v, np.float64) for k, v in totals.items()}
    summary = metrics.summarize(totals, metrics.ExactScores(logits, labels), NAMES, thresholds, False)
    assert summary["curves"]["exact"] and summary["curves"]["max_average_precision_bound"] == 0
    for j, name in enumerate(NAMES):
        row = summary["labels"][name]
        if 0 < labels[:, j].sum() < len(labels):
            assert row["average_precision"] == pytest.approx(
                sk.average_precision_score(labels[:, j], logits[:, j]), abs=1e-9
            )
            assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(labels[:, j], logits[:, j]), abs=1e-9)
    assert summary["labels"]["l5"]["average_precision"] is None and summary["labels"]["l5"]["roc_auc"] is None
    assert summary["labels"]["l6"]["average_precision"] == pytest.approx(1.0)
    assert summary["labels"]["l6"]["roc_auc"] is None  # No negatives.
    assert summary["labels_without_positives"] == ["l5"]
    present = labels.sum(axis=0) > 0
    predicted = probabilities_of(logits) >= thresholds
    for j, name in enumerate(NAMES):
        row = summary["labels"][name]
        assert row["support"] == labels[:, j].sum()
        assert row["precision"] == pytest.approx(sk.precision_score(labels[:, j], predicted[:, j], zero_division=0))
        assert row["recall"] == pytest.approx(sk.recall_score(labels[:, j], predicted[:, j], zero_division=0))
    assert summary["macro"]["f1"] == pytest.approx(
        sk.f1_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    )
    assert summary["micro"]["f1"] == pytest.approx(sk.f1_score(labels, predicted, average="micro"))
    assert summary["hamming_loss"] == pytest.approx(sk.hamming_loss(labels, predicted))
    assert summary["subset_accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))


def many_labels_problem(seed=7, num_examples=300, num_labels=400):
    """Zipf label frequencies, so most labels have no positive, 10% unknown entries, logits with
    ties, saturated and signed-zero scores; l10 is all unknown, l11 has unknowns and negatives only,
    l12 positives only, l13 one positive tied with negatives, l14 NaN scores (a diverged model)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((num_examples, num_labels)) < np.minimum(0.4, 0.3 / np.arange(1, num_labels + 1))
    logits = (2.0 * truth + rng.normal(scale=3.0, size=truth.shape)).astype(np.float32)
    logits[:, ::2] = np.round(logits[:, ::2])  # Ties.
    logits[rng.random(truth.shape) < 0.05] = 40.0
    logits[rng.random(truth.shape) < 0.02] = -0.0
    labels = np.where(rng.random(truth.shape) < 0.1, -1, truth).astype(np.int8)
    labels[:, 10] = -1
    labels[:, 11] = np.where(truth[:, 11], -1, 0)
    labels[:, 12] = np.where(labels[:, 12] == 0, -1, 1)
    labels[:, 13], logits[:, 13] = 0, 1.0
    labels[0, 13] = 1
    logits[:9, 14] = np.nan
    return labels, logits


def test_only_labels_with_positives_are_grouped_and_their_figures_equal_those_of_every_group_to_the_bit(monkeypatch):
    """The shortcuts of the exact curves: labels without positives are not grouped (NaN, threshold
    0.5, met), and AP/ROC-AUC come from `curve_groups` (only the scores with positives, runs of
    negatives merged). Checked against the full groups of every label, chunk by chunk of 7
    labels, and scikit-learn."""
    monkeypatch.setattr(metrics.exact, "SORT_CHUNK_ENTRIES", 300 * 7)
    labels, logits = many_labels_problem()
    source = metrics.ExactScores(logits, labels)
    positives = (labels > 0).sum(axis=0)
    assert (positives == 0).mean() > 0.5 and positives[10] == positives[11] == 0 and positives[14] > 0
    figures = curves.all_curve_figures(source)
    every = curves.curve_figures(source.groups(np.arange(labels.shape[1])))  # Every label, every group.
    for name in ("average_precision", "roc_auc"):
        np.testing.assert_array_equal(figures[name], every[name], err_msg=name)
        assert np.isnan(figures[name][positives == 0]).all()
    assert np.isnan(figures["roc_auc"][12]) and not np.isnan(figures["average_precision"][12])
    for j in np.flatnonzero(positives > 0):
        known = labels[:, j] >= 0
        y, x = labels[known, j], logits[known, j]
        if np.isnan(x).any():  # l14: scikit-learn refuses NaN.
            continue
        assert figures["average_precision"][j] == pytest.approx(sk.average_precision_score(y, x), abs=1e-12)
        if y.min() == 0:
            assert figures["roc_auc"][j] == pytest.approx(sk.roc_auc_score(y, x), abs=1e-12)
    for objective in (curves.F1, ("precision_at_recall", 0.8), ("recall_at_precision", 0.9)):
        thresholds, met = metrics.tune(source, objective, min_positives=1)
        expected, expected_met = curves.best_thresholds(
            source.groups(np.arange(labels.shape[1]), by_probability=True), 0.5, objective
        )
        np.testing.assert_array_equal(thresholds, expected.astype(np.float32))
        np.testing.assert_array_equal(met, expected_met)
        assert (thresholds[positives == 0] == 0.5).all() and met[positives == 0].all()


def test_rare_labels_share_the_threshold_of_their_pooled_known_scores():
    """Labels with 1-9 positives get the best threshold of their scores side by side, where the
    unknown entries count nowhere (not as negatives)."""
    labels, logits = many_labels_problem()
    positives = (labels > 0).sum(axis=0)
    rare = np.flatnonzero((positives > 0) & (positives < curves.MIN_POSITIVES_FOR_OWN_THRESHOLD))
    known = labels[:, rare] >= 0
    logits[:, rare] = np.where(known, logits[:, rare], 40.0)  # Counted as negatives, they would move it.
    pooled = metrics.ExactScores(logits[:, rare][known][:, None], labels[:, rare][known][:, None])
    expected = curves.best_thresholds(pooled.groups([0], by_probability=True))[0][0]
    thresholds = metrics.tune(metrics.ExactScores(logits, labels))[0]
    assert len(rare) > 10 and (~known).sum() > 100
    np.testing.assert_array_equal(thresholds[rare], np.float32(expected))


def test_paper_figures_equal_sklearn():
    """CP/CR/CF1 (per-class, over labels with positives) and OP/OR/OF1 (overall) as papers report them."""
    labels, logits = saturated_problem(2, 2000)
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.45, 0.5, 0.5], np.float32)
    paper = metrics.counts.figures(device_totals(labels, logits, thresholds))["paper"]
    predicted = probabilities_of(logits) >= thresholds
    present = labels.sum(axis=0) > 0
    cp = sk.precision_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    cr = sk.recall_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
    assert paper["CP"] == pytest.approx(cp) and paper["CR"] == pytest.approx(cr)
    assert paper["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert paper["OP"] == pytest.approx(sk.precision_score(labels, predicted, average="micro"))
    assert paper["OF1"] == pytest.approx(sk.f1_score(labels, predicted, average="micro"))


def test_bins_follow_the_edges_exactly_over_the_whole_real_line():
    for num_bins in (64, 1000, 4096):
        edges = histogram.edges(num_bins)
        assert len(edges) == num_bins - 1 and np.all(np.diff(edges) > 0) and 0.0 in edges
        rng = np.random.default_rng(num_bins)
        values = np.concatenate(
            [
                edges,
                np.nextafter(edges[edges != 0], -np.inf),  # (Below 0: a denormal, which TF flushes to 0.)
                rng.normal(scale=10, size=5000),
                rng.normal(scale=1e6, size=200),
                [np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0, 16.0, -16.0],
            ]
        ).astype(np.float32)
        expected = np.searchsorted(edges, values, side="right")  # Bin k: edge[k-1] <= v < edge[k].
        np.testing.assert_array_equal(histogram.bin_indices(tf.constant(values), num_bins).numpy(), expected)


def test_bins_per_label_keep_memory_within_the_budget():
    # 100,000 labels, 2 replicas: far below the 64 KB a label a replica of fixed 8,192-bin histograms.
    bins = histogram.bins_per_label(250_000_000, 100_000, 2)
    assert 2 * bins * 4 < 16 * 1024 and 100_000 * 2 * bins * 2 <= 250_000_000
    assert histogram.bins_per_label(250_000_000, 10, 1) == histogram.MAX_BINS
    assert histogram.bins_per_label(1000, 10, 1) == histogram.MIN_BINS


@pytest.mark.parametrize("num_bins", [64, 512, 4096])
def test_histogram_figures_stay_within_their_stated_bounds(num_bins):
    labels, logits = saturated_problem(num_bins)
    logits[:, 3] = np.random.default_rng(1).normal(scale=0.01, size=len(logits))  # One label crowded in a bin.
    thresholds = np.full(len(NAMES), 0.5, np.float32)
    totals = device_totals(labels, logits, thresholds, num_bins=num_bins)
    source = metrics.Histograms(totals.pop("histograms"), len(NAMES), num_bins)
    totals = {k: np.asarray(v, np.float64) for k, v in totals.items()}
    summary = metrics.summarize(totals, source, NAMES, thresholds, False)
    assert not summary["curves"]["exact"] and summary["curves"]["bins_per_label"] == num_bins
    for j, name in enumerate(NAMES):
        row = summary["labels"][name]
        if 0 < labels[:, j].sum() < len(labels):
            ap_gap = abs(row["average_precision"] - sk.average_precision_score(labels[:, j], logits[:, j]))
            auc_gap = abs(row["roc_auc"] - sk.roc_auc_score(labels[:, j], logits[:, j]))
            assert ap_gap <= row["average_precision_bound"] + 1e-9, (name, ap_gap)
            assert auc_gap <= row["roc_auc_bound"] + 1e-9, (name, auc_gap)
    # Saturated scores are kept apart: l4's scores, mostly beyond +-16, are not lumped in end bins.
    assert (np.abs(logits[:, 4]) > 16).mean() > 0.5
    if num_bins >= 512:
        assert (
            summary["labels"]["l4"]["roc_auc_bound"] < 0.01 and summary["labels"]["l4"]["average_precision_bound"] < 0.1
        )


def test_pr_curve_counts_equal_counts_at_each_threshold():
    labels, logits = saturated_problem(3, 1500)
    source = metrics.ExactScores(logits, labels)
    chosen = [0, 1, 2, 5]
    pr = metrics.pr_curve_counts(source, chosen, 11)
    for i, threshold in enumerate(np.linspace(0, 1, 11)):
        with np.errstate(divide="ignore"):
            cut = np.log(threshold) - np.log1p(-threshold)
        predicted = logits[:, chosen] >= cut
        np.testing.assert_array_equal(pr["true_positive_counts"][:, i], (predicted & labels[:, chosen]).sum(0))
        np.testing.assert_array_equal(pr["false_positive_counts"][:, i], (predicted & ~labels[:, chosen]).sum(0))
    total = pr["true_positive_counts"] + pr["false_negative_counts"]
    np.testing.assert_array_equal(total, np.broadcast_to(labels[:, chosen].sum(0)[:, None], total.shape))


def test_tuned_thresholds_maximise_f1_and_sit_between_scores():
    labels, logits = saturated_problem(4, 2000)
    logits[:, 4] = np.where(labels[:, 4], 2.0, -2.0) + np.random.default_rng(0).normal(size=len(logits))
    thresholds = metrics.tune_thresholds(metrics.ExactScores(logits, labels))
    probabilities = probabilities_of(logits)
    assert thresholds[5] == 0.5  # No positives: keeps the default.
    for j in (0, 1, 2, 3, 4):
        candidates = np.unique(probabilities[:, j])
        best = max(sk.f1_score(labels[:, j], probabilities[:, j] >= c) for c in candidates)
        assert sk.f1_score(labels[:, j], probabilities[:, j] >= thresholds[j]) == pytest.approx(best)
        assert thresholds[j] not in candidates or thresholds[j] == 1.0  # Between two scores, not on one.


def test_tied_best_f1_takes_the_threshold_nearest_one_half():
    labels = np.array([[1], [0], [1], [0]], bool)
    logits = np.array([[5.0], [1.0], [-1.0], [-5.0]], np.float32)
    p = curves.sigmoid(logits[:, 0])
    # F1 after each score: 2/3, 1/2, 4/5, 2/3: the threshold goes half-way between p(-1) and p(-5).
    threshold = metrics.tune_thresholds(metrics.ExactScores(logits, labels))[0]
    assert threshold == pytest.approx((p[2] + p[3]) / 2, rel=1e-6)
    # F1 2/3 after the first score and after the last (threshold 0): the one nearer 0.5 wins.
    labels = np.array([[1], [0], [0], [1]], bool)
    threshold = metrics.tune_thresholds(metrics.ExactScores(logits, labels))[0]
    assert threshold == pytest.approx((p[0] + p[1]) / 2, rel=1e-6)


def reference_at_k(labels, logits, inv_propensity, k):
    """precision@k, nDCG@k, psprecision@k, psnDCG@k as pyxclib computes them, one example at a time."""
    discounts = 1 / np.log2(np.arange(k) + 2)
    p = n = ps_found = ps_best = psn_found = psn_best = 0.0
    for y, s in zip(labels, logits):
        top = np.argsort(-s, kind="stable")[:k]
        hits = y[top].astype(float)
        z = discounts[: min(k, int(y.sum()))].sum() or 1.0
        weighted = hits * inv_propensity[top]
        best = np.sort(y * inv_propensity)[::-1][:k]
        p += hits.sum() / k
        n += (hits * discounts[: len(hits)]).sum() / z
        ps_found, ps_best = ps_found + weighted.sum(), ps_best + best.sum()
        psn_found += (weighted * discounts[: len(hits)]).sum() / z
        psn_best += (best * discounts[: len(best)]).sum() / z
    m = len(labels)
    return {
        f"precision@{k}": p / m,
        f"ndcg@{k}": n / m,
        f"psprecision@{k}": ps_found / ps_best,
        f"psndcg@{k}": psn_found / psn_best,
    }


@pytest.mark.parametrize(
    "static_shapes,search_max_positives,search_block",
    [(False, ranking.SEARCH_MAX_POSITIVES, ranking.SEARCH_BLOCK), (False, ranking.SEARCH_MAX_POSITIVES, 4)]
    + [(False, 0, ranking.SEARCH_BLOCK), (True, ranking.SEARCH_MAX_POSITIVES, ranking.SEARCH_BLOCK)],
)
def test_ranking_block_equals_sklearn_and_the_numpy_reference(
    static_shapes, search_max_positives, search_block, monkeypatch
):
    """Every path: buckets between the positive scores (searched in one block, or 3 of 4), a search
    in the sorted scores (beyond SEARCH_MAX_POSITIVES positives), a sort per example (static shapes)."""
    monkeypatch.setattr(ranking, "SEARCH_MAX_POSITIVES", search_max_positives)
    monkeypatch.setattr(ranking, "SEARCH_BLOCK", search_block)
    rng = np.random.default_rng(5)
    labels = rng.random((700, 12)) < np.linspace(0.02, 0.5, 12)
    labels[:20] = False  # No positives.
    labels[20:30] = True  # Every label positive.
    logits = (np.where(labels, 1.0, -1.0) + rng.normal(scale=1.5, size=labels.shape)).astype(np.float32)
    logits[30:200] = np.round(logits[30:200])  # Ties inside examples.
    logits[200:260, :6] = 40.0  # Saturated ties.
    train_counts = rng.integers(0, 500, size=12)
    inv_propensity = propensity.inverse_propensities(train_counts, 5000)
    totals = device_totals(labels, logits, np.full(12, 0.5, np.float32), inv_propensity, 0, 128, static_shapes)
    block = ranking.figures(totals, float(totals["num_examples"]), propensity_scored=True)
    assert set(block) == set(ranking.NAMES)
    assert block["label_ranking_average_precision"] == pytest.approx(
        sk.label_ranking_average_precision_score(labels, logits), abs=1e-5
    )
    assert block["coverage_error"] == pytest.approx(sk.coverage_error(labels, logits), rel=1e-5)
    assert block["ranking_loss"] == pytest.approx(sk.label_ranking_loss(labels, logits), abs=1e-5)
    # @k: without ties in the top k, so that the reference and top_k pick the same labels.
    distinct = rng.normal(size=labels.shape).astype(np.float32) + labels
    totals = device_totals(labels, distinct, np.full(12, 0.5, np.float32), inv_propensity, batch_size=128)
    block = ranking.figures(totals, float(totals["num_examples"]), propensity_scored=True)
    for k in ranking.KS:
        for name, value in reference_at_k(labels, distinct, inv_propensity, k).items():
            assert block[name] == pytest.approx(value, rel=1e-5), name
    assert ranking.figures(totals, float(totals["num_examples"]), propensity_scored=False)["psprecision@1"] is None


def test_ranking_at_the_positives_equals_the_sort_per_example_with_fewer_positives_than_k():
    """Examples with at most 1 or 2 positives (K = 1 or 2, fewer than the 5 of @5: the best
    propensity-weighted positives are padded): the same sums as the static-shape sort."""
    rng = np.random.default_rng(9)
    num_labels = 30
    inv_propensity = propensity.inverse_propensities(rng.integers(0, 100, size=num_labels), 1000)
    for most in (1, 2):
        labels = np.zeros((32, num_labels), np.float32)
        for row, count in enumerate(rng.integers(0, most + 1, size=32)):
            labels[row, rng.choice(num_labels, count, replace=False)] = 1
        labels[:8] = np.where(rng.random((8, num_labels)) < 0.2, -1, labels[:8])  # Some unknown.
        logits = np.round(rng.normal(size=labels.shape), 1).astype(np.float32)
        args = (labels, logits, np.ones(32, np.float32), inv_propensity.astype(np.float32))
        at_positives = ranking.batch_sums(*args, static_shapes=False)
        for name, value in ranking.batch_sums(*args, static_shapes=True).items():
            assert float(at_positives[name]) == pytest.approx(float(value), rel=1e-6), name


def test_inverse_propensities_follow_jain_et_al():
    counts, num_examples = np.array([0, 1, 10, 1000]), 5000
    c = (np.log(num_examples) - 1) * 2.5**0.55
    np.testing.assert_allclose(
        propensity.inverse_propensities(counts, num_examples), 1 + c * (counts + 1.5) ** -0.55, rtol=1e-6
    )


def test_best_metric_may_name_every_ranking_figure():
    names = {f"ranking/{n}" for n in ranking.NAMES}
    assert names <= set(config.BEST_METRICS)
    summary = {"ranking": {"precision@1": 0.25, "psprecision@1": None}}
    assert train.figure(summary, "ranking/precision@1") == 0.25
    assert np.isnan(train.figure(summary, "ranking/psprecision@1"))
    assert "ranking/ranking_loss" in best.LOWER_IS_BETTER


def test_reports_at_many_labels_show_the_most_and_least_frequent_and_point_to_the_csv(tmp_path):
    from trainer.reporting import files, png
    from trainer.reporting.table import LISTED_EACH_END, by_support, listed_labels, table

    rng = np.random.default_rng(6)
    names = [f"tag{j:03d}" for j in range(120)]
    labels = rng.random((400, 120)) < np.linspace(0.3, 0.001, 120)
    logits = (np.where(labels, 2.0, -2.0) + rng.normal(scale=2, size=labels.shape)).astype(np.float32)
    thresholds = np.full(120, 0.5, np.float32)
    totals = {k: np.asarray(v, np.float64) for k, v in device_totals(labels, logits, thresholds).items()}
    source = metrics.ExactScores(logits, labels)
    summary = metrics.summarize(totals, source, names, thresholds, False)
    summary.update(step=10, split="eval", loss=0.1)
    shown, left_out = listed_labels(summary)
    assert len(shown) == 2 * LISTED_EACH_END and len(left_out) == 120 - len(shown)
    # The least frequent shown are those with positives: a row without any has no figures to show.
    with_positives = [n for n in by_support(summary) if summary["labels"][n]["support"] > 0]
    assert len(with_positives) < 120  # Labels without positives exist here, and are left out.
    assert shown[0] == by_support(summary)[0] and shown[-1] == with_positives[-1]
    assert all(summary["labels"][n]["support"] > 0 for n in shown)
    lines = table(summary, "title", "eval-10").splitlines()
    assert len(lines) < 60
    assert any(f"... {len(left_out)} labels" in line and "metrics/eval-10.csv" in line for line in lines)
    assert any(line.startswith("precision@1=") for line in lines)
    path = png.write_png(str(tmp_path), summary, summary, source)
    assert os.path.getsize(path) > 10_000
    files.write_metrics(str(tmp_path), "eval-10", summary)
    with open(tmp_path / "metrics" / "eval-10.csv") as f:
        assert len(f.readlines()) == 121  # Every label in the CSV.


def test_prediction_rows_hold_exact_float32_and_the_top_k():
    from trainer.reporting.files import prediction_rows

    logits = np.array([[40.0, 50.0, -3.0, 0.1, 1e-3]], np.float32)
    names, thresholds = np.array(list("abcde")), np.full(5, 0.5, np.float32)
    row = json.loads(json.dumps(prediction_rows(logits, names, thresholds)[0]))
    np.testing.assert_array_equal(np.array(row["logits"], np.float32), logits[0])
    np.testing.assert_array_equal(np.array(row["probabilities"], np.float32), probabilities_of(logits)[0])
    assert row["labels"] == ["a", "b", "d", "e"]
    top = json.loads(json.dumps(prediction_rows(logits, names, thresholds, top_k=3)[0]))
    # a and b both have probability 1.0 in float32: their logits order them.
    assert [name for name, _ in top["top_k"]] == ["b", "a", "d"] and set(top) == {"labels", "top_k"}


def test_the_top_k_ids_equal_a_stable_sort_of_every_label():
    """With ties at the k-th value, NaN logits and rows with fewer numbers than k."""
    from trainer.reporting.files import top_k_ids

    rng = np.random.default_rng(5)
    logits = rng.integers(-3, 4, size=(50, 40)).astype(np.float32)  # Many ties.
    logits[::7, ::3] = np.nan
    logits[3, 2:] = np.nan  # Two numbers, then NaN.
    for k in (1, 3, 8, 40, 50):
        expected = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(np.stack(top_k_ids(logits, k)), expected, err_msg=f"k={k}")
