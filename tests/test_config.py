"""Config validation and the resume compatibility check."""

import dataclasses
import json

import pytest

from trainer import config as config_lib
from trainer.config import Config, ModelConfig, TrainConfig
from trainer.errors import UserError


def valid(**changes):
    return dataclasses.replace(Config(model_dir="/tmp/x"), **changes)


def test_defaults_are_valid_and_round_trip_through_json():
    config = config_lib.validate(valid())
    assert json.loads(config_lib.to_json(config))["train"]["global_batch_size"] == TrainConfig().global_batch_size


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"model_dir": ""}, "--model_dir is required"),
        ({"mode": "fit"}, "--mode='fit' is not one of"),
        ({"train": TrainConfig(global_batch_size=0)}, "--global_batch_size must be positive"),
        ({"train": TrainConfig(mixed_precision="fp8")}, "--mixed_precision"),
        ({"model": ModelConfig(hidden_units=())}, "--hidden_units needs at least one"),
        ({"model": ModelConfig(model="resnet")}, "--model='resnet'"),
    ],
)
def test_invalid_settings_name_the_flag(changes, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        config_lib.validate(valid(**changes))


def test_model_names_match_the_model_factory():
    from trainer.models import MODELS

    assert sorted(config_lib.MODEL_NAMES) == sorted(MODELS)


def test_resuming_with_a_different_model_names_the_setting():
    saved = config_lib.to_json(valid())
    config_lib.check_resumable(saved, valid(train=TrainConfig(train_steps=99)))  # Longer training is fine.
    with pytest.raises(UserError, match="--hidden_units=.*differs from the checkpoint"):
        config_lib.check_resumable(saved, valid(model=ModelConfig(hidden_units=(8,))))


@pytest.mark.parametrize(
    "mode, train_data, eval_data, test_data, expected",
    [
        ("train_and_eval", "synthetic", "", "", "synthetic"),  # The default job evaluates.
        ("train_and_eval", "train.tsv", "", "", ""),  # Real data: no synthetic eval split behind the user's back.
        ("train_and_eval", "train.tsv", "dev.tsv", "", "dev.tsv"),
        ("train", "synthetic", "", "", ""),
        ("eval", "synthetic", "", "", "synthetic"),  # `--mode=eval` alone, on a synthetic run.
        ("eval", "synthetic", "", "test.tsv", ""),  # `--mode=eval --test_data=FILE`: that file only.
        ("eval", "synthetic", "dev.tsv", "test.tsv", "dev.tsv"),
        ("predict", "synthetic", "", "synthetic", ""),
    ],
)
def test_eval_data_is_synthetic_by_default_only_for_a_synthetic_run(mode, train_data, eval_data, test_data, expected):
    data = config_lib.DataConfig(train_data=train_data, eval_data=eval_data, test_data=test_data)
    assert config_lib.effective_eval_data(valid(mode=mode, data=data)) == expected
