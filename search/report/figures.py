"""The report's figures: matplotlib on the Agg canvas (no display, no pyplot state).

Each function draws one PNG into the report folder and returns its file name. Colours are
Okabe-Ito (colour-blind safe), one per architecture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from search import catalog
from search.data.layouts import FAKE, LABEL_NAMES, REAL
from search.display import number
from search.evaluate.matrix import tested_on

DPI = 110
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000"]
CLASSES = [LABEL_NAMES[REAL], LABEL_NAMES[FAKE]]  # axis order of the confusion matrices

#: (label, validation confusion, test confusion): one row of the confusion figure.
ConfusionItem = tuple[str, dict[str, Any] | None, dict[str, Any] | None]
#: (label, colour, predictions with ``label`` and ``p_fake``): one curve.
Curve = tuple[str, str, pd.DataFrame]


def _figure(width: float, height: float) -> Figure:
    """A matplotlib Figure on the Agg canvas, independent of pyplot and its backend."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: Every figure the report draws: the only files of the report folder it ever replaces or
#: removes (a user's own PNG saved there is left alone).
FIGURES = ("confusion.png", "curves.png", "learning.png", "importances.png", "search.png",
           "cross_dataset.png", "pareto.png")


def _save(fig: Figure, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name`` (PNG, one of :data:`FIGURES`) and return the name the
    page links to."""
    if name not in FIGURES:
        raise AssertionError(f"{name} is not among the report's FIGURES: add it there")
    fig.savefig(out / name, format="png", dpi=DPI, facecolor="white")
    return name


def arch_colours(archs: Sequence[str]) -> dict[str, str]:
    """One palette colour per architecture, in order of first appearance."""
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(dict.fromkeys(archs))}


def confusion(items: Sequence[ConfusionItem], out: Path) -> str:
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
            grid = np.array([[m[catalog.TN], m[catalog.FP]], [m[catalog.FN], m[catalog.TP]]],
                            dtype=float)
            share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (y, x), count in np.ndenumerate(grid):
                ax.text(x, y, f"{int(count)}\n{share[y, x]:.0%}", ha="center", va="center",
                        fontsize=11, color="white" if share[y, x] > 0.55 else "#123")
            ax.set_xticks([0, 1], CLASSES)
            ax.set_yticks([0, 1], CLASSES)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{label}\n{split}, threshold {m[catalog.THRESHOLD]:.3g}", fontsize=10)
    return _save(fig, out, "confusion.png")


def curves(by_split: dict[str, list[Curve]], out: Path) -> str:
    """ROC and precision-recall curves, one row per split."""
    splits = [s for s in ("validation", "test") if by_split.get(s)]
    fig = _figure(10, 4.2 * len(splits))
    axes = fig.subplots(len(splits), 2, squeeze=False)
    for r, split in enumerate(splits):
        roc_ax, pr_ax = axes[r]
        prevalence = None
        for label, colour, frame in by_split[split]:
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
                  ylabel=catalog.PRECISION, xlim=(0, 1), ylim=(0, 1.01))
        for ax in (roc_ax, pr_ax):
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    return _save(fig, out, "curves.png")


def learning(history: pd.DataFrame, top: pd.DataFrame, colours: dict[str, str], metric: str,
             out: Path) -> str:
    """Validation AUC (and the search metric) and training loss per epoch of the top trials."""
    auc = catalog.val(catalog.AUC)
    panels = [auc, *([metric] if metric != auc and metric in history else []),
              catalog.TRAIN_LOSS]
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


def importances(imp: dict[str, dict[str, float]], out: Path) -> str:
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



def slices(trials: pd.DataFrame, params: Sequence[str], metric: str, colours: dict[str, str],
           out: Path) -> str:
    """Each sampled parameter against the trial's best validation metric, by architecture."""
    col = catalog.best(metric)
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


def cross(matrix: dict[str, Any], out: Path) -> str | None:
    """Accuracy and AUC heatmaps, trained-on rows by tested-on columns."""
    rows = list(matrix.get("rows", {}))
    cols = tested_on(matrix)
    if not rows or not cols:
        return None
    fig = _figure(max(5.0, 2.3 * len(cols) * 2 + 1.5), 1.1 * len(rows) + 2.0)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, key in zip(axes, (catalog.ACCURACY_AT_THRESHOLD, catalog.AUC)):
        title = catalog.label(key)
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                value = matrix["rows"][r]["cells"].get(c, {}).get(key)
                grid[i, j] = np.nan if value is None else value
        ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.3, vmax=1.0, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, number(v, ".2f"), ha="center", va="center",
                    fontsize=12)
        ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=9)
        ax.set_yticks(range(len(rows)), rows, fontsize=9)
        ax.set(title=title, xlabel="tested on", ylabel="trained on" if ax is axes[0] else None)
    return _save(fig, out, "cross_dataset.png")



def pareto(points: pd.DataFrame, objectives: Sequence[str], modes: Sequence[str],
           colours: dict[str, str], out: Path) -> str:
    """Every trial by its first two objectives (the second across, the first up), coloured
    by architecture; the Pareto front ringed, joined and labelled with trial ids."""
    y_name, x_name = objectives[0], objectives[1]
    ok = points[points[[x_name, y_name]].notna().all(axis=1)]
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    for arch, colour in colours.items():
        mine = ok[ok["arch"].astype(str) == arch]
        ax.scatter(mine[x_name], mine[y_name], s=40, color=colour, alpha=0.8,
                   edgecolor="white", lw=0.6, label=arch)
    front = ok[ok["pareto"].astype(bool)].sort_values(x_name)
    ax.plot(front[x_name], front[y_name], color="#333", lw=1.2, ls="--", zorder=1,
            drawstyle="steps-post" if modes[1] == "min" else "default", label="Pareto front")
    ax.scatter(front[x_name], front[y_name], s=120, facecolor="none", edgecolor="#000", lw=1.4)
    for _, row in front.iterrows():
        ax.annotate(str(row["trial_id"]), (row[x_name], row[y_name]), fontsize=8,
                    xytext=(5, 4), textcoords="offset points")
    positive = ok[x_name][ok[x_name] > 0]
    if len(positive) == len(ok) and len(ok) and positive.max() / positive.min() > 20:
        ax.set_xscale("log")  # latencies of a small CNN and a ResNet differ 100-fold
    better = {"max": "higher is better", "min": "lower is better"}
    ax.set(xlabel=f"{x_name} ({better[modes[1]]})", ylabel=f"{y_name} ({better[modes[0]]})",
           title=f"{len(ok)} trials, {len(front)} on the front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out, "pareto.png")


__all__ = ["DPI", "PALETTE", "ConfusionItem", "Curve", "arch_colours", "confusion", "cross",
           "curves", "importances", "learning", "pareto", "slices"]
