"""prepare's options: what decides a prepared set's content, each bound checked up front.

Private: :class:`PrepareOptions` is imported from :mod:`search.data.prepare`. It lives apart
so that checking a user's options is read in one place, away from decoding and writing; every
refusal is a SourceError naming the option, the value and the fix, raised before any file is
read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from search.data.images import MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE
from search.data.layouts import SourceError
from search.data.manifest import MAX_SIZE
from search.paths import default_shards_dir, default_source_dir

__all__ = ["MAX_DEMO_IMAGES", "MAX_WORKERS", "NAMED_LAYOUTS", "SPLIT_WORDS", "PrepareOptions"]

# Bounds of the options (each refusal says why); --size is bounded by MAX_SIZE (the reader's).
MAX_WORKERS = 256  # --workers: processes, each holding a decoded image or more
MAX_DEMO_IMAGES = 1_000_000
# Layouts whose labels (and groups) come from folder and file names, where --class-map and
# --group-regex apply; deepfake_faces (and the demo, painted in that layout) takes both from
# its metadata.csv.
NAMED_LAYOUTS = ("folders", "real_vs_fake")
SPLIT_WORDS = ("train", "validation", "test")


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides the shards' content (saved in the manifest)."""

    layout: str
    source: str = ""  # "" = datasets/<layout>/source
    out: str = ""  # "" = datasets/<layout>/shards
    size: int | None = 224  # square side; None keeps each image's own size
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    shard_mb: float = 32.0
    limit: int | None = None  # total images kept (class proportions preserved)
    max_per_class: int | None = None
    group_regex: str | None = None
    class_map: Mapping[str, str] | None = None
    quality: int = 95  # JPEG quality when an image must be re-encoded
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE  # images with a shorter side are skipped, never upscaled
    max_file_bytes: int = MAX_FILE_BYTES  # larger files are skipped unread
    workers: int = 0  # decode processes; 0 = all cores
    demo_images: int = 2000  # demo layout only
    demo_difficulty: float = 0.5  # demo layout only
    # demo layout only: which images carry a 1-px checkerboard ("none", "fake", "real"), so
    # two demo sources can differ in one artefact (a controlled shift; search/data/demo.py)
    demo_grid: str = "none"

    def resolved(self) -> PrepareOptions:
        """A copy with default paths filled in and every option checked (SourceError naming
        the option, the value and the fix).

        The checks run in a fixed order (splits, numbers, names, the demo's, the limits), so
        of several bad options the same one is always named first.
        """
        self._check_splits()
        self._check_numbers()
        self._check_names()
        if self.layout == "demo":
            self._check_demo()
        for name in ("limit", "max_per_class"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SourceError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"not {getattr(self, name)}")
        total = sum(self.splits)
        return PrepareOptions(**{
            **asdict(self),
            "source": str(Path(self.source or default_source_dir(self.layout)).expanduser()
                          .resolve()),
            "out": str(Path(self.out or default_shards_dir(self.layout)).expanduser().resolve()),
            "splits": tuple(round(f / total, 6) for f in self.splits),
        })

    def _check_splits(self) -> None:
        """Three finite fractions >= 0, with a validation and a test share: a search selects
        on validation and reports its finalists on test. Train may be 0 only for a set that
        is scored, never trained on (``data.extra_sources``)."""
        shown = ",".join(f"{f:g}" if isinstance(f, (int, float)) else repr(f) for f in self.splits)
        fix = "e.g. --splits 0.6,0.2,0.2 (train, validation, test)"
        if len(self.splits) != 3:
            raise SourceError(f"--splits {shown} must be three fractions; {fix}")
        for word, f in zip(SPLIT_WORDS, self.splits, strict=True):
            if (isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f)
                    or f < 0):
                raise SourceError(f"--splits {shown}: the {word} fraction must be a finite number "
                                  f"of 0 or more, not {f}; {fix}")
        empty = [w for w, f in zip(SPLIT_WORDS[1:], self.splits[1:], strict=True) if f == 0]
        if empty:
            raise SourceError(
                f"--splits {shown} leaves the {' and the '.join(empty)} split empty: a search "
                "selects trials and epochs on the validation split and reports its finalists "
                f"on the test split, so both need a share; {fix}")

    def _check_numbers(self) -> None:
        """The numeric bounds: sizes, quality, workers and seed."""
        for name in ("shard_mb", "quality", "max_pixels", "min_side", "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float))
                                               and math.isfinite(value) and value > 0):
                raise SourceError(f"--{name.replace('_', '-')} must be a positive number, "
                                  f"not {value}")
        if not 1 <= self.quality <= 100:
            raise SourceError(f"--quality {self.quality} is not a JPEG quality: give 1 to 100 "
                              "(95 is the default; it is used as given, never clamped)")
        if self.size is not None and self.size < self.min_side:
            raise SourceError(f"--size {self.size} is below the minimum image side "
                              f"{self.min_side} px; use a larger --size (224 is the study's)")
        if self.size is not None and self.size > MAX_SIZE:
            raise SourceError(
                f"--size {self.size} is above the maximum of {MAX_SIZE} px: every image is stored "
                f"and decoded at --size x --size ({self.size}x{self.size} RGB is "
                f"{self.size * self.size * 3 / 2**30:.1f} GiB per image); use 224 (the study's) "
                "to 512, or --size 0 to keep each image's own size")
        if not (isinstance(self.workers, int) and 0 <= self.workers <= MAX_WORKERS):
            raise SourceError(f"--workers {self.workers} must be 0 (one decode process per "
                              f"core) or a number of processes from 1 to {MAX_WORKERS}")
        if self.seed < 0:
            raise SourceError(f"--seed {self.seed} must be 0 or more")

    def _check_names(self) -> None:
        """--group-regex and --class-map: valid, and given only where names carry labels."""
        if self.group_regex is not None:
            try:
                re.compile(self.group_regex)
            except re.error as err:
                raise SourceError(f"--group-regex {self.group_regex!r} is not a valid regular "
                                  f"expression ({err}): e.g. '^([^/]+)/' groups by the first "
                                  "folder, '(\\w+?)_' by the name before '_'") from None
        if self.class_map:
            for folder, label in self.class_map.items():
                if not str(folder).strip() or str(label).strip().lower() not in ("real", "fake"):
                    raise SourceError(f"--class-map entry {folder}={label} must map a folder name "
                                      "to real or fake, e.g. original=real,manipulated=fake")
        if self.layout in ("deepfake_faces", "demo"):
            for flag, value in (("--class-map", self.class_map),
                                ("--group-regex", self.group_regex)):
                if value:
                    raise SourceError(
                        f"{flag} does not apply to --layout {self.layout}: its labels and "
                        "identity groups come from metadata.csv (label, original), not from "
                        f"folder or file names; drop {flag} (it applies to "
                        f"{' and '.join(NAMED_LAYOUTS)})")

    def _check_demo(self) -> None:
        """The demo layout's own options: its image count, difficulty and grid style."""
        if not 1 <= self.demo_images <= MAX_DEMO_IMAGES:
            raise SourceError(f"--demo-images {self.demo_images} must be 1 to {MAX_DEMO_IMAGES}")
        if not (math.isfinite(self.demo_difficulty) and 0 <= self.demo_difficulty <= 1):
            raise SourceError(f"--demo-difficulty {self.demo_difficulty} must be 0 (easy) "
                              "to 1 (hard)")
        from search.data.demo_painter import check_grid  # the painter owns its styles

        try:
            check_grid(self.demo_grid, "--demo-grid")
        except ValueError as err:
            raise SourceError(str(err)) from None
