"""trainer.pretrained: word vectors initialise the token embeddings of the text models on a fresh
start, --freeze_embeddings keeps them, resume and export work, and bad vector files are one error
line with nothing written."""

import json
import os

import numpy as np
import pytest
from helpers import check_ok, error_line, run_trainer
from textdata import FILLER, LABEL_WORDS, write_text_data

from trainer import config as config_lib
from trainer import pretrained
from trainer.config import Config, DataConfig, ModelConfig, TrainConfig
from trainer.errors import UserError

DIM = 8
WORDS = [w for words in LABEL_WORDS for w in words] + FILLER[:4]  # "really", "and", ... stay uncovered.


def _vectors(seed: int = 1):
    rng = np.random.default_rng(seed)
    return {word: rng.normal(0, 1, DIM).astype(np.float32) for word in WORDS}


def _write_glove(path, vectors, header: str = ""):
    with open(path, "w") as f:
        f.write(header)
        for word, vector in vectors.items():
            # Capitalised: the run's lowercase words must still find them.
            shown = word.capitalize() if word == "happy" else word
            f.write(shown + " " + " ".join(f"{v:.8f}" for v in vector) + "\n")


def _config(tmp_path, vectors_path, model="text_bow", **overrides) -> Config:
    files = write_text_data(str(tmp_path / "data"))
    model_config = ModelConfig(
        model=model,
        hidden_units=(16,),
        embedding_dim=DIM,
        transformer_heads=2,
        transformer_layers=1,
        pretrained_embeddings=str(vectors_path),
        **overrides,
    )
    return config_lib.validate(
        Config(
            model_dir=str(tmp_path / "run"),
            mode="train",
            data=DataConfig(sequence_length=16, max_tokens=200, **files),
            model=model_config,
            train=TrainConfig(
                global_batch_size=32, train_steps=4, steps_per_loop=2, log_every_steps=2, warmup_steps=0
            ),  # fmt: skip
        )
    )


def _embeddings(model_dir):
    """The token embedding in the latest checkpoint, the reader, and how many optimizer slots
    (Adam moments) of its shape there are."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    shape = [len(_vocabulary(model_dir)), DIM]
    names = [n for n, s in reader.get_variable_to_shape_map().items() if s == shape]
    weights = [n for n in names if "optimizer/_variables/" not in n]
    assert len(weights) == 1, names
    return reader.get_tensor(weights[0]), reader, len(names) - 1


def _vocabulary(model_dir):
    with open(os.path.join(model_dir, "vocabulary.txt")) as f:
        return f.read().split("\n")[:-1]


def test_embedding_matrix_composes_bigrams_and_keeps_padding_zero():
    vectors = {"good": np.ones(2, np.float32), "day": np.full(2, 3.0, np.float32)}
    vocabulary = ("[PAD]", "[UNK]", "good", "day", "good day", "bad", "good bad")
    matrix, counts = pretrained.embedding_matrix(vocabulary, vectors, 2, seed=0)
    np.testing.assert_array_equal(matrix[0], [0, 0])
    np.testing.assert_array_equal(matrix[2], [1, 1])
    np.testing.assert_array_equal(matrix[4], [2, 2])  # The mean of its words.
    assert list(counts) == [2, 3, 1, 2]  # words found, words, bigrams composed, bigrams.
    assert not np.allclose(matrix[5], 0) and not np.allclose(matrix[6], 0)  # Uncovered: random, not zero.


def test_fasttext_header_lowercase_fallback_and_npy(tmp_path):
    vectors = _vectors()
    vec = tmp_path / "v.vec"
    _write_glove(vec, vectors, header=f"{len(vectors)} {DIM}\n")
    config = ModelConfig(model="text_bow", pretrained_embeddings=str(vec))
    found, dimension = pretrained.read_vectors(config, {"happy", "hate", "nothere"})
    assert dimension == DIM and sorted(found) == ["happy", "hate"]
    np.testing.assert_allclose(found["happy"], vectors["happy"], atol=1e-6)  # From "Happy".

    np.save(tmp_path / "w.npy", np.stack(list(vectors.values())))
    (tmp_path / "w.vocab.txt").write_text("".join(f"{w}\n" for w in vectors))
    config = ModelConfig(model="text_bow", pretrained_embeddings=str(tmp_path / "w.npy"))
    found, dimension = pretrained.read_vectors(config, {"love", "dark"})
    assert dimension == DIM
    np.testing.assert_array_equal(found["dark"], vectors["dark"])


@pytest.mark.parametrize("model", ["text_bow", "text_transformer"])
def test_vectors_initialise_frozen_embeddings_which_resume_and_export_keep(tmp_path, model):
    import tensorflow as tf

    from trainer import run as run_lib

    vectors = _vectors()
    glove = tmp_path / "glove.txt"
    _write_glove(glove, vectors)
    config = _config(tmp_path, glove, model=model, freeze_embeddings=True)
    run_lib.run(config)
    model_dir = config.model_dir
    embeddings, reader, slots = _embeddings(model_dir)
    vocabulary = _vocabulary(model_dir)
    np.testing.assert_array_equal(embeddings[0], np.zeros(DIM))
    for word in ("happy", "hate", "movie"):
        np.testing.assert_allclose(embeddings[vocabulary.index(word)], vectors[word], atol=1e-6)
    bigrams = [t for t in vocabulary if " " in t and all(w in vectors for w in t.split(" "))]
    assert bigrams, vocabulary
    term = bigrams[0]
    expected = np.mean([vectors[w] for w in term.split(" ")], axis=0)
    np.testing.assert_allclose(embeddings[vocabulary.index(term)], expected, atol=1e-6)
    # Frozen: the optimizer keeps no moments for it, and the other weights did train.
    assert slots == 0

    # Resume (the vectors file gone: a resume restores the checkpoint, never reads the vectors).
    os.remove(glove)
    run_lib.run(config_lib.validate(_with(config, train_steps=8)))
    resumed, reader, _ = _embeddings(model_dir)
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 8
    np.testing.assert_array_equal(resumed, embeddings)

    run_lib.run(config_lib.validate(_with(config, mode="export")))
    served = tf.saved_model.load(os.path.join(model_dir, "export"))
    out = served.signatures["serving_default"](text=tf.constant(["Happy happy love", "angry hate"]))
    assert out["probabilities"].shape == (2, 3)


def _with(config: Config, mode: str = "train", train_steps: int = 0) -> Config:
    import dataclasses

    train = dataclasses.replace(config.train, train_steps=train_steps or config.train.train_steps)
    return dataclasses.replace(config, mode=mode, train=train)


def test_trained_embeddings_start_from_the_vectors_and_move(tmp_path):
    from trainer import run as run_lib

    vectors = _vectors()
    glove = tmp_path / "glove.txt"
    _write_glove(glove, vectors)
    config = _config(tmp_path, glove)
    run_lib.run(config)
    embeddings, _, slots = _embeddings(config.model_dir)
    row = embeddings[_vocabulary(config.model_dir).index("hate")]
    assert 0 < np.abs(row - vectors["hate"]).max() < 0.1  # Trained a few small steps from the vector.
    assert slots == 2  # Adam's two moments.


def test_multi_input_builds_with_vectors(tmp_path):
    import keras
    import tensorflow as tf

    from trainer import data, models

    vocabulary = ("[PAD]", "[UNK]") + tuple(WORDS) + ("happy love",)
    specs = {
        "tokens": tf.TensorSpec([6], tf.int32, name="tokens"),
        "features": tf.TensorSpec([3], tf.float32, name="features"),
    }
    spec = data.InputSpec(specs, ["a", "b"], len(vocabulary), vocabulary)
    glove = tmp_path / "glove.txt"
    vectors = _vectors()
    _write_glove(glove, vectors)
    config = ModelConfig(
        model="multi_input", embedding_dim=DIM, pretrained_embeddings=str(glove), freeze_embeddings=True
    )
    model = models.MODELS["multi_input"](config, spec)
    pretrained.initialise(model, config, vocabulary, seed=0)
    layer = model.get_layer("embedding")
    assert not layer.trainable and all(v is not layer.embeddings for v in model.trainable_variables)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.embeddings)[vocabulary.index("love")],
                               vectors["love"], atol=1e-6)  # fmt: skip


def _ragged(path):
    _write_glove(path, _vectors())
    with open(path, "a") as f:
        f.write("extra 1.0 2.0\n")


def _lying_header(path):
    _write_glove(path, _vectors(), header=f"{len(WORDS) + 5} {DIM}\n")


def _bad_npy(path):
    path.write_bytes(b"not an array")
    path.with_suffix(".vocab.txt").write_text("".join(f"{w}\n" for w in WORDS))


def _short_vocabulary(path):
    np.save(path, np.zeros((len(WORDS), DIM), np.float32))
    path.with_suffix(".vocab.txt").write_text("".join(f"{w}\n" for w in WORDS[:-2]))


def _other_dimension(path):
    with open(path, "w") as f:
        f.writelines(f"{w} 0.1 0.2 0.3\n" for w in WORDS)


BAD = {
    "ragged.txt": (_ragged, "has 2 numbers where the file's vectors have 8"),
    "header.vec": (_lying_header, f"header declares {len(WORDS) + 5} vectors but the file holds {len(WORDS)}"),
    "bad.npy": (_bad_npy, "cannot be read as a .npy array"),
    "short.npy": (_short_vocabulary, f"has {len(WORDS)} rows but its vocabulary"),
    "small.txt": (_other_dimension, "holds 3-dimensional vectors but --embedding_dim=8; set --embedding_dim=3"),
    "missing.txt": (lambda path: None, "does not exist"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_vectors_file_is_one_error_and_writes_nothing(tmp_path, name):
    from trainer import run as run_lib

    make, message = BAD[name]
    vectors_path = tmp_path / name
    make(vectors_path)
    config = _config(tmp_path, vectors_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")) as raised:
        run_lib.run(config)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(config.model_dir) or not os.listdir(config.model_dir)


@pytest.mark.e2e  # Starts the trainer in a process.
def test_cli_bad_vectors_exit_1_with_one_line_and_nothing_written(tmp_path):
    files = write_text_data(str(tmp_path / "data"))
    vectors = tmp_path / "ragged.txt"
    _ragged(vectors)
    model_dir = tmp_path / "run"
    result = run_trainer(
        [f"--{k}={v}" for k, v in files.items()]
        + ["--model=text_bow", f"--model_dir={model_dir}", f"--pretrained_embeddings={vectors}", "--train_steps=2"]
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"line {len(WORDS) + 1} has 2 numbers" in error_line(result)
    assert not model_dir.exists() or not any(model_dir.iterdir())


@pytest.mark.e2e  # Starts the trainer in a process.
def test_cli_trains_with_vectors_and_logs_coverage(tmp_path):
    files = write_text_data(str(tmp_path / "data"))
    glove = tmp_path / "glove.txt"
    _write_glove(glove, _vectors())
    model_dir = tmp_path / "run"
    result = check_ok(
        run_trainer(
            [f"--{k}={v}" for k, v in files.items()]
            + [
                "--model=text_bow",
                f"--model_dir={model_dir}",
                f"--pretrained_embeddings={glove}",
                "--freeze_embeddings",
                f"--embedding_dim={DIM}",
                "--hidden_units=16",
                "--global_batch_size=32",
                "--train_steps=4",
                "--steps_per_loop=2",
                "--mode=train",
            ]
        )
    )
    assert "Pretrained embeddings from" in result.stderr and "frozen" in result.stderr
    assert f"({len(WORDS)} of {len(WORDS) + len(FILLER) - 4} words found" in result.stderr, result.stderr[-3000:]
    saved = json.loads((model_dir / "config.json").read_text())["model"]
    assert saved["pretrained_embeddings"] == str(glove) and saved["freeze_embeddings"] is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": "mlp", "pretrained_embeddings": "v.txt"}, "--pretrained_embeddings is for"),
        ({"model": "text_bow", "freeze_embeddings": True}, "--freeze_embeddings keeps pretrained vectors"),
        ({"model": "text_bow", "pretrained_embeddings": "v.txt", "pretrained_vocabulary": "w.txt"}, "names the words"),
    ],
)
def test_config_refuses_inconsistent_settings(overrides, message):
    with pytest.raises(UserError, match=message):
        config_lib.validate(Config(model_dir="/tmp/x", model=ModelConfig(**overrides)))
