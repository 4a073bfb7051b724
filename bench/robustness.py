"""The bad-input corpus: every kind of broken file, config or model folder a user can hand
the project, fed to each entry point where it can arrive, with the outcome it must get.

Two outcomes are acceptable (the project's rule): an ``error`` that names the file or key
and the fix, or a ``skipped`` file counted and reported with its reason; odd but valid
input is ``kept`` (prepare) or ``scored`` (predict). A traceback, a hang (every call runs
under a deadline), a silent drop or data loss is a failure.

``tests/test_robustness.py`` builds the corpus in a temporary folder and asserts every
outcome; ``python -m bench.robustness`` runs the same corpus and writes
``results/robustness.md``, and the test checks that file equals a fresh rendering, so the
table cannot drift from the code.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TABLE = Path(__file__).resolve().parents[1] / "results" / "robustness.md"
DEADLINE_S = 60  # far above any case's time: a hang fails the case instead of the run
SIZE = 32  # prepare's square side and the corpus model's input: tiny and fast


@dataclass(frozen=True)
class Outcome:
    """What one bad input got at one entry point, against what it must get."""

    kind: str
    entry: str
    expect: str  # "error", "skipped", "kept", "scored", "exit 1"
    got: str
    message: str

    @property
    def ok(self) -> bool:
        """The outcome is the expected one, and an error or skip says something."""
        return self.got == self.expect and (self.expect in ("kept", "scored") or bool(self.message))


# ----------------------------------------------------------------- running one call
class _Deadline(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Raise _Deadline after ``seconds`` (SIGALRM interrupts even a blocking open())."""
    def fire(*_: Any) -> None:
        raise _Deadline

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _cli(argv: list[str]) -> tuple[int | str, str]:
    """(exit code, stderr) of ``deepfake-search ARGV``; "traceback ..." or "hang" instead
    of an exit code when the command escaped its error handling."""
    from search.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with _deadline(DEADLINE_S), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code: int | str = main(argv)
    except _Deadline:
        return "hang", err.getvalue()
    except BaseException as exc:  # the very thing the corpus hunts for
        return f"traceback {type(exc).__name__}", f"{type(exc).__name__}: {exc}"
    return code, err.getvalue().strip()


def _call(fn: Callable[[], Any]) -> tuple[str, str]:
    """("ok", "") or ("error", message) for a library call that must raise a user error."""
    from search.cli import _user_errors

    try:
        with _deadline(DEADLINE_S):
            fn()
    except _Deadline:
        return "hang", ""
    except _user_errors() as err:
        return "error", str(err)
    except Exception as exc:
        return f"traceback {type(exc).__name__}", str(exc)
    return "ok", ""


def _error_of(code: int | str, message: str) -> str:
    return "error" if code == 2 and message and "Traceback" not in message else str(code)


# ----------------------------------------------------------------- the image-file corpus
def _encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(seed: int, w: int = 40, h: int = 36) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_rgb(7, 40, 20), "JPEG", exif=exif.tobytes())


def _grey16() -> bytes:
    img = Image.new("I;16", (40, 40))
    img.frombytes(np.random.default_rng(3).integers(0, 65535, (40, 40)).astype("<u2").tobytes())
    return _encode(img, "PNG")


# (kind, file name, writer, outcome in prepare, outcome in predict). A writer gets the
# target path and makes the file (or FIFO, or link) there.
def _bytes(data: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: _write(path, data())


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _link(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    return make


def _sparse(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # 300 MB on paper, no disk used


_JPEG = _encode(_rgb(1), "JPEG", quality=90)
# The start of a HEIF file as phones write it: an ISO-BMFF "ftyp" box, brand heic.
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(range(256)) * 8
FILES: list[tuple[str, str | bytes, Callable[[Path], None], str, str]] = [
    ("truncated JPEG", "truncated.jpg", _bytes(lambda: _JPEG[: len(_JPEG) // 2]), "skipped", "skipped"),
    ("zero-byte file", "zero.jpg", _bytes(lambda: b""), "skipped", "skipped"),
    ("text named .jpg", "text.jpg", _bytes(lambda: b"not an image\n"), "skipped", "skipped"),
    ("random bytes named .png", "noise.png", _bytes(lambda: np.random.default_rng(0).bytes(500)),
     "skipped", "skipped"),
    ("decompression bomb (81 MP PNG)", "bomb.png",
     _bytes(lambda: _encode(Image.new("1", (9000, 9000)), "PNG")), "skipped", "skipped"),
    ("1x1 image", "tiny.png", _bytes(lambda: _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")),
     "skipped", "skipped"),
    ("CMYK JPEG", "cmyk.jpg", _bytes(lambda: _encode(_rgb(2).convert("CMYK"), "JPEG")), "kept", "scored"),
    ("16-bit grey PNG", "grey16.png", _bytes(_grey16), "kept", "scored"),
    ("palette PNG", "palette.png", _bytes(lambda: _encode(_rgb(4).convert("P"), "PNG")), "kept", "scored"),
    ("RGBA PNG", "rgba.png", _bytes(lambda: _encode(_rgb(5).convert("RGBA"), "PNG")), "kept", "scored"),
    ("grey JPEG", "grey.jpg", _bytes(lambda: _encode(_rgb(6).convert("L"), "JPEG")), "kept", "scored"),
    ("GIF", "anim.gif", _bytes(lambda: _encode(_rgb(8).convert("P"), "GIF")), "kept", "scored"),
    ("EXIF-rotated JPEG", "rotated.jpg", _bytes(_exif_rotated), "kept", "scored"),
    ("FIFO named .jpg", "fifo.jpg", _fifo, "skipped", "skipped"),
    ("broken symlink", "broken.jpg", _link("does-not-exist.jpg"), "skipped", "skipped"),
    ("symlink to /dev/zero", "devzero.jpg", _link("/dev/zero"), "skipped", "skipped"),
    ("file over the size cap (300 MB)", "huge.jpg", _sparse, "skipped", "skipped"),
    ("non-UTF-8 file name", b"caf\xe9.jpg", _bytes(lambda: _encode(_rgb(9), "JPEG")), "skipped", "scored"),
    ("symlink loop (folder linked to its parent)", "loop", _link("."), "skipped", "skipped"),
    ("HEIC photo (an iPhone's)", "photo.heic", _bytes(lambda: HEIC), "skipped", "skipped"),
    ("symlink cycle (a link to itself)", "cycle.jpg", _link("cycle.jpg"), "skipped", "skipped"),
]


def _fs_name(name: str | bytes) -> str:
    return os.fsdecode(name) if isinstance(name, bytes) else name


def _shown(name: str | bytes) -> str:
    from search.data.images import safe_name

    return safe_name(_fs_name(name))


def _good(folder: Path, n: int, seed: int) -> list[str]:
    names = [f"good{seed}_{i}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        _write(folder / name, _encode(_rgb(seed * 100 + i), "JPEG"))
    return names


def _place_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for _, name, make, _, _ in FILES:
        make(folder / _fs_name(name))


# ----------------------------------------------------------------- prepare
def _prepare(src: Path, out: Path, layout: str) -> tuple[int | str, str]:
    return _cli(["prepare", "--layout", layout, "--source", str(src), "--out", str(out),
                 "--size", str(SIZE), "--workers", "1", "--quiet"])


def _file_outcomes(out: Path, prefix: str, entry: str, code: int | str, err: str) -> list[Outcome]:
    """Each corpus file's fate in a prepared folder: skipped (with reason), kept, or lost."""
    import pyarrow.parquet as pq

    if code != 0:
        return [Outcome(kind, entry, expect, f"run failed ({code})", err)
                for kind, _, _, expect, _ in FILES]
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    ids = {i for s in manifest["shards"] for i in pq.read_table(out / s["file"], columns=["id"])["id"].to_pylist()}
    outcomes = []
    for kind, name, _, expect, _ in FILES:
        rel = f"{prefix}{_shown(name)}"
        got, message = ("skipped", skipped[rel]) if rel in skipped else (
            ("kept", "") if rel in ids else ("silently dropped", ""))
        outcomes.append(Outcome(kind, entry, expect, got, message))
    return outcomes


def _prepare_layouts(tmp: Path) -> tuple[list[Outcome], Path]:
    """The file corpus through prepare in each layout; returns the folders layout's shards."""
    outcomes: list[Outcome] = []
    # folders: ROOT/<class>/...
    src = tmp / "folders"
    _good(src / "real", 4, 1)
    _good(src / "fake", 4, 2)
    _place_corpus(src / "fake")
    code, err = _prepare(src, tmp / "folders_out", "folders")
    outcomes += _file_outcomes(tmp / "folders_out", "fake/", "prepare (folders)", code, err)
    # real_vs_fake: Dataset/{Train,Validation,Test}/{Real,Fake}
    root = tmp / "rvf" / "Dataset"
    for k, split in enumerate(("Train", "Validation", "Test")):
        _good(root / split / "Real", 2, 30 + k)  # different images per split (copies are dropped)
        _good(root / split / "Fake", 2, 40 + k)
    _place_corpus(root / "Train" / "Fake")
    code, err = _prepare(tmp / "rvf", tmp / "rvf_out", "real_vs_fake")
    outcomes += _file_outcomes(tmp / "rvf_out", "Train/Fake/", "prepare (real_vs_fake)", code, err)
    # deepfake_faces: metadata.csv + faces_224/, one row per corpus file (FAKE)
    src = tmp / "dff"
    faces = src / "faces_224"
    rows = [(n, "REAL", "") for n in _good(faces, 4, 5)] + [(n, "FAKE", "good5_0.mp4")
                                                             for n in _good(faces, 4, 6)]
    _place_corpus(faces)
    rows += [(_fs_name(name), "FAKE", "good5_0.mp4") for _, name, *_ in FILES
             if isinstance(name, str) and name != "loop"]
    _metadata(src, rows)
    code, err = _prepare(src, tmp / "dff_out", "deepfake_faces")
    outcomes += _file_outcomes(tmp / "dff_out", "faces_224/", "prepare (deepfake_faces)", code, err)
    return outcomes, tmp / "folders_out"


def _metadata(src: Path, rows: list[tuple[str, str, str]], *, encoding: str = "utf-8") -> None:
    with (src / "metadata.csv").open("w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(["videoname", "original_width", "original_height", "label", "original"])
        for name, label, original in rows:
            w.writerow([Path(name).with_suffix(".mp4").name, 224, 224, label, original])


def _metadata_cases(tmp: Path) -> list[Outcome]:
    """Bad metadata.csv rows and encodings (the deepfake_faces layout)."""
    entry = "prepare (deepfake_faces)"
    outcomes = []

    def source(name: str) -> tuple[Path, list[tuple[str, str, str]]]:
        src = tmp / name
        real, fake = _good(src / "faces_224", 3, 11), _good(src / "faces_224", 3, 12)
        return src, [(n, "REAL", "") for n in real] + [(n, "FAKE", "") for n in fake]

    src, rows = source("meta_rows")
    _write(src / "faces_224" / "orphan.jpg", _JPEG)
    _write(src / "faces_224" / "maybe.jpg", _JPEG)
    _metadata(src, [*rows, rows[0], ("ghost.jpg", "FAKE", ""), ("maybe.jpg", "MAYBE", "")])
    code, err = _prepare(src, tmp / "meta_rows_out", "deepfake_faces")
    skipped = ([] if code != 0 else
               json.loads((tmp / "meta_rows_out" / "manifest.json").read_text())["skipped"])
    for kind, fragment in (("file without a metadata row", "no metadata row"),
                           ("metadata row without a file", "missing file"),
                           ("duplicate id in metadata.csv", "duplicate id"),
                           ("unknown label value in metadata.csv", "unknown label value")):
        hit = next((s for s in skipped if fragment in s["reason"]), None)
        outcomes.append(Outcome(kind, entry, "skipped", "skipped" if hit else f"not reported ({code})",
                                f"{hit['path']}: {hit['reason']}" if hit else err))
    src, rows = source("meta_bom")
    _metadata(src, rows, encoding="utf-8-sig")
    code, err = _prepare(src, tmp / "meta_bom_out", "deepfake_faces")
    outcomes.append(Outcome("metadata.csv with a UTF-8 byte-order mark", entry, "kept",
                            "kept" if code == 0 else _error_of(code, err), "" if code == 0 else err))
    src, rows = source("meta_latin1")
    _metadata(src, [*rows[:-1], ("caf\xe9.jpg", "FAKE", "")], encoding="latin-1")
    code, err = _prepare(src, tmp / "meta_latin1_out", "deepfake_faces")
    outcomes.append(Outcome("Latin-1 metadata.csv", entry, "error", _error_of(code, err), err))
    src, rows = source("meta_one_class")
    _metadata(src, [r for r in rows if r[1] == "FAKE"])
    code, err = _prepare(src, tmp / "meta_one_class_out", "deepfake_faces")
    outcomes.append(Outcome("no usable image of one class", entry, "error", _error_of(code, err), err))
    src, rows = source("meta_huge_field")
    _metadata(src, [*rows[:2], ("x.jpg", "FAKE", "y" * 200_000), *rows[2:]])
    code, err = _prepare(src, tmp / "meta_huge_field_out", "deepfake_faces")
    outcomes.append(Outcome("200 KB field in metadata.csv", entry, "error", _error_of(code, err), err))
    src, rows = source("meta_huge_file")
    _metadata(src, rows)
    with (src / "metadata.csv").open("ab") as fh:
        fh.truncate(300 * 1024 * 1024)  # 300 MB on paper (zeros past the rows), no disk used
    code, err = _prepare(src, tmp / "meta_huge_file_out", "deepfake_faces")
    outcomes.append(Outcome("metadata.csv of 300 MB", entry, "error", _error_of(code, err), err))
    return outcomes


def _duplicate_cases(tmp: Path) -> list[Outcome]:
    """Byte-identical images: kept once; under both labels, dropped from both; in two of
    the source's own splits, kept in one."""
    outcomes = []

    def reason_of(out: Path, code: int | str, err: str, path: str) -> tuple[str, str]:
        if code != 0:
            return _error_of(code, err), err
        skipped = {s["path"]: s["reason"] for s in json.loads((out / "manifest.json").read_text())["skipped"]}
        return ("skipped", skipped[path]) if path in skipped else ("kept twice", "")

    src = tmp / "dups"
    real = _good(src / "real", 3, 50)
    _good(src / "fake", 3, 51)
    _write(src / "real" / "copy.jpg", (src / "real" / real[0]).read_bytes())
    _write(src / "fake" / "also_real.jpg", (src / "real" / real[1]).read_bytes())
    code, err = _prepare(src, tmp / "dups_out", "folders")
    outcomes.append(Outcome("byte-identical copy of an image", "prepare (folders)", "skipped",
                            *reason_of(tmp / "dups_out", code, err, f"real/{real[0]}")))
    outcomes.append(Outcome("same bytes under real/ and fake/", "prepare (folders)", "skipped",
                            *reason_of(tmp / "dups_out", code, err, "fake/also_real.jpg")))
    root = tmp / "dups_rvf" / "Dataset"
    for k, split in enumerate(("Train", "Validation", "Test")):
        _good(root / split / "Real", 2, 60 + k)
        _good(root / split / "Fake", 2, 70 + k)
    _write(root / "Test" / "Fake" / "leak.jpg", (root / "Train" / "Fake" / "good70_0.jpg").read_bytes())
    code, err = _prepare(tmp / "dups_rvf", tmp / "dups_rvf_out", "real_vs_fake")
    outcomes.append(Outcome("same file in the source's Train and Test splits",
                            "prepare (real_vs_fake)", "skipped",
                            *reason_of(tmp / "dups_rvf_out", code, err, "Train/Fake/good70_0.jpg")))
    return outcomes


# (kind, flags, layout) of prepare's options: each one an error naming the option
OPTIONS: list[tuple[str, list[str], str]] = [
    ("--group-regex '(' (not a regular expression)", ["--group-regex", "("], "folders"),
    ("--splits nan,0.2,0.2", ["--splits", "nan,0.2,0.2"], "folders"),
    ("--splits with a negative fraction", ["--splits", "0.8,-0.1,0.3"], "folders"),
    ("--splits 1,0,0 (no validation or test split)", ["--splits", "1,0,0"], "folders"),
    ("--workers -1", ["--workers", "-1"], "folders"),
    ("--workers 100000", ["--workers", "100000"], "folders"),
    ("--size 100000", ["--size", "100000"], "folders"),
    ("--quality 200", ["--quality", "200"], "folders"),
    ("--shard-mb inf", ["--shard-mb", "inf"], "folders"),
    ("--seed -1", ["--seed", "-1"], "folders"),
    ("--class-map to a label that is not real/fake", ["--class-map", "original=banana"], "folders"),
    ("--class-map with the deepfake_faces layout", ["--class-map", "original=real"], "deepfake_faces"),
    ("--group-regex with the demo layout", ["--group-regex", "(\\w+)_"], "demo"),
]


def _option_cases(tmp: Path) -> list[Outcome]:
    """prepare's option values out of range: refused before anything is read or written."""
    outcomes = []
    for kind, flags, layout in OPTIONS:
        out = tmp / "option_out"
        code, err = _cli(["prepare", "--layout", layout, "--source", str(tmp / "folders"),
                          "--out", str(out), "--quiet", *flags])
        got = _error_of(code, err) if not out.exists() else "wrote --out"
        outcomes.append(Outcome(kind, "prepare (options)", "error", got, err))
    return outcomes


def _out_cases(tmp: Path, source: Path) -> list[Outcome]:
    """``prepare --out`` pointing at a folder of the user's: refused, nothing deleted."""
    entry = "prepare --out"
    outcomes = []
    out = tmp / "users_folder"
    _write(out / "my_results.parquet", b"the user's own table")
    code, err = _prepare(source, out, "folders")
    kept = (out / "my_results.parquet").read_bytes() == b"the user's own table"
    outcomes.append(Outcome("--out folder holding the user's *.parquet", entry, "error",
                            _error_of(code, err) if kept else "DELETED the user's file", err))
    _write(tmp / "a_file", b"x")
    code, err = _prepare(source, tmp / "a_file", "folders")
    outcomes.append(Outcome("--out naming a file", entry, "error", _error_of(code, err), err))
    out = tmp / "rerun"
    first = _prepare(source, out, "folders")[0]
    code, err = _prepare(source, out, "folders")
    outcomes.append(Outcome("--out of an earlier prepare (re-run)", entry, "kept",
                            "kept" if first == code == 0 else _error_of(code, err), ""))
    outcomes += _out_race_cases(tmp, source, out)
    return outcomes


def _out_race_cases(tmp: Path, source: Path, prepared: Path) -> list[Outcome]:
    """Another prepare writing the same --out (its lock held here, as a running one holds
    it), and what a killed run leaves behind: taken over by the next run."""
    import fcntl

    from search.data.prepare import INSTALLING, LOCK, STAGING_PREFIX, verify_shards

    entry = "prepare --out"
    outcomes = []
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    fd = os.open(prepared / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        code, err = _prepare(source, prepared, "folders")
    finally:
        os.close(fd)
        (prepared / LOCK).unlink()
    untouched = {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    outcomes.append(Outcome("--out being written by another prepare", entry, "error",
                            _error_of(code, err) if untouched else "CHANGED the other's folder",
                            err.replace(f"pid {os.getpid()}", "pid <pid>")))

    def taken_over(kind: str, leave: Callable[[Path], None]) -> None:
        out = tmp / kind.split(" (")[0].replace(" ", "_")
        shutil.copytree(prepared, out)
        leave(out)
        code, err = _prepare(source, out, "folders")
        if code != 0:
            outcomes.append(Outcome(kind, entry, "kept", _error_of(code, err), err))
            return
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".prepare")]
        try:
            verify_shards(out)
            got = "kept" if not leftovers else f"left {leftovers}"
        except Exception as exc:
            got = f"inconsistent: {exc}"
        outcomes.append(Outcome(kind, entry, "kept", got, ""))

    def killed_while_writing(out: Path) -> None:
        _write(out / f"{STAGING_PREFIX}dead1234" / "train-00000.parquet", b"half a shard")
        _write(out / LOCK, b"1234\n")  # its lock file, no longer held by anyone

    def killed_while_installing(out: Path) -> None:
        manifest = json.loads((out / "manifest.json").read_text())
        (out / "manifest.json").unlink()  # the old manifest gone, the new one not yet there
        _write(out / INSTALLING, json.dumps([s["file"] for s in manifest["shards"]]).encode())

    taken_over("staging folder and lock of a killed prepare (SIGKILL while writing)",
               killed_while_writing)
    taken_over("shards without a manifest (SIGKILL while installing)", killed_while_installing)
    return outcomes


# ----------------------------------------------------------------- shards
def _shard_cases(tmp: Path, good: Path) -> list[Outcome]:
    """Damaged prepared folders: refused before any cluster starts, naming the file."""
    import search.train.driver  # noqa: F401 - torch and Ray imported once, outside a deadline
    from search.cli import check_shards
    from search.config import load_config

    entry = "train, run, evaluate (shard check before Ray)"
    outcomes = []

    def damaged(name: str, harm: Callable[[Path, dict], None]) -> Outcome:
        folder = tmp / "shards" / name.replace(" ", "_")
        shutil.copytree(good, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        harm(folder, manifest)
        got, message = _call(lambda: check_shards(load_config(None, [f"data.shards={folder}"])))
        return Outcome(name, entry, "error", got, message)

    def first(folder: Path, manifest: dict) -> Path:
        return folder / manifest["shards"][0]["file"]

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def tamper(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte changed
        path.write_bytes(bytes(data))

    def recount(folder: Path, manifest: dict) -> None:
        manifest["shards"][0]["rows"] += 1
        (folder / "manifest.json").write_text(json.dumps(manifest))

    outcomes.append(damaged("truncated manifest.json",  # cut at a fixed place: a stable message
                            lambda f, m: (f / "manifest.json").write_bytes(
                                (f / "manifest.json").read_bytes()[:60])))
    outcomes.append(damaged("missing shard", lambda f, m: first(f, m).unlink()))
    outcomes.append(damaged("truncated shard", lambda f, m: truncate(first(f, m))))
    outcomes.append(damaged("shard changed after prepare (same size)", lambda f, m: tamper(first(f, m))))
    outcomes.append(damaged("manifest disagreeing with its shards", recount))
    outcomes.append(_undecodable_in_shard(good))
    return outcomes


def _undecodable_in_shard(good: Path) -> Outcome:
    """An image damaged inside a shard: that row is skipped (and logged), the batch goes on."""
    import pyarrow.parquet as pq

    from search.data.stream import DecodeBatch

    manifest = json.loads((good / "manifest.json").read_text())
    table = pq.read_table(good / manifest["shards"][0]["file"]).to_pydict()
    images = list(table["image"])
    images[0] = images[0][: len(images[0]) // 3]
    batch = {"image": np.array(images, dtype=object), "label": np.array(table["label"]),
             "id": np.array(table["id"], dtype=object)}
    log = io.StringIO()
    handler = __import__("logging").StreamHandler(log)
    logger = __import__("logging").getLogger("search.data.stream")
    logger.addHandler(handler)
    try:
        got, message = "error", ""
        with _deadline(DEADLINE_S):
            out = DecodeBatch(SIZE, keep_ids=True)(batch)
        dropped = set(table["id"]) - set(out["id"])
        if dropped == {table["id"][0]} and len(out["image"]) == len(images) - 1:
            got, message = "skipped", log.getvalue().strip()
    except Exception as exc:
        got, message = f"traceback {type(exc).__name__}", str(exc)
    finally:
        logger.removeHandler(handler)
    return Outcome("image undecodable inside a shard", "training stream (decode)", "skipped",
                   got, message)


# ----------------------------------------------------------------- config
CONFIGS: list[tuple[str, list[str]]] = [
    ("optim.lr: 0", ["optim.lr=0"]),
    ("optim.lr negative", ["optim.lr=-0.001"]),
    ('data.ratio: "0:1"', ["data.ratio=0:1"]),
    ('data.ratio: "abc"', ["data.ratio=abc"]),
    ("optim.batch_size: 0", ["optim.batch_size=0"]),
    ('cluster.use_gpu: "False" (a string)', ["cluster.use_gpu='False'"]),
    ("search.num_samples: -1", ["search.num_samples=-1"]),
    ('optim.epochs: "ten"', ["optim.epochs=ten"]),
    ("misspelt search.mode", ["search.mode=maximise"]),
    ("misspelt search.algorithm", ["search.algorithm=tpee"]),
    ("misspelt search.scheduler", ["search.scheduler=ashaa"]),
    ("search.reduction_factor: 1", ["search.reduction_factor=1"]),
    ("typo in a YAML key", ["optim.learning_rate=0.1"]),
    ("seed: -5", ["seed=-5"]),
    ("seed: 2**32 (above numpy's range)", [f"seed={2**32}"]),
    ("override value that is not YAML (optim.lr=[)", ["optim.lr=["]),
    ("YAML alias in an override (optim.lr=*x)", ["optim.lr=*x"]),
    ("model.arch of 900 KB", [f"model.arch={'a' * 900_000}"]),
]

# 405 bytes: nine levels of ten aliases, 10**9 strings once expanded ("billion laughs").
LAUGHS = "search:\n  space:\n    a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"    {b}: &{b} [{','.join(['*' + a] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
# (kind, file name, bytes) of experiment YAML files
CONFIG_FILES: list[tuple[str, str, bytes]] = [
    ("YAML alias bomb (405 bytes, a billion laughs)", "laughs.yaml", LAUGHS.encode()),
    ("YAML merge key (<<: *base)", "merge.yaml", b"base: &b {lr: 0.1}\noptim:\n  <<: *b\n"),
    ("YAML nested 5000 levels deep", "deep.yaml",
     b"search:\n  space:\n    arch: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ("config file over 1 MiB", "huge.yaml", b"# " + b"x" * (1024 * 1024) + b"\n"),
    ("Latin-1 config file", "latin1.yaml", "search:\n  name: caf\xe9\n".encode("latin-1")),
    ("YAML key written twice in a section (lr)", "twice.yaml", b"optim:\n  lr: 0.1\n  lr: 0.2\n"),
    ("YAML section written twice (optim:)", "sections.yaml",
     b"optim:\n  lr: 0.1\nmodel:\n  arch: resnet50\noptim:\n  epochs: 3\n"),
]


def _config_cases() -> list[Outcome]:
    from search.config import load_config

    entry = "train, run (config, before Ray)"
    outcomes = [Outcome(kind, entry, "error", *_call(lambda o=overrides: load_config(None, o)))
                for kind, overrides in CONFIGS]
    from search.model.registry import create_model

    outcomes.append(Outcome("unknown model.arch", "train, run (model build)", "error",
                            *_call(lambda: create_model("resnet5O"))))
    return outcomes


def _config_file_cases(tmp: Path) -> list[Outcome]:
    from search.config import load_config

    outcomes = []
    for kind, name, data in CONFIG_FILES:
        _write(tmp / "configs" / name, data)
        outcomes.append(Outcome(kind, "train, run (config file, before Ray)", "error",
                                *_call(lambda p=tmp / "configs" / name: load_config(p))))
    return outcomes


def _run_cases(tmp: Path, shards: Path) -> list[Outcome]:
    """Names that would leave the storage folder and a storage path that is a file: refused
    before Ray; and run's exit status when no trial finished or on SIGTERM."""
    entry = "train, run (before Ray)"
    storage = tmp / "storage"
    storage.mkdir()
    outcomes = []
    for kind, argv in (("train --name ../../x", ["train", "--name", "../../x"]),
                       ("run --name ../x", ["run", "--name", "../x"])):
        code, err = _cli([*argv, "--data", str(shards), f"cluster.storage_path={storage}"])
        escaped = (tmp.parent / "x").exists() or (tmp / "x").exists()
        outcomes.append(Outcome(kind, entry, "error",
                                "WROTE outside storage" if escaped else _error_of(code, err), err))
    _write(tmp / "results.txt", b"the user's file")
    code, err = _cli(["run", "--data", str(shards), f"cluster.storage_path={tmp / 'results.txt'}"])
    outcomes.append(Outcome("cluster.storage_path naming a file", entry, "error",
                            _error_of(code, err), err))
    return outcomes + _exit_status_cases(tmp)


def _exit_status_cases(tmp: Path) -> list[Outcome]:
    """run's exit status, the search stubbed (the real searches: tests/test_exit_codes.py):
    every trial failed -> 1; SIGTERM to the driver -> Tune's SIGINT path, then 143."""
    import pandas as pd

    import search.report as report
    import search.study as study

    entry = "run (exit status; search stubbed, real in tests/test_exit_codes.py)"
    folder = tmp / "stubbed"
    _write(folder / "trial_a" / "error.txt", b"Traceback ...")

    def outcome(status: str, interrupted: bool = False) -> Any:
        trials = pd.DataFrame({"trial_id": ["a"], "status": [status], "checkpoint": [""],
                               "error": ["RuntimeError: boom"]})
        return type("Outcome", (), {"experiment_dir": folder, "trials": trials, "remote": "",
                                    "interrupted": interrupted, "summary": lambda self: ""})()

    def sigterm(cfg: Any, **_: Any) -> Any:
        seen: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))  # as Tune's
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(500):
                if seen:
                    break
                __import__("time").sleep(0.01)
        finally:
            signal.signal(signal.SIGINT, previous)
        return outcome("INTERRUPTED", interrupted=bool(seen))

    saved = study.run_search, report.write_report
    report.write_report = lambda d: Path(d) / "report.html"
    outcomes = []
    try:
        for kind, stub, expect in (
                ("search where every trial failed", lambda cfg, **_: outcome("ERROR"), "exit 1"),
                ("SIGTERM to the search's driver", sigterm, "exit 143")):
            study.run_search = stub
            code, err = _cli(["run", "search.name=stubbed", f"cluster.storage_path={tmp}"])
            outcomes.append(Outcome(kind, entry, expect, f"exit {code}", err.splitlines()[-1]
                                    if err else ""))
    finally:
        study.run_search, report.write_report = saved
    return outcomes


# ----------------------------------------------------------------- model folders
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_model_folder(folder: Path) -> Path:
    """A tiny exported-model folder (custom CNN at 32 px): config.json + model.safetensors."""
    from safetensors.torch import save_file

    from search.config import ModelConfig
    from search.filenames import CONFIG, WEIGHTS
    from search.model.folder import EXPORT_FORMAT
    from search.model.registry import create_model, layer_kwargs

    layers = layer_kwargs(ModelConfig(conv_blocks=1, base_width=4, dense_units=8))
    model = create_model("custom_cnn", input_size=SIZE, **layers)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps({
        "format": EXPORT_FORMAT, "arch": "custom_cnn", "layers": layers,
        "input": {"input_size": SIZE, "mean": MEAN, "std": STD}, "threshold": 0.5,
        "threshold_rule": "corpus", "training_data": {"image_size": SIZE, "name": "corpus"}}))
    return folder


def _predict_files(tmp: Path, model: Path) -> list[Outcome]:
    """The file corpus through ``predict MODEL 'DIR/**' --out scores.csv``."""
    folder = tmp / "predict_in"
    _good(folder, 2, 21)
    _place_corpus(folder)
    out = tmp / "scores.csv"
    code, err = _cli(["predict", str(model), f"{folder}/**", "--out", str(out), "--quiet"])
    if code != 0 or not out.is_file():
        return [Outcome(kind, "predict", expect, f"run failed ({code})", err)
                for kind, _, _, _, expect in FILES]
    with out.open(newline="", encoding="utf-8") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    outcomes = []
    for kind, name, _, _, expect in FILES:
        row = rows.get(_shown(name))
        got, message = ("not listed", "") if row is None else (
            ("skipped", row["error"]) if row["error"] else ("scored", ""))
        outcomes.append(Outcome(kind, "predict", expect, got, message))
    return outcomes


def _model_cases(tmp: Path, good: Path) -> list[Outcome]:
    """Broken model folders: one clear error each, naming the file."""
    from search.filenames import CONFIG, ONNX, WEIGHTS

    image = tmp / "one.jpg"
    _write(image, _encode(_rgb(30), "JPEG"))
    outcomes = []

    def broken(kind: str, harm: Callable[[Path], None], *flags: str) -> None:
        folder = tmp / "models" / kind.replace(" ", "_").replace("/", "_")
        shutil.copytree(good, folder)
        harm(folder)
        code, err = _cli(["predict", str(folder), str(image), "--quiet", *flags])
        outcomes.append(Outcome(kind, "predict, evaluate (model folder)", "error",
                                _error_of(code, err), err))

    def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
        def harm(folder: Path) -> None:
            meta = json.loads((folder / CONFIG).read_text())
            change(meta)
            (folder / CONFIG).write_text(json.dumps(meta))
        return harm

    def cut(name: str) -> Callable[[Path], None]:
        return lambda f: (f / name).write_bytes((f / name).read_bytes()[: (f / name).stat().st_size // 2])

    broken("truncated model.safetensors", cut(WEIGHTS))
    broken("corrupt model.onnx", lambda f: (f / ONNX).write_bytes(b"\x08\x07garbage"), "--backend", "onnx")
    broken("config.json not JSON", cut(CONFIG))
    broken("config.json without its input section", edit(lambda m: m.pop("input")))
    broken("config.json layers not matching the weights", edit(lambda m: m["layers"].update(base_width=8)))
    broken("mean with one value", edit(lambda m: m["input"].update(mean=[0.5])))
    broken("non-numeric threshold", edit(lambda m: m.update(threshold="high")))
    broken("missing model.safetensors", lambda f: (f / WEIGHTS).unlink())
    broken("config.json input_size 100000 (2.5 TB a batch)",
           edit(lambda m: m["input"].update(input_size=100_000)))
    folder = tmp / "all_broken"
    _write(folder / "a.jpg", b"")
    _write(folder / "b.jpg", b"text")
    code, err = _cli(["predict", str(good), str(folder), "--quiet"])
    outcomes.append(Outcome("no input could be scored", "predict", "exit 1",
                            f"exit {code}" if code == 1 else str(code), err))
    return outcomes


def _export_cases(tmp: Path) -> list[Outcome]:
    """A results folder whose tables are damaged: export names the file."""
    import pandas as pd

    from search.config import ExperimentConfig
    from search.filenames import EXPERIMENT, TRIALS_PARQUET

    outcomes = []
    results = tmp / "results_no_status"
    results.mkdir()
    (results / EXPERIMENT).write_text(json.dumps(ExperimentConfig().to_dict()))
    pd.DataFrame({"trial_id": ["a"], "checkpoint": [""]}).to_parquet(results / TRIALS_PARQUET)
    code, err = _cli(["export", str(results)])
    outcomes.append(Outcome("trials.parquet without status", "export", "error", _error_of(code, err), err))
    results = tmp / "results_bad_experiment"
    results.mkdir()
    (results / EXPERIMENT).write_text('{"search": {"name": ')
    code, err = _cli(["export", str(results)])
    outcomes.append(Outcome("truncated experiment.json", "export", "error", _error_of(code, err), err))
    return outcomes


def _output_cases(tmp: Path, model: Path) -> list[Outcome]:
    """Where predict writes, and what a results folder copied without its trials exports:
    refused before any work, never a user's file lost or another folder's weights read."""
    import pandas as pd

    from search.config import ExperimentConfig
    from search.filenames import EXPERIMENT, TRIALS_PARQUET

    image = tmp / "out_one.jpg"
    _write(image, _encode(_rgb(31), "JPEG"))
    outcomes = []
    for kind, out in (("predict --out naming a folder", tmp),
                      ("predict --out under /proc", Path("/proc/scores.csv")),
                      ("predict --out name over 255 bytes", tmp / ("x" * 300 + ".csv"))):
        code, err = _cli(["predict", str(model), str(image), "--out", str(out), "--quiet"])
        outcomes.append(Outcome(kind, "predict", "error", _error_of(code, err), err))
    formula = tmp / "formula"
    _write(formula / "=HYPERLINK(1).jpg", _encode(_rgb(32), "JPEG"))
    out = tmp / "formula.csv"
    with contextlib.chdir(formula):  # as a user names it: a relative path is the cell
        code, err = _cli(["predict", str(model), "=HYPERLINK(1).jpg", "--out", str(out),
                          "--quiet"])
    with out.open(newline="", encoding="utf-8") as fh:
        cell = next(csv.DictReader(fh))["path"] if code == 0 else ""
    outcomes.append(Outcome("image named like a spreadsheet formula (=...)", "predict --out CSV",
                            "quoted", "quoted" if cell.startswith("'") else f"as is ({code})",
                            f"written as {cell!r}" if cell else err))
    results = tmp / "results_copied_without_trials"
    results.mkdir()
    (results / EXPERIMENT).write_text(json.dumps(ExperimentConfig().to_dict()))
    pd.DataFrame({"trial_id": ["a"], "status": ["COMPLETED"], "arch": ["custom_cnn"],
                  "best_val_auc": [0.9], "checkpoint": ["trial_a/checkpoint_000001"]}
                 ).to_parquet(results / TRIALS_PARQUET)
    code, err = _cli(["export", str(results)])
    outcomes.append(Outcome("results folder copied without its trial folders", "export",
                            "error", _error_of(code, err), err))
    return outcomes


# ----------------------------------------------------------------- third round (issue 28)
def _argparse_error(argv: list[str]) -> tuple[str, str]:
    """("error", stderr) when argparse refuses ``argv`` with exit 2, else what happened."""
    from search.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(argv)
    except SystemExit as done:
        return ("error" if done.code == 2 else f"exit {done.code}"), err.getvalue().splitlines()[-1]
    return "no error", err.getvalue()


def _without(shards: Path, split: str) -> Path:
    """A copy of prepared ``shards`` whose manifest lists no image in ``split``."""
    out = shutil.copytree(shards, shards.parent / f"{shards.name}_no_{split}")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["split"] != split]
    manifest["counts"][split] = {"REAL": 0, "FAKE": 0}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _third_round_cases(tmp: Path, model: Path) -> list[Outcome]:
    """Issue 28: train's own run name, --resume with changed settings, splits that round to
    no image, --config naming a folder, a file name starting with '-'."""
    from search.config import load_config

    outcomes = []
    storage = tmp / "S" / "deep" / "er"
    code, err = _cli(["train", "--data", str(tmp / "folders_out"), "model.arch=../../../../escaped",
                      f"cluster.storage_path={storage}"])
    escaped = (tmp / "S").exists()
    outcomes.append(Outcome("train model.arch=../../../../escaped (its run name)",
                            "train (before Ray)", "error",
                            "WROTE outside storage" if escaped else _error_of(code, err), err))
    saved = load_config(None, ["search.name=resumed", f"cluster.storage_path={tmp}"])
    _write(tmp / "resumed" / "experiment.json", json.dumps(saved.to_dict()).encode())
    code, err = _cli(["run", "search.name=resumed", f"cluster.storage_path={tmp}",
                      "optim.epochs=5", "--num-samples", "5", "--resume"])
    outcomes.append(Outcome("run --resume with a changed config and --num-samples",
                            "run --resume (before Ray)", "error", _error_of(code, err), err))
    code, err = _cli(["run", "--config", str(tmp)])
    outcomes.append(Outcome("--config naming a folder", "train, run (config file, before Ray)",
                            "error", _error_of(code, err), err))
    src = tmp / "forty"
    _good(src / "real", 20, 50)
    _good(src / "fake", 20, 60)
    code, err = _cli(["prepare", "--layout", "folders", "--source", str(src), "--out",
                      str(tmp / "forty_out"), "--splits", "0.98,0.01,0.01", "--quiet"])
    outcomes.append(Outcome("--splits 0.98,0.01,0.01 on 40 images (rounds val and test to 0)",
                            "prepare (options)", "error", _error_of(code, err), err))
    no_test = _without(tmp / "folders_out", "test")
    for entry, argv in (("run (before Ray)", ["run", "--data", str(no_test),
                                              f"cluster.storage_path={tmp}"]),
                        ("evaluate", ["evaluate", str(model), "--data", str(no_test)])):
        code, err = _cli(argv)
        outcomes.append(Outcome("prepared shards with no image in the test split", entry,
                                "error", _error_of(code, err), err))
    outcomes.append(Outcome("file name starting with '-' (predict MODEL -rf.jpg)", "predict",
                            "error", *_argparse_error(["predict", str(model), "-rf.jpg"])))
    return outcomes


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` as a read-only mount (EROFS) for every file made in it through tempfile
    (the corpus may run as root, whom permission bits do not stop)."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(30, os.strerror(30))
        return real(*args, dir=dir, **kwargs)

    tempfile.mkstemp = mkstemp
    try:
        yield
    finally:
        tempfile.mkstemp = real


def _third_round_writes(tmp: Path, model: Path) -> list[Outcome]:
    """Issue 28: names at the file system's limit, read-only results folders, and a
    report over a user's own PNG in the report folder."""
    import pandas as pd

    from search.config import ExperimentConfig
    from search.filenames import EXPERIMENT, TRIALS_PARQUET

    image = tmp / "out_one.jpg"
    out = tmp / ("p" * 246 + ".csv")  # 250 bytes: its temporary name must fit too
    code, err = _cli(["predict", str(model), str(image), "--out", str(out), "--quiet"])
    outcomes = [Outcome("predict --out name of 250 bytes", "predict", "scored",
                        "scored" if code == 0 and out.is_file() else _error_of(code, err), err)]
    results = tmp / "results_read_only"
    _write(results / EXPERIMENT, json.dumps(ExperimentConfig().to_dict()).encode())
    pd.DataFrame({"trial_id": ["a"], "status": ["COMPLETED"], "arch": ["custom_cnn"],
                  "best_val_auc": [0.9], "checkpoint": [""]}).to_parquet(results / TRIALS_PARQUET)
    code, err = _cli(["export", str(results), "--out", str(tmp / ("e" * 256))])
    outcomes.append(Outcome("export --out name of 256 bytes", "export", "error",
                            _error_of(code, err), err))
    _write(results / "report" / "my_roc_for_the_paper.png", b"the user's figure")
    code, err = _cli(["report", str(results)])
    kept = (results / "report" / "my_roc_for_the_paper.png").read_bytes() == b"the user's figure"
    outcomes.append(Outcome("report over a user's PNG in the report folder", "report", "kept",
                            ("kept" if code == 0 else _error_of(code, err)) if kept
                            else "DELETED the user's file", ""))
    with _read_only(results):
        for kind, argv in (("report on a read-only results folder", ["report", str(results)]),
                           ("export on a read-only results folder", ["export", str(results)])):
            code, err = _cli(argv)
            outcomes.append(Outcome(kind, argv[0], "error", _error_of(code, err), err))
    return outcomes


# ----------------------------------------------------------------- all of it
def run_corpus(tmp: Path) -> list[Outcome]:
    """Build the corpus under ``tmp`` and feed every kind to its entry points."""
    tmp.mkdir(parents=True, exist_ok=True)
    outcomes, shards = _prepare_layouts(tmp)
    outcomes += _metadata_cases(tmp)
    outcomes += _duplicate_cases(tmp)
    outcomes += _option_cases(tmp)
    outcomes += _out_cases(tmp, tmp / "folders")
    outcomes += _shard_cases(tmp, shards)
    outcomes += _config_cases()
    outcomes += _config_file_cases(tmp)
    outcomes += _run_cases(tmp, shards)
    model = make_model_folder(tmp / "model")
    outcomes += _predict_files(tmp, model)
    outcomes += _model_cases(tmp, model)
    outcomes += _export_cases(tmp)
    outcomes += _output_cases(tmp, model)
    outcomes += _third_round_cases(tmp, model)
    outcomes += _third_round_writes(tmp, model)
    return [Outcome(o.kind, o.entry, o.expect, o.got, _clean(o.message, tmp)) for o in outcomes]


def _clean(message: str, tmp: Path) -> str:
    """One line, temporary paths as <tmp>, short enough for a table cell."""
    text = " ".join(message.replace(str(tmp), "<tmp>").split())
    text = text.replace("|", "\\|")
    return text if len(text) <= 220 else text[:217] + "..."


def render(outcomes: list[Outcome]) -> str:
    """results/robustness.md: one row per (input, entry point)."""
    kinds = len({o.kind for o in outcomes})
    bad = [o for o in outcomes if not o.ok]
    lines = [
        "# Bad input: what each kind gets at each entry point", "",
        "Generated by `python -m bench.robustness` from the corpus that `tests/test_robustness.py` "
        "builds and asserts (a test fails when this file differs from a fresh run). "
        "Outcomes: **error** (one message naming the file or key and the fix, exit status 2, "
        "no traceback), **skipped** (counted and listed with its reason; prepare's manifest, "
        "predict's table), **kept** / **scored** (odd but valid input, converted), "
        "**quoted** (a name a spreadsheet would run, written behind a quote). "
        "`<tmp>` stands for the corpus folder.", "",
        f"{kinds} kinds of input, {len(outcomes)} (input, entry point) pairs, "
        + ("all as expected." if not bad else f"{len(bad)} NOT as expected."), "",
        "| input | entry point | outcome | message |", "|---|---|---|---|",
    ]
    for o in outcomes:
        got = o.got if o.ok else f"**{o.got}** (expected {o.expect})"
        lines.append(f"| {o.kind} | {o.entry} | {got} | {o.message} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the corpus in a temporary folder and write results/robustness.md."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        outcomes = run_corpus(Path(tmp) / "corpus")
    TABLE.write_text(render(outcomes))
    bad = [o for o in outcomes if not o.ok]
    print(f"wrote {TABLE}: {len(outcomes)} rows, {len(bad)} not as expected")
    for o in bad:
        print(f"  {o.kind} @ {o.entry}: got {o.got}, expected {o.expect}: {o.message}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
