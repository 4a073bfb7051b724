"""Prepare the 'real_vs_fake' source into Parquet shards: Kaggle "deepfake and real images" (manjilkarki): Dataset/{Train,Validation,Test}/{Real,Fake}/.

Re-runnable: `python datasets/real_vs_fake/prepare.py [extra prepare flags]`; writes
datasets/real_vs_fake/shards/ (git-ignored). See datasets/README.md for the download.
"""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "--layout", "real_vs_fake", "--size", "224", *sys.argv[1:]]))
