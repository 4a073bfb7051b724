"""The YAML loader: text to a tree (bounded, each key written once), a config file read
with its size, encoding and syntax checked, the syntax of ``SECTION.KEY=VALUE`` overrides,
and a tree's values turned into the field types of a section (``cluster.keep_weights: all``
kept as the word it is).

Below the sections (:mod:`search.config._sections`): a section is named by its
``_SECTION`` class attribute, so nothing here imports the dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml

from search.config._errors import ConfigError, check_keys, fix, short_repr


class _Loader(yaml.SafeLoader):
    """YAML without YAML 1.1's base-60 integers, so ``ratio: 1:2`` stays the string '1:2'.

    Strict: a key written twice in one mapping is refused (see :meth:`construct_mapping`).
    Bounded: anchors and aliases (``&a``, ``*a``, ``<<: *a``) are refused, so a few hundred
    bytes of nested aliases (a "billion laughs") cannot expand into gigabytes, and nesting
    deeper than :attr:`MAX_DEPTH` is refused before Python's recursion limit is reached.
    An experiment config has no use for either.
    """

    MAX_DEPTH = 64
    MAX_BYTES = 1024 * 1024  # the largest experiment YAML load_config reads (real ones: KBs)

    class Refused(yaml.composer.ComposerError):
        """YAML this project does not accept (an alias, an anchor, deep nesting)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        where = f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise _Loader.Refused(problem=(
                f"YAML aliases and anchors are not supported ({sign}{event.anchor} at {where}): "
                "write the values out in full"))
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > self.MAX_DEPTH:
                raise _Loader.Refused(problem=f"YAML nested more than {self.MAX_DEPTH} levels "
                                              f"deep (at {where}): an experiment config needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        """A mapping whose every key is written once: YAML keeps only the last of a
        repeated key (a second ``optim:`` drops the first), and a config is a user's record
        of an experiment, so a repeat is refused, naming the key and both lines."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in seen:
                raise _Loader.Refused(problem=(
                    f"key {key!r} is written twice in one mapping (lines {seen[key]} and "
                    f"{line}): YAML would keep only the last one; merge them into one"))
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+)$"),
    list("-+0123456789"))


def yaml_load(text: str) -> Any:
    """Parse YAML the way a reader expects, bounded (see :class:`_Loader`); a refused
    construct raises ``_Loader.Refused``, a yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# ----------------------------------------------------------------- a config file
def read_tree(path: Path) -> Mapping[str, Any]:
    """The mapping of sections in the experiment YAML at ``path`` (resolved already), or a
    ConfigError saying what the file is instead (a folder, too big, not UTF-8, not YAML)."""
    if not path.is_file():  # also refuses a FIFO or a device: never read one
        raise ConfigError(f"--config {path} {_not_a_file(path)}")
    with path.open("rb") as fh:
        data = fh.read(_Loader.MAX_BYTES + 1)
    if len(data) > _Loader.MAX_BYTES:
        raise ConfigError(f"{path} is over {_Loader.MAX_BYTES // 1024} KiB: an experiment "
                          "config is a few KB of YAML; is it the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}; saved "
            f"as Latin-1 or a Windows code page?): save it as UTF-8, e.g. iconv -f latin1 "
            f"-t utf-8 {path.name} > utf8.yaml && mv utf8.yaml {path.name}") from None
    try:
        tree = yaml_load(text) or {}
    except _Loader.Refused as err:
        raise ConfigError(f"{path}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path} must hold a mapping of sections (data, model, ...)")
    return tree


def _not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a config file, and the fix."""
    if path.is_dir():
        return "is a folder: name the experiment YAML in it, e.g. --config examples/study.yaml"
    if path.exists():
        return "is not a regular file (a FIFO or a device): name an experiment YAML file"
    return "does not exist"


def check_override_values(overrides: Iterable[str]) -> None:
    """Each override's value parses as YAML: a bad one is named here, not deep in PyYAML."""
    for item in overrides:
        try:
            yaml_load(item.split("=", 1)[1] if "=" in item else "")
        except yaml.YAMLError as err:
            why = getattr(err, "problem", None) or " ".join(str(err).split())
            hint = "" if isinstance(err, _Loader.Refused) else (
                ": quote the value if it is a string, e.g. 'model.arch=\"...\"'")
            raise ConfigError(f"override {item!r}: {why}{hint}") from None


# ----------------------------------------------------------------- values to field types
def section_name(cls: type) -> str:
    """'data', 'model', ... for a section class (the prefix of every key in messages)."""
    return getattr(cls, "_SECTION", cls.__name__)


def coerce(section: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``section`` with ``values`` applied, type-checked against the field types."""
    kinds = {f.name: f for f in fields(section)}
    name = section_name(type(section))
    check_keys(name, values, kinds)
    out = {}
    for key, value in values.items():
        default = getattr(section, key)
        out[key] = convert(f"{name}.{key}", value, default)
    return replace(section, **out)


#: Words a number field also takes: ``cluster.keep_weights: all``.
_WORDS: dict[str, tuple[str, ...]] = {"cluster.keep_weights": ("all",)}


def convert(where: str, value: Any, default: Any) -> Any:
    """Convert YAML/JSON values to the type of the field's default (int 3 -> 3.0 for floats)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool) or (isinstance(value, str) and not isinstance(default, str)):
            return value  # bool | str fields (pretrained) keep strings
        raise ConfigError(f"{where} must be true or false, not {short_repr(value)}." + fix(where))
    if value in _WORDS.get(where, ()):
        return value  # a word this number field also takes; validate checks the rest
    if isinstance(default, int):
        return _whole(where, value)
    if isinstance(default, float):
        try:
            return value if isinstance(value, bool) else float(value)  # validate names a bool
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, not {short_repr(value)}." + fix(where)) from None
    if isinstance(default, str):
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where} must be a string, not {short_repr(value)}." + fix(where))
        return str(value)
    if isinstance(default, tuple):
        if isinstance(value, (str, Mapping)):  # tuple("val_auc") would be its letters
            raise ConfigError(f"{where} must be a list, not {short_repr(value)}." + fix(where))
        return tuple(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, not {short_repr(value)}." + fix(where))
        return dict(value)
    return value


def _whole(where: str, value: Any) -> int:
    """``value`` as an int when it is a whole number (3, 3.0, "3"), else a ConfigError."""
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ConfigError(f"{where} must be a whole number, not {short_repr(value)}." + fix(where))
    return int(float(value))


__all__ = ["check_override_values", "coerce", "convert", "read_tree", "section_name",
           "yaml_load"]
