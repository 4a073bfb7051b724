"""The search space: the study's choices as plain data, sampled by one define-by-run function.

``DEFAULT_SPACE`` reproduces the study (its five architectures, REAL:FAKE 1:1 or 1:2, a
learning-rate range) plus the layer settings it tuned by hand. An experiment YAML narrows
or widens it under ``search.space`` without code::

    search:
      space:
        arch: [custom_cnn, resnet50]              # a list: choose among these
        ratio: "1:2"                              # a scalar: fixed
        lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        conv_blocks: {low: 2, high: 4}            # ints stay ints
        dropout: {choices: [0.0, 0.25, 0.5]}
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from search.config import SECTIONS, TRIAL_SECTIONS, ConfigError, did_you_mean
from search.train.models import STUDY_ARCHS, model_params

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
    Param("batch_size", choices=(32, 64)),
    # custom CNN: the study's Conv2D/MaxPool/Flatten/Dense/Dropout stack
    Param("conv_blocks", low=2, high=5, integer=True, when=CUSTOM),
    Param("base_width", choices=(16, 32, 64), when=CUSTOM),
    Param("kernel_size", choices=(3, 5), when=CUSTOM),
    Param("dense_units", choices=(64, 128, 256), when=CUSTOM),
    Param("dropout", low=0.0, high=0.6, when=CUSTOM),
    Param("batch_norm", choices=(True, False), when=CUSTOM),
    # timm families: how much to fine-tune and how to regularise the head
    Param("frozen_stages", low=0, high=4, integer=True, when=TIMM),
    Param("head_dropout", low=0.0, high=0.5, when=TIMM),
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


def build_space(overrides: Mapping[str, Any] | None = None) -> dict[str, Param]:
    """The default space with ``overrides`` (from ``search.space``) applied; typos rejected."""
    valid = _trial_fields()
    space = dict(DEFAULT_SPACE)
    for name, spec in (overrides or {}).items():
        if name not in valid:
            hint = did_you_mean(name, valid)
            raise ConfigError(f"search.space: unknown parameter {name!r}.{hint} "
                              f"Valid: {', '.join(sorted(valid))}")
        space[name] = _parse(name, spec, DEFAULT_SPACE.get(name), valid[name])
    arch = space["arch"]
    archs = arch.choices if arch.choices is not None else (arch.value,)
    for a in archs:
        model_params(a)  # unknown architecture: an error naming close matches, now
    return space


def sample(trial: Any, space: Mapping[str, Param]) -> dict[str, Any]:
    """Define-by-run: draw ``arch`` first, then only the parameters that apply to it.

    Returns the fixed values, which OptunaSearch merges into the trial's config.
    """
    arch_param = space["arch"]
    arch = arch_param.value if arch_param.fixed else arch_param.suggest(trial)
    constants: dict[str, Any] = {"arch": arch} if arch_param.fixed else {}
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
        lines.append(f"{p.name:<14} {what}" + (f"  (only {p.when})" if p.when else ""))
    return "\n".join(lines)


def with_fixed(space: Mapping[str, Param], **values: Any) -> dict[str, Param]:
    """A copy with some parameters fixed (used by tests and benchmarks)."""
    out = dict(space)
    for name, value in values.items():
        out[name] = replace(out.get(name, Param(name)), choices=None, low=None, high=None,
                            value=value)
    return out


__all__ = ["DEFAULT_SPACE", "Param", "build_space", "check_points", "describe", "sample", "with_fixed"]
