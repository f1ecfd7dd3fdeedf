"""The embedded default data: a learnable multi-label problem from a hidden teacher.

Labels come from a fixed random network over Gaussian features, through a few shared latent
topics (so labels correlate), with per-label biases that make prevalence range from rare to
common (so labels are imbalanced), and logistic noise (so no model is perfect). The same
teacher labels every split; each split draws its own examples. Each example has two views of
the same labels: numeric `features` (for `mlp`), `tokens` (for the text models), where
each label owns a few keyword tokens that appear, noisily, when it is on, and a small RGB
`image` (for `cnn`), where each label that is on adds its own smooth colour pattern.
`Reader` is the data.sources reader of a `synthetic` split.
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from trainer.config import DataConfig
from trainer.data.labels import Stats
from trainer.data.split import parse_batch

SPLIT_IDS = {"train": 1, "eval": 2, "test": 3}
_TOPICS = 6
_KEYWORDS_PER_LABEL = 4
_MIN_NOISE_WORDS = 11  # The token view needs at least this many noise words ...
_GROWN_NOISE_WORDS = 1_000  # ... and has this many when its vocabulary must grow with the labels.
_REFERENCE_BLOCK = 2**24  # Teacher logits computed at once; beyond this, by blocks of labels (memory).


def label_names(num_labels: int):
    return [f"label_{i:02d}" for i in range(num_labels)]


def token_vocab_size(num_labels: int, vocab_size: int) -> int:
    """`vocab_size`, or larger when the labels' keywords leave too few noise words in it."""
    keywords = 1 + num_labels * _KEYWORDS_PER_LABEL  # Padding, then the keywords of each label.
    return vocab_size if vocab_size >= keywords + _MIN_NOISE_WORDS else keywords + _GROWN_NOISE_WORDS


def _teacher(seed: int, num_features: int, num_labels: int):
    rng = np.random.default_rng([seed, 0])
    hidden = rng.normal(size=(num_features, 48)) / np.sqrt(num_features)
    topics = rng.normal(size=(48, _TOPICS)) / np.sqrt(48)
    shared = topics @ rng.normal(size=(_TOPICS, num_labels))
    own = rng.normal(size=(48, num_labels)) / np.sqrt(48)
    weights = 2.5 * (0.7 * shared + 0.5 * own) / np.sqrt(0.7**2 + 0.5**2)
    # Prevalence log-uniform from 2% to 40%: biases are the matching quantiles of the teacher's
    # logits on a reference sample.
    reference = np.tanh(rng.normal(size=(20_000, num_features)) @ hidden)
    prevalence = np.exp(rng.uniform(np.log(0.02), np.log(0.4), size=num_labels))
    block = num_labels if reference.shape[0] * num_labels <= _REFERENCE_BLOCK else 64
    biases = []
    for start in range(0, num_labels, block):
        logits = reference @ weights[:, start : start + block]
        biases += [-np.quantile(logits[:, j], 1 - prevalence[start + j]) for j in range(logits.shape[1])]
    return hidden, weights, np.array(biases)


def make_split(
    split: str,
    num_examples: int,
    num_labels: int,
    num_features: int,
    vocab_size: int,
    sequence_length: int,
    seed: int,
    image_size: int = 16,
):
    """Returns ({"features": float32 [n, F], "tokens": int32 [n, T], "image": float32 [n, S, S, 3]},
    labels float32 [n, L])."""
    hidden, weights, biases = _teacher(seed, num_features, num_labels)
    rng = np.random.default_rng([seed, SPLIT_IDS[split]])
    features = rng.normal(size=(num_examples, num_features))
    logits = np.tanh(features @ hidden) @ weights + biases + 0.5 * rng.logistic(size=(num_examples, num_labels))
    labels = (logits > 0).astype(np.float32)
    tokens = _tokens(labels, vocab_size, sequence_length, rng)
    image = _images(labels, image_size, seed, rng)
    return {"features": features.astype(np.float32), "tokens": tokens, "image": image}, labels


def _images(labels: np.ndarray, size: int, seed: int, rng) -> np.ndarray:
    """Pixels in [0, 1], multiples of 1/255 (as decoded 8-bit images are): the sum of the patterns
    of the labels that are on (random 4x4 colour grids, upsampled), squashed, plus pixel noise."""
    num_labels = labels.shape[1]
    coarse = np.random.default_rng([seed, 4]).normal(size=(num_labels, 4, 4, 3))
    cells = -(-size // 4)
    patterns = np.repeat(np.repeat(coarse, cells, axis=1), cells, axis=2)[:, :size, :size]
    signal = np.einsum("nl,lhwc->nhwc", labels, patterns) / np.sqrt(np.maximum(labels.sum(1), 1))[:, None, None, None]
    pixels = 0.5 + 0.5 * np.tanh(0.8 * signal + 0.4 * rng.normal(size=signal.shape))
    return (np.round(pixels * 255) / 255).astype(np.float32)


def _tokens(labels: np.ndarray, vocab_size: int, sequence_length: int, rng) -> np.ndarray:
    """Token ids (0 is padding): noise words, plus keywords of the labels that are on."""
    num_examples, num_labels = labels.shape
    first_noise = 1 + num_labels * _KEYWORDS_PER_LABEL
    if vocab_size <= first_noise + 10:
        raise ValueError(f"synthetic vocab_size must exceed {first_noise + 10} for {num_labels} labels")
    # Zipf-like noise vocabulary, variable length.
    noise_ranks = np.arange(1, vocab_size - first_noise + 1)
    noise_p = 1.0 / noise_ranks
    noise_p /= noise_p.sum()
    tokens = first_noise + rng.choice(len(noise_ranks), size=(num_examples, sequence_length), p=noise_p)
    lengths = rng.integers(sequence_length // 2, sequence_length + 1, size=num_examples)
    for i in range(num_examples):
        # Each "on" label contributes a keyword with probability 0.8; each "off" label leaks one with 0.05.
        on = np.flatnonzero(labels[i])
        leak = np.flatnonzero((labels[i] == 0) & (rng.random(num_labels) < 0.05))
        chosen = [j for j in on if rng.random() < 0.8] + list(leak)
        words = [1 + j * _KEYWORDS_PER_LABEL + rng.integers(_KEYWORDS_PER_LABEL) for j in chosen]
        positions = rng.choice(lengths[i], size=min(len(words), lengths[i]), replace=False)
        tokens[i, positions] = words[: len(positions)]
        tokens[i, lengths[i] :] = 0
    return tokens.astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Reader:
    """One split of the synthetic problem, in memory (a data.sources reader)."""

    features: Dict[str, np.ndarray]
    labels: np.ndarray  # float32 [n, num_labels]
    label_names: List[str]
    vocab_size: int  # Of the `tokens` view.
    files: Tuple[str, ...] = ()

    def check(self) -> Stats:
        """Nothing to check (the data is made valid); counts only."""
        return Stats(self.labels.sum(axis=0).astype(np.int64), num_examples=len(self.labels))

    def read(
        self, files: Sequence[str], record_shard: Tuple[int, int], in_order: bool, text_bytes: int = 0
    ) -> tf.data.Dataset:
        del files, in_order, text_bytes  # No files; one order; token ids, no text.
        examples = tf.data.Dataset.from_tensor_slices((self.features, self.labels))
        return examples.shard(*record_shard).batch(parse_batch(self.labels.shape[1]))


def open_reader(config: DataConfig, split: str, seed: int) -> Reader:
    """Makes `split` of the synthetic problem the DataConfig's synthetic_* settings describe."""
    vocab_size = token_vocab_size(config.synthetic_labels, config.synthetic_vocab_size)
    if vocab_size != config.synthetic_vocab_size:
        logging.info(
            "Synthetic tokens: a vocabulary of %d ids, not %d, so that the %d labels' keywords leave %d noise words.",
            vocab_size,
            config.synthetic_vocab_size,
            config.synthetic_labels,
            _GROWN_NOISE_WORDS,
        )
    num_examples = config.synthetic_train_examples if split == "train" else config.synthetic_eval_examples
    features, labels = make_split(
        split,
        num_examples,
        config.synthetic_labels,
        config.synthetic_features,
        vocab_size,
        config.synthetic_sequence_length,
        seed,
        config.synthetic_image_size,
    )
    return Reader(features, labels, label_names(config.synthetic_labels), vocab_size)
