"""A prepared set, resolved once: where its shards are and what its manifest says.

The driver opens every set a search uses once (:class:`PreparedSet`) and hands the values
to every trial, so no trial reads a manifest again: with shards at a URI each read is a
remote one, and a search runs hundreds of trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.data.manifest import load_manifest


@dataclass(frozen=True)
class PreparedSet:
    """A shard folder (absolute path or URI, no trailing slash) and its manifest."""

    location: str
    manifest: Mapping[str, Any] = field(repr=False)

    @classmethod
    def open(cls, location: str | Path) -> PreparedSet:
        """Read the manifest of ``location`` (a clear SourceError when there is none)."""
        from search import storage

        where = str(storage.absolute(location)).rstrip("/")
        return cls(where, load_manifest(where))

    def counts(self, split: str) -> dict[str, int]:
        """``{"REAL": n, "FAKE": m}`` of one split (empty when the split is absent)."""
        return dict(self.manifest.get("counts", {}).get(split, {}))

    @property
    def prepared_size(self) -> int | None:
        """The side, in pixels, its images were resized to by ``prepare`` (None if unknown)."""
        size = self.manifest.get("options", {}).get("size")
        return int(size) if isinstance(size, int | float) else None

    def rows(self, split: str) -> int:
        """How many images one split holds."""
        return sum(self.counts(split).values())

    def files(self, split: str) -> list[str]:
        """Absolute paths (or URIs) of one split's shards, from the manifest (never a glob).

        A URI (``s3://``, ``gs://``, ``file://``) is kept as one: pyarrow reads it in each
        task, on whichever node the task runs, so a multi-node cluster needs no shared file
        system.
        """
        from search import storage

        files = [storage.join(self.location, s["file"]) for s in self.manifest["shards"]
                 if s["split"] == split]
        if not files:
            raise FileNotFoundError(self.empty_split(split))
        return files

    def empty_split(self, split: str) -> str:
        """Why ``split`` cannot be read, and the fix: its manifest lists no image there (the
        fractions may have been non-zero and still have rounded it to no image)."""
        return (f"{self.location} has no image in its '{split}' split (its manifest counts "
                f"{self.rows(split)}; prepared with --splits "
                f"{self.manifest.get('options', {}).get('splits')}): prepare it again with a "
                "larger share for that split (e.g. --splits 0.6,0.2,0.2) or more images")

    def check_splits(self, splits: Sequence[str]) -> None:
        """Each of ``splits`` holds images, or a FileNotFoundError naming the first that
        holds none (before a cluster starts, not inside a trial)."""
        for split in splits:
            if not self.rows(split):
                raise FileNotFoundError(self.empty_split(split))

    @property
    def name(self) -> str:
        """A short readable name (:func:`dataset_name`)."""
        return _short_name(self.location, self.manifest.get("layout"))


def as_set(shards: str | Path | PreparedSet) -> PreparedSet:
    """``shards`` as a :class:`PreparedSet` (reading its manifest when it is a location)."""
    return shards if isinstance(shards, PreparedSet) else PreparedSet.open(shards)


def _short_name(location: str, layout: str | None) -> str:
    text = str(location).rstrip("/")
    path = Path(text.split("://", 1)[1]) if "://" in text else Path(text).expanduser().resolve()
    name = path.parent.name if path.name in ("shards", "") else path.name
    return f"{name} ({layout})" if layout and layout not in name else name


def dataset_name(shards: str | Path | PreparedSet) -> str:
    """A short readable name for a prepared set: its folder (or the parent of ``shards/``),
    with its layout when the folder does not say it."""
    if isinstance(shards, PreparedSet):
        return shards.name
    text = str(shards).rstrip("/")
    try:
        layout = load_manifest(text if "://" in text else Path(text).expanduser().resolve()
                               ).get("layout")
    except Exception:  # a name is a label, not a check: missing manifests are fine here
        layout = None
    return _short_name(text, layout)


__all__ = ["PreparedSet", "as_set", "dataset_name"]
