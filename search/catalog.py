"""One catalogue of metric names: what each figure is called, where it was measured, which
way is better, and whether it is a cost.

A trial reports a detector metric (``auc``) under its split's form (``val_auc``); an extra
source's figure adds ``@NAME`` (``val_auc@frames``), and the aggregates over every source
``@mean``/``@worst``; the finalists' test figures are ``test_*``; the trials table keeps a
trial's best epoch as ``best_val_*``. Running the model costs ``latency_ms`` (with its p90
and what measuring it cost), reported beside the metrics but never a validation figure.
Every module builds and parses these names here, so a name is spelled once and a direction
is looked up, never guessed from a substring. Pure Python: any module can import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

VAL = "val"
TEST = "test"
SPLITS = (VAL, TEST)
BEST = "best_"  # the trials table's prefix of a trial's best epoch (best_val_auc)
SOURCE_SEP = "@"

#: What a trial reports for each extra source (``val_auc@NAME``, ...): a few keys only, since
#: Tune keeps bookkeeping per key per trial.
SOURCE_METRICS = ("auc", "balanced_accuracy", "ap", "eer")
#: Aggregates of ``val_auc`` over the training source and every extra one.
SOURCE_AGGREGATES = ("mean", "worst")

#: What running a model costs (search.model.latency): median per image, p90, and what
#: measuring it cost the trial (export + timing, s). Costs are not validation metrics.
LATENCY_MS = "latency_ms"
LATENCY_P90_MS = "latency_p90_ms"
LATENCY_COST_S = "latency_cost_s"
COSTS = (LATENCY_MS, LATENCY_P90_MS, LATENCY_COST_S)
#: Costs that may be a search objective beside a validation metric.
COST_OBJECTIVES = (LATENCY_MS,)

#: Lower-is-better figures: error rates, losses, calibration error, false alarms and
#: misses, and every cost. Everything else a detector reports is higher-is-better (a TPR at
#: a fixed FPR too, whatever its name says).
_LOWER = frozenset({"eer", "ece", "log_loss", "loss", "train_loss", "fpr_at_tpr_95pct", "fp",
                    "fn", *COSTS})
_THRESHOLDED = "_at_threshold"  # tp_at_threshold: the same figure at the tuned threshold


@dataclass(frozen=True)
class MetricName:
    """A metric's name taken apart: ``val_auc@frames`` is split ``val``, base ``auc``,
    source ``frames``; ``latency_ms`` has no split and no source."""

    base: str
    split: str = ""
    source: str = ""

    def __str__(self) -> str:
        name = f"{self.split}_{self.base}" if self.split else self.base
        return f"{name}{SOURCE_SEP}{self.source}" if self.source else name


def val(base: str, source: str = "") -> str:
    """``val_<base>`` (``@source`` appended when given)."""
    return str(MetricName(base, VAL, source))


def test(base: str) -> str:
    """``test_<base>``."""
    return str(MetricName(base, TEST))


def best(name: str) -> str:
    """The trials table's column of a trial's best epoch: ``best_val_auc``."""
    return f"{BEST}{name}"


def parse(name: str) -> MetricName:
    """``val_auc@frames`` -> MetricName('auc', 'val', 'frames'); a name without a split
    prefix (a cost, ``train_loss``) has ``split`` empty."""
    head, _, source = name.partition(SOURCE_SEP)
    for split in SPLITS:
        if head.startswith(f"{split}_"):
            return MetricName(head[len(split) + 1:], split, source)
    return MetricName(head, "", source)


def is_validation(name: str) -> bool:
    """Whether ``name`` is a validation metric (what ASHA, TPE and checkpoints may rank by)."""
    return parse(name).split == VAL


def is_cost(name: str) -> bool:
    """Whether ``name`` is what running the model costs, not how well it detects."""
    return name in COSTS


def mode(name: str) -> str:
    """'min' or 'max': the right direction for a metric, from the catalogue."""
    base = parse(name).base.removeprefix("baseline_").removesuffix(_THRESHOLDED)
    return "min" if base in _LOWER else "max"


def split_metrics(metrics: Mapping[str, Any], split: str = VAL) -> dict[str, Any]:
    """``{"auc": ...}`` -> ``{"val_auc": ...}``: a split's detector metrics as reported."""
    return {str(MetricName(k, split)): v for k, v in metrics.items()}


def strip_split(metrics: Mapping[str, Any], split: str = VAL) -> dict[str, Any]:
    """The inverse of :func:`split_metrics`: ``val_auc`` -> ``auc``, ``val_auc@frames`` ->
    ``auc@frames``; other splits and costs are left out."""
    out = {}
    for key, value in metrics.items():
        name = parse(key)
        if name.split == split:
            out[str(MetricName(name.base, source=name.source))] = value
    return out


def with_val(name: str) -> str:
    """A metric as the user may write it (``auc`` or ``val_auc``) in its validation form."""
    return name if parse(name).split else val(name)


def metric_columns(columns: Iterable[str], split: str = VAL) -> list[str]:
    """The columns of a table (or keys of a report) that are ``split`` metrics, in order."""
    return [c for c in columns if parse(c).split == split]


def source_metric_names(sources: Iterable[str]) -> list[str]:
    """Every metric that names a source: ``val_auc@NAME``, ..., ``val_auc@mean``/``@worst``."""
    sources = list(sources)
    names = [val(m, s) for s in sources for m in SOURCE_METRICS]
    return names + [val("auc", a) for a in SOURCE_AGGREGATES] if sources else names


def sources_in(columns: Iterable[str], base: str = "auc", prefix: str = "") -> list[str]:
    """The extra sources named in ``columns`` (e.g. ``best_val_auc@frames``) for ``base``,
    aggregates last: ``["frames", "mean", "worst"]``."""
    found = []
    for column in columns:
        if not column.startswith(prefix):
            continue
        name = parse(column[len(prefix):])
        if name.split == VAL and name.base == base and name.source and name.source not in found:
            found.append(name.source)
    return ([s for s in found if s not in SOURCE_AGGREGATES]
            + [a for a in SOURCE_AGGREGATES if a in found])


__all__ = ["BEST", "COSTS", "COST_OBJECTIVES", "LATENCY_COST_S", "LATENCY_MS", "LATENCY_P90_MS",
           "SOURCE_AGGREGATES", "SOURCE_METRICS", "SOURCE_SEP", "SPLITS", "TEST", "VAL",
           "MetricName", "best", "is_cost", "is_validation", "metric_columns", "mode", "parse",
           "source_metric_names", "sources_in", "split_metrics", "strip_split", "test", "val",
           "with_val"]
