"""The after-the-search subcommands: ``export``, ``predict``, ``evaluate`` and ``report``.

``add_parsers(sub)`` adds them to ``deepfake-search``'s subparsers and ``COMMANDS`` maps each
name to a function of the parsed arguments returning an exit code. Library imports happen
inside the commands so ``deepfake-search --help`` stays fast (and ``report`` and ``predict
--backend onnx`` load neither torch nor Ray).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from search import catalog


def _rate(text: str) -> float:
    """A ``--target-fpr`` value: a rate strictly between 0 and 1 (0.01 is 1%)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1 (0.01 is 1%)")
    return value


def _threshold(text: str) -> float | None:
    """A ``--threshold`` value: a number in [0, 1], or ``card`` (the model's own: None)."""
    if text.strip().lower() == "card":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'card'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the best (or a chosen) trial as a model folder",
                       description="Write model.safetensors, config.json, metrics.json, a "
                                   "checked model.onnx and a model card README.md.")
    p.add_argument("results", metavar="RESULTS_DIR", help="a finished search's results folder")
    p.add_argument("--trial", default=None, metavar="ID", help="export this trial id")
    p.add_argument("--metric", default=None, metavar="M",
                   help="pick the best trial by this validation metric (default: the search's)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default RESULTS_DIR/export)")
    p.add_argument("--target-fpr", type=_rate, nargs="+", default=[], metavar="RATE",
                   help="also choose the threshold with the highest validation TPR at "
                        "validation FPR <= RATE (0.01 is 1%%); the model card states its "
                        "validation and test figures and predict --target-fpr applies it")


def _cmd_export(args: argparse.Namespace) -> int:
    from search.export import export_model

    out = export_model(args.results, trial_id=args.trial, metric=args.metric, out=args.out,
                       target_fpr=args.target_fpr)
    print(f"exported to {out}  (model card: {out / 'README.md'})")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score image files, folders or globs with a model",
                       description="Print p_fake and the FAKE/REAL label of every image; "
                                   "unreadable files are listed with the reason.")
    p.add_argument("model", metavar="MODEL_DIR", help="an exported model or a checkpoint folder")
    p.add_argument("paths", metavar="PATHS", nargs="+",
                   help="image files, folders (recursive) or glob patterns (quote them)")
    p.add_argument("--out", default=None, metavar="FILE", help="write a .csv or .json file too")
    p.add_argument("--threshold", type=_threshold, default=None, metavar="T|card",
                   help="FAKE when p_fake >= T (default 'card': the model's own threshold)")
    p.add_argument("--target-fpr", type=_rate, default=None, metavar="RATE",
                   help="use the threshold export chose for this FPR on validation "
                        "(export --target-fpr RATE)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="torch (safetensors) or onnx (onnxruntime on model.onnx)")
    p.add_argument("--quiet", action="store_true", help="no table and no progress bar")
    plain = p.error
    p.error = lambda message: plain(message + dash_hint(message))  # type: ignore[method-assign]


def dash_hint(message: str) -> str:
    """For argparse's "arguments are required: PATHS" or "unrecognized arguments: -x.jpg"
    (a file name starting with '-' is read as an option): how to pass such a file."""
    if "PATHS" not in message and "unrecognized arguments: -" not in message:
        return ""
    return ("; a file name that starts with '-' is read as an option: put -- before the "
            "paths (predict MODEL -- -rf.jpg) or write the file as ./-rf.jpg")


def _cmd_predict(args: argparse.Namespace) -> int:
    from search.predict import check_out, format_predictions, predict_paths, write_predictions

    if args.out:
        check_out(args.out)  # before any image is scored
    frame = predict_paths(args.model, args.paths, threshold=args.threshold,
                          target_fpr=args.target_fpr, batch_size=args.batch_size,
                          backend=args.backend,
                          progress=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        print(format_predictions(frame))
    if args.out:
        print(f"wrote {write_predictions(frame, args.out)}")
    if frame["error"].notna().all():
        print(f"deepfake-search predict: error: none of the {len(frame)} input(s) could be "
              "scored (reasons above)", file=sys.stderr)
        return 1
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="full metrics of a model on prepared data sets",
                       description="Metrics, confusion matrix and majority baseline on a "
                                   "prepared split; --cross writes the cross-dataset matrix.")
    p.add_argument("model", metavar="MODEL_DIR", help="an exported model or a checkpoint folder")
    p.add_argument("--data", required=True, metavar="SHARDS", help="a prepared shard folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--cross", nargs="+", default=[], metavar="SHARDS",
                   help="more prepared sets: writes cross_dataset.md (trained-on x tested-on)")
    p.add_argument("--threshold", type=_threshold, default=None, metavar="T|card",
                   help="decision threshold (default 'card': the model's own)")
    p.add_argument("--target-fpr", type=_rate, default=None, metavar="RATE",
                   help="use the threshold export chose for this FPR on validation")
    p.add_argument("--robustness", action="store_true",
                   help="also score --data's split after JPEG re-compression (quality 75, 50) "
                        "and a downscale-upscale by 2: AUC and its drop")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from search.data.manifest import verify_shards
    from search.data.sets import PreparedSet
    from search.data.stream import quiet_ray_data
    from search.evaluate import cross_dataset, evaluate_model, format_metrics
    from search.model.folder import build_torch_model, read_model_info
    from search.predict import choose_threshold

    info = read_model_info(args.model)
    threshold, rule = choose_threshold(info, args.threshold, args.target_fpr)
    build_torch_model(info)  # a broken weights file: a clear error now, not after Ray starts
    for shards in [args.data, *args.cross]:  # a split with no image: named now
        PreparedSet(str(shards), verify_shards(shards)).check_splits([args.split])
    print(f"model: {info.directory} ({info.arch}, {info.kind}; trained on {info.train_name})")
    quiet_ray_data(logging.ERROR)  # not even "execution finished" lines
    if args.cross:
        if args.robustness:
            raise ValueError("--robustness scores --data only: run it without --cross")
        sets = [args.data, *(s for s in args.cross if s != args.data)]
        matrix, path = cross_dataset(info.directory, sets, args.split, threshold=threshold,
                                     threshold_rule=rule)
        for metrics in matrix["rows"][info.train_name]["cells"].values():
            print()
            print(format_metrics(metrics, info))
        print()
        print(path.read_text().split("## Details")[0].rstrip())
        print(f"\nwrote {path}")
        return 0
    metrics, _ = evaluate_model(info.directory, args.data, args.split, threshold=threshold,
                                threshold_rule=rule)
    print(format_metrics(metrics, info))
    if args.robustness:
        _print_robustness(info.directory, args.data, args.split, threshold)
    return 0


def _print_robustness(model: Path, shards: str, split: str, threshold: float) -> None:
    from search.display import markdown_table, number
    from search.evaluate import evaluate_robustness
    from search.robustness_table import NOTE, robustness_table

    result = evaluate_robustness(model, shards, split, threshold=threshold)
    frame = robustness_table({"model": result})
    print(f"\nrobustness ({result['data']} [{split}], n={result[catalog.N]}):\n")
    print(markdown_table(list(frame.columns), frame.to_numpy().tolist(), number))
    print("\n" + NOTE.format(split=split))


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write an HTML report of a finished search",
                       description="report/report.html with the leaderboard, confusion "
                                   "matrices, ROC/PR and learning curves, parameter "
                                   "importances and the cross-dataset matrix (opens offline).")
    p.add_argument("results", metavar="RESULTS_DIR", help="a finished search's results folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default RESULTS_DIR/report; for a read-only results folder)")


def _cmd_report(args: argparse.Namespace) -> int:
    from search.report import write_report

    path = write_report(args.results, out=args.out)
    print(f"wrote {path}  (open file://{path})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the export, predict, evaluate and report subparsers."""
    for add in (_add_export, _add_predict, _add_evaluate, _add_report):
        add(sub)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": _cmd_export,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "report": _cmd_report,
}

__all__ = ["COMMANDS", "add_parsers", "dash_hint"]
