"""What each selection rule would pick, from a search whose trials scored extra sources.

With ``data.extra_sources`` every epoch of every trial holds the in-source validation AUC and
each extra source's (``val_auc@NAME``, ``@mean``, ``@worst``; history.parquet). The search
selected by one of them; this module answers "and had it selected by another?": for each rule,
the (trial, epoch) it picks and that epoch's AUC on every source. Figures off the diagonal are
the honest ones: a rule judged on the source it selected on flatters itself.
"""

from __future__ import annotations

import pandas as pd

from search import catalog

NOTE = ("Each row: a selection rule (the validation AUC it maximises), the trial and epoch it "
        "picks over the whole history, and that epoch's validation AUC on every source. A "
        "rule's own column flatters it (it was chosen there); the other columns say how its "
        "pick does on data it did not select on. The search itself selected by `{metric}`; "
        "only the kept checkpoints of each trial can be exported, so a pick another rule "
        "makes may have no weights left.")


def rule_columns(history: pd.DataFrame, metric: str = catalog.val(catalog.AUC)) -> list[str]:
    """The in-source column of the metric's family, then each extra source's, then the
    aggregates: the rules a search with extra sources can select by."""
    name = catalog.parse(metric)
    base = catalog.val(name.base)
    found = catalog.sources_in(history.columns, base=name.base)
    sources = [catalog.val(name.base, s) for s in found if s not in catalog.SOURCE_AGGREGATES]
    aggregates = [catalog.val(name.base, a) for a in found if a in catalog.SOURCE_AGGREGATES]
    return [base, *sources, *aggregates] if sources and base in history else []


def pick(history: pd.DataFrame, column: str) -> pd.Series | None:
    """The history row (one trial's epoch) that selecting by ``column`` picks: its best
    value in the column's direction, the earliest epoch of the first trial on ties."""
    scored = history[history[column].notna()]
    if scored.empty:
        return None
    ascending = catalog.mode(column) == "min"
    order = scored.sort_values([column, "epoch"], ascending=[ascending, True], kind="stable")
    return order.iloc[0]


def selection_table(history: pd.DataFrame, trials: pd.DataFrame,
                    metric: str = catalog.val(catalog.AUC)) -> pd.DataFrame:
    """One row per selection rule: what it picks and that epoch's value on every source."""
    rules = rule_columns(history, metric)
    arch = dict(zip(trials.get("trial_id", []), trials.get("arch", []), strict=False))
    rows = []
    for rule in rules:
        row = pick(history, rule)
        if row is None:
            continue
        tid = str(row["trial_id"])
        rows.append([_label(rule), tid, arch.get(tid), int(row["epoch"]),
                     *(row[c] for c in rules)])
    header = ["selected by", "trial", "arch", "epoch", *(_label(c) for c in rules)]
    return pd.DataFrame(rows, columns=header, dtype=object)


def _label(column: str) -> str:
    """``val_auc@ffpp`` -> ``auc@ffpp``; the in-source column -> ``auc (in-source)``."""
    name = catalog.parse(column)
    short = str(catalog.MetricName(name.base, source=name.source))
    return short if name.source else f"{short} (in-source)"


def summary(table: pd.DataFrame) -> str:
    """One clause per other rule: whether it picks another trial (or epoch) than in-source."""
    if table.empty:
        return ""
    own = table.iloc[0]
    parts = []
    for _, row in table.iloc[1:].iterrows():
        if row["trial"] != own["trial"]:
            what = f"trial {row['trial']} ({row['arch']}, epoch {row['epoch']})"
        elif row["epoch"] != own["epoch"]:
            what = f"the same trial at epoch {row['epoch']}"
        else:
            what = "the same trial and epoch"
        parts.append(f"`{row['selected by']}` picks {what}")
    return (f"In-source selection picks trial {own['trial']} ({own['arch']}, epoch "
            f"{own['epoch']}); " + "; ".join(parts) + ".")


__all__ = ["NOTE", "pick", "rule_columns", "selection_table", "summary"]
