"""Source readers: turn a downloaded image set into records (file, label, identity group).

Each layout knows one on-disk convention. A reader never decodes images (``prepare`` does
that in parallel); it reports every file or metadata row it cannot use in ``skipped`` with a
reason, so nothing is dropped silently.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from search.data.images import is_utf8_name, safe_name

REAL, FAKE = 0, 1
# metadata.csv: 937 KB for 24,000 rows of deepfake_faces (so about 4 MB for its 95,634), short fields
MAX_METADATA_BYTES = 256 * 1024 * 1024
LABEL_NAMES = {REAL: "REAL", FAKE: "FAKE"}
SPLITS = ("train", "val", "test")


class SourceError(ValueError):
    """The source cannot be read as the layout asked for; the message names the fix."""


@dataclass(frozen=True)
class Record:
    """One image file of a source, before decoding."""

    path: Path  # absolute
    id: str  # path relative to the source root (unique)
    label: int  # 1 = FAKE, 0 = REAL
    group: str  # identity group: records of one group never straddle splits
    split: str | None = None  # set when the source has its own split


@dataclass
class Scan:
    """What a layout reader found: usable records and (path, reason) for everything else."""

    records: list[Record] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _files(root: Path, scan: Scan, report_root: Path) -> list[Path]:
    """Every regular, non-hidden file below root, in a stable order.

    Symlinked folders are not followed (a link loop cannot make the walk endless); anything
    else that is not an image file candidate is listed in ``scan.skipped`` with its reason
    (paths relative to ``report_root``): FIFOs, devices and sockets (reading a FIFO would
    block forever), broken symlinks, links to folders and names that are not UTF-8 (they
    cannot be stored as ids; renaming them fixes it). Hidden files are left out on purpose.
    """
    found: list[Path] = []

    def skip(path: Path, reason: str) -> None:
        scan.skipped.append((safe_name(path.relative_to(report_root).as_posix()), reason))

    for top, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if os.path.islink(os.path.join(top, d)):
                skip(Path(top, d), "symlink to a folder: not followed (copy the folder in, or "
                                   "point --source at it)")
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(top, name)
            reason = _not_a_file(path)
            if reason is None and not is_utf8_name(path.relative_to(root).as_posix()):
                reason = "file name is not valid UTF-8: rename the file (or its folder)"
            if reason:
                skip(path, reason)
            else:
                found.append(path)
    return sorted(found)


#: The reason given for a link that leads, through other links, back to itself (ELOOP).
SYMLINK_LOOP = "symlink loop: the link leads back to itself through other links (no file)"


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file (following a symlink to its target), else None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken symlink: its target does not exist"
    except OSError as err:
        return SYMLINK_LOOP if err.errno == errno.ELOOP else f"unreadable file: {err.strerror or err}"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a plain file")
    return f"not a regular file ({kind}): only image files are read"


def _label_of(name: str, class_map: Mapping[str, str] | None) -> int | None:
    key = name.strip().lower()
    if class_map:
        mapped = {k.strip().lower(): v.strip().lower() for k, v in class_map.items()}
        key = mapped.get(key, key)
    return {"real": REAL, "fake": FAKE}.get(key)


def _grouper(group_regex: str | None) -> Callable[[str], str]:
    """Group from a regex over the relative path (first capture group), else the file itself."""
    if not group_regex:
        return lambda rel: rel
    pattern = re.compile(group_regex)

    def group(rel: str) -> str:
        m = pattern.search(rel)
        if not m:
            return rel
        return m.group(1) if m.groups() else m.group(0)

    return group


def _face_files(root: Path, faces: Path, scan: Scan) -> tuple[dict[str, Path], set[str]]:
    """stem -> image under ``faces``, and the stems already reported unusable in ``scan``."""
    files: dict[str, Path] = {}
    found = _files(faces, scan, root)
    # Files already listed as unusable (a FIFO, a broken link...): their rows say nothing new.
    reported = {Path(path).relative_to(faces.name).with_suffix("").as_posix()
                for path, _ in scan.skipped}
    for p in found:  # sorted: the same file wins on every run
        stem = p.relative_to(faces).with_suffix("").as_posix()
        if stem in files:  # x.jpg and x.png: one metadata row cannot tell which it means
            scan.skipped.append((p.relative_to(root).as_posix(),
                                 f"duplicate id: {files[stem].name} has the same name; kept that one"))
            continue
        files[stem] = p
    return files, reported


def scan_deepfake_faces(root: Path, **_: object) -> Scan:
    """Kaggle 'deepfake_faces' (dagnelies): ``metadata.csv`` + ``faces_224/<video>.jpg``.

    A FAKE's group is the REAL video it was made from (``original``), a REAL's is its own
    video, so one person's real and fake faces always land in the same split.
    """
    meta = root / "metadata.csv"
    faces = root / "faces_224"
    if not meta.is_file() or not faces.is_dir():
        raise SourceError(
            f"{root} is not in the deepfake_faces layout: expected {meta.name} and {faces.name}/ "
            "inside it (download the Kaggle set 'dagnelies/deepfake-faces' and unzip it there), "
            "or pick another --layout (real_vs_fake, folders)"
        )
    scan = Scan()
    files, reported = _face_files(root, faces, scan)
    seen: set[str] = set()
    listed: set[str] = set()  # stems named by any row, usable or not (reported via the row)
    with io.StringIO(_read_csv_text(meta), newline="") as fh:
        reader = csv.DictReader(fh)
        for line, row in _metadata_rows(meta, reader):
            stem = Path((row.get("videoname") or "").strip()).stem
            listed.add(stem)
            where = f"metadata.csv:{line}"
            if not stem:
                scan.skipped.append((where, "metadata row without a videoname"))
                continue
            label = _label_of(row.get("label") or "", None)
            if label is None:
                scan.skipped.append((f"{where} ({stem})", f"unknown label value {row.get('label')!r}"))
                continue
            if stem in seen:
                scan.skipped.append((f"{where} ({stem})", "duplicate id: videoname listed twice"))
                continue
            path = files.get(stem)
            if path is None and stem in reported:
                continue
            if path is None:
                scan.skipped.append((f"faces_224/{stem}.jpg", "missing file: metadata row has no image"))
                continue
            seen.add(stem)
            original = Path((row.get("original") or "").strip()).stem
            group = original if label == FAKE and original else stem
            scan.records.append(Record(path, path.relative_to(root).as_posix(), label, group))
    for stem in sorted(set(files) - listed):
        scan.skipped.append((files[stem].relative_to(root).as_posix(), "no metadata row for this file"))
    return scan


def _metadata_rows(meta: Path, reader: csv.DictReader) -> Iterator[tuple[int, dict]]:
    """(line, row) of a deepfake_faces metadata.csv; a missing column, an oversized field or
    broken CSV is a SourceError naming the file and the line, never the csv module's own."""
    fix = ("the deepfake_faces metadata.csv has short fields (videoname, label, original): "
           "is it that file? Download it again if it is damaged")

    def broken(err: csv.Error) -> SourceError:
        # line_num counts the lines read before the one that failed
        return SourceError(f"{meta}:{reader.line_num + 1} cannot be read as CSV ({err}); {fix}")

    try:
        fields = reader.fieldnames
    except csv.Error as err:
        raise broken(err) from None
    missing_cols = {"videoname", "label"} - set(fields or ())
    if missing_cols:
        raise SourceError(f"{meta} lacks the column(s) {sorted(missing_cols)}; "
                          "is it the deepfake_faces metadata.csv?")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # the csv module's own limit: 131,072 characters a field
            if "field larger than field limit" in str(err):
                raise SourceError(f"{meta}:{reader.line_num + 1} has a field over "
                                  f"{csv.field_size_limit()} characters; {fix}") from None
            raise broken(err) from None
        yield reader.line_num, row


def _read_csv_text(path: Path) -> str:
    """A CSV file's text: UTF-8 with or without a byte-order mark, else a clear error."""
    size = path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise SourceError(f"{path} is {size} bytes, over the limit of {MAX_METADATA_BYTES}: the "
                          "deepfake_faces metadata.csv is a few MB; is it that file?")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SourceError(
            f"{path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}; a Latin-1 "
            f"or Windows export?): re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8 "
            f"{path.name} > utf8.csv && mv utf8.csv {path.name}") from None


_SPLIT_NAMES = {"train": "train", "training": "train", "validation": "val", "val": "val",
                "valid": "val", "test": "test", "testing": "test"}


def scan_real_vs_fake(root: Path, *, group_regex: str | None = None,
                      class_map: Mapping[str, str] | None = None, **_: object) -> Scan:
    """Kaggle 'deepfake and real images' (manjilkarki): ``Dataset/{Train,Validation,Test}/{Real,Fake}/``.

    The set's own split is kept. ``root`` may be the ``Dataset`` folder or its parent.
    """
    if (root / "Dataset").is_dir():
        root = root / "Dataset"
    split_dirs = {_SPLIT_NAMES[d.name.lower()]: d for d in sorted(root.iterdir())
                  if d.is_dir() and d.name.lower() in _SPLIT_NAMES} if root.is_dir() else {}
    if not split_dirs:
        raise SourceError(
            f"{root} is not in the real_vs_fake layout: expected Train/, Validation/ and Test/ "
            "folders (each with Real/ and Fake/) in it or in its Dataset/ folder; for a plain "
            "REAL/FAKE tree use --layout folders"
        )
    group_of = _grouper(group_regex)
    scan = Scan()
    for split, split_dir in split_dirs.items():
        sub = _scan_class_dirs(root, split_dir, group_of, class_map, split=split)
        scan.records += sub.records
        scan.skipped += sub.skipped
    return scan


def _scan_class_dirs(root: Path, base: Path, group_of: Callable[[str], str],
                     class_map: Mapping[str, str] | None, split: str | None = None) -> Scan:
    scan = Scan()
    for path in _files(base, scan, root):
        rel = path.relative_to(root).as_posix()
        parts = path.relative_to(base).parts
        if len(parts) < 2:
            scan.skipped.append((rel, "file outside a class folder (expected <class>/<file>)"))
            continue
        label = _label_of(parts[0], class_map)
        if label is None:
            scan.skipped.append((rel, f"unknown label folder {parts[0]!r} (use real/fake or --class-map)"))
            continue
        scan.records.append(Record(path, rel, label, group_of(rel), split))
    return scan


def scan_folders(root: Path, *, group_regex: str | None = None,
                 class_map: Mapping[str, str] | None = None, **_: object) -> Scan:
    """Any ``ROOT/<class>/...`` tree; classes named real/fake in any case, or mapped."""
    if not root.is_dir():
        raise SourceError(f"source folder {root} does not exist")
    return _scan_class_dirs(root, root, _grouper(group_regex), class_map)


LAYOUTS: dict[str, Callable[..., Scan]] = {
    "deepfake_faces": scan_deepfake_faces,
    "real_vs_fake": scan_real_vs_fake,
    "folders": scan_folders,
}


def scan_source(layout: str, root: str | Path, **options: object) -> Scan:
    """Read ``root`` with the named layout."""
    if layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r}; choose one of "
                          f"{', '.join([*LAYOUTS, 'demo'])}")
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise SourceError(f"source {root} does not exist: download the data set there first "
                          "(see datasets/README.md) or pass --source")
    return LAYOUTS[layout](root, **options)


__all__ = ["FAKE", "LABEL_NAMES", "LAYOUTS", "REAL", "SPLITS", "Record", "Scan",
           "SourceError", "scan_source"]
