"""Prepare the embedded 'demo' source: synthetic REAL/FAKE faces the project generates itself.

Re-runnable: `python datasets/demo/prepare.py [extra prepare flags]` (e.g. `--demo-images 5000
--demo-difficulty 0.7 --size 128`); writes datasets/demo/source/ and datasets/demo/shards/
(both git-ignored). Nothing is downloaded. `deepfake-search run` with no arguments does this
step itself when the shards are missing.
"""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "--layout", "demo", *sys.argv[1:]]))
