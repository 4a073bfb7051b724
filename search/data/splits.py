"""Which images a prepared set keeps and which split each one lands in.

Both are pure functions of the records, the options and the seed (no file is read), so the
same source prepared twice gives the same subset and the same splits; prepare checks the
split sizes once before decoding (an empty split costs no decoding) and again after.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from search.data._options import SPLIT_WORDS
from search.data.layouts import SPLITS, Record, SourceError

if TYPE_CHECKING:
    from search.data._options import PrepareOptions

__all__ = ["assign_splits", "check_split_sizes", "select"]


def _stable_key(seed: int, text: str) -> str:
    """A seeded order that does not depend on the scan's order or on Python's hash seed."""
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def select(records: Sequence[Record], limit: int | None, max_per_class: int | None,
           seed: int) -> list[Record]:
    """A seeded subset: at most ``max_per_class`` per label and ``limit`` in all (proportional)."""
    by_label: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: _stable_key(seed, r.id)):
        by_label.setdefault(r.label, []).append(r)
    quota = {lab: len(rs) for lab, rs in by_label.items()}
    if max_per_class is not None:
        quota = {lab: min(n, max_per_class) for lab, n in quota.items()}
    if limit is not None and sum(quota.values()) > limit:
        total = sum(quota.values())
        # Proportional, at least one per class, and never more than ``limit`` in all:
        # rounding may overshoot by one, taken back from the largest class.
        quota = {lab: max(1, round(limit * n / total)) for lab, n in quota.items()}
        while sum(quota.values()) > max(limit, len(quota)):
            largest = max(quota, key=lambda lab: (quota[lab], lab))
            quota[largest] -= 1
    kept = [r for lab, rs in by_label.items() for r in rs[: quota[lab]]]
    return sorted(kept, key=lambda r: r.id)


def assign_splits(records: Sequence[Record], fractions: Sequence[float], seed: int) -> list[str]:
    """Stratified, grouped split: whole groups, each placed where it keeps every label closest
    to the target fractions so far.

    Groups are visited largest first (ties in a seeded random order) so the small ones can
    fill the gaps at the end; the result depends only on records, fractions and seed.
    """
    if all(r.split for r in records):
        return [r.split for r in records]  # the source's own split (real_vs_fake)
    totals = Counter(r.label for r in records)
    groups: dict[str, Counter] = {}
    for r in records:
        groups.setdefault(r.group, Counter())[r.label] += 1
    order = sorted(groups, key=lambda g: (-sum(groups[g].values()), _stable_key(seed, g)))
    candidates = [s for s in range(len(SPLITS)) if fractions[s] > 0]
    filled = [Counter() for _ in SPLITS]
    placed: Counter = Counter()
    where: dict[str, int] = {}
    for g in order:
        counts = groups[g]
        placed.update(counts)

        def cost(target: int, counts: Counter = counts) -> float:
            # squared distance of each (split, label) share from its fraction of what is placed
            return sum(((filled[s][lab] + (counts[lab] if s == target else 0))
                        - fractions[s] * placed[lab]) ** 2 / max(totals[lab], 1)
                       for s in candidates for lab in placed)

        best = min(candidates, key=cost)
        where[g] = best
        filled[best].update(counts)
    return [SPLITS[where[r.group]] for r in records]


def check_split_sizes(records: Sequence[Record], splits: Sequence[str],
                      opts: PrepareOptions) -> None:
    """Every split with a share holds images, or a SourceError naming the split, its size
    and the fix: fractions that are not zero can still round a split to no image (whole
    identity groups are placed; 0.01 of 40 images is none)."""
    sizes = Counter(splits)
    empty = [word for word, split, f in zip(SPLIT_WORDS, SPLITS, opts.splits, strict=True)
             if f > 0 and sizes[split] == 0]
    if empty:
        shown = ",".join(f"{f:g}" for f in opts.splits)
        groups = len({r.group for r in records})
        raise SourceError(
            f"--splits {shown} on {len(records)} images ({groups} identity groups) leaves the "
            f"{' and the '.join(empty)} split with no image (train {sizes['train']}, validation "
            f"{sizes['val']}, test {sizes['test']}): whole groups are placed, so each split "
            "needs a share of at least one group; give it a larger fraction (e.g. --splits "
            "0.6,0.2,0.2) or prepare more images")
