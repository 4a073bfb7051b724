"""Frozen configuration: one dataclass per concern, loaded from YAML with strict keys.

An experiment is ``ExperimentConfig(data, model, optim, cluster, search)``. Every section is
a frozen dataclass so a run's configuration cannot drift after it starts; ``to_dict()`` is
what gets saved beside every checkpoint and result. A typo in a YAML key is an error that
names the key and the valid ones, never a silently ignored setting.

This module is the public face (as ``optuna.storages`` is of its private modules): import
every name from ``search.config``. Behind it, lowest first:

- ``_errors``: :class:`ConfigError` and the pieces of its messages;
- ``_loader``: the YAML loader (bounded, each key once), a config file read, overrides'
  syntax, values turned into field types;
- ``_checks``: the validators every section runs when built, and single-value parsers;
- ``_sections``: the section dataclasses and :class:`ExperimentConfig`.

Imports: search.paths is imported where a value needs it; nothing here loads torch, and no
module of the project above this one is imported (the model layer owns the layer settings).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from search.config._checks import (
    ARCH_MAX,
    SBI_BLEND_RATIOS,
    check_folder_name,
    check_source_metric,
    parse_blend_ratios,
    parse_ratio,
    validate,
)
from search.config._errors import QUOTE_MAX, ConfigError, did_you_mean, short_repr
from search.config._loader import check_override_values, read_tree, yaml_load
from search.config._sections import (
    SECTIONS,
    TRIAL_SECTIONS,
    ClusterConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    SearchConfig,
    config_from_dict,
    trial_param_section,
)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML (or the defaults when ``path`` is None) and apply overrides."""
    tree = {}
    if path is not None:
        from search.paths import resolve_user_path

        path = resolve_user_path(path)
        tree = read_tree(path)
    overrides = list(overrides)
    check_override_values(overrides)
    try:
        return config_from_dict(tree).with_overrides(overrides)
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None


__all__ = [
    "ARCH_MAX",
    "QUOTE_MAX",
    "SBI_BLEND_RATIOS",
    "SECTIONS",
    "TRIAL_SECTIONS",
    "ClusterConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "SearchConfig",
    "check_folder_name",
    "check_source_metric",
    "config_from_dict",
    "did_you_mean",
    "load_config",
    "parse_blend_ratios",
    "parse_ratio",
    "short_repr",
    "trial_param_section",
    "validate",
    "yaml_load",
]
