"""The config sections: one frozen, validated dataclass per concern, and the experiment
that holds them (``ExperimentConfig(data, model, optim, cluster, search)``).

Every section checks its fields when built (:func:`search.config._checks.validate`), so a
bad value fails as the YAML is loaded; an experiment applies trial parameters and
``SECTION.KEY=VALUE`` overrides by building new sections, never by changing one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import yaml

from search import catalog
from search.config._checks import check_source_metric, validate
from search.config._errors import ConfigError, check_keys, fix
from search.config._loader import coerce, convert, yaml_load


class _Validated:
    """Checks every field of a config section when it is built (also by ``replace``), so a
    bad value fails as the YAML is loaded, before any cluster starts; see :func:`validate`."""

    #: The section's key in an experiment YAML, the prefix of its keys in every message
    #: (a class attribute, not a field: the validators and the loader read it from the class).
    _SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class DataConfig(_Validated):
    """Where the shards are and how training batches are drawn from them."""

    _SECTION: ClassVar[str] = "data"

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

    _SECTION: ClassVar[str] = "model"

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

    _SECTION: ClassVar[str] = "optim"

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

    _SECTION: ClassVar[str] = "cluster"

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

    _SECTION: ClassVar[str] = "search"

    name: str = "demo"
    metric: str = catalog.val(catalog.AUC)
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
                f"search.metric out or set it to {self.objectives[0]!r}." + fix("search.metric"))

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
                cfg = replace(cfg, **{section: coerce(getattr(cfg, section), values)})
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
            check_keys(section, [section], list(SECTIONS), "section")
            tree[section][key] = yaml_load(raw)
        return config_from_dict(tree)


def trial_param_section(name: str) -> str:
    """The section ('data', 'model' or 'optim') that a flat trial parameter belongs to."""
    for section in TRIAL_SECTIONS:
        if name in {f.name for f in fields(SECTIONS[section])}:
            return section
    valid = sorted({f.name for s in TRIAL_SECTIONS for f in fields(SECTIONS[s])})
    check_keys("trial parameters", [name], valid, "parameter")
    raise AssertionError  # check_keys raised


def config_from_dict(tree: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from a nested dict, rejecting unknown keys."""
    tree = dict(tree or {})
    check_keys("the experiment config", tree, [*SECTIONS, "seed"], "section")
    kwargs: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = tree.get(section) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"section {section!r} must be a mapping of keys to values")
        kwargs[section] = coerce(cls(), values)
    seed = convert("seed", tree.get("seed", 0), 0)
    if seed is None:
        raise ConfigError("seed must be a whole number, not null")
    if not 0 <= seed <= 2**32 - 1:  # numpy's and torch's seeds: refused now, not in a trial
        raise ConfigError(f"seed must be between 0 and {2**32 - 1}, not {seed}." + fix("seed"))
    return ExperimentConfig(**kwargs, seed=seed)


__all__ = ["SECTIONS", "TRIAL_SECTIONS", "ClusterConfig", "DataConfig", "ExperimentConfig",
           "ModelConfig", "OptimConfig", "SearchConfig", "config_from_dict",
           "trial_param_section"]
