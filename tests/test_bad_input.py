"""Bad input, before any cluster starts. Second round (issue 22): bounded YAML, seeds,
folder names, a storage path that is a file, and the exit status of ``run`` when nothing
finished or when the driver is sent SIGTERM (the search itself stubbed here; the real
searches are in tests/test_exit_codes.py). Third round (issue 28, at the end): duplicate
YAML keys, a folder given as --config, train's own run name, --resume with changed
settings, splits that round to no image, names too long for the file system, read-only
results folders, an oversized model input, a file name starting with '-' and a symlink
cycle: each refused before any work with one message naming the file, key or flag."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.robustness import make_model_folder
from search.cli import main as cli
from search.config import ConfigError, ExperimentConfig, check_folder_name, load_config
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


# ================================================================== third round (issue 28)
# ------------------------------------------------------------------ YAML
@pytest.mark.parametrize(("text", "key", "lines"), [
    ("optim:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", "lr", (2, 4)),
    ("optim:\n  lr: 0.1\nmodel:\n  arch: resnet50\noptim:\n  epochs: 3\n", "optim", (1, 5)),
])
def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path: Path, capsys, no_ray,
                                                          text: str, key: str,
                                                          lines: tuple[int, int]) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    err = _user_error(["run", "--config", str(path)], capsys)
    assert f"{path}: key '{key}' is written twice in one mapping (lines {lines[0]} and " \
           f"{lines[1]})" in err and "merge them into one" in err
    assert not no_ray


def test_the_same_key_in_two_sections_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("optim:\n  epochs: 3\nsearch:\n  space:\n    epochs: [2, 3]\n")
    assert load_config(path).optim.epochs == 3


def test_config_naming_a_folder_says_it_is_a_folder(tmp_path: Path, capsys) -> None:
    err = _user_error(["run", "--config", str(tmp_path)], capsys)
    assert f"--config {tmp_path} is a folder: name the experiment YAML in it" in err
    assert "does not exist" not in err


# ------------------------------------------------------------------ train's run name
def test_train_refuses_an_unknown_or_escaping_arch_before_ray(tmp_path: Path, capsys,
                                                              no_ray) -> None:
    storage = tmp_path / "S" / "deep" / "er"
    t0 = time.perf_counter()
    err = _user_error(["train", "--data", str(tmp_path / "shards"), "model.arch=../../escaped",
                       f"cluster.storage_path={storage}"], capsys)
    assert "unknown model '../../escaped'" in err
    assert time.perf_counter() - t0 < 20 and not no_ray
    assert not (tmp_path / "S").exists()  # nothing written anywhere


def test_the_default_run_name_goes_through_the_folder_name_rule() -> None:
    from search.config import check_folder_name
    from search.train.driver import default_run_name

    cfg = load_config(None, ["model.arch=resnet50"])
    assert check_folder_name(default_run_name(cfg), "name").startswith("train-resnet50-")
    with pytest.raises(ConfigError, match="must be a folder name"):
        check_folder_name(default_run_name(load_config(None, ["model.arch=../x"])), "name")


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_900kb_arch_is_refused_at_load_quoted_once_and_cut(command: str, tmp_path: Path,
                                                             capsys, no_ray) -> None:
    huge = "a" * 900_000
    err = _user_error([command, "--data", str(tmp_path), f"model.arch={huge}"], capsys)
    assert "model.arch must be an architecture name of at most 200 characters" in err
    assert len(err) < 600 and err.count("'aaaa") == 1 and "(900002 characters)" in err


# ------------------------------------------------------------------ --resume
def _saved(tmp_path: Path, name: str) -> None:
    cfg = load_config(None, [f"search.name={name}", f"cluster.storage_path={tmp_path}",
                             "search.num_samples=3", "optim.epochs=2"])
    (tmp_path / name).mkdir()
    (tmp_path / name / "experiment.json").write_text(json.dumps(cfg.to_dict()))


def test_resume_with_changed_settings_names_each_and_starts_nothing(tmp_path: Path, capsys,
                                                                    monkeypatch) -> None:
    import search.study as study

    _saved(tmp_path, "exp")
    monkeypatch.setattr(study, "run_search", lambda *a, **k: pytest.fail("the search ran"))
    err = _user_error(["run", "search.name=exp", f"cluster.storage_path={tmp_path}",
                       "optim.epochs=5", "search.space={lr: [0.1, 0.2]}", "--num-samples",
                       "5", "--resume"], capsys)
    assert "--resume continues experiment 'exp' with the settings it was started with" in err
    assert "optim.epochs (saved 2, given 5)" in err
    assert "search.num_samples (saved 3, given 5)" in err and "search.space (saved {}" in err
    assert "Tune's restore cannot change a search's space" in err and "--name NEW" in err


def test_resume_with_the_same_settings_or_none_runs_the_saved_config(tmp_path: Path,
                                                                     monkeypatch) -> None:
    import search.report as report
    import search.study as study

    _saved(tmp_path, "same")
    ran: list[ExperimentConfig] = []

    def search(cfg, **kw):
        ran.append(cfg)
        return _outcome(tmp_path, ["COMPLETED"])

    monkeypatch.setattr(study, "run_search", search)
    monkeypatch.setattr(report, "write_report", lambda d, out=None: Path(d) / "report.html")
    monkeypatch.setattr("search.cli.check_shards", lambda *a, **k: None)
    same = ["search.name=same", f"cluster.storage_path={tmp_path}", "optim.epochs=2",
            "search.num_samples=3"]
    assert cli(["run", *same, "--resume"]) == 0
    assert cli(["run", "--name", "same", f"cluster.storage_path={tmp_path}", "--resume"]) == 0
    assert [c.optim.epochs for c in ran] == [2, 2] and ran[0].search.num_samples == 3


# ------------------------------------------------------------------ splits that round to none
def _source(root: Path, n: int) -> Path:
    from PIL import Image

    for green, label in ((9, "real"), (200, "fake")):
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (24, 24), (i * 5 % 255, green, 9)).save(root / label / f"{i}.png")
    return root


def test_prepare_refuses_splits_that_round_to_no_image_before_decoding(tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    import search.data.prepare as prep

    src = _source(tmp_path / "src", 20)
    monkeypatch.setattr(prep, "decode_all", lambda *a, **k: pytest.fail("decoded first"))
    err = _user_error(["prepare", "--layout", "folders", "--source", str(src), "--out",
                       str(tmp_path / "out"), "--size", "16", "--splits", "0.98,0.01,0.01",
                       "--quiet"], capsys)
    assert "--splits 0.98,0.01,0.01 on 40 images" in err
    assert "leaves the validation and the test split with no image" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def _shards_without(tmp_path: Path, split: str) -> Path:
    """Prepared shards whose manifest lists no image in ``split`` (as older versions wrote)."""
    from search.data.prepare import PrepareOptions, prepare

    out = tmp_path / "shards"
    prepare(PrepareOptions(layout="folders", source=str(_source(tmp_path / "src", 6)),
                           out=str(out), size=16, splits=(0.34, 0.33, 0.33)), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    for shard in [s for s in manifest["shards"] if s["split"] == split]:
        (out / shard["file"]).unlink()
    manifest["shards"] = [s for s in manifest["shards"] if s["split"] != split]
    manifest["counts"][split] = {"REAL": 0, "FAKE": 0}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_run_checks_its_splits_before_ray(tmp_path: Path, capsys, no_ray) -> None:
    shards = _shards_without(tmp_path, "test")
    err = _user_error(["run", "--data", str(shards), f"cluster.storage_path={tmp_path}"], capsys)
    assert f"{shards} has no image in its 'test' split" in err and "--splits" in err
    assert "non-zero" not in err and not no_ray


def test_evaluate_does_not_claim_the_fractions_were_zero(tmp_path: Path, capsys) -> None:
    shards = _shards_without(tmp_path, "test")
    model = make_model_folder(tmp_path / "model")
    err = _user_error(["evaluate", str(model), "--data", str(shards)], capsys)
    assert "has no image in its 'test' split" in err and "non-zero" not in err


# ------------------------------------------------------------------ writes
@pytest.mark.parametrize("length", [246, 251, 255])
def test_predict_out_names_up_to_255_bytes_are_written(tmp_path: Path, length: int) -> None:
    from search.predict import write_predictions

    frame = pd.DataFrame({"path": ["a.jpg"], "p_fake": [0.5], "error": [None]})
    out = tmp_path / ("x" * (length - 4) + ".csv")
    assert write_predictions(frame, out) == out and out.read_text().startswith("path")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.fixture()
def read_only(monkeypatch: pytest.MonkeyPatch):
    """``folder`` behaves as a read-only mount for the write check (the tests run as root,
    which permission bits do not stop): making a file in it fails with EROFS."""
    def install(folder: Path) -> None:
        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return install


def test_export_names_long_out_and_read_only_results(model_results: Path, tmp_path: Path,
                                                     capsys, read_only) -> None:
    out = tmp_path / ("e" * 256)
    err = _user_error(["export", str(model_results), "--out", str(out)], capsys)
    assert "--out" in err and "the name eeeeeeee" in err and "longer than 255 bytes" in err
    copy = shutil.copytree(model_results, tmp_path / "ro", ignore=shutil.ignore_patterns(
        "export"))
    read_only(copy)
    err = _user_error(["export", str(copy)], capsys)
    assert f"cannot write the export to {copy / 'export'}" in err and "pass --out DIR" in err


def test_export_with_a_250_byte_out_name_writes_it(model_results: Path, tmp_path: Path) -> None:
    from search.export import export_model

    out = export_model(model_results, out=tmp_path / ("e" * 250), verbose=False)
    assert (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no staging folder left


def test_report_on_a_read_only_results_folder_names_it_and_out(model_results: Path,
                                                               tmp_path: Path, capsys,
                                                               read_only) -> None:
    copy = shutil.copytree(model_results, tmp_path / "ro")
    read_only(copy)
    err = _user_error(["report", str(copy)], capsys)
    assert f"cannot write the report to {copy / 'report'}" in err and "--out DIR" in err
    assert not (copy / "report").exists()


# ------------------------------------------------------------------ model folders, predict
def test_a_model_folder_with_a_huge_input_size_is_refused_when_read(tmp_path: Path,
                                                                   capsys) -> None:
    model = make_model_folder(tmp_path / "model")
    meta = json.loads((model / "config.json").read_text())
    meta["input"]["input_size"] = 100_000
    (model / "config.json").write_text(json.dumps(meta))
    (tmp_path / "a.jpg").write_bytes(b"")
    for backend in ("torch", "onnx"):
        err = _user_error(["predict", str(model), str(tmp_path / "a.jpg"), "--backend", backend],
                          capsys)
        assert "input.input_size 100000 is above the maximum of 4096 px" in err


def test_a_file_name_starting_with_a_dash_points_to_the_fix(tmp_path: Path, capsys) -> None:
    for argv in (["predict", str(tmp_path), "-rf.jpg"],
                 ["predict", str(tmp_path), "a.jpg", "-rf.jpg"]):
        with pytest.raises(SystemExit) as done:
            cli(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "put -- before the paths (predict MODEL -- -rf.jpg)" in err and "./-rf.jpg" in err


def test_a_symlink_cycle_is_not_called_broken(tmp_path: Path) -> None:
    from search.predict import predict_paths

    model = make_model_folder(tmp_path / "model")
    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    frame = predict_paths(model, [str(tmp_path / "a.jpg")])
    assert frame["error"].tolist() == [
        "symlink loop: the link leads back to itself through other links (no file)"]
