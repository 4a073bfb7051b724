"""Cross-face part splices: the eyes, nose, mouth or whole face of ANOTHER identity pasted
into a REAL face with a feathered mask, with or without colour matching.

This is how CIPLAB's hand-made fakes were made (Photoshop edits that paste a part of one
person's face onto another's), and what a self-blend (:mod:`search.data.synthetic`) never
shows: a self-blend's two sides are the same person, so what differs across its boundary is
only colour and sharpness, never identity or texture. ``data.synthetic_kind`` picks:

- ``splice``: the donor's part as it is (its own colour and lighting, as a careless edit);
- ``splice_matched``: the donor's part colour-matched to the target inside the mask (per
  channel mean and standard deviation, weighted by the mask: Reinhard's transfer in RGB), as
  a careful edit.

The donor is another REAL image of the same decoded batch of the train split with another
group (identity): donors come from the train split only, like the targets, so nothing of
validation or test leaks in. The stream (:class:`search.data.stream.DecodeBatch`) picks it
with a generator keyed by the row's id, the seed and the epoch, so a seed repeats the same
splices. Crops are face-centred (prepare's layouts), so a part sits at roughly the same place
in every image and no landmark detector is needed; the part's place and size are jittered.
"""

from __future__ import annotations

import numpy as np

from search.data.synthetic import _blur, ellipse_mask, shift_scale

#: The parts a splice pastes, drawn uniformly.
PARTS: tuple[str, ...] = ("eyes", "nose", "mouth", "face")

# Centre (x, y) and half-axes (across, down) of each inner part, as fractions of a
# face-centred crop (measured by eye on deepfake_faces' and CIPLAB's crops).
_PART_ELLIPSES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "eyes": ((0.50, 0.42), (0.30, 0.09)),
    "nose": ((0.50, 0.57), (0.09, 0.13)),
    "mouth": ((0.50, 0.74), (0.17, 0.08)),
}


def part_mask(h: int, w: int, part: str, rng: np.random.Generator) -> np.ndarray:
    """The feathered HxW float32 mask in [0, 1] of one part (``face``: the self-blends'
    deformed face ellipse), its centre moved by up to 3% and its axes scaled 0.85-1.2."""
    if part == "face":
        hard = ellipse_mask(h, w, rng)
    elif part in _PART_ELLIPSES:
        (cx, cy), (ax, ay) = _PART_ELLIPSES[part]
        cx, cy = cx + rng.uniform(-0.03, 0.03), cy + rng.uniform(-0.03, 0.03)
        ax, ay = ax * rng.uniform(0.85, 1.2), ay * rng.uniform(0.85, 1.2)
        y = ((np.arange(h, dtype=np.float32) + 0.5) / h - cy)[:, None] / ay
        x = ((np.arange(w, dtype=np.float32) + 0.5) / w - cx)[None, :] / ax
        hard = x * x + y * y < 1.0
    else:
        raise ValueError(f"splice part {part!r}: choose one of {', '.join(PARTS)}")
    soft = _blur(hard.astype(np.uint8) * 255, rng.uniform(0.02, 0.05) * min(h, w))
    soft = soft.astype(np.float32)
    peak = soft.max()
    return soft / peak if peak > 0 else soft


def colour_match(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``source`` (HxWx3 float32) with each channel's mean and standard deviation inside
    ``mask`` moved to ``target``'s there (weights = the mask)."""
    weight = mask[..., None].astype(np.float32)
    total = float(weight.sum())
    if total <= 0:
        return source
    target = target.astype(np.float32)

    def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = (img * weight).sum(axis=(0, 1)) / total
        var = (((img - mean) ** 2) * weight).sum(axis=(0, 1)) / total
        return mean, np.sqrt(var) + 1e-3

    (mu_s, sd_s), (mu_t, sd_t) = stats(source), stats(target)
    return (source - mu_s) / sd_s * sd_t + mu_t


def part_splice(target: np.ndarray, donor: np.ndarray, rng: np.random.Generator, *,
                match: bool) -> np.ndarray:
    """A fake made of the HxWx3 uint8 REAL ``target`` with a part of ``donor`` (another
    identity, same size) pasted in (a new array); ``match`` colour-matches the part."""
    if donor.shape != target.shape:
        raise ValueError(f"donor {donor.shape} and target {target.shape} differ in shape")
    h, w = target.shape[:2]
    part = PARTS[int(rng.integers(len(PARTS)))]
    moved, inside = shift_scale(np.ascontiguousarray(donor), rng)
    mask = part_mask(h, w, part, rng) * inside
    source = moved.astype(np.float32)
    if match:
        source = colour_match(source, target, mask)
    out = source - target
    out *= mask[..., None]
    out += target
    return np.clip(np.rint(out, out=out), 0, 255).astype(np.uint8)


def pick_donor(row: int, groups: np.ndarray, real: np.ndarray,
               rng: np.random.Generator) -> int | None:
    """Index of a REAL row of another group than ``row``'s (None when the batch has none)."""
    candidates = np.flatnonzero(real & (groups != groups[row]))
    if not len(candidates):
        return None
    return int(candidates[int(rng.integers(len(candidates)))])


__all__ = ["PARTS", "colour_match", "part_mask", "part_splice", "pick_donor"]
