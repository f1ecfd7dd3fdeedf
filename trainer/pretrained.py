"""Pretrained word vectors (--pretrained_embeddings) as the starting point of the token embeddings.

Formats, local or on object storage (read through tf.io.gfile, streamed line by line):
- text (`.txt`, GloVe; `.vec`, fastText): one `word v1 ... vD` a line, separated by single spaces;
  a first line of exactly two integers `N D` is a fastText header, and then the file must hold N
  rows of D numbers;
- `.npy`: a float [N, D] array, with a vocabulary file of N lines (line i names row i): the file
  --pretrained_vocabulary names, else `<name>.vocab.txt` beside `<name>.npy`.

The run's vocabulary (trainer.data.text) maps each term to a row of the `embedding` layer. A word takes
the file's vector for it; when the file has none, the first (in files sorted by frequency: the
most frequent) vector whose lowercased word matches, since the run's words are lowercase. A bigram
(`a b`) takes the mean of its two words' vectors when both are found. Every other term starts
random, drawn with the standard deviation of the vectors found, so that found and missing rows
have the same scale; id 0 (padding) is zeros. Done on a fresh start only: a resume restores the
checkpoint and a warm start its model weights, without reading the vectors again.
"""

import os
from typing import Dict, Sequence, Set, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from trainer.config import ModelConfig
from trainer.errors import UserError

EMBEDDING_LAYER = "embedding"  # The token embedding of text_bow, multi_input and text_transformer.


def vocabulary_file(config: ModelConfig) -> str:
    """The vocabulary of a `.npy` vectors file: --pretrained_vocabulary, else `<name>.vocab.txt`."""
    return config.pretrained_vocabulary or os.path.splitext(config.pretrained_embeddings)[0] + ".vocab.txt"


def _bad(path: str, problem: str) -> UserError:
    return UserError(f"--pretrained_embeddings={path}: {problem}")


def _read_text_vectors(path: str, wanted: Set[str]) -> Tuple[Dict[str, np.ndarray], int]:
    """The vectors of the `wanted` words in a GloVe/fastText text file, and the file's dimension.

    Every row is checked for its number of values (ragged rows and a lying header are errors);
    only the wanted rows are parsed as numbers."""
    exact: Dict[str, np.ndarray] = {}
    lowered: Dict[str, np.ndarray] = {}
    dimension, declared_rows, rows = 0, -1, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n").rstrip(" ")
            if not line:
                continue
            parts = line.split(" ")
            if number == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                declared_rows, dimension = int(parts[0]), int(parts[1])
                continue
            if not dimension:
                dimension = len(parts) - 1
                if dimension < 1:
                    raise _bad(path, f"line {number} holds a word and no numbers; give a GloVe/fastText text file.")
            if len(parts) - 1 != dimension:
                raise _bad(
                    path,
                    f"line {number} has {len(parts) - 1} numbers where the file's vectors have {dimension} "
                    "(ragged rows, or a word with a space in it); fix or remove that line.",
                )
            rows += 1
            word = parts[0]
            target = exact if word in wanted else lowered if word.lower() in wanted else None
            key = word if target is exact else word.lower()
            if target is None or key in target:
                continue
            try:
                target[key] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise _bad(path, f"line {number} ({word!r}) has a value that is not a number; fix that line.")
    if declared_rows >= 0 and rows != declared_rows:
        raise _bad(path, f"its header declares {declared_rows} vectors but the file holds {rows}; fix the header.")
    if not rows:
        raise _bad(path, "holds no vectors; give a GloVe/fastText text file or a .npy array.")
    return {**{w: v for w, v in lowered.items() if w not in exact}, **exact}, dimension


def _read_npy_vectors(path: str, config: ModelConfig, wanted: Set[str]) -> Tuple[Dict[str, np.ndarray], int]:
    """The vectors of the `wanted` words in a `.npy` array and its vocabulary file."""
    words_path = vocabulary_file(config)
    if not tf.io.gfile.exists(words_path):
        raise _bad(
            path,
            f"a .npy array needs a vocabulary file (one word a line, line i names row i): {words_path} does "
            "not exist; put it there or name it with --pretrained_vocabulary.",
        )
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            array = np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _bad(path, f"cannot be read as a .npy array ({str(e).splitlines()[0][:120]}); save it with numpy.save.")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise _bad(path, f"holds a {array.dtype} array of shape {array.shape}; it must be a float [words, dim] array.")
    with tf.io.gfile.GFile(words_path, "rb") as f:
        names = f.read().decode("utf-8").split("\n")
    names = names[:-1] if names and names[-1] == "" else names
    if len(names) != len(array):
        raise _bad(
            path,
            f"has {len(array)} rows but its vocabulary {words_path} has {len(names)} lines; they must match.",
        )
    found: Dict[str, np.ndarray] = {}
    for index, name in enumerate(names):  # Exact matches first, then the first lowercased match.
        if name in wanted and name not in found:
            found[name] = array[index]
    for index, name in enumerate(names):
        if name.lower() in wanted and name.lower() not in found:
            found[name.lower()] = array[index]
    return {w: v.astype(np.float32) for w, v in found.items()}, array.shape[1]


def read_vectors(config: ModelConfig, wanted: Set[str]) -> Tuple[Dict[str, np.ndarray], int]:
    """The vectors of the `wanted` words in --pretrained_embeddings, and the file's dimension."""
    path = config.pretrained_embeddings
    if not tf.io.gfile.exists(path):
        raise _bad(path, "does not exist; give a GloVe/fastText .txt/.vec file or a .npy array (local or gs://).")
    if path.endswith(".npy"):
        return _read_npy_vectors(path, config, wanted)
    return _read_text_vectors(path, wanted)


def embedding_matrix(vocabulary: Sequence[str], vectors: Dict[str, np.ndarray], dimension: int, seed: int):
    """[len(vocabulary), dimension] float32 rows for the run's terms (see the module docstring),
    and the counts (words found, words, bigrams composed, bigrams)."""
    found_rows = np.stack(list(vectors.values())) if vectors else np.zeros((1, dimension), np.float32)
    scale = float(found_rows.std()) or 0.05
    matrix = np.random.default_rng(seed).normal(0.0, scale, (len(vocabulary), dimension)).astype(np.float32)
    matrix[0] = 0.0  # Padding: masked everywhere, zero for clarity.
    counts = np.zeros(4, np.int64)
    for index, term in enumerate(vocabulary[2:], start=2):
        words = term.split(" ")
        bigram = len(words) > 1
        counts[3 if bigram else 1] += 1
        if all(word in vectors for word in words):
            matrix[index] = np.mean([vectors[word] for word in words], axis=0)
            counts[2 if bigram else 0] += 1
    return matrix, counts


def initialise(model: keras.Model, config: ModelConfig, vocabulary: Sequence[str], seed: int) -> None:
    """Sets the `embedding` layer of `model` from --pretrained_embeddings (no-op without it); raises
    UserError on a bad file, a run without a vocabulary, or a dimension other than --embedding_dim."""
    if not config.pretrained_embeddings:
        return
    path = config.pretrained_embeddings
    if not vocabulary:
        raise UserError(
            f"--pretrained_embeddings={path} needs text data (a vocabulary of words); this run's data has "
            "token ids or no text. Train on a text file, or leave --pretrained_embeddings empty."
        )
    wanted = {word for term in vocabulary[2:] for word in term.split(" ")}
    vectors, dimension = read_vectors(config, wanted)
    layer = model.get_layer(EMBEDDING_LAYER)
    if dimension != layer.output_dim:
        raise UserError(
            f"--pretrained_embeddings={path} holds {dimension}-dimensional vectors but --embedding_dim="
            f"{layer.output_dim}; set --embedding_dim={dimension}."
        )
    matrix, (words_found, num_words, bigrams_found, num_bigrams) = embedding_matrix(
        vocabulary, vectors, dimension, seed
    )
    layer.embeddings.assign(matrix)
    logging.info(
        "Pretrained embeddings from %s (%d dimensions%s): %d of %d vocabulary terms covered (%d of %d words "
        "found, %d of %d bigrams as the mean of their words); the other %d start random.",
        path,
        dimension,
        ", frozen" if config.freeze_embeddings else "",
        words_found + bigrams_found,
        len(vocabulary) - 2,
        words_found,
        num_words,
        bigrams_found,
        num_bigrams,
        len(vocabulary) - 2 - words_found - bigrams_found,
    )
