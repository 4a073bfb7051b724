"""``deepfake-search``: a thin command line over the library API.

Each subcommand parses its flags and calls one library function; errors the user can fix
(bad config, bad source, missing shards) print one clear line and exit 2, never a traceback.

Imports: imports inside the command functions keep `deepfake-search --help` and `prepare`
free of torch, Ray and Optuna: each command loads only what it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from search.experiment import (  # light: each imports what it needs when called
    check_resume_settings,
    check_shards,
    demo_experiment,
    no_result_message,
    resume_command,
    saved_experiment,
    trials_with_results,
)

if TYPE_CHECKING:
    from search.config import ExperimentConfig

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix (printed as one line, no traceback).

    The data layer's, the model layer's and export's are caught only where this command
    loaded the module that raises them: a module never imported cannot have raised, and
    importing it here to catch would load torch into ``prepare`` or ``report``.
    """
    from search.config import ConfigError

    errors: list[type[BaseException]] = [FileNotFoundError, ValueError, ConfigError]
    if "search.data.layouts" in sys.modules:
        from search.data.layouts import SourceError

        errors.append(SourceError)
    if "search.model.registry" in sys.modules:
        from search.model.registry import PretrainedWeightsUnavailable, UnknownModelError

        errors += [PretrainedWeightsUnavailable, UnknownModelError]
    if "search.export" in sys.modules:  # export's ONNX parity check
        from search.model.onnx import ExportError

        errors.append(ExportError)
    return tuple(errors)


# ---------------------------------------------------------------- prepare
def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from search.data.demo import DEMO_SIZE, GRIDS

    p = sub.add_parser("prepare", help="turn a downloaded image set into Parquet shards",
                       description="Validate, resize and split a source into Parquet shards "
                                   "with a manifest (counts, hashes, skipped files).")
    p.add_argument("--layout", required=True,
                   help="deepfake_faces | real_vs_fake | folders | demo")
    p.add_argument("--source", default="", help="source folder (default datasets/<layout>/source)")
    p.add_argument("--out", default="", help="output folder (default datasets/<layout>/shards)")
    p.add_argument("--size", type=int, default=None,
                   help="square side in px; 0 keeps sizes (default 224, the study's; "
                        f"{DEMO_SIZE} for --layout demo)")
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
    p.add_argument("--demo-grid", choices=GRIDS, default="none",
                   help="demo layout: the images that carry a 1-px checkerboard artefact (none; "
                        "fake: a generator's; real: a camera's), for a controlled shift "
                        "between two demo sources (examples/shift-demo.yaml)")
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
        layout=args.layout, source=args.source, out=args.out, size=_prepare_size(args),
        splits=splits, seed=args.seed, shard_mb=args.shard_mb, limit=args.limit,
        max_per_class=args.max_per_class, group_regex=args.group_regex, class_map=class_map,
        quality=args.quality, workers=args.workers, demo_images=args.demo_images,
        demo_difficulty=args.demo_difficulty, demo_grid=args.demo_grid,
    )
    with _sigterm_as_sigint():  # a SIGTERM cleans up like Ctrl-C: no staging folder left
        result = prepare(opts, progress=not args.quiet)
    print(result.summary())
    return 0


def _prepare_size(args: argparse.Namespace) -> int | None:
    """``--size``: as given (0 = keep sizes), else the study's 224, or the demo's own size."""
    from search.data.demo import DEMO_SIZE

    if args.size is None:
        return DEMO_SIZE if args.layout == "demo" else 224
    return args.size or None


COMMANDS["prepare"] = _cmd_prepare


# ---------------------------------------------------------------- train / run
def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="experiment YAML (see examples/)")
    p.add_argument("--data", default=None, help="prepared shard folder (overrides data.shards)")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="config overrides, e.g. optim.lr=3e-4 model.arch=resnet50")


def _load(args: argparse.Namespace) -> ExperimentConfig:
    from search.config import load_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.shards={args.data}")
    return load_config(args.config, overrides)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one configuration and print the per-epoch table")
    _add_config_args(p)
    p.add_argument("--name", default=None,
                   help="run name (default train-<arch>-<timestamp>; an existing name resumes "
                        "that run from its last checkpoint)")


def _cmd_train(args: argparse.Namespace) -> int:
    from search import catalog, storage
    from search.config import check_folder_name

    if args.name is not None:
        check_folder_name(args.name, "--name")
    from search.data.demo import ensure_demo_shards
    from search.model.registry import model_params
    from search.train.driver import default_run_name, init_ray, train_one

    cfg = _load(args)
    model_params(cfg.model.arch)  # an unknown architecture: now, as run refuses it, not in Ray
    # The default name is a folder under storage_path too: the same rule as --name.
    name = args.name or check_folder_name(default_run_name(cfg),
                                          "the run name train-<model.arch>-<time> (set --name)")
    storage.check_storage(cfg, name)
    cfg = ensure_demo_shards(cfg)
    print(cfg)
    check_shards(cfg)
    with _sigterm_as_sigint(ray=True):
        init_ray(cfg)
        result = train_one(cfg, name=name)
    cols = ["epoch", catalog.TRAIN_LOSS, *(catalog.val(m) for m in catalog.EPOCH_COLUMNS),
            "epoch_time_s"]
    frame = result.metrics_dataframe
    print(frame[[c for c in cols if c in frame]].to_string(index=False, float_format="%.4f"))
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else '-'}")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the search (no arguments: the embedded demo)",
                       description="Ray Tune + Optuna search over architecture, ratio, learning "
                                   "rate and layers, with ASHA early stopping.")
    _add_config_args(p)
    p.add_argument("--name", default=None, help="experiment name (default from the config)")
    p.add_argument("--num-samples", type=int, default=None, help="number of trials")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    p.add_argument("--verbose", action="store_true", help="Ray's full logs and status tables")
    p.add_argument("--no-test", action="store_true", help="skip the finalists' test evaluation")
    p.add_argument("--export", action="store_true",
                   help="export the best trial as a model folder at the end (demo: always)")


def _cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from search import storage
    from search.config import check_folder_name
    from search.study import run_search

    if args.name is not None:
        check_folder_name(args.name, "--name")
    cfg = _load(args)
    if args.config is None and not args.overrides and not args.data:
        cfg = demo_experiment(cfg)
    search = cfg.search
    if args.name:
        search = replace(search, name=args.name)
    if args.num_samples:
        search = replace(search, num_samples=args.num_samples)
    cfg = replace(cfg, search=search)
    storage.check_storage(cfg)  # a file in the way: now, not inside Ray
    if args.resume:
        saved = saved_experiment(cfg)
        if _gives_settings(args):
            check_resume_settings(cfg, saved)
        cfg = saved
    if cfg.data.shards:  # the embedded demo set is made (and so checked) by run_search
        check_shards(cfg, ("train", "val") if args.no_test else ("train", "val", "test"))
    with _sigterm_as_sigint(ray=True):
        outcome = run_search(cfg, resume=args.resume, verbose=args.verbose,
                             evaluate_test=not args.no_test)
        print(outcome.summary())
        if outcome.interrupted:
            print("interrupted: the tables, leaderboard and report hold the trials so far; "
                  f"continue with: {resume_command(args.argv)}", file=sys.stderr)
        finished = trials_with_results(outcome.trials)
        if finished or outcome.interrupted:
            from search.report import write_report

            print(f"report:      {write_report(outcome.experiment_dir)}")
        if finished and (args.export or cfg.search.export):
            from search.export import export_model

            print(f"exported:    {export_model(outcome.experiment_dir)}")
    if outcome.interrupted:
        return _interrupted_status()
    if not finished:
        print(f"deepfake-search run: error: {no_result_message(outcome)}", file=sys.stderr)
        return 1
    return 0


#: Overrides that say where an experiment is, not how it searches: ``--resume`` with only
#: these (and --name) continues the saved settings without comparing them.
LOCATING = ("search.name", "cluster.storage_path", "cluster.address")


def _gives_settings(args: argparse.Namespace) -> bool:
    """Whether ``run`` was given settings of its own (a config, --data, --num-samples or an
    override other than :data:`LOCATING`), which ``--resume`` must compare with the saved."""
    keys = [item.split("=", 1)[0].strip() for item in args.overrides]
    return bool(args.config or args.data or args.num_samples
                or any(key not in LOCATING for key in keys))


COMMANDS.update({"train": _cmd_train, "run": _cmd_run})
_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_prepare, _add_train, _add_run]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="deepfake-search",
        description="Search CNN architectures and hyperparameters for REAL vs DEEPFAKE faces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    from search import cli_tools  # export, predict, evaluate, report

    cli_tools.add_parsers(sub)
    COMMANDS.update(cli_tools.COMMANDS)
    plain = parser.error  # "unrecognized arguments: -x.jpg" is the top parser's
    parser.error = lambda message: plain(message + cli_tools.dash_hint(message))  # type: ignore[method-assign]
    return parser


#: The signal that ended the current command (SIGTERM handled as Ctrl-C), for its exit status.
_RECEIVED: list[int] = []


def _interrupted_status() -> int:
    """128 + the signal that interrupted the command: 143 for SIGTERM, else 130 (SIGINT)."""
    return 128 + (_RECEIVED[-1] if _RECEIVED else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_as_sigint(*, ray: bool = False) -> Iterator[None]:
    """Within: SIGTERM (what a scheduler, ``docker stop`` or ``kill`` sends) is handled as
    Ctrl-C: it is recorded (the exit status becomes 143) and SIGINT is raised in this
    process, so Ray Tune stops the search gracefully and the tables and the resume hint are
    written, as after a Ctrl-C; outside Tune, SIGINT is a KeyboardInterrupt, which the
    commands clean up after. A forked child (prepare's decode pool) keeps the default.

    ``ray``: ``ray.init`` installs a SIGTERM handler of its own in the driver
    (``sys.exit(15)``, which tears Tune down mid-step: Ray's native stack dump, exit 134);
    while inside, it is kept from replacing this one. Ray's native failure handler (Abseil's)
    still sees a SIGTERM first: it prints a stack dump, passes the signal on to this handler
    and arms a 3-second alarm that aborts the process, assuming it is dying; the alarm is
    cancelled here (without that: SIGABRT, exit 134, while Tune was still writing).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    alarm_handler = signal.getsignal(signal.SIGALRM)

    def on_sigterm(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked child: end as SIGTERM asks
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if ray and _ray_is_initialized():  # Ray's failure handler armed its abort: disarm
            signal.alarm(0)
            signal.signal(signal.SIGALRM, alarm_handler)
        _RECEIVED.append(signal.SIGTERM)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started with SIGINT ignored (``nohup deepfake-search run &`` in a script, a
            # background job): raising SIGINT would do nothing and the SIGTERM would be
            # lost. Do what the default SIGINT handler does. Inside Tune its own handler is
            # installed, so the first SIGTERM still stops the search gracefully.
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    with contextlib.ExitStack() as stack:
        if ray:
            stack.enter_context(_ray_keeps_our_sigterm(on_sigterm))
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def _ray_is_initialized() -> bool:
    """Whether this process is connected to Ray (without importing Ray to find out)."""
    module = sys.modules.get("ray")
    return bool(module is not None and module.is_initialized())


@contextlib.contextmanager
def _ray_keeps_our_sigterm(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Within: ``ray.init`` leaves the SIGTERM handler as it is (Ray sets it through
    ``ray._private.utils.set_sigterm_handler``), and once it has connected, ``handler`` is
    installed again: the driver's core worker installs Abseil's failure signal handler for
    SIGTERM too (its "*** SIGTERM received" stack dump, then a 3-second abort alarm), and
    installing a Python handler again replaces it for SIGTERM alone (SIGSEGV and the others
    keep Ray's dump). Absent in another Ray, nothing is patched."""
    try:
        import ray._private.utils as ray_utils
        import ray._private.worker as ray_worker
    except ImportError:  # pragma: no cover - Ray is a dependency
        yield
        return
    original = getattr(ray_utils, "set_sigterm_handler", None)
    connect = getattr(ray_worker, "connect", None)
    if original is None or connect is None:
        yield
        return

    def connect_then_ours(*args: Any, **kwargs: Any) -> Any:
        try:
            return connect(*args, **kwargs)
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, handler)  # over Abseil's, at the C level

    ray_utils.set_sigterm_handler = lambda handler: None
    ray_worker.connect = connect_then_ours
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original
        ray_worker.connect = connect


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepfake-search`` console script."""
    _RECEIVED.clear()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # as typed, for hints such as the resume command
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except _user_errors() as err:
        print(f"deepfake-search {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if _RECEIVED else "interrupted"
        print(f"deepfake-search {args.command}: {how}", file=sys.stderr)
        return _interrupted_status()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
