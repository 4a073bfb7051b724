"""One builder per section of the page, each from the loaded :class:`Results`.

A builder returns its :class:`Section` (or ``None`` when the section does not apply, as the
cross-dataset one without a matrix); a missing input becomes a note saying why, never an
error, so a partly failed search still gets its report.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd

from search import catalog, filenames
from search import leaderboard as board
from search import robustness_table as robust_tables
from search.display import compact, missing, number
from search.evaluate import matrix as cross_tables
from search.report import figures
from search.report import selection as selection_tables
from search.report.markup import (
    Section,
    bullets,
    esc,
    folded,
    heading,
    img,
    lead,
    note,
    para,
    table,
)
from search.report.results import Results, checkpoint_dir
from search.tune import study_store

TOP_TRIALS = 8  # trials drawn in the learning curves
FOLD_TRIALS = 50  # past this many trials the full table folds away ...
SHOWN_TRIALS = 20  # ... and the best this many stay in view
SCIENTIFIC = ("lr", "weight_decay")  # trials-table columns shown as 1.23e-04
Builder = Callable[[Results], Section | None]


def _colours(r: Results) -> dict[str, str]:
    return figures.arch_colours([str(a) for a in r.trials.get("arch", pd.Series(dtype=str)).dropna()])


def _card(label: str, value: str, sub: str) -> str:
    return (f'<div class="card"><div class="label">{esc(label)}</div>'
            f'<div class="value">{esc(value)}</div><div class="sub">{esc(sub)}</div></div>')


def _whole(col: str, value: Any) -> str:
    """The leaderboard's number format (:func:`search.leaderboard.markdown`): epochs and
    counts, stored as floats beside trials that have none, as whole numbers."""
    if col in board.WHOLE and not missing(value) and isinstance(value, numbers.Real) \
            and float(value).is_integer():
        return str(int(value))
    return compact(value)


def overview(r: Results) -> Section:
    """Cards: how many trials, the best one, its validation and test scores."""
    cards = [_card("trials", str(len(r.trials)), board.status_counts(r.trials))]
    if len(r.finals):
        top = r.finals.iloc[0]
        tid = str(top["trial_id"])
        cards += [_card("best trial", str(top.get("arch")),
                        f"trial {tid}, epoch {_whole('epoch', top.get('best_epoch'))}"),
                  _card(f"validation {catalog.parse(r.metric).base}",
                        number(top.get(r.best_column)), "majority-class accuracy "
                        f"{number(top.get(catalog.best(catalog.val(catalog.BASELINE_ACCURACY))))}")]
        t = r.test.get(tid)
        if t:
            cards.append(_card("test AUC / accuracy",
                               f"{number(t.get(catalog.AUC))} / "
                               f"{number(t.get(catalog.ACCURACY_AT_THRESHOLD))}",
                               f"at threshold {number(t.get(catalog.THRESHOLD))}, "
                               f"n = {t.get(catalog.N)}"))
    data = filenames.portable_path(r.cfg.data.shards) or "embedded demo set"
    meta = (f'<p class="meta">Search metric <code>{esc(r.metric)}</code> '
            f"({esc(r.cfg.search.resolved_mode())}), data <code>{esc(data)}</code>, results "
            f"<code>{esc(filenames.portable_path(r.directory))}</code>. FAKE is the positive class.</p>")
    return Section("overview", "Overview").add(f'<div class="cards">{"".join(cards)}</div>', meta)


def _best_overall(r: Results) -> list[str]:
    """The best trial on validation and test, then the other finalists' test split."""
    top = r.finals.iloc[0]
    out = [heading(3, f"Best overall: trial {top['trial_id']} ({top.get('arch')})"),
           table(board.split_table(top, r.test), cell=_whole)]
    if r.test.get(str(top["trial_id"])):
        out.append(para(board.TEST_NOTE))
    others = board.others_test_table(top, r.test)
    if len(others):
        out += [para("Test split of the other finalists:"), table(others, cell=_whole)]
    return out


def _importance_tables(r: Results) -> list[str]:
    out = [heading(3, "Parameter importances (Optuna, fANOVA)")]
    if isinstance(r.importances, dict) and r.importances:
        out.append(para(board.IMPORTANCE_NOTE))
        for group, scores in r.importances.items():
            out += [heading(4, group), table(board.importance_table(scores))]
    else:
        out.append(para(f"Not available: {r.importances or 'too few finished trials'}"))
    return out


def leaderboard(r: Results) -> Section:
    """The study's table (as in leaderboard.md), the best trial, importances, every trial."""
    s = Section("leaderboard", "Leaderboard").add(
        para(board.BOARD_NOTE.format(metric=r.metric, mode=r.cfg.search.resolved_mode())),
        table(board.board_table(r.trials, r.metric), cell=_whole),
        para(f"Trials: {board.status_counts(r.trials)}"))
    if len(r.finals):
        s.add(*_best_overall(r))
    return s.add(*_importance_tables(r), heading(3, "All trials"), *all_trials(r))


def all_trials(r: Results) -> list[str]:
    """The trials table; past ``FOLD_TRIALS`` rows, the best ``SHOWN_TRIALS`` by the search
    metric in view and every trial behind a disclosure line, so a 1,000-trial search leaves
    a page that still reads (the whole table stays in trials.csv/.parquet too)."""
    if len(r.trials) <= FOLD_TRIALS:
        return [trials_table(r)]
    ranked = r.trials
    if r.best_column in ranked:
        ascending = r.cfg.search.resolved_mode() == "min"
        ranked = ranked.sort_values(r.best_column, ascending=ascending, na_position="last")
    top = replace(r, trials=ranked.head(SHOWN_TRIALS))
    return [para(f"The best {SHOWN_TRIALS} of {len(r.trials)} trials by {r.metric}:"),
            trials_table(top),
            folded(f"All {len(r.trials)} trials", trials_table(replace(r, trials=ranked)))]


def trials_table(r: Results) -> str:
    """Every trial: status, the parameters that varied, epochs and its best scores."""
    short = str(catalog.MetricName(catalog.parse(r.metric).base,
                                   source=catalog.parse(r.metric).source))
    names = {r.best_column: short,
             catalog.best(catalog.val(catalog.F1_AT_THRESHOLD)): "F1 at thr",
             catalog.best(catalog.val(catalog.BASELINE_ACCURACY)): "majority acc",
             "trial_id": "trial"}
    metric_cols = set(names) - {"trial_id"}  # ints stored as floats (NaN elsewhere) print as ints
    cols = ["trial_id", "status", *r.params, "epochs", "best_epoch", *names]
    frame = r.trials[list(dict.fromkeys(c for c in cols if c in r.trials))]
    if "node_id" in r.trials:  # where it ran (its last epoch): a lost node shows here
        frame = frame.assign(node=[_where(row) for _, row in r.trials.iterrows()])

    def cell(col: str, v: Any) -> str:
        whole = isinstance(v, numbers.Real) and col not in metric_cols and float(v).is_integer()
        return number(v, ".2e" if col in SCIENTIFIC else ".0f" if whole else ".3f")

    def status(col: str, v: Any) -> str:
        return f" status-{str(v).lower()}" if col == "status" else ""

    return table(frame, cell=cell, headers=names, extra_class=status, css="trials")


def _where(row: pd.Series) -> str:
    """``host · node-id prefix`` of a trial (one host may run several Ray nodes)."""
    node, host = row.get("node_id"), row.get("hostname")
    parts = [str(v) for v in (host, str(node)[:8] if isinstance(node, str) else None)
             if isinstance(v, str) and v]
    return " · ".join(parts) or "-"


def confusion(r: Results) -> Section:
    """The finalists' confusion matrices at their F1-optimal threshold, validation and test."""
    items: list[figures.ConfusionItem] = []
    for _, row in r.finals.iterrows():
        tid = str(row["trial_id"])
        val = {k: row.get(catalog.best(catalog.val(catalog.at_threshold(k))))
               for k in catalog.CONFUSION}
        val[catalog.THRESHOLD] = row.get(catalog.best(catalog.val(catalog.THRESHOLD)))
        val_ok = all(v is not None and not pd.isna(v) for v in val.values())
        t = r.test.get(tid)
        tm = ({k: t[catalog.at_threshold(k)] for k in catalog.CONFUSION}
              | {catalog.THRESHOLD: t[catalog.THRESHOLD]}) if t else None
        items.append((f"{row.get('arch')} · trial {tid}", val if val_ok else None, tm))
    s = Section("confusion", "Confusion matrices")
    if not items:
        return s.add(note("no finished trial with a checkpoint"))
    return s.add(lead("The best trial of each architecture at its F1-optimal validation "
                      "threshold (the test split uses that same threshold). Cells: count and "
                      "share of the true class."),
                 img(figures.confusion(items, r.out), "confusion matrices"))


def _predictions(r: Results) -> dict[str, list[figures.Curve]]:
    """The finalists' saved predictions per split, for their ROC and PR curves."""
    found: dict[str, list[figures.Curve]] = {"validation": [], "test": []}
    colours = _colours(r)
    for _, row in r.finals.iterrows():
        ckpt = checkpoint_dir(r.directory, row.get("checkpoint"))
        if ckpt is None:
            continue
        label = f"{row.get('arch')} · {row['trial_id']}"
        colour = colours.get(str(row.get("arch")), "#333")
        for split, name in (("validation", filenames.VAL_PREDICTIONS),
                            ("test", filenames.TEST_PREDICTIONS)):
            if (ckpt / name).is_file():
                found[split].append((label, colour, pd.read_csv(ckpt / name)))
    return found


def curves(r: Results) -> Section:
    """ROC and precision-recall curves of the finalists, validation and test."""
    s = Section("curves", "ROC and precision-recall")
    found = _predictions(r)
    if not (found["validation"] or found["test"]):
        return s.add(note(f"no {filenames.VAL_PREDICTIONS} found in the finalists' checkpoints"))
    s.add(lead("Finalists (best trial per architecture) on validation and, where the search "
               "scored it, on the held-out test split."),
          img(figures.curves(found, r.out), "ROC and precision-recall curves"))
    if not found["test"]:
        s.add(note(f"no {filenames.TEST_PREDICTIONS}: the search ran without the test evaluation "
                   "(--no-test) or it did not finish"))
    return s


def robustness(r: Results) -> Section | None:
    """AUC of the finalists clean and under JPEG re-compression and downscaling, when the
    search scored them (``robustness.json``)."""
    if not r.robustness:
        return None
    labels = {str(row["trial_id"]): f"{row.get('arch')} · {row['trial_id']}"
              for _, row in r.finals.iterrows()}
    frame = robust_tables.robustness_table(r.robustness, labels)
    return Section("robustness", "Robustness").add(
        para(robust_tables.NOTE.format(split=robust_tables.split_of(r.robustness))),
        table(frame, cell=lambda col, v: number(v, "+.3f") if col == "drop" else number(v)))


def pareto(r: Results) -> Section | None:
    """With ``search.objectives``: every trial by its objectives, the Pareto front ringed in
    the figure and listed in a table (:func:`search.leaderboard.pareto_table`)."""
    objectives = r.cfg.search.objectives
    if not objectives or not len(r.trials):
        return None
    modes = r.cfg.search.objective_modes()
    points = board.objective_points(r.trials, objectives, modes)
    s = Section("pareto", "Pareto front").add(
        para(board.pareto_note(objectives, modes)),
        img(figures.pareto(points, objectives, modes, _colours(r), r.out), "Pareto front"))
    if len(objectives) > 2:
        s.add(note(f"the figure shows the first two objectives; the table weighs all "
                   f"{len(objectives)}"))
    return s.add(table(board.pareto_table(r.trials, objectives, modes),
                       cell=lambda col, v: number(v, ".4g" if col in objectives else ".0f")))


def _top(r: Results) -> pd.DataFrame:
    """The best trials by the search metric (the table is sorted best first)."""
    col = r.best_column
    return (r.trials[r.trials[col].notna()] if col in r.trials else r.trials).head(TOP_TRIALS)


def learning(r: Results) -> Section:
    """Per-epoch curves of the top trials."""
    s = Section("learning", "Learning curves")
    top = _top(r)
    if not (len(r.history) and len(top)):
        return s.add(note(f"no {filenames.HISTORY} or no finished epoch"))
    return s.add(lead(f"The top {len(top)} trial(s) by validation `{r.metric}`; trials "
                      "stopped early by ASHA end early."),
                 img(figures.learning(r.history, top, _colours(r), r.metric, r.out),
                     "learning curves"))


def search(r: Results) -> Section:
    """What mattered: Optuna's importances and each parameter against the result."""
    s = Section("search", "The search").add(heading(3, "Parameter importances (Optuna)"))
    if isinstance(r.importances, dict):
        s.add(lead("How much of the variation in the objective each parameter explains across "
                   "the study's completed trials (fANOVA), then within each architecture's "
                   "trials, where its layer settings live; with few trials this is a rough "
                   "hint, not a finding."),
              img(figures.importances(r.importances, r.out), "parameter importances"))
    else:
        s.add(note(f"parameter importances not available: {r.importances}"))
    s.add(heading(3, "Each parameter against the result"))
    col = r.best_column
    if not (r.params and col in r.trials and r.trials[col].notna().any()):
        return s.add(note("no parameter varied across the trials"))
    return s.add(lead("Each point is a trial: a sampled value and the best validation "
                      f"`{r.metric}` it reached."),
                 img(figures.slices(r.trials, r.params, r.metric, _colours(r), r.out),
                     "slice plot"))


def cross(r: Results) -> Section | None:
    """The cross-dataset matrix, when ``evaluate --cross`` wrote one."""
    if not r.cross:
        return None
    s = Section("cross", "Cross-dataset")
    name = figures.cross(r.cross, r.out)
    if name:
        s.add(img(name, "cross-dataset matrix"))
    plain = {"cell": lambda _, v: number(v)}
    scores = {"extra_class": lambda col, _: "" if col == cross_tables.CORNER else " num"}
    return s.add(para(cross_tables.NOTE.format(split=r.cross.get("split"))),
                 table(cross_tables.matrix_table(r.cross), **plain, **scores),
                 heading(3, "Details"), table(cross_tables.detail_table(r.cross), **plain),
                 para("Models: " + "; ".join(f"{t}: `{m}`"
                                             for t, m in cross_tables.models(r.cross).items())))


def selection(r: Results) -> Section | None:
    """What selecting by each source would have picked, when the trials scored extra sources
    (``data.extra_sources``): the question cross-source selection answers."""
    frame = selection_tables.selection_table(r.history, r.trials, r.metric) \
        if not r.history.empty else pd.DataFrame()
    if frame.empty:
        return None
    return Section("selection", "Cross-source selection").add(
        para(selection_tables.summary(frame)),
        para(selection_tables.NOTE.format(metric=r.metric)),
        table(frame, cell=lambda _, v: number(v)))


def files(r: Results) -> Section:
    """Where the tables, the study and the curves are, and the next command."""
    d = filenames.portable_path(r.directory)  # the page names no machine
    return Section("files", "Files").add(bullets([
        f"Tables: `{d}/{filenames.TRIALS_PARQUET}` (one row per trial), "
        f"`{d}/{filenames.HISTORY}` (every epoch)",
        f"Optuna study `{r.cfg.search.name}`: "
        f"`optuna-dashboard {study_store.describe(r.cfg, d)}`",
        f"TensorBoard: `tensorboard --logdir {d}`",
        f"Export the best model: `deepfake-search export {d}`",
    ]))


#: The page's sections, top to bottom.
BUILDERS: tuple[Builder, ...] = (overview, leaderboard, pareto, confusion, curves, robustness,
                                 learning, search, cross, selection, files)

__all__ = ["BUILDERS", "TOP_TRIALS", "Builder", "confusion", "cross", "curves", "files",
           "learning", "leaderboard", "overview", "pareto", "robustness", "search", "selection",
           "trials_table"]
