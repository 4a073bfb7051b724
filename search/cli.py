"""``deepfake-search``: a thin command line over the library API.

Each subcommand parses its flags and calls one library function; errors the user can fix
(bad config, bad source, missing shards) print one clear line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _user_errors() -> tuple[type[BaseException], ...]:
    from search.config import ConfigError
    from search.data.layouts import SourceError

    errors: list[type[BaseException]] = [ConfigError, SourceError, FileNotFoundError]
    try:
        from search.train.models import PretrainedWeightsUnavailable, UnknownModelError

        errors += [PretrainedWeightsUnavailable, UnknownModelError]
    except ImportError:  # pragma: no cover - models need torch, prepare does not
        pass
    return tuple(errors)


# ---------------------------------------------------------------- prepare
def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="turn a downloaded image set into Parquet shards",
                       description="Validate, resize and split a source into Parquet shards "
                                   "with a manifest (counts, hashes, skipped files).")
    p.add_argument("--layout", required=True,
                   help="deepfake_faces | real_vs_fake | folders | demo")
    p.add_argument("--source", default="", help="source folder (default datasets/<layout>/source)")
    p.add_argument("--out", default="", help="output folder (default datasets/<layout>/shards)")
    p.add_argument("--size", type=int, default=224,
                   help="square side in px; 0 keeps sizes (default 224, the study's)")
    p.add_argument("--splits", default="0.6,0.2,0.2", help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-mb", type=float, default=32.0, help="max MB of images per shard")
    p.add_argument("--limit", type=int, default=None, help="keep at most this many images")
    p.add_argument("--max-per-class", type=int, default=None)
    p.add_argument("--group-regex", default=None,
                   help="identity group from the relative path (first capture group)")
    p.add_argument("--class-map", default=None,
                   help="folder-name mapping, e.g. original=real,manipulated=fake")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality when re-encoding")
    p.add_argument("--workers", type=int, default=0, help="decode processes (0 = all cores)")
    p.add_argument("--demo-images", type=int, default=2000, help="demo layout: images")
    p.add_argument("--demo-difficulty", type=float, default=0.5, help="demo layout: 0 easy..1 hard")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from search.data.layouts import SourceError
    from search.data.prepare import PrepareOptions, prepare

    try:
        splits = tuple(float(x) for x in args.splits.split(","))
    except ValueError:
        raise SourceError(f"--splits {args.splits!r} must be three numbers like 0.6,0.2,0.2") from None
    class_map = None
    if args.class_map:
        try:
            class_map = dict(item.split("=", 1) for item in args.class_map.split(","))
        except ValueError:
            raise SourceError(f"--class-map {args.class_map!r} must look like name=real,other=fake") from None
    opts = PrepareOptions(
        layout=args.layout, source=args.source, out=args.out, size=args.size or None,
        splits=splits, seed=args.seed, shard_mb=args.shard_mb, limit=args.limit,
        max_per_class=args.max_per_class, group_regex=args.group_regex, class_map=class_map,
        quality=args.quality, workers=args.workers, demo_images=args.demo_images,
        demo_difficulty=args.demo_difficulty,
    )
    result = prepare(opts, progress=not args.quiet)
    print(result.summary())
    return 0


COMMANDS["prepare"] = _cmd_prepare
_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_prepare]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="deepfake-search",
        description="Search CNN architectures and hyperparameters for REAL vs DEEPFAKE faces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepfake-search`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except _user_errors() as err:
        print(f"deepfake-search {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepfake-search {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
