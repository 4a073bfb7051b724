"""Scoring images with a model: the one inference step every caller shares.

Validation in the training loop (:mod:`search.train.worker`), the evaluation commands and
the perturbed scoring (:mod:`search.evaluate.scoring`) all score through
:func:`score_batch`, so that a model's numbers do not depend on who asked for them. It
lives in the model layer, below training, because evaluation needs it without the
training recipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from search.data.stream import Normalize


def gather(values: list[Any]) -> list[Any]:
    """Concatenate per-worker lists on every worker (identity when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, values)
    return [v for part in parts for v in part]


def score_batch(model: nn.Module, images: np.ndarray, *, device: torch.device,
                normalize: Normalize, amp: bool = False, channels_last: bool = False,
                ) -> np.ndarray:
    """p_fake (float64) of one NHWC uint8 batch: the one inference step of validation, the
    evaluation commands and the perturbed scoring, so that all of them score alike
    (normalised on ``device``, bf16 autocast when ``amp``). ``model`` must be in eval mode."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    x = normalize(x, channels_last=channels_last)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x).float().reshape(-1)
    return torch.sigmoid(logits).cpu().numpy().astype(np.float64)


def predict_split(model: nn.Module, data: Any, *, batch_size: int, device: torch.device,
                  normalize: Normalize, amp: bool = False, channels_last: bool = False,
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, labels, p_fake) of every row of an evaluation split, sorted by id.

    ``data`` is a worker's dataset shard (rows are then gathered from every worker) or a
    whole ``ray.data.Dataset`` (evaluation outside training).
    """
    model.eval()
    ids: list[str] = []
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for batch in data.iter_batches(batch_size=batch_size, batch_format="numpy",
                                   prefetch_batches=2):
        probs.append(score_batch(model, batch["image"], device=device, normalize=normalize,
                                 amp=amp, channels_last=channels_last))
        labels.append(batch["label"].astype(np.int64))
        ids.extend(str(i) for i in batch["id"])
    rows = gather(list(zip(ids, np.concatenate(labels).tolist() if labels else [],
                           np.concatenate(probs).tolist() if probs else [])))
    rows.sort()  # a fixed order, whatever the split between workers
    return ([r[0] for r in rows], np.asarray([r[1] for r in rows], np.int64),
            np.asarray([r[2] for r in rows], np.float64))


__all__ = ["gather", "predict_split", "score_batch"]
