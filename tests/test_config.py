"""Config validation, the resume compatibility check, and the flags generated from the config."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from absl import flags
from helpers import REPO, trainer_env

from trainer import config as config_lib
from trainer import flags as config_flags
from trainer.config import Config, DataConfig, DistributeConfig, LossConfig, ModelConfig, TrainConfig
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


def test_resuming_with_a_different_model_names_the_setting():
    saved = config_lib.to_json(valid())
    config_lib.check_resumable(saved, valid(train=TrainConfig(train_steps=99)))  # Longer training is fine.
    with pytest.raises(UserError, match="--hidden_units=.*differs from the checkpoint"):
        config_lib.check_resumable(saved, valid(model=ModelConfig(hidden_units=(8,))))
    # Dropout decides whether the model has a Dropout layer, which shifts the layers after it.
    with pytest.raises(UserError, match="--dropout=0.3 differs from the checkpoint"):
        config_lib.check_resumable(saved, valid(model=ModelConfig(dropout=0.3)))
    trained = config_lib.adopt_trained_settings(valid(), config_lib.to_json(valid(model=ModelConfig(dropout=0.3))))
    assert trained.model.dropout == 0.3  # What eval, predict and export rebuild.


def test_eval_takes_the_trained_runs_loss_and_data_whatever_its_flags_say():
    """An evaluation reports the loss the run trained with, and only a model of the synthetic problem
    evaluates it by default (config.effective_eval_data)."""
    saved = valid(
        loss=LossConfig(loss="focal", focal_gamma=3.0),
        data=DataConfig(train_data="train.csv"),
    )
    evaluating = dataclasses.replace(valid(), mode="eval")
    adopted = config_lib.adopt_trained_settings(evaluating, config_lib.to_json(saved))
    assert (adopted.loss.loss, adopted.loss.focal_gamma) == ("focal", 3.0)
    assert adopted.data.train_data == "train.csv" and config_lib.effective_eval_data(adopted) == ""
    # Flags the user gave that the trained run's replace are named, so they do not silently do nothing.
    given = dataclasses.replace(
        evaluating, loss=LossConfig(loss="bce"), data=DataConfig(label_names="mine.txt", eval_data="dev.csv")
    )
    adopted = config_lib.adopt_trained_settings(given, config_lib.to_json(saved))
    assert config_lib.ignored_settings(given, adopted) == [("label_names", "mine.txt", "")]
    assert config_lib.ignored_settings(evaluating, adopted) == []


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


def _parsed(argv, config_class=Config, names=None):
    """A fresh FlagValues holding the flags of `config_class`, with `argv` parsed into it."""
    flag_values = flags.FlagValues()
    config_flags.define_flags(flag_values, config_class, names)
    flag_values(["prog", *argv])
    return flag_values


def _argv(config: Config):
    """The command line that sets every setting of `config`."""
    values = {}
    for section in (config, config.data, config.model, config.train, config.loss, config.distribute):
        for field in dataclasses.fields(section):
            if not dataclasses.is_dataclass(field.type):
                values[field.name] = getattr(section, field.name)
    argv = []
    for name, value in values.items():
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, tuple):
            argv.append(f"--{name}={','.join(map(str, value))}")
        else:
            argv.append(f"--{name}={value}")
    return argv


def test_every_setting_has_a_flag_with_its_default_and_help():
    from trainer.main import FLAGS

    names = [field.name for field, _ in config_flags.settings(Config)]
    assert len(names) == len(set(names)) and sorted(FLAGS) == sorted(names)
    for field, _ in config_flags.settings(Config):
        flag = FLAGS[field.name]
        assert field.metadata["help"].strip() and flag.help.endswith(field.metadata["help"]), field.name
        default = field.default
        assert flag.default == (list(map(str, default)) if isinstance(default, tuple) else default), field.name
    assert config_flags.read_flags(_parsed(["--model_dir=/tmp/x"])) == valid()


def test_flags_round_trip_to_the_same_config():
    changed = valid(
        mode="eval",
        checkpoint="best",
        data=DataConfig(eval_data="dev.tsv", data_format="csv", text_bigrams=False, synthetic_labels=7),
        model=ModelConfig(model="cnn", hidden_units=(8, 4, 2), dropout=0.25, cnn_backbone="mobilenet_v2"),
        train=TrainConfig(optimizer="sgd", lr_schedule="constant", lr_scaling="linear", jit_compile=False),
        loss=LossConfig(loss="asl", asl_clip=0.1),
        distribute=DistributeConfig(strategy="mirrored", cpu_replicas=2),
    )
    assert config_flags.read_flags(_parsed(_argv(changed))) == changed
    assert config_flags.read_flags(_parsed(_argv(valid()))) == valid()


def test_a_flagfile_sets_flags_and_the_command_line_overrides_it(tmp_path):
    recipe = tmp_path / "run.flags"
    recipe.write_text("# a recipe\n--model=text_bow\n--hidden_units=64,32\n--notext_bigrams\n--learning_rate=0.01\n")
    config = config_flags.config_from_flags(
        _parsed([f"--flagfile={recipe}", "--model_dir=/tmp/x", "--learning_rate=0.002"])
    )
    assert (config.model.model, config.model.hidden_units, config.data.text_bigrams) == ("text_bow", (64, 32), False)
    assert config.train.learning_rate == 0.002


def test_the_recipes_in_configs_are_valid_flagfiles():
    recipes = {name: os.path.join(REPO, "configs", f"{name}.flags") for name in ("yeast", "goemotions")}
    yeast = config_flags.config_from_flags(_parsed([f"--flagfile={recipes['yeast']}", "--model_dir=/tmp/x"]))
    assert (yeast.model.hidden_units, yeast.train.lr_scaling, yeast.train.train_steps) == ((512, 512), "none", 600)
    goemotions = config_flags.config_from_flags(_parsed([f"--flagfile={recipes['goemotions']}", "--model_dir=/x"]))
    assert (goemotions.model.model, goemotions.loss.loss, goemotions.data.text_bigrams) == (
        "text_transformer",
        "focal",
        False,
    )


def test_a_non_integer_list_and_a_bad_choice_are_one_clear_error():
    with pytest.raises(UserError, match=r"^--hidden_units=5,x must be integers separated by commas, e\.g\. 256,256\.$"):
        config_flags.read_flags(_parsed(["--hidden_units=5,x"]))
    with pytest.raises(flags.IllegalFlagValueError, match="--loss=hinge: value should be one of <bce|"):
        _parsed(["--loss=hinge"])


def test_choices_are_the_registries_names():
    from trainer import losses, models, optimization

    choices = {field.name: config_lib.choices_of(field) for field, _ in config_flags.settings(Config)}
    assert choices["model"] == tuple(models.MODELS)
    assert choices["loss"] == tuple(losses.LOSSES)
    assert choices["cnn_backbone"] == ("resnet_small", *models.BACKBONES)
    assert choices["optimizer"] == tuple(optimization.OPTIMIZERS)
    assert choices["lr_schedule"] == tuple(optimization.LR_SCHEDULES)
    assert choices["lr_scaling"] == tuple(optimization.LR_SCALINGS)
    assert choices["mode"] == config_lib.MODES and choices["strategy"] == config_lib.STRATEGIES
    from trainer.main import FLAGS

    assert FLAGS["model"].help.startswith(f"<{'|'.join(models.MODELS)}>: Model: mlp")
    assert FLAGS["mode"].help.startswith(f"<{'|'.join(config_lib.MODES)}>: What to do.")


def test_a_new_setting_is_one_field():
    @dataclasses.dataclass(frozen=True)
    class Extra:
        widths: tuple[int, ...] = config_lib.setting((3,), "Widths.")
        colour: str = config_lib.setting("red", "Colour.", ("red", "blue"))
        ratio: float = config_lib.setting(0.5, "Ratio.")

    @dataclasses.dataclass(frozen=True)
    class Tree:
        extra: Extra = Extra()
        steps: int = config_lib.setting(1, "Steps.")
        verbose: bool = config_lib.setting(False, "Verbose.")

    parsed = _parsed(["--widths=1,2", "--colour=blue", "--steps=4", "--verbose"], Tree)
    assert config_flags.read_flags(parsed, Tree) == Tree(Extra((1, 2), "blue", 0.5), 4, True)
    assert "Colour." in parsed["colour"].help

    @dataclasses.dataclass(frozen=True)
    class Clash:
        extra: Extra = Extra()
        ratio: float = config_lib.setting(1.0, "Another ratio.")

    with pytest.raises(AssertionError, match="two settings are named ratio"):
        _parsed([], Clash)


def test_the_tpu_check_lives_in_choose_strategy_only():
    from trainer.distribute import Cluster, choose_strategy

    tpu_without_name = DistributeConfig(strategy="tpu")
    config_lib.validate(valid(distribute=tpu_without_name))  # Not here...
    with pytest.raises(UserError, match="--strategy=tpu needs --tpu"):  # ...but here, once.
        choose_strategy(tpu_without_name, Cluster(), 0)
    sources = [open(os.path.join(REPO, "trainer", f"{m}.py")).read() for m in ("config", "distribute", "main")]
    assert sum(source.count("needs --tpu") for source in sources) == 1


def test_prepare_takes_the_data_settings_from_data_config():
    from trainer import prepare

    parsed = _parsed(["--text_column=body"], DataConfig, prepare.DATA_FLAGS)
    assert sorted(parsed) == sorted(prepare.DATA_FLAGS)
    assert config_flags.read_flags(parsed, DataConfig) == DataConfig(text_column="body")
    for name in prepare.DATA_FLAGS:
        assert prepare.FLAGS[name].help == parsed[name].help and prepare.FLAGS[name].default == parsed[name].default


@pytest.mark.e2e
def test_trainer_and_prepare_import_into_one_process_without_tensorflow():
    """Each defines its flags in its own FlagValues, so neither clashes with the other or with absl's;
    the registries behind --model, --loss, ... (and so TensorFlow) load only when one of them is given,
    so that a mistake in any other flag is reported at once."""
    code = (
        "import sys, trainer.main, trainer.prepare; from absl import flags; "
        "print(len(list(trainer.main.FLAGS)), len(list(trainer.prepare.FLAGS)), 'model_dir' in flags.FLAGS, "
        "'tensorflow' in sys.modules); "
        "trainer.main.FLAGS(['prog', '--train_steps=5', '--mode=eval']); print('tensorflow' in sys.modules); "
        "trainer.main.FLAGS(['prog', '--model=cnn']); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=trainer_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    from trainer import prepare

    num_settings = len(list(config_flags.settings(Config)))
    num_prepare = 4 + len(prepare.DATA_FLAGS)  # input, output_dir, num_shards, name + the data settings.
    assert result.stdout.split() == [str(num_settings), str(num_prepare), "False", "False", "False", "True"]
