"""``deepfake-search report``: one static page whose every figure loads in a real browser.

Most tests read a results folder written here in a second (``synthetic``: the files a search
leaves, no training); the page and browser tests read a real tiny search's.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from search import filenames
from search import leaderboard as lb
from search.config import DataConfig, ExperimentConfig, SearchConfig
from search.display import DASH, compact
from search.report import REPORT_DIR, REPORT_FILE, write_report
from search.report.markup import table
from search.report.page import stylesheet
from search.tune.importance import param_importances

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOP_FILES = (filenames.EXPERIMENT, filenames.SPACE, filenames.TRIALS_PARQUET, filenames.TRIALS_CSV,
             filenames.HISTORY, filenames.LEADERBOARD, filenames.TEST_METRICS, filenames.OPTUNA_DB)
SECTIONS = ["overview", "leaderboard", "confusion", "curves", "learning", "search", "cross",
            "files"]
FIGURES = ("confusion.png", "curves.png", "learning.png", "importances.png", "search.png",
           "cross_dataset.png")
CELL = {"accuracy_at_threshold": 0.81, "auc": 0.88, "n": 120, "positive_rate": 0.67,
        "f1_at_threshold": 0.86, "baseline_accuracy": 0.67, "threshold": 0.5, "in_domain": True}
MATRIX = {"split": "test", "rows": {"demo_shards (demo)": {"model": "export", "cells": {
    "demo_shards (demo)": CELL,
    "frames_shards (folders)": {**CELL, "accuracy_at_threshold": 0.4, "auc": 0.55,
                                "in_domain": False}}}}}


# ------------------------------------------------------------------ a synthetic results folder
def _scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """The confusion counts and a few metrics of predictions ``p`` at ``threshold``."""
    pred = p >= threshold
    tp, tn = int(np.sum(pred & (y == 1))), int(np.sum(~pred & (y == 0)))
    fp, fn = int(np.sum(pred & (y == 0))), int(np.sum(~pred & (y == 1)))
    return {"tp": tp, "tn": tn, "fp": fp, "fn": fn, "accuracy": (tp + tn) / len(y),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1), "threshold": threshold}


def _predictions(ckpt: Path, name: str, skill: float, rng: np.random.Generator) -> dict:
    y = np.array([0] * 40 + [1] * 80)
    p = 1 / (1 + np.exp(-(skill * (2 * y - 1) + rng.normal(0, 1, len(y)))))
    pd.DataFrame({"id": range(len(y)), "label": y, "p_fake": p}).to_csv(ckpt / name, index=False)
    at = _scores(y, p, 0.45)
    return {**_scores(y, p, 0.5), **{f"{k}_at_threshold": v for k, v in at.items()},
            "auc": 0.5 + skill / 4, "baseline_accuracy": 2 / 3, "n": len(y), "threshold": 0.45}


def _trial(root: Path, tid: str, arch: str, status: str, epochs: int, skill: float,
           rng: np.random.Generator) -> tuple[dict, dict | None]:
    """One trials-table row (its checkpoint written under a folder since moved) and its
    test-split metrics."""
    row = {"trial_id": tid, "status": status, "arch": arch, "ratio": "1:2",
           "lr": 10 ** rng.uniform(-4, -2), "epochs": epochs, "checkpoint": ""}
    if status == "ERROR":
        return {**row, "best_val_auc": math.nan, "best_epoch": math.nan, "error": "boom"}, None
    ckpt = root / filenames.trial_dirname(tid) / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    val = _predictions(ckpt, filenames.VAL_PREDICTIONS, skill, rng)
    test = _predictions(ckpt, filenames.TEST_PREDICTIONS, skill, rng)
    row["checkpoint"] = str(Path("/moved/away") / root.name / ckpt.relative_to(root))
    row |= {f"best_val_{k}": v for k, v in val.items()} | {"best_epoch": epochs,
                                                          "best_val_ap": math.nan}
    return row, test


def _study(root: Path, name: str, rng: np.random.Generator) -> None:
    """An Optuna study of eight completed trials in which ``lr`` and ``arch`` matter."""
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=f"sqlite:///{root / filenames.OPTUNA_DB}")
    dists = {"arch": optuna.distributions.CategoricalDistribution(["custom_cnn", "resnet10t"]),
             "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for i in range(8):
        params = {"arch": dists["arch"].choices[i % 2], "lr": 10 ** rng.uniform(-4, -2)}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=0.6 + 0.1 * (i % 2) + params["lr"] * 10))


def make_results(root: Path) -> Path:
    """The files a finished search leaves (tables, history, test metrics, study, space,
    predictions, a cross-dataset matrix), written without training anything."""
    rng = np.random.default_rng(0)
    results = root / "synthetic"
    results.mkdir()
    cfg = ExperimentConfig(data=DataConfig(shards="/data/r&d <faces>"),
                           search=SearchConfig(name="synthetic", metric="val_auc"))
    (results / filenames.EXPERIMENT).write_text(json.dumps(cfg.to_dict()))
    (results / filenames.SPACE).write_text("arch           in ['custom_cnn', 'resnet10t']\n"
                                         "ratio          = '1:2'\nlr             in [1e-4, 1e-2] log\n")
    made = [_trial(results, *spec, rng) for spec in (
        ("a1", "custom_cnn", "COMPLETED", 3, 2.0), ("b2", "resnet10t", "COMPLETED", 3, 1.0),
        ("c3", "custom_cnn", "STOPPED_EARLY", 1, 0.5), ("d4", "resnet10t", "ERROR", 0, 0.0))]
    trials = pd.DataFrame([row for row, _ in made])
    trials.to_parquet(results / filenames.TRIALS_PARQUET)
    history = pd.DataFrame([{"trial_id": row["trial_id"], "epoch": e, "train_loss": 1 / e,
                             "val_auc": row["best_val_auc"] - 0.1 / e}
                            for row, _ in made for e in range(1, row["epochs"] + 1)])
    history.to_parquet(results / filenames.HISTORY)
    test = {row["trial_id"]: m for row, m in made[:2]}  # the two finalists
    (results / filenames.TEST_METRICS).write_text(json.dumps(test))
    _study(results, cfg.search.name, rng)
    (results / filenames.CROSS_JSON).write_text(json.dumps(MATRIX))
    return results


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def synthetic_page(synthetic: Path) -> str:
    return write_report(synthetic).read_text()


# ------------------------------------------------------------------ the page, quickly
def _figures(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_every_section_and_figure(synthetic: Path, synthetic_page: str) -> None:
    assert re.findall(r'<section id="([^"]+)"', synthetic_page) == SECTIONS
    assert sorted(_figures(synthetic_page)) == sorted(FIGURES)
    for name in FIGURES:
        assert (synthetic / REPORT_DIR / name).stat().st_size > 1000, name
    assert stylesheet().strip() and stylesheet() in synthetic_page  # package data, inlined
    assert "<script" not in synthetic_page and "http://" not in synthetic_page
    assert "/data/r&amp;d &lt;faces&gt;" in synthetic_page and "<faces>" not in synthetic_page


def test_tables_come_from_the_dataframes(synthetic: Path, synthetic_page: str) -> None:
    trials = pd.read_parquet(synthetic / filenames.TRIALS_PARQUET)
    board = lb.board_table(trials, "val_auc")
    assert list(board["trial"]) == ["a1", "b2"]  # the best trial of each architecture
    whole = set(lb.WHOLE)  # epochs and counts as whole numbers, as in leaderboard.md

    def shown(col: str, v) -> str:
        return str(int(v)) if col in whole and isinstance(v, float) and v.is_integer() \
            else compact(v)

    for _, row in board.iterrows():  # each finalist's row, in the leaderboard's format
        cells = "".join(f'<td class="{"txt" if isinstance(v, str) or v is None else "num"}">'
                        f"{shown(col, v)}</td>" for col, v in row.items())
        assert f"<tr>{cells}</tr>" in synthetic_page, row["trial"]
    assert f'<td class="num">{DASH}</td>' in synthetic_page  # best_val_ap is NaN: a dash
    assert ">nan<" not in synthetic_page.lower()
    failed = re.search(r"<tr><td class=\"txt\">d4</td>(.*?)</tr>", synthetic_page)
    assert failed and 'class="txt status-error">ERROR' in failed.group(1)
    lr = trials.set_index("trial_id").loc["a1", "lr"]
    assert f">{lr:.2e}</td>" in synthetic_page  # learning rates in the trials table: 1.23e-03
    assert "Trials: 2 completed, 1 stopped early, 1 error" in synthetic_page
    assert "trained on \\ tested on" in synthetic_page and "0.810 / 0.880 *" in synthetic_page


def test_importances_and_moved_checkpoints(synthetic_page: str) -> None:
    assert "<h4>all trials</h4>" in synthetic_page and "importances.png" in synthetic_page
    # The checkpoints were recorded under /moved/away: found again under the results folder.
    assert "curves.png" in synthetic_page and "no val_predictions.csv" not in synthetic_page


def test_partial_results_get_notes_not_errors(synthetic: Path, tmp_path: Path) -> None:
    """A search that left only its config and trials table still gets a page, with notes."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (filenames.EXPERIMENT, filenames.TRIALS_PARQUET):
        shutil.copy(synthetic / name, bare / name)
    page = write_report(bare).read_text()
    assert re.findall(r'<section id="([^"]+)"', page) == [s for s in SECTIONS if s != "cross"]
    for why in ("no val_predictions.csv", "no history.parquet",
                "parameter importances not available: no optuna.db"):
        assert why in page, why
    assert _figures(page) == ["confusion.png", "search.png"]


def test_the_report_replaces_only_its_own_figures(synthetic: Path, tmp_path: Path) -> None:
    """Issue 28: a figure a user saved in the report folder survives the next report, and
    an earlier report's figure that is not drawn again is removed; --out writes elsewhere."""
    from search.report.figures import FIGURES as OWN

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (filenames.EXPERIMENT, filenames.TRIALS_PARQUET):
        shutil.copy(synthetic / name, bare / name)
    (bare / REPORT_DIR).mkdir()
    (bare / REPORT_DIR / "my_roc_for_the_paper.png").write_bytes(b"the user's figure")
    (bare / REPORT_DIR / "learning.png").write_bytes(b"an earlier report's")  # not drawn now
    write_report(bare)
    assert (bare / REPORT_DIR / "my_roc_for_the_paper.png").read_bytes() == b"the user's figure"
    assert not (bare / REPORT_DIR / "learning.png").exists()
    assert sorted(p.name for p in (bare / REPORT_DIR).iterdir()) == sorted(
        ["my_roc_for_the_paper.png", REPORT_FILE, "confusion.png", "search.png"])
    assert set(FIGURES) <= set(OWN)  # every figure the page draws is one the report owns
    elsewhere = write_report(bare, out=tmp_path / "elsewhere")
    assert elsewhere == tmp_path / "elsewhere" / REPORT_FILE and elsewhere.is_file()


def test_robustness_section_when_the_search_scored_it(synthetic: Path, tmp_path: Path) -> None:
    """robustness.json (the finalists' AUC clean and perturbed) becomes a section after the
    curves: one row per finalist and condition, the drop signed, a missing AUC a dash."""
    bare = tmp_path / "robust"
    bare.mkdir()
    for name in (filenames.EXPERIMENT, filenames.TRIALS_PARQUET):
        shutil.copy(synthetic / name, bare / name)
    conditions = {"clean": {"auc": 0.9, "auc_drop": 0.0, "balanced_accuracy": 0.8},
                  "jpeg_q50": {"auc": 0.62, "auc_drop": 0.28, "balanced_accuracy": 0.55},
                  "downup_x2": {"auc": None, "auc_drop": None, "balanced_accuracy": 0.5}}
    (bare / filenames.ROBUSTNESS).write_text(json.dumps(
        {"a1": {"split": "test", "n": 120, "conditions": conditions}}))
    page = write_report(bare).read_text()
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert sections == [s for s in SECTIONS if s != "cross"][:4] + ["robustness"] + [
        s for s in SECTIONS if s != "cross"][4:]
    body = page.split('<section id="robustness">', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [c[:4] for c in cells if c] == [
        ["custom_cnn · a1", "clean", "0.900", "+0.000"],
        ["custom_cnn · a1", "JPEG quality 50", "0.620", "+0.280"],
        ["custom_cnn · a1", "downscale x2 and back", DASH, DASH]]
    assert "JPEG re-compression at quality 75 and 50" in body and "test split" in body


def test_header_names_no_missing_arch_and_epochs_are_whole(synthetic: Path,
                                                            tmp_path: Path) -> None:
    """A trial restored without its config has no arch (NaN): the header lists only the
    architectures there are. Epochs sit in a float column (NaN for a trial with none) and
    print as whole numbers, in the overview's card and in the leaderboard table."""
    folder = tmp_path / "restored"
    folder.mkdir()
    for name in (filenames.EXPERIMENT, filenames.TRIALS_PARQUET, filenames.TEST_METRICS):
        shutil.copy(synthetic / name, folder / name)
    trials = pd.read_parquet(folder / filenames.TRIALS_PARQUET)
    restored = {"trial_id": "e5", "status": "INTERRUPTED", "arch": math.nan, "epochs": 0,
                "best_epoch": math.nan, "best_val_auc": math.nan, "checkpoint": ""}
    trials = pd.concat([trials, pd.DataFrame([restored])], ignore_index=True)
    trials.to_parquet(folder / filenames.TRIALS_PARQUET)
    assert trials["arch"].isna().any() and trials["best_epoch"].dtype == float
    page = write_report(folder).read_text()
    header = re.search(r"<header>.*?<p>(.*?)</p>", page).group(1)
    assert "5 trials · metric val_auc · custom_cnn, resnet10t · " in header, header
    assert "nan" not in header.lower() and "None" not in header
    assert '<div class="sub">trial a1, epoch 3</div>' in page
    board = page.split('<section id="leaderboard">', 1)[1].split("</table>", 1)[0]
    row = re.search(r"<tr><td class=\"txt\">custom_cnn</td>(.*?)</tr>", board).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    head = re.findall(r"<th>(.*?)</th>", board)[1:]
    shown = dict(zip(head, cells, strict=True))
    assert shown["epoch"] == "3", shown  # not 3.000
    assert all(shown[c].isdigit() for c in ("tp", "tn", "fp", "fn")), shown  # counts too


def test_a_tiny_negative_drop_reads_as_zero(synthetic: Path, tmp_path: Path) -> None:
    """A perturbation that helped by noise (AUC up 0.00014) is a drop of 0.000 at the
    table's three decimals: not -0.0001413, not -0.000."""
    folder = tmp_path / "noise"
    folder.mkdir()
    for name in (filenames.EXPERIMENT, filenames.TRIALS_PARQUET):
        shutil.copy(synthetic / name, folder / name)
    conditions = {"clean": {"auc": 0.8402587, "auc_drop": 0.0, "balanced_accuracy": 0.70561},
                  "jpeg_q75": {"auc": 0.8404, "auc_drop": -0.0001413,
                               "balanced_accuracy": 0.7001, "tpr_at_fpr_5pct": 0.000417}}
    (folder / filenames.ROBUSTNESS).write_text(json.dumps(
        {"a1": {"split": "test", "n": 120, "conditions": conditions}}))
    page = write_report(folder).read_text()
    body = page.split('<section id="robustness">', 1)[1].split("</section>", 1)[0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
    assert [c for c in cells if c] == [
        ["custom_cnn · a1", "clean", "0.840", "+0.000", "0.706", DASH],
        ["custom_cnn · a1", "JPEG quality 75", "0.840", "+0.000", "0.700", "0.000"]]


def test_a_thousand_trials_fold_the_trials_table(synthetic: Path, tmp_path: Path) -> None:
    """At 1,000 trials the page keeps the best 20 in view (best first) and folds the whole
    table behind a <details> line; a small search keeps its one table, unfolded."""
    folder = tmp_path / "many"
    folder.mkdir()
    shutil.copy(synthetic / filenames.EXPERIMENT, folder / filenames.EXPERIMENT)
    rng = np.random.default_rng(1)
    n = 1000
    trials = pd.DataFrame({
        "trial_id": [f"t{i:04d}" for i in range(n)], "status": "COMPLETED",
        "arch": rng.choice(["custom_cnn", "resnet10t"], n), "lr": 10 ** rng.uniform(-4, -2, n),
        "epochs": 3, "best_epoch": 3, "best_val_auc": rng.uniform(0.5, 0.9, n), "checkpoint": ""})
    trials.to_parquet(folder / filenames.TRIALS_PARQUET)
    page = write_report(folder).read_text()
    board = page.split('<section id="leaderboard">', 1)[1].split("</section>", 1)[0]
    shown, hidden = board.split("<details>", 1)
    assert "<summary>All 1000 trials</summary>" in hidden and hidden.count("<tr>") == n + 1
    in_view = re.findall(r'<td class="txt">(t\d{4})</td>', shown.split("All trials", 1)[1])
    best = trials.sort_values("best_val_auc", ascending=False)["trial_id"].head(20).tolist()
    assert in_view == best
    small = write_report(synthetic).read_text()
    assert "<details>" not in small.split('<section id="leaderboard">', 1)[1].split("</section>")[0]


def test_a_missing_results_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="experiment.json"):
        write_report(tmp_path)


def test_html_tables_escape_and_dash() -> None:
    frame = pd.DataFrame({"name": ["<b>", None], "score": [0.5, math.nan], "n": [3, 4]},
                         dtype=object)
    out = table(frame, headers={"n": "count"})
    assert "<th>count</th>" in out and "&lt;b&gt;" in out and "<b>" not in out
    assert '<td class="num">0.500</td>' in out and '<td class="num">3</td>' in out
    assert f'<td class="num">{DASH}</td>' in out and f'<td class="txt">{DASH}</td>' in out


def test_report_command_loads_neither_torch_nor_ray(synthetic: Path) -> None:
    """The command line's report, in a fresh interpreter: no torch or Ray module loaded."""
    code = ("import sys\nfrom search.cli import main\n"
            f"assert main(['report', {str(synthetic)!r}]) == 0\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_importances_fail_softly(tmp_path: Path) -> None:
    (tmp_path / "optuna.db").write_bytes(b"this is not a database")
    assert isinstance(param_importances(tmp_path / "optuna.db", "tiny"), str)
    assert "no optuna.db" in param_importances(tmp_path / "missing" / "optuna.db", "tiny")


# ------------------------------------------------------------------ a real search's report
@pytest.fixture(scope="module")
def report(tiny_search: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a copy of the tiny search's folder (tables and trial folders; a results
    folder reads only its own checkpoints), with a cross-dataset matrix added, so the shared
    results folder is left untouched."""
    results = tmp_path_factory.mktemp("report") / tiny_search.name
    results.mkdir()
    for name in TOP_FILES:
        if (tiny_search / name).is_file():
            shutil.copy(tiny_search / name, results / name)
    for trial in [*tiny_search.glob(filenames.trial_dirname("*")),
                  *tiny_search.glob(f"{filenames.TRAIN_RUNS}/{filenames.trial_dirname('*')}")]:
        shutil.copytree(trial, results / trial.relative_to(tiny_search))
    (results / filenames.CROSS_JSON).write_text(json.dumps(MATRIX))
    return write_report(results)


def test_report_page_and_figures(report: Path) -> None:
    assert report.name == REPORT_FILE and report.parent.name == REPORT_DIR
    page = report.read_text()
    sources = _figures(page)
    for name in ("confusion.png", "curves.png", "learning.png", "search.png",
                 "cross_dataset.png"):
        assert name in sources, name
    for src in sources:
        assert (report.parent / src).stat().st_size > 1000, src
    for needle in ("Leaderboard", "<table", "Confusion matrices", "ROC", "Learning curves",
                   "Parameter importances", "Cross-dataset", "trained on \\ tested on"):
        assert needle in page, needle
    assert "<script" not in page and "http://" not in page and "https://" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium) so the report cannot be checked in a browser")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Every <img> has loaded with real pixels once the page's load event has fired."""
    probe = report.parent / "_probe.html"
    script = ("<script>window.addEventListener('load', function () {"
              "var imgs = Array.from(document.images);"
              "var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });"
              "document.body.setAttribute('data-images', imgs.length + '/' + ok.length);"
              "});</script>")
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--virtual-time-budget=10000"]
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120, check=True).stdout
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}",
                            f"--screenshot={tmp_path / 'report.png'}", "--window-size=1200,3000",
                            report.as_uri()], capture_output=True, timeout=120, check=True)
    finally:
        probe.unlink()
    found = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert found, "the load event never fired"
    total, loaded = map(int, found.groups())
    assert total >= 5 and loaded == total
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a page, not a blank screen
