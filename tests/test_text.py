"""The tokenizer and vocabulary: what terms are, which ids they get, and that the saved
vocabulary and an exported tokenizer give the same ids as training."""

import os

import numpy as np
import pytest
import tensorflow as tf

from trainer import config as config_lib
from trainer.config import Config, DataConfig
from trainer.data import text
from trainer.errors import UserError


def _terms(strings, bigrams=True):
    return [[t.decode() for t in row] for row in text.terms(tf.constant(strings), bigrams).to_list()]


def _texts(strings, batch_size=2) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(strings).batch(batch_size)


def test_terms_lowercase_split_on_non_word_characters_then_bigrams():
    assert _terms(["Hello, WORLD!! it's  Café_au-lait 42"], bigrams=False) == [
        ["hello", "world", "it", "s", "café_au", "lait", "42"]
    ]
    assert _terms(["a b c", "", "solo"]) == [["a", "b", "c", "a b", "b c"], [], ["solo"]]
    # ASCII whitespace (left to the split) and Unicode spaces (replaced) separate words alike.
    assert _terms(["a\tb\nc\vd\fe\rf g\u00a0h\u2003i"], bigrams=False) == [list("abcdefghi")]


def test_vocabulary_is_most_frequent_first_ties_alphabetical_and_capped():
    vocabulary = text.build_vocabulary(_texts(["b a", "a c", "c a d"]), max_tokens=6, bigrams=False)
    assert vocabulary == (text.PAD, text.OOV, "a", "c", "b", "d")
    capped = text.build_vocabulary(_texts(["b a", "a c", "c a d"]), max_tokens=4, bigrams=False)
    assert capped == (text.PAD, text.OOV, "a", "c")
    with_bigrams = text.build_vocabulary(_texts(["x y", "x y"]), max_tokens=10, bigrams=True)
    assert with_bigrams == (text.PAD, text.OOV, "x", "x y", "y")


def test_tokenizer_pads_truncates_and_marks_unknown_and_empty_texts():
    tokenizer = text.Tokenizer((text.PAD, text.OOV, "a", "b", "a b"), sequence_length=4, bigrams=True)
    ids = tokenizer(tf.constant(["a b", "b zzz a b a", "", "!!!"])).numpy()
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(
        ids,
        [
            [2, 3, 4, 0],  # a, b, "a b", padding
            [3, 1, 2, 3],  # cut to 4: words come before bigrams
            [1, 0, 0, 0],  # no words: one OOV, never a row of padding only
            [1, 0, 0, 0],
        ],
    )


def _ids_of_terms(vocabulary, strings, sequence_length, bigrams):
    """The definition the tokenizer implements: each of `terms` looked up by its string."""
    index = {term: i for i, term in enumerate(vocabulary) if i >= 2}
    rows = [[index.get(t, text.OOV_ID) for t in row][:sequence_length] for row in _terms(strings, bigrams)]
    return np.array([(row or [text.OOV_ID]) + [text.PAD_ID] * (sequence_length - len(row or [0])) for row in rows])


def test_tokenizer_ids_are_the_vocabulary_ids_of_the_terms():
    """Bigrams are looked up by their words' keys, not by string: the ids must be those of the terms,
    also for a bigram whose words are not terms themselves and for every kind of whitespace."""
    strings = [
        "The cat sat on the mat, the cat!", "a\tb\nc\vd\fe\rf g\u00a0h\u2003i", "", "!!!",
        "Café_au-lait 42 ÉCOLE", "x y x y", "ﬁne ß İstanbul", "mat sat", "on on on",
    ]  # fmt: skip
    built = text.build_vocabulary(_texts(strings), max_tokens=40, bigrams=True)
    # A vocabulary that keeps the bigram "zz yy" but neither of its words (or a space-y term no text makes).
    cut = (text.PAD, text.OOV, "the", "cat", "the cat", "zz yy", "cat sat", "on on", "a  b", "e f")
    strings.append("zz yy cat sat zz")
    for vocabulary in (built, cut):
        for bigrams in (True, False):
            for sequence_length in (3, 30):
                ids = text.Tokenizer(vocabulary, sequence_length, bigrams)(tf.constant(strings)).numpy()
                np.testing.assert_array_equal(ids, _ids_of_terms(vocabulary, strings, sequence_length, bigrams))
    assert text.Tokenizer(cut, 4, True)(tf.constant(["zz yy"])).numpy().tolist() == [[1, 1, 5, 0]]
    # A vocabulary without bigrams (--notext_bigrams) or without any term: nothing to look up.
    words_only = text.build_vocabulary(_texts(strings), max_tokens=40, bigrams=False)
    for vocabulary in (words_only, (text.PAD, text.OOV)):
        for bigrams in (True, False):
            ids = text.Tokenizer(vocabulary, 30, bigrams)(tf.constant(strings)).numpy()
            np.testing.assert_array_equal(ids, _ids_of_terms(vocabulary, strings, 30, bigrams))


def test_vocabulary_file_round_trips_and_rejects_foreign_files(tmp_path):
    model_dir = str(tmp_path / "run")
    assert text.read_vocabulary(model_dir) == ()
    vocabulary = (text.PAD, text.OOV, "ünïcode", "two words")
    path = text.write_vocabulary(model_dir, vocabulary)
    assert path == os.path.join(model_dir, text.VOCABULARY_FILE)
    assert text.read_vocabulary(model_dir) == vocabulary
    (tmp_path / "run" / text.VOCABULARY_FILE).write_text("hello\nworld\n")
    with pytest.raises(UserError, match="not a vocabulary written by this trainer"):
        text.read_vocabulary(model_dir)


def test_exported_tokenizer_gives_the_training_ids(tmp_path):
    """Export tracks the Tokenizer (a tf.Module): the SavedModel must map text to the same ids."""
    strings = ["The cat sat", "the CAT", "unseen words here", ""]
    vocabulary = text.build_vocabulary(_texts(strings[:2]), max_tokens=100, bigrams=True)
    tokenizer = text.Tokenizer(vocabulary, sequence_length=8, bigrams=True)
    module = tf.Module()
    module.tokenizer = tokenizer
    module.serve = tf.function(tokenizer.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_array_equal(loaded.serve(tf.constant(strings)).numpy(), tokenizer(tf.constant(strings)).numpy())


@pytest.mark.parametrize(
    "changes, fragment",
    [({"max_tokens": 2}, "--max_tokens must exceed 2"), ({"sequence_length": 0}, "--sequence_length")],
)
def test_text_settings_are_validated_before_tensorflow_starts(changes, fragment):
    config = Config(model_dir="/tmp/x", data=DataConfig(**changes))
    with pytest.raises(UserError, match=fragment):
        config_lib.validate(config)
