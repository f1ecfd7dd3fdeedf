"""The absl flags, generated from the config dataclasses: one flag per field, named as the field.

A field's type gives the flag's kind (str, or enum when the field has choices; int; float; bool;
Tuple[int, ...] and Tuple[str, ...] as comma-separated lists), its default the flag's default, its metadata the help
text. A new setting is one field in trainer/config.py and nothing here.

Choices that are a registry's names (--model, --loss, ...) are read only when such a flag is given
or the help is shown: the registries import TensorFlow, and a mistake in any other flag is reported
in a fraction of a second without it.
"""

import dataclasses
import typing
from typing import Callable, Collection, Iterator, List, Optional, Tuple

from absl import app, flags

from trainer import config as config_lib
from trainer.config import Config
from trainer.errors import UserError


def settings(config_class=Config) -> Iterator[Tuple[dataclasses.Field, type]]:
    """(field, type) of every setting of `config_class`, nested dataclasses opened, in order."""
    types = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(types[field.name]):
            yield from settings(types[field.name])
        else:
            yield field, types[field.name]


def define_flags(flag_values: flags.FlagValues, config_class=Config, names: Optional[Collection[str]] = None) -> None:
    """Defines in `flag_values` a flag for every setting of `config_class` (or only those in `names`)."""
    seen = set()
    for field, kind in settings(config_class):
        assert field.name not in seen, f"two settings are named {field.name}; flag names must be unique"
        seen.add(field.name)
        if names is None or field.name in names:
            _define(flag_values, field, kind)
    unknown = set(names or ()) - seen
    assert not unknown, f"{config_class.__name__} has no settings {sorted(unknown)}"


class _NameParser(flags.ArgumentParser):
    """A string that must be one of a registry's names, read when a value is parsed."""

    def __init__(self, names: Callable[[], Tuple[str, ...]]):
        self.names = names

    def parse(self, argument: str) -> str:
        if argument not in self.names():
            raise ValueError(f"value should be one of <{'|'.join(self.names())}>")  # absl's enum message.
        return argument

    def flag_type(self) -> str:
        return "string enum"


class _NameFlag(flags.Flag):
    """An enum flag whose values are a registry's names, read when needed, never at definition."""

    def _parse_from_default(self, value: str) -> str:
        return value  # The dataclass default, which config.validate checks.

    @property
    def help(self) -> str:
        return f"<{'|'.join(self.parser.names())}>: {self._help}"

    @help.setter
    def help(self, value: str) -> None:
        self._help = value


def _define(flag_values: flags.FlagValues, field: dataclasses.Field, kind: type) -> None:
    name, default, help = field.name, field.default, field.metadata["help"]
    choices = field.metadata.get("choices")
    module = "trainer.config"  # Where --helpfull says the flag comes from: where it is declared.
    common = dict(flag_values=flag_values, module_name=module)
    if kind is str and callable(choices):
        parser, serializer = _NameParser(choices), flags.ArgumentSerializer()
        flags.DEFINE_flag(_NameFlag(parser, serializer, name, default, help), **common)
    elif kind is str and choices:
        flags.DEFINE_enum(name, default, choices, help, **common)
    elif kind is str:
        flags.DEFINE_string(name, default, help, **common)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help, **common)
    elif kind is int:
        flags.DEFINE_integer(name, default, help, **common)
    elif kind is float:
        flags.DEFINE_float(name, default, help, **common)
    elif _is_tuple_of(kind, int) or _is_tuple_of(kind, str):
        flags.DEFINE_list(name, [str(v) for v in default], help, **common)
    else:
        raise TypeError(
            f"setting {name}: no flag kind for {kind}; use str, int, float, bool, Tuple[int, ...] or Tuple[str, ...]."
        )


def _is_tuple_of(kind, item) -> bool:
    """Tuple[item, ...] or tuple[item, ...]."""
    return typing.get_origin(kind) is tuple and typing.get_args(kind) == (item, Ellipsis)


def _integers(name: str, values: List[str], default: Tuple[int, ...]) -> Tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        example = ",".join(map(str, default))
        raise UserError(f"--{name}={','.join(values)} must be integers separated by commas, e.g. {example}.")


def read_flags(flag_values: flags.FlagValues, config_class=Config):
    """A `config_class` from the parsed flags in `flag_values`; settings without a flag keep their default."""
    types = typing.get_type_hints(config_class)
    values = {}
    for field in dataclasses.fields(config_class):
        kind = types[field.name]
        if dataclasses.is_dataclass(kind):
            values[field.name] = read_flags(flag_values, kind)
        elif field.name in flag_values:
            value = flag_values[field.name].value
            if _is_tuple_of(kind, int):
                value = _integers(field.name, value, field.default)
            elif _is_tuple_of(kind, str):
                value = tuple(value)
            values[field.name] = value
    return config_class(**values)


def config_from_flags(flag_values: flags.FlagValues) -> Config:
    """The one place flags become configuration: the validated `Config` from the parsed flags."""
    return config_lib.validate(read_flags(flag_values, Config))


def parse(flag_values: flags.FlagValues, argv: List[str]) -> List[str]:
    """Parses `argv` into `flag_values` together with absl's own flags (--flagfile, --helpfull,
    logging), which live in the global flags.FLAGS; returns the arguments left. A program calls
    this once. Raises UserError on an unknown or malformed flag."""
    app.define_help_flags()
    flags.FLAGS.append_flag_values(flag_values)
    for module, module_flags in flag_values.flags_by_module_dict().items():
        for flag in module_flags:
            flags.FLAGS.register_flag_by_module(module, flag)  # So that --helpfull lists them.
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as e:
        raise UserError(f"{e} (see --helpfull).")
    flag_values.mark_as_parsed()
    return remaining
