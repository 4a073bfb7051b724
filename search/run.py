"""Entry script for ``ray submit cluster.yaml search/run.py -- [run options]``.

``ray submit`` copies only this file to the head node, so it holds no logic: the package is
installed on every node by cluster.yaml, and this calls its ``run`` command.
"""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
