"""Per-example multi-label losses from float32 logits: a dict from `--loss` to a builder.

Labels are 1 (on), 0 (off) or -1 (unknown: partially labelled data). Each loss returns one value
per example: its entries' losses summed over the KNOWN labels and divided by the number of labels
(with every label known, the mean over labels). The step averages them with
`tf.nn.compute_average_loss(global_batch_size=...)` because the all-reduce then sums the
replicas' contributions into the global mean; with unknown entries it rescales by the global
count of known entries (trainer.steps), so the loss is the mean over the batch's known entries.
"""

from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from trainer.config import LossConfig

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels [B, L], logits [B, L]) -> [B]


def known_and_targets(labels):
    """(known bool [B, L], targets float [B, L]): which entries are known, and labels with unknown as 0."""
    return labels >= 0, tf.maximum(labels, 0.0)


def _per_example(known, per_entry):
    """Sum over known labels / number of labels (exactly today's mean when every label is known)."""
    return tf.reduce_mean(tf.where(known, per_entry, 0.0), axis=-1)


def _log_p(logits):
    return -tf.nn.softplus(-logits)  # log(sigmoid(x)), stable for large |x|.


def _log_not_p(logits):
    return -tf.nn.softplus(logits)  # log(1 - sigmoid(x)).


def bce(config: LossConfig, positive_fraction: np.ndarray) -> LossFn:
    """Binary cross-entropy."""
    del config, positive_fraction

    def loss(labels, logits):
        known, targets = known_and_targets(labels)
        return _per_example(known, tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))

    return loss


def positive_weights(config: LossConfig, positive_fraction: np.ndarray) -> np.ndarray:
    """negatives / positives per label, in [1, max_positive_weight]; labels never positive get the cap.

    `positive_fraction` is over the examples where the label is known (data.Split.positive_fraction)."""
    fraction = np.asarray(positive_fraction, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = np.where(fraction > 0, (1 - fraction) / np.maximum(fraction, 1e-12), np.inf)
    return np.clip(ratio, 1.0, config.max_positive_weight).astype(np.float32)


def weighted_bce(config: LossConfig, positive_fraction: np.ndarray) -> LossFn:
    """BCE with positives of label j weighted by its negatives/positives ratio in the training data."""
    weights = tf.constant(positive_weights(config, positive_fraction))

    def loss(labels, logits):
        known, targets = known_and_targets(labels)
        per_label = tf.nn.weighted_cross_entropy_with_logits(labels=targets, logits=logits, pos_weight=weights)
        return _per_example(known, per_label)

    return loss


def focal(config: LossConfig, positive_fraction: np.ndarray) -> LossFn:
    """Focal loss (Lin et al. 2017): BCE scaled by (1 - p_t)^gamma, down-weighting easy examples."""
    del positive_fraction
    gamma = config.focal_gamma

    def loss(labels, logits):
        known, labels = known_and_targets(labels)
        p = tf.sigmoid(logits)
        p_t = labels * p + (1 - labels) * (1 - p)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return _per_example(known, tf.pow(1 - p_t, gamma) * ce)

    return loss


def asl(config: LossConfig, positive_fraction: np.ndarray) -> LossFn:
    """Asymmetric loss (Ridnik et al. 2021): separate focusing for positives and negatives, and
    negatives' probabilities shifted down by `asl_clip` so easy negatives contribute nothing."""
    del positive_fraction
    gamma_pos, gamma_neg, clip = config.asl_gamma_pos, config.asl_gamma_neg, config.asl_clip

    def loss(labels, logits):
        known, labels = known_and_targets(labels)
        p = tf.sigmoid(logits)
        positive = tf.pow(1 - p, gamma_pos) * _log_p(logits)
        if clip > 0:
            p_shifted = tf.maximum(p - clip, 0.0)
            log_not_p = tf.math.log(tf.minimum(tf.sigmoid(-logits) + clip, 1.0))
        else:
            p_shifted, log_not_p = p, _log_not_p(logits)
        negative = tf.pow(p_shifted, gamma_neg) * log_not_p
        return -_per_example(known, labels * positive + (1 - labels) * negative)

    return loss


LOSSES: Dict[str, Callable[[LossConfig, np.ndarray], LossFn]] = {
    "bce": bce,
    "weighted_bce": weighted_bce,
    "focal": focal,
    "asl": asl,
}
