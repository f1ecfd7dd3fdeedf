"""The model zoo: every model builds, trains under `default` and `mirrored --cpu_replicas=2`,
exports, and its exported probabilities match the trainer's own predictions."""

import dataclasses
import json
import os

import numpy as np
import pytest
from helpers import TINY, check_ok, error_line, run_trainer

from trainer import config as config_lib
from trainer import models
from trainer.config import Config, DataConfig, ModelConfig, TrainConfig
from trainer.data import synthetic

# Small enough to train in seconds; each model gets only the flags that shrink it.
SHRINK = {
    "mlp": [],
    "text_bow": ["--embedding_dim=16"],
    "multi_input": ["--embedding_dim=16"],
    "text_transformer": ["--embedding_dim=16", "--transformer_heads=2", "--transformer_layers=1"],
    "cnn": ["--cnn_width=8", "--synthetic_image_size=8"],
}
LABELS, FEATURES, VOCAB, LENGTH, EXAMPLES = 8, 16, 2000, 32, 120


def _config(model_name: str, model_dir: str) -> Config:
    return Config(
        model_dir=model_dir,
        mode="train",
        data=DataConfig(
            synthetic_train_examples=256, synthetic_labels=LABELS, synthetic_features=FEATURES, synthetic_image_size=8
        ),  # fmt: skip
        model=ModelConfig(
            model=model_name,
            hidden_units=(16,),
            embedding_dim=16,
            transformer_heads=2,
            transformer_layers=1,
            cnn_width=8,
            dropout=0.1,
        ),  # fmt: skip
        train=TrainConfig(
            global_batch_size=32,
            train_steps=6,
            steps_per_loop=3,
            log_every_steps=3,
            checkpoint_every_steps=6,
            warmup_steps=0,
        ),  # fmt: skip
    )


def test_every_model_trains_under_the_default_strategy(tmp_path):
    import tensorflow as tf

    from trainer import run as run_lib

    for name in models.MODELS:
        if name == "hub_text":  # Needs a KerasHub preset and text: tests/test_hub.py.
            continue
        model_dir = str(tmp_path / name)
        run_lib.run(config_lib.validate(_config(name, model_dir)))
        reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
        assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 6, name
        trainable = [n for n in reader.get_variable_to_shape_map() if "_trainable_variables/" in n]
        assert trainable and all(np.all(np.isfinite(reader.get_tensor(n))) for n in trainable), name


def test_mlp_normalisation_is_adapted_on_training_data_and_restored(tmp_path):
    import tensorflow as tf

    from trainer import run as run_lib

    model_dir = str(tmp_path / "mlp")
    run_lib.run(config_lib.validate(_config("mlp", model_dir)))
    features, _ = synthetic.make_split("train", 256, LABELS, FEATURES, VOCAB, LENGTH, seed=42, image_size=8)
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = reader.get_variable_to_shape_map()
    mean = [reader.get_tensor(n) for n in names if n.endswith("/mean/.ATTRIBUTES/VARIABLE_VALUE")]
    variance = [reader.get_tensor(n) for n in names if n.endswith("/variance/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(mean) == len(variance) == 1, "the normalisation statistics are not in the checkpoint"
    np.testing.assert_allclose(mean[0], features["features"].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(variance[0], features["features"].var(axis=0), rtol=1e-4)


def _served_inputs(model_name: str):
    """The raw serving inputs for the synthetic test split the trainer predicts on."""
    import tensorflow as tf

    features, _ = synthetic.make_split("test", EXAMPLES, LABELS, FEATURES, VOCAB, LENGTH, seed=42, image_size=8)
    if model_name == "mlp":
        return {"features": features["features"]}
    if model_name in ("text_bow", "text_transformer"):
        return {"tokens": features["tokens"]}
    if model_name == "multi_input":
        return {"tokens": features["tokens"], "features": features["features"]}
    # Images travel encoded; synthetic pixels are multiples of 1/255, so PNG keeps them exactly.
    pixels = np.round(features["image"] * 255).astype(np.uint8)
    return {"image": tf.stack([tf.io.encode_png(p) for p in pixels])}


@pytest.mark.e2e
@pytest.mark.parametrize("model_name", list(SHRINK))
def test_model_trains_mirrored_exports_and_export_matches_predict(model_name, tmp_path):
    """Every model trains under mirrored, and its export (images sent as PNG bytes) serves --mode=predict's output."""
    import tensorflow as tf

    model_dir = str(tmp_path / "run")
    flags = TINY + SHRINK[model_name] + [f"--model={model_name}", f"--model_dir={model_dir}"]
    flags += [f"--synthetic_eval_examples={EXAMPLES}", "--train_steps=10", "--eval_every_steps=10"]
    check_ok(run_trainer(flags + ["--strategy=mirrored", "--cpu_replicas=2"]))
    check_ok(run_trainer(flags + ["--mode=predict", "--test_data=synthetic"]))
    check_ok(run_trainer(flags + ["--mode=export"]))
    with open(os.path.join(model_dir, "predictions.jsonl")) as f:
        predicted = np.array([json.loads(line)["probabilities"] for line in f])
    serve = tf.saved_model.load(os.path.join(model_dir, "export")).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in _served_inputs(model_name).items()})["probabilities"].numpy()
    assert served.shape == (EXAMPLES, LABELS)
    np.testing.assert_allclose(served, predicted, atol=1e-5)


def test_keras_application_backbone_builds_and_loads_local_weights(tmp_path):
    """A keras.applications backbone (MobileNetV2) builds and loads a local --pretrained_weights file."""
    import keras
    import tensorflow as tf

    from trainer.data import InputSpec

    spec = InputSpec({"image": tf.TensorSpec([32, 32, 3], tf.float32)}, [f"l{i}" for i in range(5)])
    config = ModelConfig(model="cnn", cnn_backbone="mobilenet_v2")
    model = models.build_cnn(config, spec)
    assert model.output.shape == (None, 5)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    weights_file = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(weights_file)
    loaded = models.build_cnn(dataclasses.replace(config, pretrained_weights=weights_file), spec)
    loaded_backbone = next(layer for layer in loaded.layers if isinstance(layer, keras.Model))
    for saved, restored in zip(backbone.weights, loaded_backbone.weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


@pytest.mark.e2e
@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--model=cnn", "--cnn_backbone=resnet50"], "needs images of at least 32x32"),
        (["--model=cnn", "--cnn_backbone=resnet50", "--pretrained_weights=/nonexistent.h5"], "is not a file"),
        (["--model=text_transformer", "--embedding_dim=30", "--transformer_heads=4"], "must be divisible"),
        (["--label_smoothing=1.5"], "--label_smoothing must be in [0, 1)"),
        (["--lr_scaling=cubic"], "lr_scaling"),
    ],
)
def test_bad_model_settings_exit_1_with_one_line(flags, fragment, tmp_path):
    result = run_trainer(TINY + flags + [f"--model_dir={tmp_path / 'run'}", "--train_steps=2"])
    assert result.returncode == 1
    assert fragment in error_line(result)
