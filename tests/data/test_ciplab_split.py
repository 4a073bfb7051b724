"""The CIPLAB second source's parts are fixed by file: prepare's assignment for the folders
layout (each file its own group, seed 0, splits 0,0.5,0.5) is the committed split.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from search.data.layouts import scan_source
from search.data.prepare import assign_splits, select

REPO = Path(__file__).resolve().parents[2]
CIPLAB = REPO.parent / "shared" / "data" / "ciplab_faces"
SPLIT = REPO / "datasets" / "ciplab_faces" / "split.csv"


def test_prepare_assigns_the_committed_parts_by_file():
    if not CIPLAB.is_dir():
        pytest.fail(f"test data {CIPLAB} is missing: the tests read ../shared/data beside the repo")
    scan = scan_source("folders", CIPLAB)
    records = select(scan.records, None, None, 0)  # what prepare keeps: all, sorted by id
    assert all(r.group == r.id for r in records)  # the folders layout groups by file
    assigned = dict(zip([r.id for r in records], assign_splits(records, (0.0, 0.5, 0.5), 0)))
    committed = pd.read_csv(SPLIT)
    assert len(committed) == len(assigned) == 2015
    assert dict(zip(committed["id"], committed["split"])) == assigned
    counts = committed.groupby(["split", "label"]).size().to_dict()
    assert counts == {("val", 0): 532, ("val", 1): 476, ("test", 0): 532, ("test", 1): 475}
