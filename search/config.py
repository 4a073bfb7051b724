"""Frozen configuration: one dataclass per concern, loaded from YAML with strict keys.

An experiment is ``ExperimentConfig(data, model, optim, cluster, search)``. Every section is
a frozen dataclass so a run's configuration cannot drift after it starts; ``to_dict()`` is
what gets saved beside every checkpoint and result. A typo in a YAML key is an error that
names the key and the valid ones, never a silently ignored setting.

Imports: search.paths is imported where a value needs it; nothing here loads torch, and no
module of the project above this one is imported (the model layer owns the layer settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from search import catalog


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


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says how to fix it."""


class _Validated:
    """Checks every field of a config section when it is built (also by ``replace``), so a
    bad value fails as the YAML is loaded, before any cluster starts; see :func:`validate`."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class DataConfig(_Validated):
    """Where the shards are and how training batches are drawn from them."""

    shards: str = ""  # prepared shard folder (holds manifest.json); "" = the embedded demo set
    ratio: str = "1:2"  # REAL:FAKE of the train split per epoch: "1:1", "1:2", "natural", "a:b"
    hflip: bool = True
    jpeg_prob: float = 0.0  # probability of a random JPEG re-compression (quality 30-95)
    blur_prob: float = 0.0  # probability of a Gaussian blur (sigma 0.1-2.0)
    color_jitter: float = 0.0  # max relative brightness/contrast/saturation change
    downup_prob: float = 0.0  # probability of a 2x downscale and bilinear upscale back
    # Self-blended fakes (SBI; search/data/synthetic.py), made from REAL training images in
    # the train stream: the share of the epoch's FAKE rows that are self-blends (0 = none,
    # 1 = REAL images and their blends only); the mask, the blend ratios drawn from (a
    # comma-separated list, so that a search can choose among sets) and the transforms.
    synthetic: float = 0.0
    blend_mask: Literal["ellipse"] = "ellipse"
    blend_ratios: str = "0.25,0.5,0.75,1,1,1"
    blend_transform: Literal["sbi", "colour", "quality", "none"] = "sbi"
    # What the synthetic FAKEs are: self_blend (SBI: a face blended with itself), or a
    # cross-face part splice (search/data/splice.py: the eyes, nose, mouth or face of
    # another train-split identity pasted in with a feathered mask, as CIPLAB's fakes were
    # made), with its own colours (splice) or colour-matched (splice_matched)
    synthetic_kind: Literal["self_blend", "splice", "splice_matched"] = "self_blend"
    # Paired batches: each FAKE next to the REAL image it was made from (the shards' group),
    # so a batch holds both sides of a pair and no shortcut between people pays (GenD);
    # the training loop's shuffle buffer is off then (it would part them again).
    paired: bool = False
    decode_workers: int = 0  # concurrent read+decode tasks per split; 0 = cluster.data_cpus
    cache_eval: bool = True  # decode validation once per trial when it fits the object store
    prefetch_batches: int = 2
    # Cross-source selection: name -> another prepared shard folder whose validation split
    # every trial also scores (val_auc@NAME, ...), so search.metric can select on it.
    extra_sources: Mapping[str, str] = field(default_factory=dict)
    extra_every: int = 1  # score the extra sources every this many epochs (and the last)


@dataclass(frozen=True)
class ModelConfig(_Validated):
    """Architecture and layer configuration; which settings apply to which architecture is
    the model layer's to say (``search.model.registry.layer_kwargs``)."""

    arch: str = "custom_cnn"
    pretrained: bool | str = False  # True = timm hub weights, a path = local weights file
    input_size: int = 224  # the study's resize; ignored when native_input_size is true
    native_input_size: bool = False  # use the architecture's own input size instead
    # What the network sees, a fixed module in front of it (search/model/transforms.py):
    # rgb = the image; npr = x - nearest_up(nearest_down(x, 2)); highpass = x - 3x3 box blur
    input_transform: Literal["rgb", "npr", "highpass"] = "rgb"
    # custom CNN
    conv_blocks: int = 3
    base_width: int = 32
    kernel_size: int = 3
    dense_units: int = 128
    dropout: float = 0.5
    batch_norm: bool = True
    # timm families
    frozen_stages: int = 0
    head_dropout: float = 0.0
    head_hidden: int = 0


@dataclass(frozen=True)
class OptimConfig(_Validated):
    """Optimiser, schedule and training-loop settings of one trial."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = 0
    # linear warm-up over the first optimiser steps, on top of the schedule (a fine-tuned
    # pretrained backbone is wrecked by full-LR steps through its random head's gradients)
    warmup_steps: int = 0
    # the backbone's LR as a fraction of lr (the head keeps lr): a pretrained backbone wants
    # a smaller step than the new head (0.1-0.3); 1 = one LR for every parameter
    backbone_lr_scale: float = 1.0
    step_size: int = 3  # step schedule: decay every this many epochs
    gamma: float = 0.1  # step schedule: decay factor
    epochs: int = 10
    batch_size: int = 64
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    amp: bool = True  # bfloat16 autocast on GPU
    channels_last: bool = True  # NHWC on GPU (faster convolutions)


@dataclass(frozen=True)
class ClusterConfig(_Validated):
    """How a trial maps onto the cluster and where results go."""

    # Ray address; "" = RAY_ADDRESS, else the last `ray start` here, else a new local one;
    # "local" = always a new one (search/cluster.py)
    address: str = ""
    # 1 = the trial trains in its own process (no TorchTrainer); >1 = DDP via TorchTrainer
    num_workers: int = 1
    use_gpu: bool | None = None  # None = use GPUs when the cluster has them
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    data_cpus: float = 2.0  # CPUs reserved in each trial's placement group for its Ray Data tasks
    threads: int = 0  # torch intra-op threads of a CPU worker; 0 = the CPUs it holds
    max_concurrent_trials: int = 0  # 0 = as many as can be reserved at any moment
    reuse_actors: bool = True  # a finished trial's process serves the next (imports paid once)
    storage_path: str = "results"  # local folder or pyarrow URI (s3://, gs://, NFS path)
    poll_interval_s: float = 0.5  # Ray Train controller's poll of its workers (Ray: 2 s)
    # Trials whose weights are kept once they can no longer be a finalist: the best k of
    # each architecture by search.metric (1 = what the finalists' stage needs), plus the
    # latest checkpoint of every running trial (search/tune/retention.py); "all" keeps
    # every trial's. The others keep config.json, metrics and validation predictions.
    keep_weights: int | Literal["all"] = 1


@dataclass(frozen=True)
class SearchConfig(_Validated):
    """The search: what is optimised, how trials are sampled, stopped and retried."""

    name: str = "demo"
    metric: str = "val_auc"
    mode: Literal["", "max", "min"] = ""  # "" = inferred from the metric (max, except losses and error rates)
    num_samples: int = 8
    algorithm: Literal["tpe", "random"] = "tpe"
    # TPE: trials sampled at random before its model takes over; 0 = a quarter of
    # num_samples, 2 to 5 (a short search spends less of itself exploring blindly; 5, not
    # Optuna's 10: over 200 trials of HPOLib, NAS-Bench-201 and HPOBench, 20 seeds, 5
    # reached random search's best sooner on 5 of 6 sets and ended no worse on any;
    # results/bench/peer.md)
    startup_trials: int = 0
    scheduler: Literal["asha", "none"] = "asha"
    # ASHA: epochs every trial gets before it can be stopped. 3, not Tune's 1: the epoch-1 AUC
    # ranks trials poorly (Spearman 0.37 against epoch 4), and on the replay benchmark
    # (results/bench/efficiency.md, 50 seeds) grace 3 reached random search's best in 45 of
    # 50 searches against grace 1's 33, with 0.85 of random's epochs at the median against 1.00.
    grace_period: int = 3
    reduction_factor: int = 2
    max_failures: int = 1  # retries of a failed trial, from its last checkpoint
    space: Mapping[str, Any] = field(default_factory=dict)  # overrides of the default space
    points_to_evaluate: tuple[Mapping[str, Any], ...] = ()
    export: bool = False  # export the best trial when the search ends
    # Multi-objective search, e.g. [val_auc, latency_ms]: Optuna keeps the Pareto front of
    # them all. The first is the search metric (search.metric is set to it when left at its
    # default, any other value is an error): ASHA stops trials and checkpoints are kept by it,
    # so it must be a validation metric. Each one's direction is inferred like search.mode's.
    objectives: tuple[str, ...] = ()
    # Where the Optuna study lives: "journal" (default; Optuna's JournalStorage, an append-only
    # file optuna.journal beside the results, uploaded as appends to a URI storage_path),
    # "sqlite" (optuna.db, the format before issue 29) or any database URL
    # (postgresql://user@host:5432/db): several drivers may then share one study.
    optuna_storage: str = "journal"

    def __post_init__(self) -> None:
        validate(self)
        if self.objectives and self.metric == _SEARCH_METRIC:
            object.__setattr__(self, "metric", self.objectives[0])  # frozen: set once, here
        if self.objectives and self.metric != self.objectives[0]:
            raise ConfigError(
                f"search.metric {self.metric!r} is not the first of search.objectives "
                f"{list(self.objectives)}: the first objective is the search metric. Leave "
                f"search.metric out or set it to {self.objectives[0]!r}." + _fix("search.metric"))

    def resolved_startup_trials(self) -> int:
        """TPE's random start-up trials: ``startup_trials``, else a quarter of the search
        (at least 2, at most 5)."""
        return self.startup_trials or max(2, min(5, self.num_samples // 4))

    def resolved_mode(self) -> str:
        """``mode`` if set, else the right direction for the metric's name."""
        if self.mode:
            if self.mode not in ("max", "min"):
                raise ConfigError(f"search.mode must be 'max' or 'min', not {self.mode!r}")
            return self.mode
        return catalog.mode(self.metric)

    def objective_modes(self) -> tuple[str, ...]:
        """The direction of each objective: the first one's is :meth:`resolved_mode`."""
        return tuple(self.resolved_mode() if i == 0 else catalog.mode(name)
                     for i, name in enumerate(self.objectives))


_SEARCH_METRIC = SearchConfig.metric  # the default: what "left out" means for objectives


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "cluster": ClusterConfig,
    "search": SearchConfig,
}

# Flat trial parameters (what the search samples) and the section each one lives in.
TRIAL_SECTIONS = ("data", "model", "optim")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one experiment needs; saved as ``config.json`` with every run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check_source_metric(self.search.metric, self.data.extra_sources)
        for name in self.search.objectives[1:]:
            check_source_metric(name, self.data.extra_sources, key="search.objectives")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def __str__(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False).rstrip()

    def with_params(self, params: Mapping[str, Any]) -> ExperimentConfig:
        """Apply flat trial parameters (``{"arch": ..., "lr": ...}``) to their sections."""
        updates: dict[str, dict[str, Any]] = {name: {} for name in TRIAL_SECTIONS}
        for key, value in params.items():
            if key == "seed":
                continue
            updates[trial_param_section(key)][key] = value
        cfg = self
        for section, values in updates.items():
            if values:
                cfg = replace(cfg, **{section: _coerce(getattr(cfg, section), values)})
        if "seed" in params:
            cfg = replace(cfg, seed=int(params["seed"]))
        return cfg

    def with_overrides(self, overrides: Iterable[str]) -> ExperimentConfig:
        """Apply ``section.key=value`` strings (values parsed as YAML), e.g. ``optim.lr=3e-4``."""
        tree = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            dotted, raw = item.split("=", 1)
            parts = dotted.strip().split(".")
            if len(parts) == 1 and parts[0] in tree and parts[0] not in SECTIONS:
                tree[parts[0]] = yaml_load(raw)
                continue
            if len(parts) == 1:
                parts = [trial_param_section(parts[0]), parts[0]]
            if len(parts) != 2:
                raise ConfigError(f"override {item!r}: use section.key=value")
            section, key = parts
            _check_keys(section, [section], list(SECTIONS), "section")
            tree[section][key] = yaml_load(raw)
        return config_from_dict(tree)


def trial_param_section(name: str) -> str:
    """The section ('data', 'model' or 'optim') that a flat trial parameter belongs to."""
    for section in TRIAL_SECTIONS:
        if name in {f.name for f in fields(SECTIONS[section])}:
            return section
    valid = sorted({f.name for s in TRIAL_SECTIONS for f in fields(SECTIONS[s])})
    _check_keys("trial parameters", [name], valid, "parameter")
    raise AssertionError  # _check_keys raised


def check_source_metric(metric: str, sources: Mapping[str, str],
                        key: str = "search.metric") -> None:
    """A metric with ``@`` must name a configured extra source (or mean/worst over them)."""
    if not catalog.parse(metric).source:
        return
    valid = catalog.source_metric_names(sources)
    if metric not in valid:
        fix = (f"Valid: {', '.join(valid)}" if valid else
               "No data.extra_sources are configured: add one (name: prepared shard folder)")
        raise ConfigError(f"{key} {metric!r} names no configured source metric."
                          f"{did_you_mean(metric, valid)} {fix}")


#: The most characters of a value an error message quotes (a 900 KB value is cut, once).
QUOTE_MAX = 80


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to :data:`QUOTE_MAX` characters with its full length said: an
    error message names the value, never prints megabytes of it."""
    text = repr(value)
    if len(text) <= QUOTE_MAX:
        return text
    return f"{text[:QUOTE_MAX - 20]}... ({len(text)} characters)"


def did_you_mean(key: str, valid: Iterable[str], n: int = 3) -> str:
    """`` Did you mean 'a', 'b'?`` for the close matches of a mistyped ``key``, else ``""``."""
    close = difflib.get_close_matches(key, list(valid), n=n)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_keys(where: str, keys: Iterable[str], valid: Iterable[str], what: str = "key") -> None:
    valid = list(valid)
    for key in keys:
        if key not in valid:
            hint = did_you_mean(key, valid)
            raise ConfigError(
                f"unknown {what} {key!r} in {where}.{hint} Valid: {', '.join(sorted(valid))}"
            )


def _coerce(section: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``section`` with ``values`` applied, type-checked against the field types."""
    kinds = {f.name: f for f in fields(section)}
    name = _section_name(type(section))
    _check_keys(name, values, kinds)
    out = {}
    for key, value in values.items():
        default = getattr(section, key)
        out[key] = _convert(f"{name}.{key}", value, default)
    return replace(section, **out)


#: Words a number field also takes: ``cluster.keep_weights: all``.
_WORDS: dict[str, tuple[str, ...]] = {"cluster.keep_weights": ("all",)}


def _convert(where: str, value: Any, default: Any) -> Any:
    """Convert YAML/JSON values to the type of the field's default (int 3 -> 3.0 for floats)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool) or (isinstance(value, str) and not isinstance(default, str)):
            return value  # bool | str fields (pretrained) keep strings
        raise ConfigError(f"{where} must be true or false, not {short_repr(value)}." + _fix(where))
    if value in _WORDS.get(where, ()):
        return value  # a word this number field also takes; validate checks the rest
    if isinstance(default, int):
        try:
            whole = not isinstance(value, bool) and float(value).is_integer()
        except (TypeError, ValueError, OverflowError):
            whole = False
        if not whole:
            raise ConfigError(f"{where} must be a whole number, not {short_repr(value)}." + _fix(where))
        return int(float(value))
    if isinstance(default, float):
        try:
            return value if isinstance(value, bool) else float(value)  # validate names a bool
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, not {short_repr(value)}." + _fix(where)) from None
    if isinstance(default, str):
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where} must be a string, not {short_repr(value)}." + _fix(where))
        return str(value)
    if isinstance(default, tuple):
        if isinstance(value, (str, Mapping)):  # tuple("val_auc") would be its letters
            raise ConfigError(f"{where} must be a list, not {short_repr(value)}." + _fix(where))
        return tuple(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, not {short_repr(value)}." + _fix(where))
        return dict(value)
    return value


def config_from_dict(tree: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from a nested dict, rejecting unknown keys."""
    tree = dict(tree or {})
    _check_keys("the experiment config", tree, [*SECTIONS, "seed"], "section")
    kwargs: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = tree.get(section) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"section {section!r} must be a mapping of keys to values")
        kwargs[section] = _coerce(cls(), values)
    seed = _convert("seed", tree.get("seed", 0), 0)
    if seed is None:
        raise ConfigError("seed must be a whole number, not null")
    if not 0 <= seed <= 2**32 - 1:  # numpy's and torch's seeds: refused now, not in a trial
        raise ConfigError(f"seed must be between 0 and {2**32 - 1}, not {seed}." + _fix("seed"))
    return ExperimentConfig(**kwargs, seed=seed)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML (or the defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        from search.paths import resolve_user_path

        path = resolve_user_path(path)
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
    overrides = list(overrides)
    for item in overrides:  # each value is YAML: a bad one is named here, not deep in PyYAML
        try:
            yaml_load(item.split("=", 1)[1] if "=" in item else "")
        except yaml.YAMLError as err:
            why = getattr(err, "problem", None) or " ".join(str(err).split())
            fix = "" if isinstance(err, _Loader.Refused) else (
                ": quote the value if it is a string, e.g. 'model.arch=\"...\"'")
            raise ConfigError(f"override {item!r}: {why}{fix}") from None
    try:
        return config_from_dict(tree).with_overrides(overrides)
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None


def _not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a config file, and the fix."""
    if path.is_dir():
        return "is a folder: name the experiment YAML in it, e.g. --config examples/study.yaml"
    if path.exists():
        return "is not a regular file (a FIFO or a device): name an experiment YAML file"
    return "does not exist"


# ----------------------------------------------------------------- validation when built
def _section_name(cls: type) -> str:
    """'data', 'model', ... for a section class (the prefix of every key in messages)."""
    return next((name for name, c in SECTIONS.items() if c is cls), cls.__name__)


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


# Ranges on top of the types; a section field without an entry is type-checked only.
def _keep_weights(v: int | str) -> str | None:
    return None if v == "all" or (isinstance(v, int) and v >= 1) else "must be 'all' or at least 1"


def _optuna_storage(v: str) -> str | None:
    if v in ("journal", "sqlite") or "://" in v:
        return None
    return ("must be 'journal' (an append-only file beside the results), 'sqlite' (optuna.db) "
            "or a database URL such as postgresql://user@host:5432/db")


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


def _fix(key: str) -> str:
    """The fix appended to every value error: where to set the key."""
    return f" Set it in the experiment YAML or as {key}=VALUE on the command line."


def _unquoted_fits(value: Any, hint: Any) -> bool:
    """Whether a string value would fit without its quotes (``"False"`` for a bool)."""
    try:
        return isinstance(value, str) and _fits(yaml_load(value), hint)
    except yaml.YAMLError:
        return False


def validate(section: Any) -> None:
    """Check a config section's every field against its type and range, or raise
    ConfigError naming the key (``optim.lr``), the value and the fix."""
    prefix = _section_name(type(section))
    for f in fields(section):
        key, value = f"{prefix}.{f.name}", getattr(section, f.name)
        hint = _hints(type(section))[f.name]
        if not _fits(value, hint):
            quoted = " (a quoted string: drop the quotes)" if _unquoted_fits(value, hint) else ""
            hint_text = did_you_mean(value, typing.get_args(hint)) if isinstance(value, str) and (
                typing.get_origin(hint) is Literal) else ""
            raise ConfigError(f"{key} must be {_describe(hint)}, not {short_repr(value)}{quoted}.{hint_text}"
                              + _fix(key))
        rule = _RULES.get(key)
        problem = rule(value) if rule else None
        if problem:
            raise ConfigError(f"{key} {problem}, not {short_repr(value)}." + _fix(key))


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


__all__ = [
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
    "short_repr",
    "parse_blend_ratios",
    "parse_ratio",
    "trial_param_section",
    "validate",
]
