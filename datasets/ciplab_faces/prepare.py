"""Prepare the 'ciplab_faces' source into Parquet shards: CIPLAB "Real and Fake Face Detection"
(Yonsei University) as REAL/<n>.jpg and FAKE/<n>.jpg (the folders layout), split once, by
file, into a selection part (the validation split) and a test part; no training split.

Re-runnable: `python datasets/ciplab_faces/prepare.py [extra prepare flags]`; reads
../shared/data/ciplab_faces (or --source) and writes datasets/ciplab_faces/shards/
(git-ignored). The parts are listed in split.csv beside this file; see README.md.
"""

import sys
from pathlib import Path

from search.cli import main

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1].parent / "shared" / "data" / "ciplab_faces"

if __name__ == "__main__":
    sys.exit(main(["prepare", "--layout", "folders", "--source", str(SOURCE), "--splits",
                   "0,0.5,0.5", "--seed", "0", "--out", str(HERE / "shards"), *sys.argv[1:]]))
