"""Prepare the 'deepfake_faces' source into Parquet shards: Kaggle "deepfake_faces" (dagnelies): metadata.csv + faces_224/<video>.jpg.

Re-runnable: `python datasets/deepfake_faces/prepare.py [extra prepare flags]`; writes
datasets/deepfake_faces/shards/ (git-ignored). See datasets/README.md for the download.
"""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "--layout", "deepfake_faces", "--size", "224", *sys.argv[1:]]))
