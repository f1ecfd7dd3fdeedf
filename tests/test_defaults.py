"""What makes the default recipe hold up on real data (bench/vs_logistic_regression.py, docs/quality.md):
binary features pass unscaled, and labels with a handful of positives share one tuned threshold."""

import numpy as np
import pytest
from sklearn import metrics as sk

from trainer import config, data, layers, metrics, models


def test_mlp_standardises_continuous_features_and_leaves_binary_ones_as_they_are():
    rng = np.random.default_rng(0)
    continuous = rng.normal(3.0, 2.0, size=(500, 1))
    rare_word = (rng.random((500, 1)) < 0.01).astype(np.float64)  # Standardised, its 1 would become ~10.
    counts = rng.poisson(0.5, size=(500, 1)).astype(np.float64)  # Not binary: 2, 3, ... occur.
    features = np.concatenate([continuous, rare_word, counts], axis=1).astype(np.float32)
    labels = (rng.random((500, 2)) < 0.3).astype(np.float32)
    split = data.from_arrays({"features": features}, labels, ["a", "b"])
    model = models.build_mlp(config.ModelConfig(hidden_units=(4,)), split.spec)
    models.adapt(model, split)
    (normalization,) = [layer for layer in model.layers if isinstance(layer, layers.FeatureNormalization)]
    out = np.asarray(normalization(features))
    assert out[:, 0].mean() == pytest.approx(0, abs=1e-4) and out[:, 0].std() == pytest.approx(1, abs=1e-3)
    np.testing.assert_array_equal(out[:, 1], rare_word[:, 0])
    assert out[:, 2].std() == pytest.approx(1, abs=1e-3)


def test_labels_with_few_positives_share_the_threshold_that_maximises_their_pooled_f1():
    rng = np.random.default_rng(1)
    # Label 0 is common (its own threshold); labels 1-3 have 2-4 positives; label 4 none.
    labels = np.zeros((400, 5), bool)
    labels[:, 0] = rng.random(400) < 0.3
    for j, count in ((1, 2), (2, 3), (3, 4)):
        labels[rng.choice(400, count, replace=False), j] = True
    probabilities = np.clip(0.3 * labels + 0.6 * rng.random(labels.shape), 1e-4, 1 - 1e-4).astype(np.float32)
    logits = (np.log(probabilities) - np.log1p(-probabilities)).astype(np.float32)
    source = metrics.ExactScores(logits, labels)
    tuned = metrics.tune_thresholds(source)
    assert tuned[4] == 0.5  # No positives: keeps the default.
    assert tuned[1] == tuned[2] == tuned[3]
    rare = slice(1, 4)
    scored = metrics.curves.sigmoid(logits[:, rare]).astype(np.float32)
    pooled_f1 = sk.f1_score(labels[:, rare], scored >= tuned[1], average="micro")
    for threshold in np.unique(scored):  # Every threshold the pooled scores allow.
        assert pooled_f1 >= sk.f1_score(labels[:, rare], scored >= threshold, average="micro") - 1e-9
    # With the minimum lowered to 1, each gets its own (on so few positives, a perfect fit).
    own = metrics.tune_thresholds(source, min_positives=1)
    assert len({float(t) for t in own[1:4]}) > 1
    assert own[0] == tuned[0]
