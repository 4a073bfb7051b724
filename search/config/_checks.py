"""The validators: every field of a config section checked against its type hint and its
range (``_RULES``) when the section is built, so a bad value fails as the YAML is loaded,
before any cluster starts; and the parsers and checks of single values other modules use
(ratios, blend ratios, folder names, a metric's source).

Imports: :mod:`search.paths` where a value needs it (a folder name); nothing above it.
"""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Literal

import yaml

from search import catalog
from search.config._errors import ConfigError, did_you_mean, fix, short_repr
from search.config._loader import section_name, yaml_load


def validate(section: Any) -> None:
    """Check a config section's every field against its type and range, or raise
    ConfigError naming the key (``optim.lr``), the value and the fix."""
    prefix = section_name(type(section))
    for f in fields(section):
        key, value = f"{prefix}.{f.name}", getattr(section, f.name)
        hint = _hints(type(section))[f.name]
        if not _fits(value, hint):
            quoted = " (a quoted string: drop the quotes)" if _unquoted_fits(value, hint) else ""
            hint_text = did_you_mean(value, typing.get_args(hint)) if isinstance(value, str) and (
                typing.get_origin(hint) is Literal) else ""
            raise ConfigError(f"{key} must be {_describe(hint)}, not {short_repr(value)}{quoted}.{hint_text}"
                              + fix(key))
        rule = _RULES.get(key)
        problem = rule(value) if rule else None
        if problem:
            raise ConfigError(f"{key} {problem}, not {short_repr(value)}." + fix(key))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_KIND = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
         type(None): "null"}


def _describe(hint: Any) -> str:
    """What a type hint accepts, in words ('true or false', "one of 'a', 'b'", ...)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is not None:
        return f"a {getattr(origin, '__name__', origin)}"
    return _KIND.get(hint, getattr(hint, "__name__", str(hint)))


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint`` (bools are not numbers, ints are floats)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(hint))
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _unquoted_fits(value: Any, hint: Any) -> bool:
    """Whether a string value would fit without its quotes (``"False"`` for a bool)."""
    try:
        return isinstance(value, str) and _fits(yaml_load(value), hint)
    except yaml.YAMLError:
        return False


# ----------------------------------------------------------------- ranges, one per key
def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _fraction(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be between 0 and 1"


def _below_one(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be at least 0 and below 1"


def _ratio(v: str) -> str | None:
    try:
        parse_ratio(v)
    except ConfigError:
        return "must be 'natural' or REAL:FAKE with two positive numbers, such as '1:2'"
    return None


def _name(v: str) -> str | None:
    from search.paths import folder_name_problem  # the one rule for every folder name

    return folder_name_problem(v)


def check_folder_name(name: str, key: str) -> str:
    """``name`` if it is a safe folder name, else a ConfigError naming ``key`` and the rule.

    Every name the project turns into a folder goes through the one rule
    (:func:`search.paths.folder_name_problem`): ``search.name`` through the config's rules,
    ``run --name`` and ``train --name`` here, so ``../../x`` or ``/etc`` can never put a run
    outside its storage folder.
    """
    problem = _name(name)
    if problem:
        raise ConfigError(f"{key} {problem}, not {name!r}")
    return name


def _not_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


ARCH_MAX = 200  # timm's longest names, pretrained tag included, are about 60 characters


def _arch(v: str) -> str | None:
    if len(v) > ARCH_MAX:
        return (f"must be an architecture name of at most {ARCH_MAX} characters (custom_cnn, "
                "resnet50 or a timm.list_models() name)")
    return _not_empty(v)


def _sources(v: Mapping) -> str | None:
    for name, folder in v.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
            return f"has the name {name!r}: use lowercase letters, digits and '_'"
        if name in catalog.SOURCE_AGGREGATES:
            return f"has the name {name!r}, reserved for the aggregate val_auc@{name}"
        if not isinstance(folder, str) or not folder.strip():
            return f"maps {name!r} to {folder!r}: give a prepared shard folder (or URI)"
    return None


def _blend_ratios(v: str) -> str | None:
    try:
        parse_blend_ratios(v)
    except ConfigError as err:
        return str(err)
    return None


def _objectives(v: tuple) -> str | None:
    if not v:
        return None
    if len(v) < 2:
        return "must name at least two metrics (one is search.metric: leave objectives out)"
    for name in v:
        if not isinstance(name, str) or not (catalog.is_validation(name)
                                             or name in catalog.COST_OBJECTIVES):
            return (f"has {name!r}: name validation metrics (val_auc, val_eer, ...) or "
                    f"{', '.join(catalog.COST_OBJECTIVES)}")
    if len(set(v)) < len(v):
        return "names a metric twice"
    if not catalog.is_validation(v[0]):
        return (f"starts with {v[0]!r}: the first objective is the search metric that ASHA "
                "and the checkpoints rank epochs by, so it must be a validation metric (val_*)")
    return None


def _mappings(v: tuple) -> str | None:
    return None if all(isinstance(p, Mapping) for p in v) else "must be a list of mappings"


def _keep_weights(v: int | str) -> str | None:
    return None if v == "all" or (isinstance(v, int) and v >= 1) else "must be 'all' or at least 1"


def _optuna_storage(v: str) -> str | None:
    if v in ("journal", "sqlite") or "://" in v:
        return None
    return ("must be 'journal' (an append-only file beside the results), 'sqlite' (optuna.db) "
            "or a database URL such as postgresql://user@host:5432/db")


# Ranges on top of the types; a section field without an entry is type-checked only.
_RULES: dict[str, Callable[[Any], str | None]] = {
    "data.ratio": _ratio, "data.jpeg_prob": _fraction, "data.blur_prob": _fraction,
    "data.color_jitter": _below_one, "data.decode_workers": _at_least(0),
    "data.prefetch_batches": _at_least(0), "data.extra_sources": _sources,
    "data.extra_every": _at_least(1), "data.downup_prob": _fraction,
    "data.synthetic": _fraction, "data.blend_ratios": _blend_ratios,
    "model.arch": _arch, "model.input_size": _at_least(16), "model.conv_blocks": _at_least(1),
    "model.base_width": _at_least(1), "model.kernel_size": _at_least(1),
    "model.dense_units": _at_least(1), "model.dropout": _below_one,
    "model.frozen_stages": _at_least(0), "model.head_dropout": _below_one,
    "model.head_hidden": _at_least(0),
    "optim.lr": _positive, "optim.weight_decay": _at_least(0), "optim.momentum": _fraction,
    "optim.warmup_epochs": _at_least(0), "optim.warmup_steps": _at_least(0),
    "optim.backbone_lr_scale": _positive, "optim.step_size": _at_least(1), "optim.gamma": _positive,
    "optim.epochs": _at_least(1), "optim.batch_size": _at_least(1), "optim.grad_clip": _at_least(0),
    "cluster.num_workers": _at_least(1), "cluster.cpus_per_worker": _positive,
    "cluster.gpus_per_worker": _at_least(0), "cluster.data_cpus": _at_least(1),  # a data task takes 1 CPU of the trial's own
    "cluster.threads": _at_least(0),
    "cluster.max_concurrent_trials": _at_least(0), "cluster.poll_interval_s": _positive,
    "cluster.storage_path": _not_empty,
    "cluster.keep_weights": _keep_weights, "search.optuna_storage": _optuna_storage,
    "search.name": _name, "search.metric": _not_empty, "search.num_samples": _at_least(1),
    "search.grace_period": _at_least(1), "search.reduction_factor": _at_least(2),
    "search.max_failures": _at_least(0), "search.startup_trials": _at_least(0),
    "search.points_to_evaluate": _mappings, "search.objectives": _objectives,
}


# ----------------------------------------------------------------- single values
def parse_ratio(ratio: str) -> tuple[float, float] | None:
    """Parse a REAL:FAKE ratio: ``"1:2"`` -> (1.0, 2.0); ``"natural"`` -> None."""
    text = str(ratio).strip().lower()
    if text in ("natural", "none", ""):
        return None
    try:
        real, fake = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"ratio {ratio!r} must be 'natural' or REAL:FAKE such as '1:2'") from None
    if not (real > 0 and fake > 0 and math.isfinite(real) and math.isfinite(fake)):
        raise ConfigError(f"ratio {ratio!r}: both parts must be positive")
    return real, fake


#: SBI's blend ratios: half of the blends at full strength, a sixth each at 0.25, 0.5, 0.75.
SBI_BLEND_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def parse_blend_ratios(text: str) -> tuple[float, ...]:
    """``data.blend_ratios``: ``"0.25,0.5,0.75,1,1,1"`` -> (0.25, 0.5, 0.75, 1.0, 1.0, 1.0);
    each a number in (0, 1], at least one (repeats weight a value)."""
    try:
        values = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v <= 1 for v in values):
        raise ConfigError("must be comma-separated numbers in (0, 1], such as "
                          "'0.25,0.5,0.75,1,1,1' (SBI's; repeat a value to draw it more often)")
    return values


def check_source_metric(metric: str, sources: Mapping[str, str],
                        key: str = "search.metric") -> None:
    """A metric with ``@`` must name a configured extra source (or mean/worst over them)."""
    if not catalog.parse(metric).source:
        return
    valid = catalog.source_metric_names(sources)
    if metric not in valid:
        hint = (f"Valid: {', '.join(valid)}" if valid else
                "No data.extra_sources are configured: add one (name: prepared shard folder)")
        raise ConfigError(f"{key} {metric!r} names no configured source metric."
                          f"{did_you_mean(metric, valid)} {hint}")


__all__ = ["ARCH_MAX", "SBI_BLEND_RATIOS", "check_folder_name", "check_source_metric",
           "parse_blend_ratios", "parse_ratio", "validate"]
