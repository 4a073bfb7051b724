"""Export and predict never lose a user's files or read another folder's weights (issue 22,
items 1, 2 and 8): an export updates only the files it owns, a copied or moved results
folder exports its own checkpoints (a missing one is an error), and predict's ``--out`` is
checked before a single image is scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from search import cli_tools
from search.export import OWNED, export_model
from search.filenames import checkpoint_in
from search.predict import check_out, spreadsheet_safe, write_predictions


def _run(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="deepfake-search")
    cli_tools.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return cli_tools.COMMANDS[args.command](args)


# ------------------------------------------------------------------ export --out
def test_export_over_an_earlier_export_keeps_the_users_files(exported: Path,
                                                            model_results: Path,
                                                            tmp_path: Path) -> None:
    out = shutil.copytree(exported, tmp_path / "model")
    (out / "scores.csv").write_text("path,p_fake\na.jpg,0.5\n")
    (out / "notes").mkdir()
    (out / "notes" / "why.txt").write_text("mine")
    before = json.loads((out / "config.json").read_text())
    export_model(model_results, out=out, target_fpr=[0.05], verbose=False)
    assert (out / "scores.csv").read_text() == "path,p_fake\na.jpg,0.5\n"
    assert (out / "notes" / "why.txt").read_text() == "mine"
    after = json.loads((out / "config.json").read_text())
    assert not before["operating_points"] and after["operating_points"]  # the export's files
    assert sorted(p.name for p in out.iterdir()) == sorted([*OWNED, "scores.csv", "notes"])
    assert not list(tmp_path.glob(".model-*"))  # no staging folder left behind


def test_export_refuses_a_file_or_a_foreign_folder(model_results: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "model.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        export_model(model_results, out=a_file, verbose=False)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ValueError, match="not an exported model folder"):
        export_model(model_results, out=foreign, verbose=False)
    assert a_file.read_text() == "not a folder"
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


# ------------------------------------------------------------------ relocatable results
def test_a_copied_results_folder_exports_its_own_weights(model_results: Path,
                                                         tmp_path: Path) -> None:
    trials = pd.read_parquet(model_results / "trials.parquet")
    assert all(not Path(c).is_absolute() for c in trials["checkpoint"] if c)  # relative
    copy = shutil.copytree(model_results, tmp_path / "archive" / "copy")
    shutil.rmtree(copy / "export", ignore_errors=True)
    out = export_model(copy, out=tmp_path / "from-copy", verbose=False)
    config = json.loads((out / "config.json").read_text())
    assert not Path(config["source_checkpoint"]).is_absolute()  # within results_dir
    assert (copy / config["source_checkpoint"] / "model.safetensors").is_file()
    assert Path(config["results_dir"]) == copy.resolve()  # outside the project: as it is


def test_a_copy_without_its_checkpoints_is_an_error(model_results: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model_results, tmp_path / "copy")
    for trial in copy.glob("trial_*"):
        shutil.rmtree(trial)
    with pytest.raises(FileNotFoundError, match="does not hold it"):
        export_model(copy, out=tmp_path / "nothing", verbose=False)
    assert not (tmp_path / "nothing").exists()


def test_older_absolute_checkpoint_paths_are_read_inside_the_folder(tmp_path: Path) -> None:
    """A table written with absolute paths (earlier versions, another machine) still names
    the checkpoint of the folder it is in, never the folder it was written in."""
    here = tmp_path / "moved"
    assert checkpoint_in(here, "/old/place/exp/trial_a1/checkpoint_000001") == \
        here / "trial_a1" / "checkpoint_000001"
    assert checkpoint_in(here, "/old/exp/_train/trial_a1/checkpoint_000002") == \
        here / "_train" / "trial_a1" / "checkpoint_000002"
    assert checkpoint_in(here, "trial_a1/checkpoint_000001") == here / "trial_a1" / "checkpoint_000001"
    assert checkpoint_in(here, "") is None and checkpoint_in(here, float("nan")) is None


# ------------------------------------------------------------------ predict --out
@pytest.mark.parametrize("out, message", [
    ("{tmp}", "is a folder"),
    ("/proc/scores.csv", "cannot write in /proc|not a writable folder"),
    ("{tmp}/" + "x" * 300 + ".csv", "longer than 255 bytes"),
    ("{tmp}/scores.xlsx", "use a .csv or .json"),
])
def test_predict_out_is_checked_before_scoring(out: str, message: str, exported: Path,
                                              tmp_path: Path, monkeypatch, capsys) -> None:
    import search.predict as predict

    def never(*args, **kwargs):
        raise AssertionError("images were scored before --out was checked")

    monkeypatch.setattr(predict, "predict_paths", never)
    with pytest.raises(ValueError, match=message):
        _run(["predict", str(exported), str(tmp_path), "--out", out.format(tmp=tmp_path)])


def test_a_file_name_a_spreadsheet_would_run_is_quoted(tmp_path: Path) -> None:
    frame = pd.DataFrame({"path": ["=HYPERLINK(\"http://x\").jpg", "@SUM(A1).png", "ok.jpg",
                                   "+1.jpg", "-2.jpg"],
                          "p_fake": [0.1] * 5})
    out = write_predictions(frame, tmp_path / "scores.csv")
    written = pd.read_csv(out)["path"].tolist()
    assert written == ["'=HYPERLINK(\"http://x\").jpg", "'@SUM(A1).png", "ok.jpg", "'+1.jpg",
                       "'-2.jpg"]
    assert spreadsheet_safe(0.5) == 0.5
    # JSON keeps names as they are: no spreadsheet reads it.
    assert json.loads(write_predictions(frame, tmp_path / "s.json").read_text())[0]["path"] \
        .startswith("=")
    assert check_out(tmp_path / "new" / "deeper" / "s.csv").name == "s.csv"  # made on write
