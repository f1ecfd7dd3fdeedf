"""Label propensities for the propensity-scored ranking figures (Jain, Prabhu and Varma, KDD 2016).

A label seen n_l times among N training examples is observed with propensity
  p_l = 1 / (1 + C (n_l + B)^-A),   C = (ln N - 1) (B + 1)^A,   A = 0.55, B = 1.5,
so rare labels weigh more: psprecision@k and psndcg@k weight each correct label by 1 / p_l.
The counts are the TRAINING split's (saved in the model dir at training time), never the
evaluated split's.
"""

import numpy as np

A, B = 0.55, 1.5


def inverse_propensities(
    train_label_counts: np.ndarray, num_train_examples: int, a: float = A, b: float = B
) -> np.ndarray:
    """1 / p_l for each label, float32 [L]."""
    counts = np.asarray(train_label_counts, np.float64)
    c = (np.log(num_train_examples) - 1.0) * (b + 1.0) ** a
    return (1.0 + c * (counts + b) ** -a).astype(np.float32)
