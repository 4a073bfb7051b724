"""Score a trained checkpoint on any prepared split with the full detector metric set.

Used after a search for the finalists' test-split numbers (the test split is never seen
while choosing) and by ``deepfake-search evaluate``. Runs as a Ray task so that on a GPU
cluster the evaluation lands on a GPU node, not on the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from search.config import ConfigError, config_from_dict
from search.formats import CONFIG, WEIGHTS
from search.train.metrics import detector_metrics


def load_checkpoint_model(checkpoint_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild a model from a checkpoint folder (safetensors + config.json), in eval mode."""
    from search.predict import ModelFolderError, load_json
    from search.train.worker import build_model, load_weights

    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / CONFIG
    meta = load_json(path)
    if not isinstance(meta.get("experiment"), dict) or not isinstance(meta.get("input"), dict):
        raise ModelFolderError(f"{path} lacks its 'experiment' or 'input' section: it is not a "
                               "checkpoint's config; pick another trial (--trial) or re-train")
    try:
        cfg = config_from_dict(meta["experiment"])
    except ConfigError as err:
        raise ModelFolderError(f"{path} 'experiment': {err}") from None
    model = build_model(cfg, pretrained=False)
    try:
        model = load_weights(model, checkpoint_dir).eval()
    except Exception as err:  # SafetensorError, RuntimeError (shapes), OSError
        raise ModelFolderError(
            f"{checkpoint_dir / WEIGHTS} cannot be loaded into the {cfg.model.arch} its config "
            f"describes ({str(err).strip()[:200]}): the checkpoint is damaged or mixed up; "
            "pick another trial (--trial) or re-train") from None
    return model, meta


def predict_shards(model: Any, meta: dict[str, Any], shards: str | Path, split: str,
                   *, batch_size: int = 128) -> pd.DataFrame:
    """``id, label, p_fake`` for every row of ``split``, streamed through Ray Data."""
    import torch

    from search.data.stream import Normalize, eval_dataset
    from search.train.worker import predict_split

    spec = meta["input"]
    ds = eval_dataset(shards, split, size=spec["input_size"], batch_size=batch_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids, labels, probs = predict_split(model.to(device), ds, batch_size=batch_size, device=device,
                                       normalize=Normalize(spec["mean"], spec["std"]),
                                       amp=device.type == "cuda")
    return pd.DataFrame({"id": ids, "label": labels, "p_fake": probs})


def evaluate_checkpoint(checkpoint_dir: str | Path, shards: str | Path, split: str = "test",
                        *, threshold: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and predictions of one checkpoint on one split (in this process)."""
    model, meta = load_checkpoint_model(checkpoint_dir)
    if threshold is None:
        threshold = meta.get("metrics", {}).get("val_threshold")
    preds = predict_shards(model, meta, shards, split)
    metrics = detector_metrics(preds["label"].to_numpy(), preds["p_fake"].to_numpy(),
                               threshold=threshold)
    return metrics, preds


def evaluate_remote(checkpoint_dir: str, shards: str, split: str = "test",
                    threshold: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`evaluate_checkpoint` as a Ray task, on a GPU when the cluster has one."""
    import ray

    if ray.cluster_resources().get("GPU", 0) < 1:
        # No GPU to move to: evaluate here rather than hold a CPU that Ray Data's own read
        # tasks need (on a small cluster that wait never ends).
        return evaluate_checkpoint(checkpoint_dir, shards, split, threshold=threshold)
    task = ray.remote(num_cpus=0.01, num_gpus=1)(evaluate_checkpoint)
    return ray.get(task.remote(checkpoint_dir, shards, split, threshold=threshold))


__all__ = ["evaluate_checkpoint", "evaluate_remote", "load_checkpoint_model", "predict_shards"]
