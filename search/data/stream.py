"""Ray Data pipelines from prepared shards to normalised training batches.

Nothing is materialised in the driver: each epoch streams Parquet rows, drops rows to reach
the REAL:FAKE ratio (before any image is decoded), then decodes, augments and normalises
in ``map_batches``. Validation and test keep their natural class balance and are never
augmented, so every configuration is judged on exactly the same images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.config import DataConfig, parse_ratio
from search.data.images import decode_to_array
from search.data.prepare import load_manifest

# Columns the training path reads; the others (source, width, height) stay on disk.
_TRAIN_COLUMNS = ["image", "label", "id"]


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


@dataclass(frozen=True)
class Augment:
    """The field's usual training augmentations, each drawn per image."""

    hflip: bool = True
    jpeg_prob: float = 0.0
    blur_prob: float = 0.0
    color_jitter: float = 0.0

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Augment:
        return cls(cfg.hflip, cfg.jpeg_prob, cfg.blur_prob, cfg.color_jitter)

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one HxWx3 uint8 image."""
        from PIL import Image, ImageFilter

        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
        if self.blur_prob and rng.random() < self.blur_prob:
            pil = Image.fromarray(np.ascontiguousarray(img))
            img = np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 2.0))))
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
    """Decode, resize, augment and normalise a batch of encoded images to NCHW float32.

    A class so that an actor pool keeps the normalisation constants and buffers warm.
    """

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: Augment | None = None, seed: int = 0, keep_ids: bool = False):
        self.size = size
        self.scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, 3, 1, 1)
        self.shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
        self.augment = augment
        self.seed = seed
        self.keep_ids = keep_ids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = batch["image"]
        n = len(images)
        out = np.empty((n, self.size, self.size, 3), np.uint8)
        rng = None
        if self.augment is not None and n:
            # Seeded by this batch's ids and the epoch: reproducible, different every epoch.
            ids = np.asarray(batch["id"], dtype=object)
            words = pd.util.hash_array(ids, hash_key=f"{self.seed & 0xFFFFFFFF:08x}aug00000")
            rng = np.random.default_rng([int(words[0] & 0xFFFFFFFF), _execution_index(), n])
        for i, data in enumerate(images):
            arr = decode_to_array(data, self.size)
            if rng is not None:
                arr = self.augment.apply(arr, rng)
            out[i] = arr
        # HWC uint8 -> CHW float32 normalised, in one fused pass per batch.
        x = out.transpose(0, 3, 1, 2).astype(np.float32)
        x *= self.scale
        x -= self.shift
        result = {"image": x, "label": np.asarray(batch["label"], dtype=np.float32)}
        if self.keep_ids:
            result["id"] = np.asarray(batch["id"], dtype=object)
        return result


def split_files(shards: str | Path, split: str) -> list[str]:
    """Absolute paths of one split's shards, from the manifest (never a directory glob)."""
    shards = Path(shards).expanduser().resolve()
    manifest = load_manifest(shards)
    files = [str(shards / s["file"]) for s in manifest["shards"] if s["split"] == split]
    if not files:
        raise FileNotFoundError(f"{shards} has no '{split}' shards; re-run prepare with "
                                "non-zero split fractions")
    return files


def _read(shards: str | Path, split: str, *, shuffle_seed: int | None) -> Any:
    import ray.data
    from ray.data import FileShuffleConfig

    shuffle = None
    if shuffle_seed is not None:
        shuffle = FileShuffleConfig(seed=shuffle_seed, reseed_after_execution=True)
    return ray.data.read_parquet(split_files(shards, split), columns=_TRAIN_COLUMNS,
                                 shuffle=shuffle)


def _decode_compute(workers: int, cpus: float) -> dict[str, Any]:
    """map_batches arguments for decoding: an actor pool of ``workers`` within ``cpus``.

    Ray Data's own list/read tasks each need one whole CPU, and a trial's train and
    evaluation pools can be alive at the same time: the pools share what is left after one
    CPU for those tasks, so a trial never waits on a CPU that its own pools hold.
    """
    import ray.data

    workers = max(1, workers)
    pool_cpus = max(0.2, cpus - 1.0) / 2
    return {"compute": ray.data.ActorPoolStrategy(size=workers),
            "num_cpus": round(pool_cpus / workers, 4)}


def train_dataset(shards: str | Path, cfg: DataConfig, *, size: int, mean: tuple[float, ...],
                  std: tuple[float, ...], seed: int, batch_size: int = 64,
                  data_cpus: float = 1.0) -> Any:
    """The train split: shuffled files, undersampled to the ratio, decoded and augmented."""
    counts = load_manifest(shards)["counts"]["train"]
    p_real, p_fake = keep_probabilities(counts, cfg.ratio)
    ds = _read(shards, "train", shuffle_seed=seed)
    if p_real < 1.0 or p_fake < 1.0:
        ds = ds.map_batches(Undersample(p_real, p_fake, seed), batch_format="numpy",
                            batch_size=None, zero_copy_batch=True)
    return ds.map_batches(
        DecodeBatch, fn_constructor_kwargs={"size": size, "mean": mean, "std": std,
                                            "augment": Augment.from_config(cfg), "seed": seed},
        batch_format="numpy", batch_size=batch_size,
        **_decode_compute(cfg.decode_workers or max(1, int(data_cpus)), data_cpus),
    )


def eval_dataset(shards: str | Path, split: str, *, size: int, mean: tuple[float, ...],
                 std: tuple[float, ...], decode_workers: int = 0, batch_size: int = 64,
                 data_cpus: float = 1.0) -> Any:
    """Validation or test: every row, in file order, decoded without augmentation."""
    ds = _read(shards, split, shuffle_seed=None)
    return ds.map_batches(
        DecodeBatch, fn_constructor_kwargs={"size": size, "mean": mean, "std": std,
                                            "keep_ids": True},
        batch_format="numpy", batch_size=batch_size,
        **_decode_compute(decode_workers or max(1, int(data_cpus)), data_cpus),
    )


def expected_train_rows(counts: dict[str, int], ratio: str) -> float:
    """Expected rows per epoch after undersampling (for progress and tests)."""
    p_real, p_fake = keep_probabilities(counts, ratio)
    return counts["REAL"] * p_real + counts["FAKE"] * p_fake


__all__ = ["Augment", "DecodeBatch", "Undersample", "eval_dataset", "expected_train_rows",
           "keep_probabilities", "split_files", "train_dataset"]
