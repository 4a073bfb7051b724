"""Ray Data pipelines from prepared shards to training batches.

Nothing is materialised in the driver: each epoch, Ray tasks read the manifest's shards,
drop rows to reach the REAL:FAKE ratio (before any image is decoded), then decode and
augment to uint8 NHWC, all fused into one task per shard. Batches stay uint8 until the
training device, where :class:`Normalize` turns them into normalised float32 NCHW.
Validation and test keep their natural class balance and are never augmented, so every
configuration is judged on exactly the same images.

Self-blended fakes (``data.synthetic``, :mod:`search.data.synthetic`) are made in the same
fused task, in the train split only: :class:`SelfBlendRows` (before decoding) drops a share
of the epoch's FAKE rows and repeats REAL rows in their place, marked ``synthetic`` and
labelled FAKE; :class:`DecodeBatch` then blends exactly the marked rows. Both draw from
seeds keyed by the row id, the trial seed and the epoch, so an epoch is reproducible and
the next one differs; with ``synthetic: 0`` neither step exists and the stream is what it
was without the option.

Imports: ray.data, torch and PIL are imported inside the functions that use them: predict
imports DecodeBatch, and its ONNX path must load neither Ray nor torch
(tests/test_imports.py).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.config import DataConfig, parse_ratio
from search.data.images import decode_batch, down_up
from search.data.sets import PreparedSet, as_set
from search.data.splice import part_splice, pick_donor
from search.data.synthetic import BlendSpec, self_blend

# Columns the training path reads; the others (source, width, height) stay on disk.
_TRAIN_COLUMNS = ["image", "label", "id"]


def quiet_ray_data(level: int = logging.WARNING) -> None:
    """No Ray Data progress bars or start-of-execution lines in this process: the search
    and the commands print their own progress; ``level`` is the ``ray.data`` log level."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(level)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def keep_probabilities(counts: dict[str, int], ratio: str) -> tuple[float, float]:
    """Per-label keep probabilities (p_real, p_fake) that undersample to ``ratio`` REAL:FAKE.

    The larger class is thinned; the smaller is kept whole, as the study's undersampling did.
    """
    parsed = parse_ratio(ratio)
    n_real, n_fake = counts["REAL"], counts["FAKE"]
    if parsed is None or n_real == 0 or n_fake == 0:
        return 1.0, 1.0
    a, b = parsed
    k = min(n_real / a, n_fake / b)
    return min(1.0, a * k / n_real), min(1.0, b * k / n_fake)


def _execution_index() -> int:
    """How many times this dataset has been executed: 0 for the first epoch, 1 for the next...

    Ray Data increments ``DataContext._execution_idx`` per execution and ships the context
    to every task; its own ``random(seed, reseed_after_execution=True)`` expression reads
    it the same way. Using it makes each epoch's draw new yet reproducible.
    """
    from ray.data.context import DataContext

    return int(getattr(DataContext.get_current(), "_execution_idx", 0) or 0)


def _uniform(ids: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A deterministic U[0,1) per id: independent of batch boundaries and task order."""
    key = f"{seed & 0xFFFFFFFF:08x}{salt & 0xFFFFFFFF:08x}"
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class Undersample:
    """Keep each row with its label's probability; the draw changes every epoch."""

    p_real: float
    p_fake: float
    seed: int

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.p_real >= 1.0 and self.p_fake >= 1.0:
            return batch
        u = _uniform(batch["id"], self.seed, _execution_index())
        p = np.where(np.asarray(batch["label"]) == 1, self.p_fake, self.p_real)
        keep = u < p
        return {k: np.asarray(v)[keep] for k, v in batch.items()}


#: Salts of the per-row draws of :class:`SelfBlendRows` (the epoch is added to each).
_DROP_SALT, _BLEND_SALT = 0x5B100000, 0x5B200000


def blends_per_real(counts: dict[str, int], ratio: str, share: float) -> float:
    """How many self-blends each kept REAL row of the train split spawns so that a share
    ``share`` of the epoch's FAKE rows are self-blends and the REAL:FAKE ratio stays.

    The epoch keeps R REAL and F FAKE rows (:func:`keep_probabilities`); with the option,
    (1 - share) F real FAKE rows are kept and share * F blends made from the R REAL rows,
    so R:F is unchanged. A train split without FAKE rows (the SBI recipe: REAL images only)
    takes F from the ratio (R * b / a; 'natural' then means as many blends as REALs).
    """
    if share <= 0:
        return 0.0
    p_real, p_fake = keep_probabilities(counts, ratio)
    real, fake = counts["REAL"] * p_real, counts["FAKE"] * p_fake
    if real == 0:
        raise ValueError("data.synthetic needs REAL images in the train split: self-blends "
                         "are made from them, and this split has none")
    if fake == 0:
        parsed = parse_ratio(ratio)
        fake = real * (parsed[1] / parsed[0] if parsed else 1.0)
    return share * fake / real


@dataclass(frozen=True)
class SelfBlendRows:
    """Before decoding: replace a share of the epoch's FAKE rows by self-blends of REAL rows.

    Each FAKE row is dropped with probability ``share``; each REAL row is kept and followed
    by ``k`` copies of itself, ``k`` drawn with mean ``blends`` (its integer part, plus one
    with the fractional part's probability), labelled FAKE and numbered in the ``synthetic``
    column (0: an image as it is; 1, 2, ...: the k-th self-blend of that REAL image), which
    :class:`DecodeBatch` blends. A blend follows its source in the stream (the training
    loop's local shuffle buffer of four batches then mixes them: often, not always, in one
    batch).
    Every draw is keyed by the row id, the seed and the epoch (batch boundaries and task
    order do not matter); ``share`` 1 keeps no real FAKE row at all.
    """

    share: float
    blends: float
    seed: int

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        epoch = _execution_index()
        labels = np.asarray(batch["label"])
        ids = batch["id"]
        fake = labels == 1
        keep_fake = _uniform(ids, self.seed, _DROP_SALT + epoch) >= self.share
        whole, part = divmod(self.blends, 1.0)
        extra = (_uniform(ids, self.seed, _BLEND_SALT + epoch) < part).astype(np.int64)
        copies = np.where(fake, keep_fake.astype(np.int64), 1 + int(whole) + extra)
        rows = np.repeat(np.arange(len(labels)), copies)
        first = np.cumsum(copies) - copies  # where each row's run starts in the output
        number = np.arange(len(rows)) - first[rows]
        out = {k: np.asarray(v)[rows] for k, v in batch.items()}
        out["label"] = np.where(number > 0, 1, labels[rows]).astype(labels.dtype)
        out["synthetic"] = number.astype(np.int16)
        return out


@dataclass(frozen=True)
class Augment:
    """The field's usual training augmentations, each drawn per image."""

    hflip: bool = True
    jpeg_prob: float = 0.0
    blur_prob: float = 0.0
    color_jitter: float = 0.0
    downup_prob: float = 0.0  # a 2x bilinear downscale and upscale back (the robustness test's)

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Augment:
        return cls(cfg.hflip, cfg.jpeg_prob, cfg.blur_prob, cfg.color_jitter, cfg.downup_prob)

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one HxWx3 uint8 image."""
        from PIL import Image, ImageFilter

        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
        if self.blur_prob and rng.random() < self.blur_prob:
            pil = Image.fromarray(np.ascontiguousarray(img))
            img = np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 2.0))))
        # Drawn only when on: a stream without it draws what it always drew.
        if self.downup_prob and rng.random() < self.downup_prob:
            img = down_up(np.ascontiguousarray(img), 2)
        if self.jpeg_prob and rng.random() < self.jpeg_prob:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img)).save(buf, "JPEG",
                                                            quality=int(rng.integers(30, 96)))
            img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        if self.color_jitter:
            j = self.color_jitter
            x = img.astype(np.float32)
            x = x * rng.uniform(1 - j, 1 + j)  # brightness
            mean = x.mean()
            x = (x - mean) * rng.uniform(1 - j, 1 + j) + mean  # contrast
            grey = x.mean(axis=2, keepdims=True)
            x = (x - grey) * rng.uniform(1 - j, 1 + j) + grey  # saturation
            img = np.clip(x, 0, 255).astype(np.uint8)
        return img


class DecodeBatch:
    """Decode, resize and augment a batch of encoded images to NHWC uint8.

    Normalisation is deliberately not done here: uint8 batches are a quarter of the bytes
    of float32 through the object store and to the GPU, and :class:`Normalize` does it on
    the training device (timm's prefetcher and FFCV do the same). A class so that an actor
    pool can hold it.
    """

    def __init__(self, size: int, augment: Augment | None = None, seed: int = 0,
                 keep_ids: bool = False, blend: BlendSpec | None = None):
        self.size = size
        self.augment = augment
        self.seed = seed
        self.keep_ids = keep_ids
        self.blend = blend  # self-blend the rows SelfBlendRows marked (train split only)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        skipped: list[tuple[int, str]] = []
        out = decode_batch(batch["image"], self.size, skipped=skipped)
        if skipped:
            ids = batch.get("id")
            _log_skipped([f"{ids[i] if ids is not None else i}: {why}" for i, why in skipped])
            batch = _without_rows(batch, [i for i, _ in skipped])
        n = len(out)
        if self.blend is not None and "synthetic" in batch:
            self._blend(out, batch)
        if self.augment is not None and n:
            # Seeded by this batch's ids and the epoch: reproducible, different every epoch.
            ids = np.asarray(batch["id"], dtype=object)
            words = pd.util.hash_array(ids, hash_key=f"{self.seed & 0xFFFFFFFF:08x}aug00000")
            rng = np.random.default_rng([int(words[0] & 0xFFFFFFFF), _execution_index(), n])
            for i in range(n):
                out[i] = self.augment.apply(out[i], rng)
        result = {"image": out, "label": np.asarray(batch["label"], dtype=np.float32)}
        if self.keep_ids:
            result["id"] = np.asarray(batch["id"], dtype=object)
        return result

    def _blend(self, out: np.ndarray, batch: dict[str, np.ndarray]) -> None:
        """Make, in place, the synthetic FAKE of every decoded row whose ``synthetic`` number
        is not 0 (a self-blend, or a splice with a donor of this batch), each with a generator
        keyed by its id, that number, the seed and the epoch."""
        number = np.asarray(batch["synthetic"])
        marked = np.flatnonzero(number > 0)
        if not len(marked):
            return
        ids = np.asarray(batch["id"], dtype=object)[marked]
        words = pd.util.hash_array(ids, hash_key=f"{self.seed & 0xFFFFFFFF:08x}sbi00000")
        epoch = _execution_index()
        # Donors: the batch's REAL images as read (before any synthetic row is made).
        sources = out.copy() if self.blend.splices else out
        real = (np.asarray(batch["label"]) == 0) & (number == 0)
        for i, word in zip(marked, words):
            rng = np.random.default_rng([int(word & 0xFFFFFFFF), int(word >> 32), epoch,
                                         int(number[i])])
            donor = (pick_donor(i, np.asarray(batch["group"], dtype=object), real, rng)
                     if self.blend.splices else None)
            if donor is None:  # self-blends, or a batch of one identity: blend with itself
                out[i] = self_blend(sources[i], rng, self.blend)
            else:
                out[i] = part_splice(sources[i], sources[donor], rng,
                                     match=self.blend.kind == "splice_matched")


def _without_rows(batch: dict[str, np.ndarray], drop: Sequence[int]) -> dict[str, np.ndarray]:
    """``batch`` without the rows at ``drop`` (every column alike)."""
    keep = np.ones(len(batch["image"]), bool)
    keep[list(drop)] = False
    return {k: np.asarray(v)[keep] for k, v in batch.items()}


def _log_skipped(rows: Sequence[str]) -> None:
    """Report images skipped in one batch (a warning in the task's log, which Ray forwards)."""
    logging.getLogger(__name__).warning(
        "skipped %d undecodable image(s) of a shard batch (id: reason): %s; the shard was "
        "damaged after prepare: re-run prepare", len(rows), "; ".join(rows[:5]))


class Normalize:
    """NHWC uint8 batch -> NCHW float32 ``(x / 255 - mean) / std`` on the batch's device.

    One multiply and one subtract per element, on whatever device the batch is already on,
    so on a GPU it costs nothing next to the model. ``channels_last=True`` gives NCHW with
    NHWC memory (what tensor-core convolutions want): then it is a purely elementwise pass
    over the batch as it arrived.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        std_ = np.asarray(std, np.float64)
        self._scale = (1.0 / (255.0 * std_)).astype(np.float32)
        self._shift = (np.asarray(mean, np.float64) / std_).astype(np.float32)
        self._cache: dict[Any, tuple[Any, Any]] = {}

    def __call__(self, x: Any, *, channels_last: bool = False) -> Any:
        import torch

        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected an NHWC batch with 3 channels, got shape {tuple(x.shape)}")
        if x.device not in self._cache:
            self._cache[x.device] = tuple(torch.from_numpy(v).to(x.device)
                                          for v in (self._scale, self._shift))
        scale, shift = self._cache[x.device]
        if channels_last:
            # Elementwise over the NHWC bytes as they are; the permute is a free view.
            return x.float().mul_(scale).sub_(shift).permute(0, 3, 1, 2)
        # Transpose while still uint8 (a quarter of the bytes), then two in-place passes:
        # 1.5x faster on a CPU than one type-promoting multiply into a strided output.
        out = x.permute(0, 3, 1, 2).contiguous().float()
        return out.mul_(scale.view(1, 3, 1, 1)).sub_(shift.view(1, 3, 1, 1))


def split_files(shards: str | Path | PreparedSet, split: str) -> list[str]:
    """Absolute paths (or URIs) of one split's shards (:meth:`PreparedSet.files`)."""
    return as_set(shards).files(split)


@dataclass(frozen=True)
class ReadShards:
    """Read whole Parquet shards inside Ray tasks; with a seed, a new order every epoch.

    The manifest already lists every shard, so there is nothing to discover: reading them
    in our own task skips ``read_parquet``'s per-execution file listing and metadata pass,
    which cost 1.5-2 s on every epoch of a small split here against 0.05 s for this.
    Shuffling is two-level and reseeded per epoch: the order in which tasks take shards,
    and the rows within each shard (only row indices move, never image bytes across tasks);
    the training loop's local shuffle buffer then mixes neighbouring shards.
    """

    files: tuple[str, ...]
    seed: int | None = None
    paired: bool = False  # each group's rows together, REAL first (data.paired)
    groups: bool = False  # read the group column too (splices pick donors of other groups)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow.parquet as pq

        epoch = _execution_index()
        order = np.arange(len(self.files))
        if self.seed is not None:
            order = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.files))
        columns = [*_TRAIN_COLUMNS, "group"] if self.paired or self.groups else _TRAIN_COLUMNS
        for index in np.asarray(batch["shard"], dtype=np.int64):
            table = pq.read_table(self.files[order[index]], columns=columns)
            if self.seed is not None:
                rng = np.random.default_rng([self.seed, epoch, int(order[index])])
                rows = (paired_order(table.column("group").to_numpy(zero_copy_only=False),
                                     table.column("label").to_numpy(), rng) if self.paired
                        else rng.permutation(table.num_rows))
                table = table.take(rows)
            yield table


def paired_order(groups: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices that keep each group's rows together (its REAL image first, then the
    FAKEs made from it), the groups in a random order: what ``data.paired`` streams.

    Pairs are kept within a shard: prepare writes a split in id order, so a group of a split
    stored in several shards can be parted (deepfake_faces' train split at 64 px is one)."""
    codes, uniques = pd.factorize(np.asarray(groups, dtype=object))
    rank = rng.permutation(len(uniques))[codes]
    return np.lexsort((np.asarray(labels), rank))


def _read(shards: PreparedSet, split: str, *, shuffle_seed: int | None,
          paired: bool = False, groups: bool = False) -> Any:
    """One block per shard; a read task per shard, fused with what follows it."""
    import ray.data

    files = tuple(shards.files(split))
    index = ray.data.from_items([{"shard": i} for i in range(len(files))],
                                override_num_blocks=len(files))
    return index.map_batches(ReadShards(files, shuffle_seed, paired, groups), batch_size=1,
                             batch_format="numpy", num_cpus=1)


def _decode(ds: Any, udf: DecodeBatch, *, workers: int, batch_size: int) -> Any:
    """Append the decode step as Ray tasks that fuse with the Parquet read.

    Tasks rather than an actor pool: Ray Data fuses read -> undersample -> decode into one
    task (no object-store hop for the encoded bytes), pooled worker processes are reused
    from one epoch to the next (an actor pool is started afresh on every epoch), and a task
    holds its CPU only while it runs, so a trial's train and evaluation streams can never
    wait on each other. One CPU per task, as the read's own, so that the two can fuse.
    Measured (bench/overhead): an actor pool cost 5.5-7 s per epoch here, these 0.2 s.
    """
    import ray.data

    return ds.map_batches(udf, batch_format="numpy", batch_size=batch_size,
                          compute=ray.data.TaskPoolStrategy(size=max(1, workers)), num_cpus=1)


def train_steps(counts: dict[str, int], cfg: DataConfig, *, seed: int) -> list[Any]:
    """The train split's row steps between reading and decoding, in order: undersampling to
    the ratio (when a class is thinned), then the self-blend rows (when ``data.synthetic``)."""
    steps: list[Any] = []
    p_real, p_fake = keep_probabilities(counts, cfg.ratio)
    if p_real < 1.0 or p_fake < 1.0:
        steps.append(Undersample(p_real, p_fake, seed))
    if cfg.synthetic > 0:
        steps.append(SelfBlendRows(cfg.synthetic, blends_per_real(counts, cfg.ratio,
                                                                  cfg.synthetic), seed))
    return steps


def train_decoder(cfg: DataConfig, *, size: int, seed: int) -> DecodeBatch:
    """The train split's decode step: augmentation, and self-blending when it is on."""
    blend = BlendSpec.from_config(cfg) if cfg.synthetic > 0 else None
    return DecodeBatch(size, augment=Augment.from_config(cfg), seed=seed, blend=blend)


def train_dataset(shards: str | Path | PreparedSet, cfg: DataConfig, *, size: int, seed: int,
                  batch_size: int = 64, data_cpus: float = 1.0) -> Any:
    """The train split: shuffled files, undersampled to the ratio, decoded and augmented.
    ``shards`` is a resolved :class:`PreparedSet` (a location is opened here)."""
    shards = as_set(shards)
    ds = _read(shards, "train", shuffle_seed=seed, paired=cfg.paired,
               groups=cfg.synthetic > 0 and cfg.synthetic_kind != "self_blend")
    for step in train_steps(shards.counts("train"), cfg, seed=seed):
        ds = ds.map_batches(step, batch_format="numpy", batch_size=None, zero_copy_batch=True,
                            num_cpus=1)
    ds = _decode(ds, train_decoder(cfg, size=size, seed=seed),
                 workers=cfg.decode_workers or max(1, int(data_cpus)), batch_size=batch_size)
    # Blocks leave in the order the seeded shard permutation gave them, not in the order
    # their tasks finish: the same seed then trains on the same batch sequence, which is
    # what makes a rerun reproduce its leaderboard. Costs nothing with one decode task;
    # with several, a slow task holds back the ones behind it (prefetch absorbs that).
    # A DDP trial's streaming split still hands blocks to whichever worker asks first.
    ds.context.execution_options.preserve_order = True
    return ds


def eval_dataset(shards: str | Path | PreparedSet, split: str, *, size: int,
                 decode_workers: int = 0, batch_size: int = 64, data_cpus: float = 1.0) -> Any:
    """Validation or test: every row, in file order, decoded without augmentation."""
    ds = _read(as_set(shards), split, shuffle_seed=None)
    return _decode(ds, DecodeBatch(size, keep_ids=True),
                   workers=decode_workers or max(1, int(data_cpus)), batch_size=batch_size)


def expected_train_rows(counts: dict[str, int], ratio: str) -> float:
    """Expected rows per epoch after undersampling (for progress and tests)."""
    p_real, p_fake = keep_probabilities(counts, ratio)
    return counts["REAL"] * p_real + counts["FAKE"] * p_fake


__all__ = ["Augment", "DecodeBatch", "Normalize", "SelfBlendRows", "Undersample", "blends_per_real",
           "eval_dataset", "expected_train_rows", "keep_probabilities", "paired_order", "quiet_ray_data",
           "split_files", "train_dataset", "train_decoder", "train_steps"]
