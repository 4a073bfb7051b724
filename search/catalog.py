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
from types import MappingProxyType
from typing import Any

VAL = "val"
TEST = "test"
SPLITS = (VAL, TEST)
BEST = "best_"  # the trials table's prefix of a trial's best epoch (best_val_auc)
SOURCE_SEP = "@"

# ------------------------------------------------------------------ the metrics
@dataclass(frozen=True)
class Metric:
    """One figure a detector reports, by its base name (``auc``): which way is better and
    how a table heads it."""

    name: str
    lower_is_better: bool = False
    label: str = ""


# Every key search.train.metrics returns (tests/test_catalog.py checks it), then what the
# training loop, the robustness summary and the latency probe add.
N = "n"
POSITIVE_RATE = "positive_rate"
ACCURACY = "accuracy"
PRECISION = "precision"
RECALL = "recall"
F1 = "f1"
SPECIFICITY = "specificity"
BALANCED_ACCURACY = "balanced_accuracy"
TP, TN, FP, FN = "tp", "tn", "fp", "fn"
AUC = "auc"
AP = "ap"
EER = "eer"
LOG_LOSS = "log_loss"
ECE = "ece"
TPR_AT_FPR_1PCT = "tpr_at_fpr_1pct"
TPR_AT_FPR_5PCT = "tpr_at_fpr_5pct"
FPR_AT_TPR_95PCT = "fpr_at_tpr_95pct"
THRESHOLD = "threshold"
LOSS = "loss"
TRAIN_LOSS = "train_loss"
AUC_DROP = "auc_drop"  # robustness: the clean AUC minus the perturbed one

#: What running a model costs (search.model.latency): median per image, p90, and what
#: measuring it cost the trial (export + timing, s). Costs are not validation metrics.
LATENCY_MS = "latency_ms"
LATENCY_P90_MS = "latency_p90_ms"
LATENCY_COST_S = "latency_cost_s"
COSTS = (LATENCY_MS, LATENCY_P90_MS, LATENCY_COST_S)
#: Costs that may be a search objective beside a validation metric.
COST_OBJECTIVES = (LATENCY_MS,)

_LOW = True  # lower is better: error rates, losses, calibration error, false alarms, misses
#: The registry: every metric's name, direction and label, written once. A TPR at a fixed
#: FPR is higher-is-better whatever its name says; an FPR at a fixed TPR is a false-alarm rate.
METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in (
    Metric(N, label="n"),
    Metric(POSITIVE_RATE, label="FAKE share"),
    Metric(ACCURACY, label="accuracy"),
    Metric(PRECISION, label="precision"),
    Metric(RECALL, label="recall"),
    Metric(F1, label="F1"),
    Metric(SPECIFICITY, label="specificity"),
    Metric(BALANCED_ACCURACY, label="balanced accuracy"),
    Metric(TP, label="TP"),
    Metric(TN, label="TN"),
    Metric(FP, _LOW, "FP"),
    Metric(FN, _LOW, "FN"),
    Metric(AUC, label="AUC"),
    Metric(AP, label="AP"),
    Metric(EER, _LOW, "EER"),
    Metric(LOG_LOSS, _LOW, "NLL"),
    Metric(ECE, _LOW, "ECE"),
    Metric(TPR_AT_FPR_1PCT, label="TPR at FPR 1%"),
    Metric(TPR_AT_FPR_5PCT, label="TPR at FPR 5%"),
    Metric(FPR_AT_TPR_95PCT, _LOW, "FPR at TPR 95%"),
    Metric(THRESHOLD, label="threshold"),
    Metric(LOSS, _LOW, "loss"),
    Metric(TRAIN_LOSS, _LOW, "train loss"),
    Metric(AUC_DROP, _LOW, "drop"),
    Metric(LATENCY_MS, _LOW, "latency ms"),
    Metric(LATENCY_P90_MS, _LOW, "latency p90 ms"),
    Metric(LATENCY_COST_S, _LOW, "latency cost s"),
)})

THRESHOLDED = "_at_threshold"  # tp_at_threshold: the same figure at the tuned threshold
BASELINE = "baseline_"  # baseline_accuracy: the majority class's figure on the same split


def at_threshold(name: str) -> str:
    """``f1`` -> ``f1_at_threshold``: the figure at the tuned threshold, not at 0.5."""
    return f"{name}{THRESHOLDED}"


def baseline(name: str) -> str:
    """``accuracy`` -> ``baseline_accuracy``: always answering the majority class."""
    return f"{BASELINE}{name}"


def base_of(name: str) -> str:
    """The registry's name behind any form: ``best_val_baseline_f1@frames`` -> ``f1``."""
    base = parse(name.removeprefix(BEST)).base
    return base.removeprefix(BASELINE).removesuffix(THRESHOLDED)


def lookup(name: str) -> Metric | None:
    """The :class:`Metric` behind any form of a name, None for one the catalogue lacks."""
    return METRICS.get(base_of(name))


def label(name: str) -> str:
    """How a table heads a metric in any form (``f1_at_threshold``: ``F1``)."""
    metric = lookup(name)
    if metric is None:
        raise KeyError(f"{name!r} is no metric of search.catalog")
    return metric.label


F1_AT_THRESHOLD = at_threshold(F1)
ACCURACY_AT_THRESHOLD = at_threshold(ACCURACY)
BALANCED_ACCURACY_AT_THRESHOLD = at_threshold(BALANCED_ACCURACY)
BASELINE_ACCURACY = baseline(ACCURACY)
BASELINE_F1 = baseline(F1)

# ------------------------------------------------------------------ column groups
#: The hard decision's figures (at 0.5 or at a threshold), from the confusion counts.
DECISION = (ACCURACY, PRECISION, RECALL, F1, SPECIFICITY, BALANCED_ACCURACY)
#: The confusion counts, FAKE the positive class.
CONFUSION = (TP, TN, FP, FN)
#: What the majority-class baseline reports.
BASELINE_METRICS = (ACCURACY, PRECISION, RECALL, F1)
#: The threshold-free figures of the ranking, and how well p_fake reads as a probability.
THRESHOLD_FREE = (AUC, AP, EER, LOG_LOSS)
CALIBRATION = (LOG_LOSS, ECE)
#: The operating points: TPR at FPR <= 1% / 5%, FPR at TPR >= 95%.
OPERATING_POINTS = (TPR_AT_FPR_1PCT, TPR_AT_FPR_5PCT, FPR_AT_TPR_95PCT)
#: The columns of the study's table, then the ones it needed to be read correctly.
STUDY_COLUMNS = (ACCURACY, PRECISION, RECALL, F1)
EXTRA_COLUMNS = (AUC, AP, EER, BALANCED_ACCURACY, THRESHOLD, F1_AT_THRESHOLD, BASELINE_ACCURACY,
                 BASELINE_F1)
#: The best trial's row per split: the study's metrics, the ones they need, the confusion.
SPLIT_COLUMNS = (*STUDY_COLUMNS, AUC, AP, EER, BALANCED_ACCURACY, *OPERATING_POINTS, ECE,
                 THRESHOLD, F1_AT_THRESHOLD, BASELINE_ACCURACY, *CONFUSION)
#: One training run's epochs as ``train`` prints them (validation forms).
EPOCH_COLUMNS = (*STUDY_COLUMNS, AUC, EER, *CONFUSION)
#: What the robustness summary keeps per condition (balanced accuracy at the threshold).
ROBUSTNESS_METRICS = (AUC, AUC_DROP, BALANCED_ACCURACY, TPR_AT_FPR_5PCT)
#: The model card's ranking table: AUC, balanced accuracy at the model's threshold, the
#: operating points, ECE.
RANKING_COLUMNS = (AUC, BALANCED_ACCURACY_AT_THRESHOLD, *OPERATING_POINTS, ECE)
#: Tables' columns that count something: shown as whole numbers even when stored as floats.
COUNTS = (*CONFUSION, N)

#: What a trial reports for each extra source (``val_auc@NAME``, ...): a few keys only, since
#: Tune keeps bookkeeping per key per trial.
SOURCE_METRICS = (AUC, BALANCED_ACCURACY, AP, EER)
#: Aggregates of ``val_auc`` over the training source and every extra one.
SOURCE_AGGREGATES = ("mean", "worst")


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
    metric = lookup(name)  # a name the catalogue lacks is higher-is-better
    return "min" if metric is not None and metric.lower_is_better else "max"


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
    return names + [val(AUC, a) for a in SOURCE_AGGREGATES] if sources else names


def sources_in(columns: Iterable[str], base: str = AUC, prefix: str = "") -> list[str]:
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


__all__ = ["ACCURACY", "ACCURACY_AT_THRESHOLD", "AP", "AUC", "AUC_DROP", "BALANCED_ACCURACY",
           "BALANCED_ACCURACY_AT_THRESHOLD", "BASELINE", "BASELINE_ACCURACY", "BASELINE_F1",
           "BASELINE_METRICS", "BEST", "CALIBRATION", "CONFUSION", "COSTS", "COST_OBJECTIVES",
           "COUNTS", "DECISION", "ECE", "EER", "EPOCH_COLUMNS", "EXTRA_COLUMNS", "F1",
           "F1_AT_THRESHOLD", "FN", "FP", "FPR_AT_TPR_95PCT", "LATENCY_COST_S", "LATENCY_MS",
           "LATENCY_P90_MS", "LOG_LOSS", "LOSS", "METRICS", "N", "OPERATING_POINTS",
           "POSITIVE_RATE", "PRECISION", "RANKING_COLUMNS", "RECALL", "ROBUSTNESS_METRICS",
           "SOURCE_AGGREGATES", "SOURCE_METRICS", "SOURCE_SEP", "SPECIFICITY", "SPLITS",
           "SPLIT_COLUMNS", "STUDY_COLUMNS", "TEST", "THRESHOLD", "THRESHOLDED", "THRESHOLD_FREE",
           "TN", "TP", "TPR_AT_FPR_1PCT", "TPR_AT_FPR_5PCT", "TRAIN_LOSS", "VAL", "Metric",
           "MetricName", "at_threshold", "base_of", "baseline", "best", "is_cost",
           "is_validation", "label", "lookup", "metric_columns", "mode", "parse",
           "source_metric_names", "sources_in", "split_metrics", "strip_split", "test", "val",
           "with_val"]
