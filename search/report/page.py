"""The page: sections assembled into one static HTML file, its style sheet inlined.

``write_report`` removes the report folder's old figures (its own, :data:`FIGURES`), runs every section builder and
writes ``report.html`` beside the PNGs they drew. The page has no script and loads nothing
from the network, so the folder can be zipped, mailed and opened offline.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from search import filenames
from search.display import missing
from search.report.figures import FIGURES
from search.report.markup import Section, esc
from search.report.results import Results, load_results
from search.report.sections import BUILDERS

CSS_RESOURCE = "report.css"  # package data of search.report
FOOTER = "deepfake-search report · static page, opens offline"


def stylesheet() -> str:
    """The page's CSS, shipped beside this module as package data."""
    return resources.files("search.report").joinpath(CSS_RESOURCE).read_text(encoding="utf-8")


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page: header, a navigation bar of the sections, the sections, a footer."""
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.body)}'
                   "</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{stylesheet()}</style></head><body>"
            f'<header><div class="wrap"><h1>{esc(title)}</h1><p>{esc(subtitle)}'
            f'</p></div></header><nav><div class="wrap">{nav}</div></nav>'
            f'<main class="wrap">{body}</main><footer>{html.escape(FOOTER)}</footer>'
            "</body></html>\n")


def _subtitle(r: Results) -> str:
    # A trial restored without its config has no arch (NaN): it names no architecture.
    archs = ", ".join(dict.fromkeys(str(a) for a in r.trials.get("arch", [])
                                    if not missing(a) and str(a)))
    return (f"{len(r.trials)} trials · metric {r.metric} · {archs} · "
            f"{time.strftime('%Y-%m-%d %H:%M')}")


def write_report(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (+ its PNGs) to ``out`` (default ``<results_dir>/report``) and
    return its path. Only the report's own files there are replaced; a figure of an earlier
    report that is not drawn again is removed, anything else is left as it was."""
    r = load_results(results_dir)
    if out is not None:
        r = replace(r, report_dir=Path(out).expanduser().resolve())
    problem = filenames.write_problem(r.out)
    if problem:  # before any figure is drawn
        flag = "--out" if out is not None else "the results folder"
        raise ValueError(f"cannot write the report to {r.out} ({flag}): {problem}; "
                         + ("choose another --out" if out is not None else
                            "pass --out DIR, a folder you can write to"))
    r.out.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (r.out / name).unlink(missing_ok=True)  # an earlier report's, maybe not drawn again
    sections = [s for s in (build(r) for build in BUILDERS) if s is not None]
    path = r.out / filenames.REPORT_FILE
    path.write_text(render(f"Search report: {r.cfg.search.name}", _subtitle(r), sections),
                    encoding="utf-8")
    logging.getLogger(__name__).info("report written to %s", path)
    return path


__all__ = ["CSS_RESOURCE", "render", "stylesheet", "write_report"]
