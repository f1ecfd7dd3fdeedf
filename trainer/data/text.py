"""Text to token ids: one tokenizer for training, evaluation, prediction and export.

Lowercase, split on every character that is not a letter, digit, mark or `_`, then (by default)
append each pair of adjacent words as a bigram term. Ids come from a vocabulary built once from
the training data and written to `<model_dir>/vocabulary.txt` (line i holds the term of id i), so
a resumed, evaluating, predicting or exported model tokenises exactly as training did.
Id 0 is padding and id 1 stands for every term not in the vocabulary.

Everything is TensorFlow ops, also when the vocabulary is counted, because Python's `re` and
TensorFlow's RE2 disagree about Unicode: one implementation cannot drift from the other.
"""

import collections
from typing import Sequence, Tuple

import tensorflow as tf

from trainer import paths
from trainer.errors import UserError

PAD, OOV = "[PAD]", "[UNK]"  # Never produced by `terms`: brackets are split off.
PAD_ID, OOV_ID = 0, 1
VOCABULARY_FILE = "vocabulary.txt"
# Runs of characters that are neither word characters nor the ASCII whitespace tf.strings.split
# splits on. Leaving whitespace to the split, rather than matching it too, makes the regex match
# a few times per text instead of at every space: 2.5 times faster, the same words.
_NON_WORD = r"[^\pL\pN\pM_ \t\n\v\f\r]+"


def words(texts: tf.Tensor) -> tf.RaggedTensor:
    """Strings [B] -> lowercase words [B, None]."""
    lowered = tf.strings.lower(texts, encoding="utf-8")
    return tf.strings.split(tf.strings.regex_replace(lowered, _NON_WORD, " "))


def terms(texts: tf.Tensor, bigrams: bool) -> tf.RaggedTensor:
    """Words, then (if `bigrams`) each two adjacent words joined by a space: [B, None].

    Words come first so that truncating to the sequence length drops bigrams before words.
    """
    unigrams = words(texts)
    if not bigrams:
        return unigrams
    return tf.concat([unigrams, tf.strings.ngrams(unigrams, 2, separator=" ")], axis=1)


def build_vocabulary(texts: tf.data.Dataset, max_tokens: int, bigrams: bool) -> Tuple[str, ...]:
    """PAD, OOV, then the `max_tokens - 2` most frequent terms of `texts` (batches of strings).

    Ties go to the alphabetically first term, so the same data always gives the same vocabulary
    (every worker of a multi-worker job builds its own and they must agree).
    """
    counts = collections.Counter()
    for flat in texts.map(lambda t: terms(t, bigrams).flat_values).prefetch(2):
        counts.update(flat.numpy().tolist())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: max_tokens - 2]
    return (PAD, OOV) + tuple(term.decode("utf-8") for term, _ in ranked)


class Tokenizer(tf.Module):
    """Strings [B] -> int32 token ids [B, sequence_length], 0-padded and truncated: the ids of
    `terms` in the vocabulary.

    Bigrams are looked up by the pair of their words' keys (integers) rather than by joining the
    words into strings, which was half of the tokenizer's time. A `tf.Module`, so an export can
    track it and its lookup tables travel in the SavedModel.
    """

    def __init__(self, vocabulary: Sequence[str], sequence_length: int, bigrams: bool):
        super().__init__(name="tokenizer")
        if tuple(vocabulary[:2]) != (PAD, OOV):
            raise ValueError(f"a vocabulary starts with {PAD} and {OOV}, got {list(vocabulary[:2])}")
        self.vocab_size = len(vocabulary)
        self.sequence_length = sequence_length
        self.bigrams = bigrams
        ids = {term: i for i, term in enumerate(vocabulary) if i >= 2}
        word_terms = [term for term in ids if " " not in term]
        # A bigram term is two words and a space (what `terms` makes); its words need keys even
        # where they are not terms themselves (a cut vocabulary can keep a bigram and drop a word).
        pairs = [(term, term.split(" ")) for term in ids if " " in term]
        pairs = [(term, words) for term, words in pairs if len(words) == 2 and all(words)]
        extra_words = sorted({word for _, words in pairs for word in words} - set(word_terms))
        keys = word_terms + extra_words
        self.num_keys = len(keys)
        self.word_keys = _Table(tf.constant(keys, tf.string), tf.range(len(keys), dtype=tf.int64), default=-1)
        # Key -> token id: the words only bigrams use, and (last) any word that is no key, are OOV.
        self.word_ids = tf.constant([ids[word] for word in word_terms] + [OOV_ID] * (len(extra_words) + 1), tf.int64)
        position = {word: key for key, word in enumerate(keys)}
        pair_keys = [position[first] * len(keys) + position[second] for _, (first, second) in pairs]
        self.bigram_ids = _Table(
            tf.constant(pair_keys, tf.int64), tf.constant([ids[term] for term, _ in pairs], tf.int64), default=OOV_ID
        )

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        found = words(texts)
        keys = found.with_flat_values(self.word_keys.lookup(found.flat_values))  # -1: not a key.
        known_keys = tf.where(keys.flat_values >= 0, keys.flat_values, self.num_keys)
        ids = keys.with_flat_values(tf.gather(self.word_ids, known_keys))
        if self.bigrams:
            first, second = keys[:, :-1].flat_values, keys[:, 1:].flat_values
            pair_ids = tf.where(
                (first >= 0) & (second >= 0), self.bigram_ids.lookup(first * self.num_keys + second), OOV_ID
            )
            ids = tf.concat([ids, keys[:, :-1].with_flat_values(pair_ids)], axis=1)
        dense = ids.to_tensor(default_value=PAD_ID, shape=[None, self.sequence_length])
        # A text without words becomes one OOV token: a row of padding only would make masked
        # average pooling divide zero by zero.
        first_id = tf.where(ids.row_lengths() > 0, dense[:, 0], OOV_ID)
        return tf.cast(tf.concat([first_id[:, None], dense[:, 1:]], axis=1), tf.int32)


class _Table(tf.Module):
    """A static hash table that may be empty (TensorFlow's refuses no keys): every lookup is then `default`."""

    def __init__(self, keys: tf.Tensor, values: tf.Tensor, default: int):
        super().__init__()
        self.default = default
        self.table = None
        if keys.shape[0]:
            initializer = tf.lookup.KeyValueTensorInitializer(keys, values)
            self.table = tf.lookup.StaticHashTable(initializer, default_value=default)

    def lookup(self, keys: tf.Tensor) -> tf.Tensor:
        if self.table is None:
            return tf.fill(tf.shape(keys), tf.constant(self.default, tf.int64))
        return self.table.lookup(keys)


def read_vocabulary(model_dir: str) -> Tuple[str, ...]:
    """The vocabulary saved in `model_dir`, or () when the run has none (yet)."""
    path = paths.vocabulary(model_dir)
    if not tf.io.gfile.exists(path):
        return ()
    with tf.io.gfile.GFile(path, "rb") as f:
        vocabulary = tuple(f.read().decode("utf-8").split("\n")[:-1])
    if vocabulary[:2] != (PAD, OOV):
        raise UserError(
            f"{path} is not a vocabulary written by this trainer (it must start with {PAD} and {OOV}); "
            "delete it to rebuild it from the training data, or use a new --model_dir."
        )
    return vocabulary


def write_vocabulary(model_dir: str, vocabulary: Sequence[str]) -> str:
    """Writes `vocabulary` atomically (a crash never leaves half a file); returns the path."""
    return paths.atomic_write(paths.vocabulary(model_dir), "".join(f"{term}\n" for term in vocabulary).encode("utf-8"))
