"""Cross-face part splices (search/data/splice.py) and their place in the train stream:
a part of ANOTHER identity's REAL image, reproducible from the seed, train split only."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from search.config import DataConfig
from search.data.splice import PARTS, colour_match, part_mask, part_splice, pick_donor
from search.data.stream import DecodeBatch, train_decoder
from search.data.synthetic import BlendSpec

SIZE = 48


def _noise(level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("part", PARTS)
def test_each_part_mask_is_feathered_and_inside_the_face(part: str) -> None:
    mask = part_mask(SIZE, SIZE, part, np.random.default_rng(0))
    assert mask.dtype == np.float32 and mask.max() == pytest.approx(1.0)
    assert 0 < (mask > 0.5).mean() < 0.7  # a part, not the whole crop
    assert ((mask > 0.02) & (mask < 0.98)).any()  # a soft edge, not a cut
    assert mask[0, 0] < 0.05 and mask[-1, -1] < 0.05  # corners stay the target's


def test_a_splice_pastes_the_donor_and_colour_matching_pulls_it_to_the_target() -> None:
    target, donor = _noise(70, 1), _noise(190, 2)
    raw = part_splice(target, donor, np.random.default_rng(3), match=False)
    matched = part_splice(target, donor, np.random.default_rng(3), match=True)
    changed = np.abs(raw.astype(int) - target).max(axis=2) > 60
    assert changed.any() and raw[changed].mean() > 150  # the donor's bright part, as it was
    assert abs(float(matched[changed].mean()) - 70) < 25  # matched to the target's colour
    assert not np.array_equal(matched, target)  # still the donor's texture
    weights = np.ones((SIZE, SIZE), np.float32)
    moved = colour_match(donor.astype(np.float32), target, weights)
    assert moved.mean() == pytest.approx(float(target.mean()), abs=0.5)


def test_a_donor_is_a_real_image_of_another_group() -> None:
    groups = np.array(["a", "a", "b", "c", "b"], dtype=object)
    real = np.array([True, True, False, True, True])
    picks = {pick_donor(0, groups, real, np.random.default_rng(s)) for s in range(40)}
    assert picks == {3, 4}  # never group a, never the FAKE row 2
    assert pick_donor(0, groups, np.array([True, True, False, False, False]),
                      np.random.default_rng(0)) is None


def _png(colour: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), colour, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _batch() -> dict[str, np.ndarray]:
    """Three identities (REAL colours 40, 130, 220), a FAKE of colour 90 in group b, and two
    synthetic rows made from group a's REAL image."""
    colours = [40, 130, 220, 90, 40, 40]
    return {"image": np.array([_png(c) for c in colours], dtype=object),
            "label": np.array([0, 0, 0, 1, 1, 1]),
            "id": np.array(["a0", "b0", "c0", "b1", "a0", "a0"], dtype=object),
            "group": np.array(["a", "b", "c", "b", "a", "a"], dtype=object),
            "synthetic": np.array([0, 0, 0, 0, 1, 2], dtype=np.int16)}


@pytest.mark.parametrize("kind", ["splice", "splice_matched"])
def test_the_stream_splices_donors_of_other_identities_reproducibly(kind: str) -> None:
    decode = DecodeBatch(SIZE, seed=7, blend=BlendSpec(kind=kind))
    first, again = decode(_batch())["image"], decode(_batch())["image"]
    assert np.array_equal(first, again)  # the seed repeats the same splices
    assert np.array_equal(first[:4], np.stack([np.full((SIZE, SIZE, 3), c, np.uint8)
                                               for c in (40, 130, 220, 90)]))  # as read
    if kind == "splice_matched":  # flat colours matched to the target's: the target again
        assert np.abs(first[4:].astype(int) - 40).max() <= 1
        return
    other = DecodeBatch(SIZE, seed=8, blend=BlendSpec(kind=kind))(_batch())["image"]
    assert not np.array_equal(first[4:], other[4:])  # another seed, other splices
    for row in first[4:]:
        # An unmatched part keeps its donor's colour: b's or c's REAL image (a FAKE donor,
        # 90, or a's own 40 would leave no pixel this bright).
        assert {130, 220} & set(np.unique(row))


def test_only_the_train_decoder_makes_splices() -> None:
    cfg = replace(DataConfig(), synthetic=0.5, synthetic_kind="splice_matched")
    assert train_decoder(cfg, size=SIZE, seed=0).blend.kind == "splice_matched"
    evaluation = DecodeBatch(SIZE)  # what eval_dataset decodes validation and test with
    assert evaluation.blend is None
    assert train_decoder(replace(cfg, synthetic=0.0), size=SIZE, seed=0).blend is None
