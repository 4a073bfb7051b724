"""``python -m bench.replay record|compare|scale ...``: see each module's docstring."""

from __future__ import annotations

import importlib
import sys

COMMANDS = ("record", "compare", "scale")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m bench.replay {{{'|'.join(COMMANDS)}}} [--help]")
    importlib.import_module(f"bench.replay.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
