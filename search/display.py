"""Numbers as text for tables, cards and pages: one rule for what is missing (a dash).

Tables (leaderboard, model card, cross-dataset matrix), the HTML report and the command
line all print metrics that may be absent (``None``), undefined (NaN: AUC of a one-class
split) or infinite; each is shown as the same dash, so a reader never meets ``nan``. Pure
Python (no numpy, no pandas, no torch): any module can import it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

DASH = "—"


def missing(value: Any) -> bool:
    """``None``, NaN or an infinity (numpy scalars too): a value shown as a dash."""
    if value is None:
        return True
    return _real(value) and not math.isfinite(value)


def _real(value: Any) -> bool:
    """A real number that is not an integer (``float``, ``numpy.float32``...)."""
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)


def number(value: Any, spec: str = ".3f") -> str:
    """``value`` as text: a float by ``spec``, anything else (ints, names) as is, a dash
    when missing."""
    if missing(value):
        return DASH
    return format(value, spec) if _real(value) else str(value)


def compact(value: Any) -> str:
    """Three decimals, or four significant digits for small non-zero values (a learning
    rate of 3e-4 would otherwise read 0.000)."""
    small = _real(value) and 0 < abs(value) < 1e-3
    return number(value, ".4g" if small else ".3f")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   cell: Callable[[Any], str] = compact) -> str:
    """A GitHub-markdown table; every value goes through ``cell``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["DASH", "compact", "markdown_table", "missing", "number"]
