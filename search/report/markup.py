"""The page's HTML pieces: sections, paragraphs, figures and tables rendered from DataFrames.

Every piece escapes what it is given; prose may mark code with backticks (as the
leaderboard's notes do), the only markup recognised.
"""

from __future__ import annotations

import html
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from search.display import compact

Cell = Callable[[str, Any], str]  # (column, value) -> text of the cell


@dataclass
class Section:
    """One block of the page: an anchor for the navigation bar, a heading, HTML body."""

    anchor: str
    title: str
    body: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> Section:
        self.body.extend(parts)
        return self


def esc(value: Any) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value))


def inline(text: str) -> str:
    """``text`` escaped, with `backticked` spans as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def heading(level: int, text: str) -> str:
    """An ``<hN>`` heading; ``text`` may hold `backticked` code spans (:func:`inline`)."""
    return f"<h{level}>{inline(text)}</h{level}>"


def para(text: str) -> str:
    """A paragraph; ``text`` may hold `backticked` code spans."""
    return f"<p>{inline(text)}</p>"


def lead(text: str) -> str:
    """The sentence under a heading that says what a figure or table shows."""
    return f'<p class="lead">{inline(text)}</p>'


def note(text: str) -> str:
    """Why something is missing from the page."""
    return f'<p class="note">{html.escape(text)}</p>'


def img(name: str, alt: str) -> str:
    """A figure showing the PNG ``name`` beside the page (a relative link: the folder
    moves as one)."""
    return f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}"></figure>'


def bullets(items: list[str]) -> str:
    """A bulleted list; each item may hold `backticked` code spans."""
    return "<ul>" + "".join(f"<li>{inline(t)}</li>" for t in items) + "</ul>"


def folded(summary: str, body: str) -> str:
    """``body`` behind a disclosure line (HTML ``<details>``: no script, opens in place)."""
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def _numeric(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def table(frame: pd.DataFrame, *, cell: Cell = lambda _, v: compact(v),
          headers: dict[str, str] | None = None,
          extra_class: Callable[[str, Any], str] | None = None, css: str = "") -> str:
    """``frame`` as an HTML table: numbers right-aligned, missing values as a dash.

    ``cell`` formats a value of a column, ``headers`` renames columns and ``extra_class``
    adds a CSS class to a cell (the trials' status colours).
    """
    headers = headers or {}
    head = "".join(f"<th>{esc(headers.get(c, c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, values):
            cls = "num" if _numeric(value) else "txt"
            if extra_class:
                cls += extra_class(col, value)
            cells.append(f'<td class="{esc(cls)}">{esc(cell(col, value))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{css}"' if css else ""
    return (f'<div class="table-wrap"><table{attr}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


__all__ = ["Cell", "Section", "bullets", "esc", "folded", "heading", "img", "inline", "lead",
           "note", "para", "table"]
