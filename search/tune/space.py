"""The search space: the study's choices as plain data, sampled by one define-by-run function.

``DEFAULT_SPACE`` reproduces the study (its five architectures, REAL:FAKE 1:1 or 1:2, a
learning-rate range) plus the layer settings it tuned by hand. It searches only what can
change the result: ``frozen_stages`` only where the weights are pretrained (freezing
random stages only throws capacity away), ``conv_blocks`` only as deep as the input size
allows, and not ``batch_size`` (with ``lr`` searched it adds no degree of freedom worth a
trial; it is a memory and throughput setting, ``optim.batch_size``). An experiment YAML
narrows or widens it under ``search.space`` without code::

    search:
      space:
        arch: [custom_cnn, resnet50]              # a list: choose among these
        ratio: "1:2"                              # a scalar: fixed
        lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        conv_blocks: {low: 2, high: 4}            # ints stay ints
        dropout: {choices: [0.0, 0.25, 0.5]}

:func:`space_for` builds an experiment's space and refuses an experiment value that the
space would silently replace (``model.arch: resnet50`` while the space searches five).
With pretrained weights, the trials of timm architectures take ``model.pretrained`` (a
local file may name the trial's architecture, ``/weights/{arch}.safetensors``) and those
of ``custom_cnn``, which has none, train from scratch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from search.config import (
    SECTIONS,
    TRIAL_SECTIONS,
    ConfigError,
    ExperimentConfig,
    did_you_mean,
    trial_param_section,
)
from search.model.registry import STUDY_ARCHS, model_params
from search.model.weights import package_weights, weights_file

CUSTOM = "custom"  # condition: only when arch == custom_cnn
TIMM = "timm"  # condition: only for timm families


@dataclass(frozen=True)
class Param:
    """One searchable parameter: a fixed value, a set of choices or a numeric range."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    value: Any = None  # fixed value (no search) when choices and low are None
    when: str | None = None  # None = always; CUSTOM or TIMM = only for those architectures
    weights: bool | str = False  # arch only: model.pretrained of the timm trials (see sample)
    note: str = ""  # why it is fixed or bounded (shown by describe and in errors)

    def applies(self, arch: str) -> bool:
        if self.when is None:
            return True
        return (arch == "custom_cnn") == (self.when == CUSTOM)

    def suggest(self, trial: Any) -> Any:
        """Draw from an Optuna trial (fixed values are not drawn)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)

    @property
    def fixed(self) -> bool:
        return self.choices is None and self.low is None


DEFAULT_SPACE: dict[str, Param] = {p.name: p for p in (
    Param("arch", choices=STUDY_ARCHS),
    Param("ratio", choices=("1:1", "1:2")),
    Param("lr", low=1e-5, high=1e-2, log=True),
    Param("weight_decay", low=1e-6, high=1e-2, log=True),
    # custom CNN: the study's Conv2D/MaxPool/Flatten/Dense/Dropout stack
    Param("conv_blocks", low=2, high=5, integer=True, when=CUSTOM),
    Param("base_width", choices=(16, 32, 64), when=CUSTOM),
    Param("kernel_size", choices=(3, 5), when=CUSTOM),
    Param("dense_units", choices=(64, 128, 256), when=CUSTOM),
    Param("dropout", low=0.0, high=0.6, when=CUSTOM),
    Param("batch_norm", choices=(True, False), when=CUSTOM),
    # timm families: how much to fine-tune (pretrained weights only: build_space fixes it
    # at 0 for random init) and how to regularise the head
    Param("frozen_stages", low=0, high=4, integer=True, when=TIMM),
    Param("head_dropout", low=0.0, high=0.5, when=TIMM),
    # the fine-tuning recipe (search/train/worker.py): the backbone's LR relative to the
    # head's; fixed at 1 unless searched, and only for timm families (custom_cnn is all head)
    Param("backbone_lr_scale", value=1.0, when=TIMM),
)}

_SPEC_KEYS = {"choices", "low", "high", "log", "step", "value"}


def _trial_fields() -> dict[str, Any]:
    """Every flat trial parameter and its default (the fields of data, model and optim)."""
    return {f.name: getattr(SECTIONS[s](), f.name) for s in TRIAL_SECTIONS for f in fields(SECTIONS[s])}


def _parse(name: str, spec: Any, base: Param | None, default: Any) -> Param:
    when = base.when if base else None
    if isinstance(spec, list | tuple):
        if not spec:
            raise ConfigError(f"search.space.{name}: an empty list of choices")
        return Param(name, choices=tuple(spec), when=when)
    if isinstance(spec, Mapping):
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            key = sorted(unknown)[0]
            hint = did_you_mean(key, _SPEC_KEYS, n=1)
            raise ConfigError(f"search.space.{name}: unknown key {key!r}.{hint} "
                              f"Valid: {', '.join(sorted(_SPEC_KEYS))}")
        if "value" in spec:
            return Param(name, value=spec["value"], when=when)
        if "choices" in spec:
            return Param(name, choices=tuple(spec["choices"]), when=when)
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"search.space.{name}: a range needs both low and high")
        low, high = spec["low"], spec["high"]
        if not float(low) <= float(high):
            raise ConfigError(f"search.space.{name}: low {low} is above high {high}")
        integer = isinstance(default, int) and not isinstance(default, bool) and all(
            float(v).is_integer() for v in (low, high))
        return Param(name, low=low, high=high, log=bool(spec.get("log", False)),
                     step=spec.get("step"), integer=integer, when=when)
    return Param(name, value=spec, when=when)


def _check_values(param: Param) -> None:
    """Every value a trial could be given (a choice, a fixed value) must be one its config
    section accepts, checked as a trial's parameters are applied: a typo in a choice
    (``input_transform: [rgb, nrp]``) is an error now, not in the trial that draws it."""
    values = param.choices if param.choices is not None else (
        (param.value,) if param.fixed else ())
    for value in values:
        try:
            ExperimentConfig().with_params({param.name: value})
        except ConfigError as err:
            raise ConfigError(f"search.space.{param.name}: the choice {value!r} is not a "
                              f"valid value: {err}") from None


def uses_weights(pretrained: bool | str | None) -> bool:
    """True when ``model.pretrained`` loads weights: ``true`` (timm's hub) or a file path."""
    return pretrained is True or (isinstance(pretrained, str) and pretrained.strip() != "")


def build_space(overrides: Mapping[str, Any] | None = None, *,
                pretrained: bool | str | None = False,
                input_size: int | None = None) -> dict[str, Param]:
    """The default space with ``overrides`` (from ``search.space``) applied; typos rejected.

    ``pretrained`` (``model.pretrained``) decides whether freezing can help: without weights
    ``frozen_stages`` is fixed at 0 and searching it is an error; with them the timm trials
    take the weights and the ``custom_cnn`` ones train from scratch. ``input_size`` (None:
    each architecture's own) bounds ``conv_blocks``: each block halves the image.
    """
    valid = _trial_fields()
    space = dict(DEFAULT_SPACE)
    overrides = dict(overrides or {})
    for name, spec in overrides.items():
        if name not in valid:
            hint = did_you_mean(name, valid)
            raise ConfigError(f"search.space: unknown parameter {name!r}.{hint} "
                              f"Valid: {', '.join(sorted(valid))}")
        if name == "pretrained":
            raise ConfigError("search.space.pretrained: set model.pretrained instead (true, a "
                              "weights file, or false); the space derives frozen_stages from it")
        space[name] = _parse(name, spec, DEFAULT_SPACE.get(name), valid[name])
        _check_values(space[name])
    arch = space["arch"]
    archs = arch.choices if arch.choices is not None else (arch.value,)
    for a in archs:
        model_params(a)  # unknown architecture: an error naming close matches, now
    _fit_weights(space, pretrained, user="frozen_stages" in overrides)
    if "custom_cnn" in archs:
        _fit_input(space, _smallest_input(space, input_size), user="conv_blocks" in overrides)
    return space


def _values(param: Param) -> tuple[Any, ...]:
    """The values a parameter can take (a range as its two ends)."""
    if param.fixed:
        return (param.value,)
    return param.choices if param.choices is not None else (param.low, param.high)


def _fit_weights(space: dict[str, Param], pretrained: bool | str | None, *, user: bool) -> None:
    """Freezing only where weights are pretrained; custom_cnn trials never take weights."""
    if uses_weights(pretrained):
        if pretrained is True:  # a packaged backbone whose package is missing: say so now
            for arch in _values(space["arch"]):
                entry = package_weights(arch)
                if entry is not None:
                    weights_file(entry, verify=False)
        # Carried by arch, not as a parameter of its own: the trials table would get a column
        # mixing False (custom_cnn) and file paths, which Parquet cannot store.
        space["arch"] = replace(space["arch"], weights=pretrained)
        return
    frozen = space["frozen_stages"]
    if user and any(v not in (0, None) for v in _values(frozen)):
        raise ConfigError(
            f"search.space.frozen_stages: {_spec_text(frozen)} freezes randomly initialised "
            "stages (model.pretrained is false), which only throws capacity away. Set "
            "model.pretrained (true for timm's hub, or a weights file) or drop "
            "search.space.frozen_stages")
    space["frozen_stages"] = replace(frozen, choices=None, low=None, high=None, value=0,
                                     note="random init: nothing worth freezing")


def _smallest_input(space: Mapping[str, Param], input_size: int | None) -> int | None:
    """The smallest input size a trial can get (the space may search model.input_size)."""
    param = space.get("input_size")
    if param is None:
        return input_size
    return int(min(float(v) for v in _values(param)))


def _fit_input(space: dict[str, Param], input_size: int | None, *, user: bool) -> None:
    """Bound conv_blocks so that the image keeps at least one pixel after the last block."""
    if input_size is None or input_size < 1:
        return
    limit = input_size.bit_length() - 1  # blocks that halve input_size and leave >= 1 px
    blocks = space["conv_blocks"]
    deepest = max(int(v) for v in _values(blocks))
    if deepest <= limit:
        return
    shallowest = min(int(v) for v in _values(blocks))
    if user or blocks.fixed or blocks.choices is not None or shallowest > limit:
        raise ConfigError(
            f"search.space.conv_blocks: {_spec_text(blocks)} cannot run at input_size "
            f"{input_size}: each block halves the image, so at most {limit} blocks fit")
    space["conv_blocks"] = replace(blocks, high=limit,
                                   note=f"at most {limit} blocks at {input_size} px")


def _spec_text(param: Param) -> str:
    if param.fixed:
        return repr(param.value)
    if param.choices is not None:
        return str(list(param.choices))
    return f"[{param.low}, {param.high}]"


def check_experiment(cfg: ExperimentConfig, space: Mapping[str, Param]) -> None:
    """Refuse experiment values that the search space would silently replace.

    A trial's parameters overwrite the experiment's: ``model.arch: resnet50`` with a space
    that searches five architectures would never be used. A value that differs from its
    default was set on purpose, so it is an error naming both places and the fix (a value
    equal to its default cannot be told from an unset one and passes). Refusing beats a
    printed note: the note scrolls past in a cluster's log before hours of search on values
    the user did not choose, and the fix is one line.
    """
    problems = []
    archs = _values(space["arch"])
    for name, param in space.items():
        if not any(param.applies(a) for a in archs):
            continue  # no trial ever sets it
        section = trial_param_section(name)
        value = getattr(getattr(cfg, section), name)
        if value == getattr(SECTIONS[section](), name):
            continue
        if param.fixed and param.value == value:
            continue
        what = (f"fixes it at {param.value!r}" if param.fixed else f"searches it in {_spec_text(param)}")
        why = f" ({param.note})" if param.note else ""
        problems.append(f"{section}.{name}: {value!r} is set, but the search space {what}{why}, "
                        f"so it would never be used. Set search.space.{name}: {value!r} to use "
                        f"it in every trial, or remove {section}.{name}")
    if problems:
        raise ConfigError("\n".join(problems))


def space_for(cfg: ExperimentConfig) -> dict[str, Param]:
    """An experiment's space: its ``search.space`` fitted to its weights and input size, and
    checked against the values the experiment sets (see :func:`check_experiment`)."""
    size = None if cfg.model.native_input_size else cfg.model.input_size
    space = build_space(cfg.search.space, pretrained=cfg.model.pretrained, input_size=size)
    check_experiment(cfg, space)
    return space


def sample(trial: Any, space: Mapping[str, Param]) -> dict[str, Any]:
    """Define-by-run: draw ``arch`` first, then only the parameters that apply to it.

    Returns the fixed values, which OptunaSearch merges into the trial's config.
    """
    arch_param = space["arch"]
    arch = arch_param.value if arch_param.fixed else arch_param.suggest(trial)
    constants: dict[str, Any] = {"arch": arch} if arch_param.fixed else {}
    if uses_weights(arch_param.weights):
        # custom_cnn has no pretrained weights (its builder refuses any); a weights file may
        # name the trial's architecture: pretrained: /weights/{arch}.safetensors
        weights = arch_param.weights
        constants["pretrained"] = False if arch == "custom_cnn" else (
            weights.replace("{arch}", arch) if isinstance(weights, str) else weights)
    for name, param in space.items():
        if name == "arch" or not param.applies(arch):
            continue
        if param.fixed:
            constants[name] = param.value
        else:
            param.suggest(trial)
    return constants


def check_points(points: Sequence[Mapping[str, Any]], space: Mapping[str, Param]) -> None:
    """Reject ``search.points_to_evaluate`` entries that Optuna would silently ignore or bend.

    Optuna enqueues a point as fixed values for the names the define-by-run function later
    suggests: a misspelt key or a parameter the space does not search (or that does not apply
    to the point's architecture) would be dropped silently, a value outside a parameter's
    choices would fail deep inside a trial. Here each is an error naming the point, the key
    and the fix; a number outside a range is only a warning (it runs as given).
    """
    for i, point in enumerate(points):
        where = f"search.points_to_evaluate[{i}]"
        if not isinstance(point, Mapping):
            raise ConfigError(f"{where} must be a mapping such as {{arch: resnet50, lr: 1.0e-4}}")
        arch = point.get("arch", space["arch"].value if space["arch"].fixed else None)
        for name, value in point.items():
            param = space.get(name)
            if param is None:
                hint = did_you_mean(name, space)
                raise ConfigError(f"{where}: {name!r} is not a parameter of the search space.{hint} "
                                  f"Searched: {', '.join(sorted(space))}")
            if arch is not None and not param.applies(arch):
                raise ConfigError(f"{where}: {name!r} does not apply to arch {arch!r} "
                                  f"(only to {param.when} architectures)")
            if param.fixed:
                if value != param.value:
                    raise ConfigError(f"{where}: {name}={value!r} but the space fixes it at "
                                      f"{param.value!r}; widen search.space.{name} to search it")
            elif param.choices is not None:
                if value not in param.choices:
                    raise ConfigError(f"{where}: {name}={value!r} is not among the choices "
                                      f"{list(param.choices)} of search.space.{name}")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{where}: {name}={value!r} must be a number in "
                                  f"[{param.low}, {param.high}] (search.space.{name})")
            elif not float(param.low) <= float(value) <= float(param.high):
                # Optuna runs such a point as given (a deliberate probe, e.g. a hopeless
                # learning rate); TPE then models it like any other. Say so once, here.
                warnings.warn(f"{where}: {name}={value!r} is outside [{param.low}, {param.high}] "
                              f"of search.space.{name}; it runs as given", stacklevel=2)


def describe(space: Mapping[str, Param]) -> str:
    """One line per parameter, for logs and the leaderboard."""
    lines = []
    for p in space.values():
        if p.fixed:
            what = f"= {p.value!r}"
        elif p.choices is not None:
            what = f"in {list(p.choices)}"
        else:
            what = f"in [{p.low}, {p.high}]" + (" log" if p.log else "")
        when = f"  (only {p.when})" if p.when else ""
        if uses_weights(p.weights):
            when += f"  (timm trials: pretrained={p.weights!r}; custom_cnn: from scratch)"
        lines.append(f"{p.name:<14} {what}{when}" + (f"  [{p.note}]" if p.note else ""))
    return "\n".join(lines)


def with_fixed(space: Mapping[str, Param], **values: Any) -> dict[str, Param]:
    """A copy with some parameters fixed (used by tests and benchmarks)."""
    out = dict(space)
    for name, value in values.items():
        out[name] = replace(out.get(name, Param(name)), choices=None, low=None, high=None,
                            value=value)
    return out


__all__ = ["DEFAULT_SPACE", "Param", "build_space", "check_experiment", "check_points", "describe",
           "sample", "space_for", "uses_weights", "with_fixed"]
