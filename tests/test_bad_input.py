"""Bad input, second round (issue 22), before any cluster starts: bounded YAML, seeds,
folder names, a storage path that is a file, and the exit status of ``run`` when nothing
finished or when the driver is sent SIGTERM (the search itself stubbed here; the real
searches are in tests/test_exit_codes.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from search.cli import main as cli
from search.config import ConfigError, check_folder_name, load_config
from search.paths import FOLDER_NAME_RULE

# 405 bytes: nine levels of ten aliases each, 10**9 strings once expanded.
BILLION_LAUGHS = """search:
  space:
    a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deepfake-search {argv[0]}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test's expectations if a command gets as far as starting Ray."""
    import search.train.driver as driver
    import search.tune.tuner as tuner

    started: list[int] = []
    monkeypatch.setattr(tuner, "init_ray", lambda *a, **k: started.append(1))
    monkeypatch.setattr(driver, "init_ray", lambda *a, **k: started.append(1))
    return started


# ------------------------------------------------------------------ YAML
def test_a_billion_laughs_config_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) == 405
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert time.perf_counter() - t0 < 1.0
    assert str(err.value).startswith(f"{path}: YAML aliases and anchors are not supported (&a at "
                                     "line 3, column 8)"), err.value


@pytest.mark.parametrize("text", [
    "optim: &o\n  lr: 0.1\n",  # an anchor alone
    "base: &b {lr: 0.1}\noptim:\n  <<: *b\n",  # a merge key
    "optim:\n  lr: *undefined\n",
])
def test_anchors_aliases_and_merge_keys_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{path}: YAML aliases and anchors are not supported"):
        load_config(path)


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("search:\n  space:\n    arch: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="YAML nested more than 64 levels deep"):
        load_config(path)


def test_a_config_over_the_size_cap_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=f"^{path} is over 1024 KiB"):
        load_config(path)


def test_a_latin1_config_says_to_save_it_as_utf8(tmp_path: Path, capsys) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("search:\n  name: caf\xe9\n".encode("latin-1"))
    err = _user_error(["run", "--config", str(path)], capsys)
    assert f"{path} is not UTF-8 text (byte 0xe9 on line 2" in err and "save it as UTF-8" in err


def test_a_utf8_config_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffoptim:\n  lr: 0.5\n".encode())
    assert load_config(path).optim.lr == 0.5


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr=[", "override 'optim.lr=[': expected the node content"),
    ("optim.lr=*x", "override 'optim.lr=*x': YAML aliases and anchors are not supported"),
])
def test_an_override_that_is_not_yaml_names_the_override(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


# ------------------------------------------------------------------ seed
@pytest.mark.parametrize("seed", [-5, 2**32, 2**40])
def test_a_seed_outside_numpys_range_is_refused_at_load(seed: int) -> None:
    with pytest.raises(ConfigError, match=f"seed must be between 0 and 4294967295, not {seed}"):
        load_config(None, [f"seed={seed}"])


def test_the_seed_range_ends_are_fine() -> None:
    assert load_config(None, ["seed=0"]).seed == 0
    assert load_config(None, [f"seed={2**32 - 1}"]).seed == 2**32 - 1


# ------------------------------------------------------------------ folder names
@pytest.mark.parametrize("name", ["../../x", "..", ".hidden", "/etc", "a/b", "a\\b", "", "x" * 129,
                                  "name with space", "caf\xe9"])
def test_names_that_are_not_one_safe_folder_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="--name must be a folder name"):
        check_folder_name(name, "--name")
    with pytest.raises(ConfigError, match="search.name must be a folder name"):
        load_config(None, [f"search.name='{name}'"])


def test_good_names_pass_and_the_rule_is_one() -> None:
    for name in ("study", "study-cpu_2.v1", "lr=3e-4", "x" * 128):
        assert check_folder_name(name, "--name") == name
    with pytest.raises(ConfigError) as err:
        load_config(None, ["search.name=../x"])
    assert FOLDER_NAME_RULE in str(err.value)


@pytest.mark.parametrize("command", ["train", "run"])
def test_name_escaping_storage_is_refused_before_ray(command: str, tmp_path: Path, capsys,
                                                     no_ray: list[int]) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    err = _user_error([command, "--name", "../../x", "--data", str(tmp_path / "shards"),
                       f"cluster.storage_path={storage}"], capsys)
    assert "--name must be a folder name" in err and "'../../x'" in err
    assert not no_ray and sorted(tmp_path.iterdir()) == [storage]


# ------------------------------------------------------------------ storage path
@pytest.mark.parametrize("command", ["train", "run"])
def test_storage_path_naming_a_file_is_an_error_before_ray(command: str, tmp_path: Path, capsys,
                                                          no_ray: list[int]) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("mine")
    err = _user_error([command, "--data", str(tmp_path / "shards"),
                       f"cluster.storage_path={afile}"], capsys)
    assert f"cluster.storage_path {str(afile)!r}: {afile} is a file (or a broken link)" in err
    err = _user_error([command, "--data", str(tmp_path / "shards"),
                       f"cluster.storage_path={afile}/runs"], capsys)
    assert f"cluster.storage_path '{afile}/runs': its parent {afile} is a file" in err
    assert afile.read_text() == "mine" and not no_ray


def test_the_runs_own_folder_being_a_file_is_named(tmp_path: Path, capsys, no_ray) -> None:
    (tmp_path / "exp").write_text("not a folder")
    err = _user_error(["run", "--data", str(tmp_path / "shards"), "search.name=exp",
                       f"cluster.storage_path={tmp_path}"], capsys)
    assert f"the run's folder {tmp_path / 'exp'} is a file" in err


# ------------------------------------------------------------------ run's exit status
def _outcome(tmp_path: Path, statuses: list[str], interrupted: bool = False) -> SimpleNamespace:
    for i, status in enumerate(statuses):
        if status == "ERROR":
            (tmp_path / f"trial_t{i}").mkdir()
            (tmp_path / f"trial_t{i}" / "error.txt").write_text("Traceback ...")
    trials = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(len(statuses))], "status": statuses,
        "error": ["RuntimeError: boom" if s == "ERROR" else None for s in statuses],
        "checkpoint": ["" if s == "ERROR" else str(tmp_path / "ckpt") for s in statuses]})
    return SimpleNamespace(experiment_dir=tmp_path, trials=trials, remote="",
                           interrupted=interrupted, summary=lambda: "Trials: ...")


@pytest.fixture
def stub_search(monkeypatch: pytest.MonkeyPatch):
    """``run`` with run_search, the report and export replaced: ``install(fn)``."""
    import search.report as report
    import search.study as study

    monkeypatch.setattr(report, "write_report", lambda d: Path(d) / "report.html")

    def install(fn):
        monkeypatch.setattr(study, "run_search", fn)
    return install


def test_a_search_where_every_trial_failed_exits_1(tmp_path: Path, capsys, stub_search) -> None:
    stub_search(lambda cfg, **kw: _outcome(tmp_path, ["ERROR", "ERROR"]))
    assert cli(["run", "search.name=failed"]) == 1
    err = capsys.readouterr().err
    assert "deepfake-search run: error: no trial finished: 2 trial(s) ran and none produced" in err
    assert "the first says: RuntimeError: boom" in err
    assert str(tmp_path / "trial_t0" / "error.txt") in err, err


def test_a_search_with_no_trial_at_all_exits_1(tmp_path: Path, capsys, stub_search) -> None:
    stub_search(lambda cfg, **kw: _outcome(tmp_path, []))
    assert cli(["run", "search.name=empty"]) == 1
    assert "no trial finished: 0 trial(s)" in capsys.readouterr().err


def test_one_finished_trial_is_success(tmp_path: Path, capsys, stub_search) -> None:
    stub_search(lambda cfg, **kw: _outcome(tmp_path, ["ERROR", "COMPLETED"]))
    assert cli(["run", "search.name=one"]) == 0


def test_sigterm_reaches_the_search_as_sigint_and_exits_143(tmp_path: Path, capsys,
                                                            stub_search) -> None:
    """What Tune does on SIGINT (a handler that ends the search gracefully), stubbed: a
    SIGTERM sent to the driver reaches it as SIGINT, the resume hint is printed and the
    exit status is 143."""
    seen: list[int] = []

    def search(cfg, **kw):
        previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.time() + 10
            while not seen and time.time() < deadline:
                time.sleep(0.01)
        finally:
            signal.signal(signal.SIGINT, previous)
        return _outcome(tmp_path, ["INTERRUPTED"], interrupted=True)

    before = signal.getsignal(signal.SIGTERM)
    stub_search(search)
    assert cli(["run", "search.name=term"]) == 143
    assert seen == [signal.SIGINT]
    assert "continue with: deepfake-search run search.name=term --resume" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the command


@pytest.mark.parametrize("sigint", [signal.default_int_handler, signal.SIG_IGN],
                         ids=["from-a-terminal", "sigint-ignored"])
def test_sigterm_before_tune_is_a_keyboard_interrupt_exiting_143(tmp_path: Path, capsys,
                                                                 stub_search, sigint) -> None:
    """SIGTERM before Tune has a handler: the run ends as after a Ctrl-C, with 143. Also for
    a run started with SIGINT ignored (``nohup deepfake-search run &`` in a script, a
    background job): the SIGTERM used to be turned into a SIGINT that such a process
    ignores, and the run went on as if nothing was sent."""
    def search(cfg, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # interrupted
        raise AssertionError("the SIGTERM was lost")

    stub_search(search)
    outer = signal.signal(signal.SIGINT, sigint)
    try:
        assert cli(["run", "search.name=early"]) == 143
        assert signal.getsignal(signal.SIGINT) is sigint  # left as the user set it
    finally:
        signal.signal(signal.SIGINT, outer)
    assert "deepfake-search run: terminated (SIGTERM)" in capsys.readouterr().err
