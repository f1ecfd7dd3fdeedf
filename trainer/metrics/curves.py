"""Per-label ranking curves on the host: average precision, ROC-AUC, their error bounds, F1-optimal
thresholds and PR curves, from a label's scores grouped from the highest down.

Two sources give the groups (both have `num_labels`, `exact`, `positives_per_label()`,
`groups(indices)` and `curve_groups(indices)`):
- `exact.ExactScores`: every example's logit and label (gathered from the devices when the split
  fits --exact_metrics_budget). A group is one distinct score, so ties are grouped exactly as
  scikit-learn groups them and AP / ROC-AUC equal `average_precision_score` / `roc_auc_score`.
- `histogram.Histograms`: counts of positives and negatives per score bin (beyond the budget).
  A group is one bin: scores inside a bin count as tied, and `bounds` gives, per label, how far
  the exact figures can be from the ones reported.

For one label with P positives and N negatives, groups g = 1..G from the highest score down,
p_g / n_g positives / negatives in group g, TP_g / FP_g those in groups 1..g:
  AP      = sum_g (p_g / P) * TP_g / (TP_g + FP_g)
  ROC-AUC = sum_g p_g * (N - FP_g + n_g / 2) / (P * N)     (a tied positive-negative pair counts 1/2)
Both are undefined for a label without positives, whose threshold stays the default: such labels
(most of them, at 100,000 labels and a few thousand examples) are never grouped. Labels are
processed in chunks, so the host never holds more than one chunk's sorted copy.
"""

import dataclasses
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np

from trainer.metrics.counts import divide


@dataclasses.dataclass
class Groups:
    """The score groups of several labels, flat: label i owns entries offsets[i]:offsets[i + 1],
    highest score first. `scores` is the lowest score of a group (a bin's lower edge); `cuts` the
    probability threshold that predicts exactly this group and those above it."""

    offsets: np.ndarray  # [C + 1] int64
    scores: np.ndarray  # [G] float64
    cuts: np.ndarray  # [G] float64
    positives: np.ndarray  # [G] float64
    negatives: np.ndarray  # [G] float64

    @property
    def segment(self) -> np.ndarray:
        """The label (0..C-1) of each group."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def cumulative(self, values: np.ndarray) -> np.ndarray:
        """Per-label running sum of `values` over the groups (inclusive)."""
        total = np.cumsum(values)
        before = np.concatenate([[0.0], total])[self.offsets[:-1]]
        return total - np.repeat(before, np.diff(self.offsets))

    def per_label_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.segment, weights=values, minlength=len(self.offsets) - 1)


def between(scores: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """A float32 strictly above `lower` and at most `scores` (half-way where it can be), so a float
    rounding of either score cannot cross it; -inf where there is no lower score (0 as a probability)."""
    with np.errstate(over="ignore", invalid="ignore"):
        middle = ((scores.astype(np.float64) + lower) / 2).astype(np.float32)
    middle = np.where(middle > lower, middle, np.nextafter(lower, np.float32(np.inf)))
    return np.where(np.isfinite(lower), middle, -np.inf)


def label_chunks(source, labels: np.ndarray) -> Iterator[np.ndarray]:
    """The label indices `labels` in chunks the source can group at once."""
    size = source.chunk_size()
    for start in range(0, len(labels), size):
        yield labels[start : start + size]


def labels_with_positives(source) -> np.ndarray:
    """The indices of the labels with a positive (the only ones with curves to compute)."""
    return np.flatnonzero(source.positives_per_label() > 0)


def curve_figures(groups: Groups) -> Dict[str, np.ndarray]:
    """Per label of `groups`: average_precision, roc_auc (NaN where undefined: no positives, or
    no negatives for ROC-AUC) and their error bounds (`*_bound`, 0 for exact scores)."""
    p, n = groups.positives, groups.negatives
    tp, fp = groups.cumulative(p), groups.cumulative(n)
    num_pos, num_neg = groups.per_label_sum(p), groups.per_label_sum(n)
    pos_of, neg_of = num_pos[groups.segment], num_neg[groups.segment]
    share = divide(p, pos_of)
    average_precision = groups.per_label_sum(share * divide(tp, tp + fp))
    roc_auc = groups.per_label_sum(divide(p * (neg_of - fp + n / 2), pos_of * neg_of))
    # Inside a group the order of its positives and negatives is unknown. Each positive's
    # precision lies between (T+1)/(T+1+F+n) (all the group's negatives first) and (T+p)/(T+p+F)
    # (all of them last), T, F counted above the group; each tied pair is worth 0 or 1, not 1/2.
    above_tp, above_fp = tp - p, fp - n
    low = share * divide(above_tp + 1, above_tp + 1 + above_fp + n)
    high = share * divide(tp, tp + above_fp)
    reported = share * divide(tp, tp + fp)
    ap_bound = groups.per_label_sum(np.maximum(reported - low, high - reported))
    auc_bound = groups.per_label_sum(divide(p * n / 2, pos_of * neg_of))
    return {
        "average_precision": np.where(num_pos > 0, average_precision, np.nan),
        "roc_auc": np.where((num_pos > 0) & (num_neg > 0), roc_auc, np.nan),
        "average_precision_bound": np.where(num_pos > 0, ap_bound, np.nan),
        "roc_auc_bound": np.where((num_pos > 0) & (num_neg > 0), auc_bound, np.nan),
    }


def sigmoid(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-logits))


F1 = ("f_beta", 1.0)  # The default --threshold_objective, as (kind, value): see config.threshold_objective.


def _objective_scores(groups: Groups, objective) -> Tuple[np.ndarray, np.ndarray]:
    """Per group (the threshold that predicts it and those above): the objective's value, and
    whether the group meets the objective's constraint (always, for F-beta)."""
    kind, value = objective
    tp, fp = groups.cumulative(groups.positives), groups.cumulative(groups.negatives)
    num_pos = groups.per_label_sum(groups.positives)[groups.segment]
    precision, recall = divide(tp, tp + fp), divide(tp, num_pos)
    if kind == "f_beta":
        b2 = value**2
        return divide((1 + b2) * tp, b2 * num_pos + tp + fp), np.ones(len(tp), bool)
    if kind == "precision_at_recall":
        feasible = recall >= value - 1e-12
        return np.where(feasible, precision, -1.0), feasible
    feasible = precision >= value - 1e-12  # recall_at_precision
    # A label that never reaches the precision falls back to its best achievable precision.
    met = np.zeros(len(groups.offsets) - 1, bool)
    np.logical_or.at(met, groups.segment, feasible)
    return np.where(met[groups.segment], np.where(feasible, recall, -1.0), precision), feasible


def best_thresholds(groups: Groups, default: float = 0.5, objective=F1) -> Tuple[np.ndarray, np.ndarray]:
    """Per label of `groups`: (the probability threshold that maximises `objective` (ties: the one
    nearest `default`), whether the objective's constraint was met). Labels without positives,
    or whose best value is 0, keep `default`; they count as met.

    Exact scores put the threshold between two distinct float32 probabilities (half-way where it
    can), bins at a bin edge.
    """
    score, feasible = _objective_scores(groups, objective)
    segment = groups.segment
    num_labels = len(groups.offsets) - 1
    best = np.full(num_labels, -1.0)
    np.maximum.at(best, segment, score)
    met = np.zeros(num_labels, bool)
    np.logical_or.at(met, segment, feasible)
    probabilities = np.maximum(groups.cuts, 0.0)  # -inf logit: predict every example.
    distance = np.where(score >= best[segment] - 1e-12, np.abs(probabilities - default), np.inf)
    # Per label, the candidate nearest `default`: sort by (label, distance), take each label's first.
    order = np.lexsort((distance, segment))
    with_groups = np.flatnonzero(np.diff(groups.offsets) > 0)
    first = order[groups.offsets[with_groups]]
    keep = best[with_groups] > 0
    thresholds = np.full(num_labels, default)
    thresholds[with_groups[keep]] = probabilities[first[keep]]
    has_positives = groups.per_label_sum(groups.positives) > 0
    return thresholds, met | ~has_positives


# Labels with fewer positives than this in the tuning split share one threshold (see `tune`).
MIN_POSITIVES_FOR_OWN_THRESHOLD = 10


def tune(
    source, objective=F1, default: float = 0.5, min_positives: int = MIN_POSITIVES_FOR_OWN_THRESHOLD
) -> Tuple[np.ndarray, np.ndarray]:
    """`best_thresholds` for every label of `source`: (float32 probability thresholds, met [L] bool).

    Labels with 1 to `min_positives` - 1 positives share one threshold, the best for their pooled
    scores: a threshold fitted to a handful of positives does not carry over to new data (tuned on
    a small held-out part of a many-label set it drops near 0 and floods the predictions with
    false positives). `min_positives` 1 gives every label its own."""
    # Labels without positives keep `default` and count as met, as best_thresholds leaves them.
    thresholds, met = np.full(source.num_labels, default), np.ones(source.num_labels, bool)
    for indices in label_chunks(source, labels_with_positives(source)):
        groups = source.groups(indices, by_probability=True)
        thresholds[indices], met[indices] = best_thresholds(groups, default, objective)
    positives = source.positives_per_label()
    rare = np.flatnonzero((positives > 0) & (positives < min_positives))
    pooled = source.pooled(rare) if len(rare) > 1 else None
    if pooled is not None:
        pooled_threshold, pooled_met = best_thresholds(pooled.groups([0], by_probability=True), default, objective)
        thresholds[rare], met[rare] = pooled_threshold[0], pooled_met[0]
    return thresholds.astype(np.float32), met


def tune_thresholds(source, default: float = 0.5, min_positives: int = MIN_POSITIVES_FOR_OWN_THRESHOLD) -> np.ndarray:
    """The F1-optimal thresholds of every label of `source` (rare labels pooled, see `tune`)."""
    return tune(source, F1, default, min_positives)[0]


def all_curve_figures(source) -> Dict[str, np.ndarray]:
    """`curve_figures` for every label of `source`, each [L] (NaN for the labels without positives)."""
    names = ("average_precision", "roc_auc", "average_precision_bound", "roc_auc_bound")
    result = {name: np.full(source.num_labels, np.nan) for name in names}
    for indices in label_chunks(source, labels_with_positives(source)):
        for name, values in curve_figures(source.curve_groups(indices)).items():
            result[name][indices] = values
    if source.exact:  # Groups are true ties, grouped as scikit-learn groups them: no error.
        for name in ("average_precision_bound", "roc_auc_bound"):
            result[name] = np.where(np.isnan(result[name]), np.nan, 0.0)
    return result


def precision_recall(source, label: int):
    """One label's curve, (recall, precision) at each group from the highest score down."""
    groups = source.groups([label])
    tp, fp = np.cumsum(groups.positives), np.cumsum(groups.negatives)
    return divide(tp, tp[-1] if len(tp) else 0), divide(tp, tp + fp)


def pr_curve_counts(source, labels: Sequence[int], num_thresholds: int = 201) -> Dict[str, np.ndarray]:
    """For `labels`, TP/FP/TN/FN/precision/recall at probability thresholds i / (num_thresholds - 1),
    ascending, as TensorBoard's PR-curve plugin wants them; each [len(labels), num_thresholds].

    A score counts as predicted when its logit >= the threshold's logit (histograms: its bin's
    lower edge does, so a threshold rounds up to the next bin edge); 201 thresholds make 0.5 one.
    """
    probabilities = np.linspace(0.0, 1.0, num_thresholds)
    with np.errstate(divide="ignore"):
        cut_logits = np.log(probabilities) - np.log1p(-probabilities)
    shape = (len(labels), num_thresholds)
    tp, fp, tn, fn = (np.zeros(shape) for _ in range(4))
    for row, label in enumerate(labels):
        groups = source.groups([label])
        tp_cum = np.concatenate([[0.0], np.cumsum(groups.positives)])
        fp_cum = np.concatenate([[0.0], np.cumsum(groups.negatives)])
        # Groups (highest first) whose score is >= the cut: a count of the leading groups.
        above = np.searchsorted(-groups.scores, -cut_logits, side="right")
        tp[row], fp[row] = tp_cum[above], fp_cum[above]
        fn[row], tn[row] = tp_cum[-1] - tp[row], fp_cum[-1] - fp[row]
    return {
        "true_positive_counts": tp,
        "false_positive_counts": fp,
        "true_negative_counts": tn,
        "false_negative_counts": fn,
        # Precision is 1 where nothing is predicted positive, as scikit-learn's curve ends.
        "precision": np.where(tp + fp > 0, divide(tp, tp + fp), 1.0),
        "recall": divide(tp, tp + fn),
    }
