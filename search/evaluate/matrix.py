"""The cross-dataset matrix (``cross_dataset.json``) as tables: trained-on x tested-on.

``deepfake-search evaluate --cross`` writes the matrix; these frames are what the report
shows of it (cells: accuracy / AUC at each model's own threshold, ``*`` on its own set).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from search import catalog
from search.display import number

CORNER = "trained on \\ tested on"
NOTE = ("Rows: the data set a model was trained on; columns: the set it was tested on (split "
        "`{split}`). Cells: accuracy / AUC at the model's threshold (F1-optimal on its own "
        "validation split). `*` marks the model's own data set (its held-out split); the other "
        "columns measure generalisation to data it never saw.")
#: The detail table's figures, at the model's threshold (F1-optimal on its own validation).
DETAIL_METRICS = (catalog.N, catalog.POSITIVE_RATE, catalog.ACCURACY_AT_THRESHOLD, catalog.AUC,
                  catalog.F1_AT_THRESHOLD, catalog.BASELINE_ACCURACY, catalog.THRESHOLD)
DETAIL_COLUMNS = ["trained on", "tested on", *(catalog.label(k) for k in DETAIL_METRICS[:5]),
                  "majority accuracy", catalog.label(catalog.THRESHOLD)]


def tested_on(matrix: dict[str, Any]) -> list[str]:
    """Every data set some model was tested on, in order of first appearance."""
    columns: list[str] = []
    for row in matrix.get("rows", {}).values():
        columns += [c for c in row["cells"] if c not in columns]
    return columns


def _own(cell: dict[str, Any]) -> str:
    return " *" if cell.get("in_domain") else ""


def matrix_table(matrix: dict[str, Any]) -> pd.DataFrame:
    """One row per training set, one column per tested set; cells "accuracy / AUC"."""
    columns = tested_on(matrix)
    rows = []
    for train, row in matrix.get("rows", {}).items():
        cells = [row["cells"].get(col) for col in columns]
        rows.append([train, *("" if m is None else
                              f"{number(m[catalog.ACCURACY_AT_THRESHOLD])} / "
                              f"{number(m[catalog.AUC])}{_own(m)}" for m in cells)])
    return pd.DataFrame(rows, columns=[CORNER, *columns], dtype=object)


def detail_table(matrix: dict[str, Any]) -> pd.DataFrame:
    """One row per (training set, tested set): size, FAKE share and the metrics."""
    rows = [[train, f"{col}{_own(m)}", *(m[k] for k in DETAIL_METRICS)]
            for train, row in matrix.get("rows", {}).items() for col, m in row["cells"].items()]
    return pd.DataFrame(rows, columns=DETAIL_COLUMNS, dtype=object)


def models(matrix: dict[str, Any]) -> dict[str, str]:
    """Training set -> the model (folder) evaluated for it."""
    return {train: row["model"] for train, row in matrix.get("rows", {}).items()}


__all__ = ["CORNER", "DETAIL_COLUMNS", "DETAIL_METRICS", "NOTE", "detail_table", "matrix_table",
           "models", "tested_on"]
