"""A one-page HTML report of a finished search, to look at rather than read.

``write_report(results_dir)`` writes ``<results>/report/report.html`` and the PNG figures
it shows beside it: the leaderboard, the finalists' confusion matrices, ROC and
precision-recall curves (validation and test), learning curves of the top trials, Optuna's
parameter importances, a slice plot of the search and, when ``deepfake-search evaluate
--cross`` wrote one, the cross-dataset matrix. Figures are drawn with matplotlib's Agg
canvas (no display, no global pyplot state); the page has no script and loads nothing from
the network, so the folder can be zipped, mailed and opened offline.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.export import load_experiment, load_trials
from search.tune.importance import param_importances

REPORT_DIR = "report"
REPORT_FILE = "report.html"
TOP_TRIALS = 8
DPI = 110
# Colour-blind-safe palette (Okabe-Ito), one colour per architecture.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000"]


@dataclass
class Section:
    """One block of the page: a heading, HTML body and the figures it shows."""

    anchor: str
    title: str
    body: list[str] = field(default_factory=list)


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas, independent of pyplot and its backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path, name: str) -> str:
    fig.savefig(out / name, format="png", dpi=DPI, facecolor="white")
    return name


def _img(name: str, alt: str) -> str:
    return f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}"></figure>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


# ------------------------------------------------------------------ markdown -> HTML
def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, *, shift: int = 1) -> str:
    """The small markdown subset the project writes (headings, paragraphs, lists, tables,
    code spans, bold) as HTML; heading levels move down by ``shift``."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = min(6, len(heading.group(1)) + shift)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table_html(block))
        elif re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(
                    r"^(#{1,6}\s|\s*\||\s*[-*]\s)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _table_html(block: Sequence[str]) -> str:
    rows = [_cells(r) for r in block]
    has_header = len(rows) > 1 and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1] if c)
    head, body = (rows[0], rows[2:]) if has_header else (None, rows)
    parts = ['<div class="table-wrap"><table>']
    if head:
        parts.append("<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                     + "</tr></thead>")
    parts.append("<tbody>")
    for row in body:
        parts.append("<tr>" + "".join(
            f'<td class="{"num" if _numeric(c) else "txt"}">{_inline(c)}</td>' for c in row)
            + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?( [/*] ?[\d.]*)*\s*\*?|—", text.strip()))


# ------------------------------------------------------------------ data helpers
def _checkpoint(results_dir: Path, path: Any) -> Path | None:
    """A trial's checkpoint folder, also when the results folder was moved since."""
    if not isinstance(path, str) or not path:
        return None
    here = Path(path)
    if here.is_dir():
        return here
    parts = here.parts
    if "_train" in parts:  # re-root .../<experiment>/_train/trial_x/checkpoint_y
        moved = results_dir.joinpath(*parts[parts.index("_train"):])
        if moved.is_dir():
            return moved
    return None


def _finalists(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    from search.tune.tables import finalists

    if trials.empty or "status" not in trials:
        return trials
    return finalists(trials, metric)


def _colours(archs: Sequence[str]) -> dict[str, str]:
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(dict.fromkeys(archs))}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


# ------------------------------------------------------------------ figures
def _confusion_figure(items: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]],
                      out: Path) -> str:
    """One row per architecture: validation and test confusion matrices as heatmaps."""
    cols = 2 if any(test for _, _, test in items) else 1
    fig = _figure(3.3 * cols + 0.4, 2.9 * len(items))
    axes = fig.subplots(len(items), cols, squeeze=False)
    for r, (label, val, test) in enumerate(items):
        for c, (split, m) in enumerate([("validation", val), ("test", test)][:cols]):
            ax = axes[r][c]
            if not m:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{label}\nno {split} metrics", ha="center", va="center",
                        color="#666")
                continue
            grid = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]], dtype=float)
            share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (y, x), count in np.ndenumerate(grid):
                ax.text(x, y, f"{int(count)}\n{share[y, x]:.0%}", ha="center", va="center",
                        fontsize=11, color="white" if share[y, x] > 0.55 else "#123")
            ax.set_xticks([0, 1], ["REAL", "FAKE"])
            ax.set_yticks([0, 1], ["REAL", "FAKE"])
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{label}\n{split}, threshold {m['threshold']:.3g}", fontsize=10)
    return _save(fig, out, "confusion.png")


def _curve_figure(curves: dict[str, list[tuple[str, str, pd.DataFrame]]], out: Path) -> str:
    """ROC and precision-recall curves, one row per split."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    splits = [s for s in ("validation", "test") if curves.get(s)]
    fig = _figure(10, 4.2 * len(splits))
    axes = fig.subplots(len(splits), 2, squeeze=False)
    for r, split in enumerate(splits):
        roc_ax, pr_ax = axes[r]
        prevalence = None
        for label, colour, frame in curves[split]:
            y, p = frame["label"].to_numpy(), frame["p_fake"].to_numpy()
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, p)
            roc_ax.plot(fpr, tpr, color=colour, lw=2, label=f"{label}  AUC {auc(fpr, tpr):.3f}")
            precision, recall, _ = precision_recall_curve(y, p)
            pr_ax.plot(recall, precision, color=colour, lw=2, drawstyle="steps-post",
                       label=f"{label}  AP {average_precision_score(y, p):.3f}")
            prevalence = float(np.mean(y))
        roc_ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1, label="chance")
        if prevalence is not None:
            pr_ax.axhline(prevalence, ls="--", color="#999", lw=1,
                          label=f"chance (FAKE share {prevalence:.2f})")
        roc_ax.set(title=f"ROC, {split}", xlabel="false positive rate (REAL called FAKE)",
                   ylabel="true positive rate (FAKE caught)", xlim=(0, 1), ylim=(0, 1.01))
        pr_ax.set(title=f"Precision-recall, {split}", xlabel="recall (FAKE caught)",
                  ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
        for ax in (roc_ax, pr_ax):
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    return _save(fig, out, "curves.png")


def _learning_figure(history: pd.DataFrame, top: pd.DataFrame, colours: dict[str, str],
                     metric: str, out: Path) -> str:
    """Validation AUC (and the search metric) and training loss per epoch of the top trials."""
    panels = ["val_auc", *([metric] if metric != "val_auc" and metric in history else []),
              "train_loss"]
    panels = [p for p in panels if p in history]
    fig = _figure(4.6 * len(panels) + 0.5, 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    arch_style = {a: styles[i % len(styles)] for i, a in enumerate(colours)}
    for k, (_, row) in enumerate(top.iterrows()):
        tid, arch = str(row["trial_id"]), str(row.get("arch", ""))
        h = history[history["trial_id"].astype(str) == tid].sort_values("epoch")
        if h.empty:
            continue
        for ax, col in zip(axes, panels):  # a colour per trial, a line style per architecture
            ax.plot(h["epoch"], h[col], marker="o", ms=5, lw=1.8, ls=arch_style.get(arch, "-"),
                    color=PALETTE[k % len(PALETTE)], label=f"{tid} ({arch})")
    for ax, col in zip(axes, panels):
        ax.set(title=col.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8, loc="best")
    return _save(fig, out, "learning.png")


def _importance_figure(imp: dict[str, dict[str, float]], out: Path) -> str:
    """One bar panel per group: all trials, then each architecture's own trials."""
    groups = list(imp.items())
    rows = sum(len(scores) for _, scores in groups)
    fig = _figure(6.5, 0.3 * rows + 0.9 * len(groups) + 0.4)
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(sc) + 1.5 for _, sc in groups]})[:, 0]
    for ax, (group, scores) in zip(axes, groups):
        names = list(scores)[::-1]
        ax.barh(names, [scores[n] for n in names], color="#0072B2")
        for y, n in enumerate(names):
            ax.text(scores[n], y, f" {scores[n]:.2f}", va="center", fontsize=9)
        ax.set(title=group, xlim=(0, max(scores.values()) * 1.18 or 1))
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set(xlabel="importance (share of the metric's variance)")
    return _save(fig, out, "importances.png")


def _space_params(cfg: Any, trials: pd.DataFrame) -> list[str]:
    """The searched parameters: the resolved space, else the trials table's param columns."""
    try:
        from search.tune.space import build_space

        return list(build_space(cfg.search.space))
    except Exception:  # an older or foreign space: the table's layout still tells
        cols = list(trials.columns)
        if "status" in cols and "epochs" in cols:
            return cols[cols.index("status") + 1:cols.index("epochs")]
        return [c for c in ("arch", "ratio", "lr", "batch_size") if c in cols]


def _varying_params(trials: pd.DataFrame, params: Sequence[str]) -> list[str]:
    return [p for p in params if p in trials and trials[p].dropna().astype(str).nunique() > 1]


def _slice_figure(trials: pd.DataFrame, params: Sequence[str], metric: str,
                  colours: dict[str, str], out: Path) -> str:
    """Each sampled parameter against the trial's best validation metric, by architecture."""
    col = f"best_{metric}"
    ok = trials[trials[col].notna()] if col in trials else trials.iloc[0:0]
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig = _figure(4.0 * ncols, 3.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    rng = np.random.default_rng(0)
    for ax, p in zip(axes, params):
        values = ok[p]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric:
            x = values.astype(float)
            positive = x[x > 0]
            if len(positive) == len(x.dropna()) and len(positive) and positive.max() / positive.min() > 50:
                ax.set_xscale("log")
        else:
            cats = sorted(values.dropna().astype(str).unique())
            x = values.astype(str).map({c: i for i, c in enumerate(cats)}).astype(float)
            x = x + rng.uniform(-0.12, 0.12, len(x))
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        for arch, colour in colours.items():
            mask = (ok["arch"].astype(str) == arch) if "arch" in ok else np.ones(len(ok), bool)
            ax.scatter(x[mask], ok.loc[mask, col], s=38, color=colour, alpha=0.85,
                       edgecolor="white", lw=0.6, label=arch)
        ax.set(title=p, ylabel=metric if ax in axes[::ncols] else None)
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.axis("off")
    if len(colours) > 1:
        axes[0].legend(fontsize=8)
    return _save(fig, out, "search.png")


def _cross_figure(matrix: dict[str, Any], out: Path) -> str | None:
    rows = list(matrix.get("rows", {}))
    cols: list[str] = []
    for r in rows:
        cols += [c for c in matrix["rows"][r]["cells"] if c not in cols]
    if not rows or not cols:
        return None
    fig = _figure(max(5.0, 2.3 * len(cols) * 2 + 1.5), 1.1 * len(rows) + 2.0)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, (key, title) in zip(axes, [("accuracy_at_threshold", "accuracy"), ("auc", "AUC")]):
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                value = matrix["rows"][r]["cells"].get(c, {}).get(key)
                grid[i, j] = np.nan if value is None else value
        ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.3, vmax=1.0, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "—" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    fontsize=12)
        ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=9)
        ax.set_yticks(range(len(rows)), rows, fontsize=9)
        ax.set(title=title, xlabel="tested on", ylabel="trained on" if ax is axes[0] else None)
    return _save(fig, out, "cross_dataset.png")


# ------------------------------------------------------------------ sections
def _overview(cfg: Any, trials: pd.DataFrame, finals: pd.DataFrame, metric: str,
              test: dict[str, Any], results_dir: Path) -> str:
    counts = trials["status"].value_counts().to_dict() if "status" in trials else {}
    cards = [("trials", str(len(trials)),
              ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in counts.items()))]
    if len(finals):
        top = finals.iloc[0]
        tid = str(top["trial_id"])
        cards.append(("best trial", f"{html.escape(str(top.get('arch')))}",
                      f"trial {html.escape(tid)}, epoch {top.get('best_epoch')}"))
        cards.append((f"validation {metric.removeprefix('val_')}",
                      _num(top.get(f"best_{metric}")),
                      f"majority-class accuracy {_num(top.get('best_val_baseline_accuracy'))}"))
        t = test.get(tid)
        if t:
            cards.append(("test AUC / accuracy", f"{_num(t.get('auc'))} / "
                          f"{_num(t.get('accuracy_at_threshold'))}",
                          f"at threshold {_num(t.get('threshold'))}, n = {t.get('n')}"))
    data = html.escape(str(cfg.data.shards or "embedded demo set"))
    html_cards = "".join(f'<div class="card"><div class="label">{html.escape(a)}</div>'
                         f'<div class="value">{b}</div><div class="sub">{html.escape(c)}</div>'
                         "</div>" for a, b, c in cards)
    return (f'<div class="cards">{html_cards}</div>'
            f'<p class="meta">Search metric <code>{html.escape(metric)}</code> '
            f'({html.escape(cfg.search.resolved_mode())}), data <code>{data}</code>, results '
            f'<code>{html.escape(str(results_dir))}</code>. FAKE is the positive class.</p>')


def _trials_table(trials: pd.DataFrame, params: Sequence[str], metric: str) -> str:
    cols = ["trial_id", "status", *[p for p in params if p in trials], "epochs", "best_epoch",
            f"best_{metric}", "best_val_f1_at_threshold", "best_val_baseline_accuracy"]
    cols = list(dict.fromkeys(c for c in cols if c in trials))
    names = {f"best_{metric}": metric.removeprefix("val_"), "best_val_f1_at_threshold": "F1 at thr",
             "best_val_baseline_accuracy": "majority acc", "trial_id": "trial"}
    metric_cols = set(names) - {"trial_id"}  # ints stored as floats (NaN elsewhere) print as ints
    head = "".join(f"<th>{html.escape(names.get(c, c))}</th>" for c in cols)
    rows = []
    for _, r in trials.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "lr" or c == "weight_decay":
                text = "—" if pd.isna(v) else f"{float(v):.2e}"
            elif isinstance(v, (float, np.floating)):
                whole = not pd.isna(v) and float(v).is_integer() and c not in metric_cols
                text = "—" if pd.isna(v) else (f"{v:.0f}" if whole else f"{v:.3f}")
            else:
                text = "—" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
            cls = "num" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else "txt"
            if c == "status":
                cls += f" status-{html.escape(str(v).lower())}"
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="trials"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


CSS = """
:root { --ink:#1d2733; --muted:#5b6875; --line:#dfe4ea; --bg:#f5f7fa; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:linear-gradient(120deg,#12324a,#0072B2); color:#fff; padding:28px 0 22px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
header p { margin:0; opacity:.85; }
.wrap { max-width:1120px; margin:0 auto; padding:0 24px; }
nav { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line); }
nav .wrap { display:flex; gap:18px; overflow-x:auto; padding-top:10px; padding-bottom:10px; }
nav a { color:var(--accent); text-decoration:none; white-space:nowrap; font-size:14px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; margin:22px 0;
          padding:6px 24px 20px; }
section > h2 { font-size:20px; margin:16px 0 10px; }
h3 { font-size:16px; margin:18px 0 8px; } h4 { font-size:14px; margin:14px 0 6px; }
.lead { color:var(--muted); margin-top:0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(220px,1fr)); gap:14px;
         margin:18px 0 8px; }
.card { border:1px solid var(--line); border-radius:10px; padding:12px 16px; background:#fbfcfd; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:24px; font-weight:650; margin:2px 0; }
.card .sub { color:var(--muted); font-size:13px; }
.meta { color:var(--muted); font-size:13px; }
figure { margin:10px 0; text-align:center; }
figure img { max-width:100%; height:auto; border-radius:6px; }
.table-wrap { overflow-x:auto; margin:8px 0 12px; }
table { border-collapse:collapse; font-size:13px; width:auto; min-width:50%; }
th, td { padding:5px 9px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { background:#eef2f6; text-align:left; font-weight:600; position:sticky; top:0; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) { background:#fafbfc; } tbody tr:hover { background:#eef6fc; }
.status-completed { color:#0b7a3e; } .status-stopped_early { color:#8a6d00; }
.status-error { color:#b00020; font-weight:600; }
code { background:#eef2f6; padding:1px 5px; border-radius:4px; font-size:90%; }
.note { color:var(--muted); background:#fff8e6; border-left:3px solid #E69F00; padding:8px 12px;
        border-radius:4px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 30px; }
"""


def _page(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{"".join(s.body)}'
                   "</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f'<header><div class="wrap"><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}'
            f'</p></div></header><nav><div class="wrap">{nav}</div></nav>'
            f'<main class="wrap">{body}</main>'
            f"<footer>deepfake-search report · static page, opens offline</footer>"
            "</body></html>\n")


def write_report(results_dir: str | Path) -> Path:
    """Write ``<results_dir>/report/report.html`` (+ its PNGs) and return its path."""
    results_dir = Path(results_dir).expanduser().resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    cfg = load_experiment(results_dir)
    trials = load_trials(results_dir)
    metric = cfg.search.metric
    out = results_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()  # figures of an earlier report that may not be drawn again
    test_path = results_dir / "test_metrics.json"
    test: dict[str, Any] = json.loads(test_path.read_text()) if test_path.is_file() else {}
    history_path = results_dir / "history.parquet"
    history = pd.read_parquet(history_path) if history_path.is_file() else pd.DataFrame()
    finals = _finalists(trials, metric)
    colours = _colours([str(a) for a in trials.get("arch", pd.Series(dtype=str)).dropna()])
    params = _varying_params(trials, [p for p in _space_params(cfg, trials) if p != "arch"])
    if "arch" in trials and trials["arch"].nunique() > 1:
        params = ["arch", *params]
    sections: list[Section] = []

    s = Section("overview", "Overview")
    s.body.append(_overview(cfg, trials, finals, metric, test, results_dir))
    sections.append(s)

    s = Section("leaderboard", "Leaderboard")
    board = results_dir / "leaderboard.md"
    if board.is_file():
        text = board.read_text()
        text = re.sub(r"^# .*\n", "", text, count=1)  # the page has its own title
        s.body.append(markdown_to_html(text, shift=1))
    else:
        s.body.append(_note("leaderboard.md not found: the search did not finish writing it"))
    s.body.append("<h3>All trials</h3>" + _trials_table(trials, params, metric))
    sections.append(s)

    s = Section("confusion", "Confusion matrices")
    items = []
    for _, row in finals.iterrows():
        tid = str(row["trial_id"])
        val = {k: row.get(f"best_val_{k}_at_threshold") for k in ("tp", "tn", "fp", "fn")}
        val["threshold"] = row.get("best_val_threshold")
        val_ok = all(v is not None and not pd.isna(v) for v in val.values())
        t = test.get(tid)
        tm = ({k: t[f"{k}_at_threshold"] for k in ("tp", "tn", "fp", "fn")}
              | {"threshold": t["threshold"]}) if t else None
        items.append((f"{row.get('arch')} · trial {tid}", val if val_ok else None, tm))
    if items:
        s.body.append('<p class="lead">The best trial of each architecture at its F1-optimal '
                      "validation threshold (the test split uses that same threshold). Cells: "
                      "count and share of the true class.</p>")
        s.body.append(_img(_confusion_figure(items, out), "confusion matrices"))
    else:
        s.body.append(_note("no finished trial with a checkpoint"))
    sections.append(s)

    s = Section("curves", "ROC and precision-recall")
    curves: dict[str, list[tuple[str, str, pd.DataFrame]]] = {"validation": [], "test": []}
    for _, row in finals.iterrows():
        ckpt = _checkpoint(results_dir, row.get("checkpoint"))
        if ckpt is None:
            continue
        label = f"{row.get('arch')} · {row['trial_id']}"
        colour = colours.get(str(row.get("arch")), "#333")
        for split, name in (("validation", "val_predictions.csv"), ("test", "test_predictions.csv")):
            if (ckpt / name).is_file():
                curves[split].append((label, colour, pd.read_csv(ckpt / name)))
    if curves["validation"] or curves["test"]:
        s.body.append('<p class="lead">Finalists (best trial per architecture) on validation '
                      "and, where the search scored it, on the held-out test split.</p>")
        s.body.append(_img(_curve_figure(curves, out), "ROC and precision-recall curves"))
        if not curves["test"]:
            s.body.append(_note("no test_predictions.csv: the search ran without the test "
                                "evaluation (--no-test) or it did not finish"))
    else:
        s.body.append(_note("no val_predictions.csv found in the finalists' checkpoints"))
    sections.append(s)

    s = Section("learning", "Learning curves")
    col = f"best_{metric}"
    top = trials[trials[col].notna()].head(TOP_TRIALS) if col in trials else trials.head(TOP_TRIALS)
    if len(history) and len(top):
        s.body.append(f'<p class="lead">The top {len(top)} trial(s) by validation '
                      f"<code>{html.escape(metric)}</code>; trials stopped early by ASHA end "
                      "early.</p>")
        s.body.append(_img(_learning_figure(history, top, colours, metric, out), "learning curves"))
    else:
        s.body.append(_note("no history.parquet or no finished epoch"))
    sections.append(s)

    s = Section("search", "The search")
    imp = param_importances(results_dir / "optuna.db", cfg.search.name)
    s.body.append("<h3>Parameter importances (Optuna)</h3>")
    if isinstance(imp, dict):
        s.body.append('<p class="lead">How much of the variation in the objective each '
                      "parameter explains across the study's completed trials (fANOVA), then "
                      "within each architecture's trials, where its layer settings live; with "
                      "few trials this is a rough hint, not a finding.</p>")
        s.body.append(_img(_importance_figure(imp, out), "parameter importances"))
    else:
        s.body.append(_note(f"parameter importances not available: {imp}"))
    s.body.append("<h3>Each parameter against the result</h3>")
    if params and col in trials and trials[col].notna().any():
        s.body.append('<p class="lead">Each point is a trial: a sampled value and the best '
                      f"validation <code>{html.escape(metric)}</code> it reached.</p>")
        s.body.append(_img(_slice_figure(trials, params, metric, colours, out), "slice plot"))
    else:
        s.body.append(_note("no parameter varied across the trials"))
    sections.append(s)

    cross_md = results_dir / "cross_dataset.md"
    if cross_md.is_file():
        s = Section("cross", "Cross-dataset")
        cross_json = results_dir / "cross_dataset.json"
        if cross_json.is_file():
            name = _cross_figure(json.loads(cross_json.read_text()), out)
            if name:
                s.body.append(_img(name, "cross-dataset matrix"))
        s.body.append(markdown_to_html(re.sub(r"^# .*\n", "", cross_md.read_text(), count=1)))
        sections.append(s)

    s = Section("files", "Files")
    s.body.append(markdown_to_html("\n".join([
        f"- Tables: `{results_dir / 'trials.parquet'}` (one row per trial), "
        f"`{results_dir / 'history.parquet'}` (every epoch)",
        f"- Optuna study `{cfg.search.name}`: `optuna-dashboard sqlite:///{results_dir / 'optuna.db'}`",
        f"- TensorBoard: `tensorboard --logdir {results_dir}`",
        f"- Export the best model: `deepfake-search export {results_dir}`",
    ])))
    sections.append(s)

    stamp = time.strftime("%Y-%m-%d %H:%M")
    subtitle = (f"{len(trials)} trials · metric {metric} · "
                f"{', '.join(dict.fromkeys(str(a) for a in trials.get('arch', [])))} · {stamp}")
    page = _page(f"Search report: {cfg.search.name}", subtitle, sections)
    path = out / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    logging.getLogger(__name__).info("report written to %s", path)
    return path


__all__ = ["REPORT_DIR", "REPORT_FILE", "markdown_to_html", "write_report"]
