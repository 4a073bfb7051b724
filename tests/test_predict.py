"""``deepfake-search predict`` and ``evaluate``: preprocessing as in training, broken files
reported per file, torch and ONNX agreeing, and the cross-dataset matrix.

The model is ``exported`` from ``model_results`` (conftest: real weights, no training): these
tests check how files are read and scored, not what a model learned."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search import cli_tools
from search.evaluate import cross_dataset_markdown, find_results_dir
from search.model.folder import read_model_info
from search.predict import COLUMNS, Preprocessor, expand_paths, predict_paths, write_predictions


@pytest.fixture(scope="module")
def frames_shards(frames: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32 real FF++/Celeb-DF frames prepared at 32 px (a second, foreign data set)."""
    from search.data.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("frames") / "frames_shards"
    prepare(PrepareOptions(layout="folders", source=str(frames), out=str(out), size=32,
                           splits=(0.34, 0.33, 0.33), seed=0), progress=False)
    return out


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deepfake-search")
    cli_tools.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return cli_tools.COMMANDS[args.command](args)


@pytest.fixture()
def mixed(frames: Path, tmp_path: Path) -> Path:
    """Good images (PNG, JPEG, grayscale, in a subfolder) mixed with broken files."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    pngs = sorted(frames.rglob("*.png"))
    shutil.copy(pngs[0], folder / "good.png")
    shutil.copy(pngs[-1], folder / "sub" / "nested.png")
    with Image.open(pngs[1]) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=90)
        img.convert("L").save(folder / "grey.png")
    (folder / "photo.jpg").write_bytes(buf.getvalue())
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".hidden.png").write_bytes(b"")  # hidden files are not inputs
    return folder


def test_preprocessing_matches_training(exported: Path, frames: Path, frames_shards: Path) -> None:
    """A raw file gives exactly the tensor training decoded from the prepared shard."""
    import pyarrow.parquet as pq

    from search.data.stream import DecodeBatch, Normalize

    info = read_model_info(exported)
    assert info.image_size == 32  # the training shards' (demo_shards)
    pre = Preprocessor(info)
    decode, normalize = DecodeBatch(info.input_size), Normalize(info.mean, info.std)
    table = pq.read_table(next(frames_shards.glob("train-*.parquet"))).to_pandas()
    for row in table.head(4).itertuples():
        ours = pre((frames / row.id).read_bytes())
        theirs = decode({"image": np.array([row.image], dtype=object), "label": np.zeros(1)})
        np.testing.assert_array_equal(ours, normalize(theirs["image"]).numpy()[0])


def test_predict_frames(exported: Path, frames: Path) -> None:
    result = predict_paths(exported, [frames], batch_size=5)
    assert len(result) == 32 and result["error"].isna().all()
    assert result["p_fake"].between(0, 1).all()
    threshold = result.attrs["threshold"]
    assert threshold == pytest.approx(json.loads((exported / "config.json").read_text())["threshold"])
    assert ((result["p_fake"] >= threshold) == (result["label"] == "FAKE")).all()
    forced = predict_paths(exported, [frames], threshold=0.0)
    assert (forced["label"] == "FAKE").all()


def test_broken_files_are_reported_and_backends_agree(exported: Path, mixed: Path) -> None:
    torch_rows = predict_paths(exported, [mixed], batch_size=3, backend="torch")
    onnx_rows = predict_paths(exported, [mixed], batch_size=3, backend="onnx")
    names = [Path(p).name for p in torch_rows["path"]]
    assert sorted(names) == sorted(["good.png", "nested.png", "grey.png", "photo.jpg",
                                    "truncated.jpg", "empty.png", "notes.txt"])
    errors = dict(zip(names, torch_rows["error"]))
    assert errors["empty.png"] == "zero-byte file"
    assert "truncated" in errors["truncated.jpg"]
    assert "not an image" in errors["notes.txt"]
    good = torch_rows["error"].isna()
    assert good.sum() == 4
    assert torch_rows.loc[good, "p_fake"].between(0, 1).all()
    assert torch_rows.loc[~good, "p_fake"].isna().all()
    assert torch_rows.loc[~good, "label"].isna().all()
    pd.testing.assert_series_equal(torch_rows["error"], onnx_rows["error"])
    for column in ("p_fake", "p_calibrated"):  # export fitted a temperature: both backends apply it
        diff = np.abs(torch_rows.loc[good, column].to_numpy() - onnx_rows.loc[good, column].to_numpy())
        assert diff.max() < 1e-4, column
    assert torch_rows.loc[~good, "p_calibrated"].isna().all()


def test_outputs_globs_and_cli(exported: Path, mixed: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    frame = predict_paths(exported, [str(mixed / "*.png"), mixed / "missing.jpg"])
    assert sorted(Path(p).name for p in frame["path"]) == ["empty.png", "good.png", "grey.png",
                                                           "missing.jpg"]
    assert frame.set_index("path").loc[str(mixed / "missing.jpg"), "error"] == "no such file or folder"
    csv = pd.read_csv(write_predictions(frame, tmp_path / "p.csv"))
    assert list(csv.columns) == list(COLUMNS) and len(csv) == 4
    info = read_model_info(exported)
    assert (csv["threshold"] == info.threshold).all()  # the CSV says which threshold it applied
    assert (csv["threshold_rule"] == "F1-optimal on validation").all()
    records = json.loads(write_predictions(frame, tmp_path / "p.json").read_text())
    assert {r["p_fake"] is None for r in records} == {True, False}
    with pytest.raises(ValueError, match=".csv or .json"):
        write_predictions(frame, tmp_path / "p.xlsx")
    assert _run(["predict", str(exported), str(mixed), "--out", str(tmp_path / "cli.csv"),
                 "--backend", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "zero-byte file" in out and "4 scored" in out and "3 failed" in out
    assert "p_calib" in out and "F1-optimal on validation" in out
    assert _run(["predict", str(exported), str(mixed / "good.png"), "--threshold", "card",
                 "--out", str(tmp_path / "card.csv")]) == 0
    assert pd.read_csv(tmp_path / "card.csv")["threshold"].tolist() == [info.threshold]
    assert _run(["predict", str(exported), str(mixed / "good.png"), "--threshold", "0",
                 "--out", str(tmp_path / "zero.csv")]) == 0
    given = pd.read_csv(tmp_path / "zero.csv").iloc[0]
    assert (given["threshold"], given["threshold_rule"], given["label"]) == (0.0, "given", "FAKE")
    assert len(pd.read_csv(tmp_path / "cli.csv")) == 7
    with pytest.raises(FileNotFoundError, match="none of the inputs"):
        predict_paths(exported, [tmp_path / "nothing-here"])
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        predict_paths(tmp_path, [mixed])


def test_checkpoint_folders_load_without_unpickling(model_results: Path, mixed: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial checkpoints hold a pickled trainer_state.pt: predict must never open it."""
    import pickle

    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("predict unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    checkpoint = model_results / pd.read_parquet(model_results / "trials.parquet")["checkpoint"].iloc[0]
    assert (Path(checkpoint) / "trainer_state.pt").is_file()
    rows = predict_paths(checkpoint, [mixed / "good.png"])
    assert rows["error"].isna().all()
    assert rows["p_calibrated"].isna().all()  # a checkpoint has no fitted temperature
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        predict_paths(checkpoint, [mixed / "good.png"], backend="onnx")


def test_expand_paths_streams_folders_in_order(mixed: Path) -> None:
    items = expand_paths([mixed, mixed / "good.png"])  # a file named twice is scored once
    names = [Path(p).name for p, _ in items]
    assert names.count("good.png") == 1 and ".hidden.png" not in names
    assert names[-1] == "nested.png"  # subfolders after the folder's own files


@pytest.mark.ray  # evaluate streams the shards through Ray Data: it starts a cluster
def test_evaluate_cross_dataset(exported: Path, demo_shards: Path, frames_shards: Path,
                                model_results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trained on demo, tested on demo and on the real frames: one row, two columns."""
    import ray

    started = not ray.is_initialized()
    try:
        assert _run(["evaluate", str(exported), "--data", str(demo_shards),
                     "--cross", str(frames_shards)]) == 0
    finally:
        if started:
            ray.shutdown()
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "majority" in out and "auc" in out
    assert "operating points: TPR at FPR 1% " in out and "calibration: ece " in out
    # Exported with --out elsewhere: the matrix still goes to the results folder it came from.
    md = model_results / "cross_dataset.md"
    assert not (exported.parent / "cross_dataset.md").exists()
    matrix = json.loads((model_results / "cross_dataset.json").read_text())
    info = read_model_info(exported)
    cells = matrix["rows"][info.train_name]["cells"]
    assert len(cells) == 2
    demo_cell = next(c for c in cells.values() if c["shards"] == str(demo_shards.resolve()))
    frames_cell = next(c for c in cells.values() if c["shards"] == str(frames_shards.resolve()))
    assert demo_cell["in_domain"] and not frames_cell["in_domain"]
    assert demo_cell["n"] == 120 and frames_cell["n"] == 10  # the two test splits
    text = md.read_text()
    assert "trained on \\ tested on" in text and info.train_name in text
    assert f"{frames_cell['accuracy_at_threshold']:.3f} / " in text
    # A checkpoint inside a results folder writes its matrix to that folder.
    checkpoint = model_results / pd.read_parquet(model_results / "trials.parquet")["checkpoint"].iloc[0]
    assert find_results_dir(checkpoint) == model_results.resolve()


def test_cross_dataset_markdown_handles_missing_cells() -> None:
    cell = {"accuracy_at_threshold": 0.9, "auc": None, "n": 10, "positive_rate": 0.5,
            "f1_at_threshold": 0.8, "baseline_accuracy": 0.5, "threshold": 0.4, "in_domain": True}
    text = cross_dataset_markdown({"split": "test", "rows": {
        "a": {"model": "m1", "cells": {"a": cell}},
        "b": {"model": "m2", "cells": {"c": {**cell, "in_domain": False}}}}})
    assert "| a | 0.900 / — * |  |" in text and "| b |  | 0.900 / — |" in text


def test_globs_and_folders_never_follow_symlinked_folders(tmp_path: Path) -> None:
    """A link to a parent folder made ``DIR/**`` expand without end; now it is listed."""
    import os

    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("x.png", "a/y.png", "a/b/z.png"):
        (tmp_path / rel).write_bytes(b"")
    os.symlink("..", tmp_path / "a" / "loop")
    for given in (f"{tmp_path}/**", str(tmp_path)):
        items = dict((os.path.relpath(p, tmp_path), e) for p, e in expand_paths([given]))
        assert set(items) == {"x.png", "a/y.png", "a/b/z.png", "a/loop"}
        assert "not followed" in items["a/loop"]
    assert [os.path.relpath(p, tmp_path) for p, _ in expand_paths([f"{tmp_path}/*/y.png"])] == ["a/y.png"]
