"""The command line (search/cli.py, search/cli_tools.py): every command is wired to its parser
and its function, answers ``--help``, and turns a user's mistake into one line on stderr and
exit status 2, before Ray or any training starts.

Cheap on purpose: no search runs here (``run`` end to end is the ``tiny_search`` fixture,
``predict`` and ``evaluate`` end to end are in test_predict.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from search import cli, cli_tools
from search.cli import build_parser, main

COMMAND_NAMES = ("prepare", "train", "run", "export", "predict", "evaluate", "report")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``; it must exit 2 with one ``deepfake-search CMD: error: ...`` line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deepfake-search {argv[0]}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ wiring
def test_every_command_has_a_parser_and_a_function() -> None:
    assert set(_subcommands(build_parser())) == set(COMMAND_NAMES)
    assert set(cli.COMMANDS) == set(COMMAND_NAMES)  # build_parser adds cli_tools' commands
    assert all(callable(f) for f in cli.COMMANDS.values())


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_help_of_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: deepfake-search {command}")


def test_no_command_prints_the_commands_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name in COMMAND_NAMES), out


def test_console_script_help_is_cheap() -> None:
    """``deepfake-search --help`` in a fresh interpreter: every command listed, and neither
    torch nor Ray imported to print it."""
    code = ("import sys\nfrom search.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert all(name in done.stdout for name in COMMAND_NAMES)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv", [
    ["nope"],
    ["predict", "MODEL", "a.png", "--backend", "tflite"],
    ["evaluate", "MODEL"],  # --data is required
    ["evaluate", "MODEL", "--data", "D", "--split", "dev"],
    ["prepare"],  # --layout is required
    ["run", "--num-samples", "many"],
    ["predict", "MODEL", "a.png", "--threshold", "banana"],
    ["predict", "MODEL", "a.png", "--threshold", "1.5"],
    ["predict", "MODEL", "a.png", "--target-fpr", "1"],  # a rate strictly inside (0, 1)
    ["export", "RESULTS", "--target-fpr", "0"],
    ["export", "RESULTS", "--target-fpr", "5%"],
])
def test_bad_flags_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "usage: deepfake-search" in capsys.readouterr().err


def test_flags_reach_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` parses the flags and hands them to the command's function, returning its code."""
    seen: dict[str, argparse.Namespace] = {}

    def record(name: str, code: int):
        def command(args: argparse.Namespace) -> int:
            seen[name] = args
            return code
        return command

    monkeypatch.setitem(cli.COMMANDS, "run", record("run", 0))
    monkeypatch.setitem(cli_tools.COMMANDS, "predict", record("predict", 1))
    monkeypatch.setitem(cli_tools.COMMANDS, "evaluate", record("evaluate", 0))
    monkeypatch.setitem(cli_tools.COMMANDS, "export", record("export", 0))
    assert main(["run", "--config", "x.yaml", "--data", "D", "optim.lr=0.1", "--name", "n",
                 "--num-samples", "3", "--resume", "--no-test", "--export"]) == 0
    run = seen["run"]
    assert (run.config, run.data, run.overrides, run.name, run.num_samples) == (
        "x.yaml", "D", ["optim.lr=0.1"], "n", 3)
    assert run.resume and run.no_test and run.export and not run.verbose
    assert main(["predict", "M", "a.png", "dir/", "--threshold", "0.3", "--batch-size", "8",
                 "--backend", "onnx", "--quiet", "--out", "p.csv"]) == 1
    predict = seen["predict"]
    assert (predict.model, predict.paths, predict.threshold, predict.batch_size) == (
        "M", ["a.png", "dir/"], 0.3, 8)
    assert (predict.backend, predict.quiet, predict.out) == ("onnx", True, "p.csv")
    assert main(["evaluate", "M", "--data", "D", "--cross", "X", "Y", "--split", "val"]) == 0
    evaluate = seen["evaluate"]
    assert (evaluate.data, evaluate.cross, evaluate.split, evaluate.threshold) == (
        "D", ["X", "Y"], "val", None)
    assert (evaluate.target_fpr, evaluate.robustness) == (None, False)
    assert main(["evaluate", "M", "--data", "D", "--target-fpr", "0.05", "--robustness"]) == 0
    assert (seen["evaluate"].target_fpr, seen["evaluate"].robustness) == (0.05, True)
    assert main(["predict", "M", "a.png", "--threshold", "card", "--target-fpr", "0.01"]) == 1
    assert (seen["predict"].threshold, seen["predict"].target_fpr) == (None, 0.01)
    assert main(["export", "R", "--target-fpr", "0.01", "0.05"]) == 0
    assert seen["export"].target_fpr == [0.01, 0.05]
    assert main(["export", "R"]) == 0 and seen["export"].target_fpr == []


# ------------------------------------------------------------------ user errors: exit 2
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_bad_config_key_stops_before_ray(command: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    started = ray.is_initialized()
    err = _user_error([command, "--data", str(tmp_path), "optim.lrr=0.1"], capsys)
    assert "unknown key 'lrr' in optim" in err and "Did you mean 'lr'" in err
    assert ray.is_initialized() == started


@pytest.mark.parametrize("command", ["train", "run"])
def test_missing_shards_stop_before_ray(command: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    started = ray.is_initialized()
    err = _user_error([command, "--data", str(tmp_path / "nothing")], capsys)
    assert f"no prepared shards at {tmp_path / 'nothing'}" in err
    assert ray.is_initialized() == started


def test_nothing_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _user_error(["run", "--resume", "--name", "gone",
                       f"cluster.storage_path={tmp_path}"], capsys)
    assert "nothing to resume" in err and str(tmp_path / "gone") in err


def test_prepare_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--splits" in _user_error(["prepare", "--layout", "demo", "--splits", "a,b"], capsys)
    assert "--class-map" in _user_error(["prepare", "--layout", "folders", "--class-map",
                                         "nonsense"], capsys)
    assert str(tmp_path / "src") in _user_error(
        ["prepare", "--layout", "folders", "--source", str(tmp_path / "src"),
         "--out", str(tmp_path / "out")], capsys)


def test_after_the_search_commands_name_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "experiment.json not found" in _user_error(["export", str(tmp_path)], capsys)
    assert "not a model folder" in _user_error(["predict", str(tmp_path), "a.png"], capsys)
    assert "not a model folder" in _user_error(
        ["evaluate", str(tmp_path), "--data", str(tmp_path)], capsys)
    assert "does not exist" in _user_error(["report", str(tmp_path / "gone")], capsys)


def test_evaluate_checks_every_set_before_ray(exported: Path, demo_shards: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    started = ray.is_initialized()
    err = _user_error(["evaluate", str(exported), "--data", str(demo_shards),
                       "--cross", str(tmp_path / "missing")], capsys)
    assert str(tmp_path / "missing") in err
    assert ray.is_initialized() == started


def test_threshold_choices_are_user_errors(exported: Path, demo_shards: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A target FPR the model folder has no threshold for, both --threshold and
    --target-fpr, --robustness with --cross: one line each, before Ray."""
    import ray

    started = ray.is_initialized()
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    err = _user_error(["predict", str(exported), str(image), "--target-fpr", "0.02"], capsys)
    assert "no threshold for target FPR 0.02; it has none" in err and "export with" in err
    err = _user_error(["predict", str(exported), str(image), "--threshold", "0.3",
                       "--target-fpr", "0.01"], capsys)
    assert "not both" in err
    err = _user_error(["evaluate", str(exported), "--data", str(demo_shards),
                       "--target-fpr", "0.02"], capsys)
    assert "no threshold for target FPR 0.02" in err
    err = _user_error(["evaluate", str(exported), "--data", str(demo_shards), "--cross",
                       str(demo_shards), "--robustness"], capsys)
    assert "--robustness scores --data only" in err
    assert ray.is_initialized() == started


def test_predict_exits_1_when_nothing_could_be_scored(
        exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not an image\n")
    assert main(["predict", str(exported), str(tmp_path / "notes.txt"), "--quiet"]) == 1
    assert "none of the 1 input(s) could be scored" in capsys.readouterr().err
