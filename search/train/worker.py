"""The training loop of one configuration: one :class:`Recipe`, whoever runs it.

A single-worker trial (the default) runs it in the Tune trial's own process; a multi-worker
trial runs it in every worker of a ``TorchTrainer`` (DDP). It sees neither: it reports,
checkpoints and resumes through a :class:`~search.train.runtime.Runtime`. Each epoch it
trains on the undersampled train split, evaluates the whole validation split (predictions
gathered from every worker before any metric is computed) and reports once with a
checkpoint (:mod:`search.model.checkpoint`), so retried and restored trials continue where
they stopped. Before each report reaches Tune, rank 0 writes the epoch to the trial's own
history (:mod:`search.train.history`), durably: what the tables read, whatever happens to
the driver.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ray.data.collate_fn import NumpyBatchCollateFn
from torch import nn

from search import catalog
from search.catalog import COSTS, LATENCY_MS, SOURCE_METRICS
from search.config import ExperimentConfig, OptimConfig, config_from_dict
from search.data.stream import Normalize
from search.filenames import VAL_PREDICTIONS as PREDICTIONS
from search.model.checkpoint import (
    build_model,
    checkpoint_metrics,
    input_spec,
    load_trainer_state,
    load_weights,
    resumable,
    save_checkpoint,
    save_trainer_state,
    unwrap,
    write_predictions,
)
from search.model.inference import gather, predict_split
from search.model.latency import IN_SEARCH, model_latency
from search.train.history import epoch_record
from search.train.metrics import detector_metrics
from search.train.runtime import Runtime, TrainRuntime, placement

# Batches from Ray's object store are read-only views; they are only ever read (Normalize
# writes a new tensor), so torch's warning about non-writable arrays is noise here.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters; no weight decay on norms and biases.

    With ``backbone_lr_scale`` != 1 the backbone's parameters (a timm model's ``backbone``)
    get ``lr * backbone_lr_scale`` and the head keeps ``lr``: the head's groups come first,
    so ``param_groups[0]``'s lr is the trial's ``optim.lr``.
    """
    split = cfg.backbone_lr_scale != 1.0
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            in_backbone = split and _BACKBONE.search(name) is not None
            buckets.setdefault((in_backbone, p.ndim <= 1), []).append(p)
    groups = [{"params": buckets.get((backbone, no_decay), []),
               "weight_decay": 0.0 if no_decay else cfg.weight_decay,
               "lr": cfg.lr * (cfg.backbone_lr_scale if backbone else 1.0)}
              for backbone in (False, True) for no_decay in (False, True)
              if (backbone, no_decay) in buckets or not backbone]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"optim.optimizer {cfg.optimizer!r}: choose adamw or sgd")


#: A parameter of a pretrained backbone (TimmBinaryClassifier.backbone, under any wrapper).
_BACKBONE = re.compile(r"(^|\.)backbone\.")


def warmup_factor(cfg: OptimConfig, step: int) -> float:
    """Linear warm-up over the first ``warmup_steps`` optimiser steps (``step`` 0-based)."""
    return min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def lr_factor(cfg: OptimConfig, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warm-up then the schedule."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // max(1, cfg.step_size))
    if cfg.schedule == "constant":
        return 1.0
    raise ValueError(f"optim.schedule {cfg.schedule!r}: choose cosine, step or constant")


class NormalizeCollate(NumpyBatchCollateFn):
    """Ray Data collate step: NHWC uint8 numpy batch -> normalised float32 NCHW tensors.

    Runs in Ray Data's background formatting threads, so on a CPU the normalisation
    overlaps the training step instead of adding to it.
    """

    def __init__(self, normalize: Normalize, channels_last: bool = False) -> None:
        self.normalize = normalize
        self.channels_last = channels_last

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {"image": self.normalize(batch["image"], channels_last=self.channels_last),
                "label": torch.from_numpy(np.asarray(batch["label"], dtype=np.float32))}


def training_batches(data: Any, *, batch_size: int, device: torch.device, normalize: Normalize,
                     channels_last: bool = False, prefetch_batches: int = 2,
                     shuffle_buffer: int | None = None, shuffle_seed: int | None = None,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` float batches on ``device``, normalised where it is cheapest.

    To a GPU the batch travels as uint8 (a quarter of the bytes) and is normalised there;
    on a CPU normalisation runs in Ray Data's collate threads (:class:`NormalizeCollate`).
    """
    common = {"batch_size": batch_size, "prefetch_batches": prefetch_batches,
              "local_shuffle_buffer_size": shuffle_buffer, "local_shuffle_seed": shuffle_seed}
    if device.type == "cpu":
        for batch in data.iter_torch_batches(
                **common, collate_fn=NormalizeCollate(normalize, channels_last)):
            yield batch["image"], batch["label"]
        return
    for batch in data.iter_torch_batches(**common, device=device,
                                         dtypes={"image": torch.uint8, "label": torch.float32}):
        yield normalize(batch["image"], channels_last=channels_last), batch["label"]


#: The dataset name of an extra source's validation split (the driver builds it by this name).
SOURCE_SPLIT = "val@{}"


def source_metrics(in_source: Mapping[str, Any], scored: Mapping[str, Mapping[str, Any]],
                   ) -> dict[str, float]:
    """What a trial reports for its extra sources: ``val_<m>@NAME`` for each source's
    ``detector_metrics`` (``SOURCE_METRICS`` only), then ``val_auc@mean`` and ``val_auc@worst``:
    the mean and the minimum of the AUC over the training source (``in_source``, its
    ``val_*`` metrics) and every extra one. One undefined AUC (a split with one class)
    makes both undefined (NaN): a worst case that skips a source would flatter it."""
    out = {catalog.val(m, name): float(metrics.get(m, math.nan))
           for name, metrics in scored.items() for m in SOURCE_METRICS}
    aucs = [float(in_source.get(catalog.val(catalog.AUC), math.nan)),
            *(out[catalog.val(catalog.AUC, name)] for name in scored)]
    defined = not any(math.isnan(a) for a in aucs)
    mean, worst = catalog.SOURCE_AGGREGATES
    out[catalog.val(catalog.AUC, mean)] = sum(aucs) / len(aucs) if defined else math.nan
    out[catalog.val(catalog.AUC, worst)] = min(aucs) if defined else math.nan
    return out


def scores_sources(epoch: int, epochs: int, every: int, have: bool) -> bool:
    """Whether epoch ``epoch`` (0-based) scores the extra sources: the first one this process
    runs (``have`` is False: nothing to repeat yet, also after a resume), every ``every``-th
    from the first (0, every, 2*every, ...) and always the last."""
    return not have or epoch % every == 0 or epoch + 1 >= epochs


class Recipe:
    """One trial's training, split into the steps a reader looks for (torchtune's recipes):
    :meth:`setup`, :meth:`resume`, :meth:`train_one_epoch`, :meth:`validate`, :meth:`save`,
    and :meth:`run` that strings them together. It reports, checkpoints and resumes only
    through its :class:`~search.train.runtime.Runtime`, so the same code runs inside a Tune
    trial (one worker) and inside every worker of a ``TorchTrainer`` (DDP).
    """

    def __init__(self, cfg: ExperimentConfig, runtime: Runtime) -> None:
        self.cfg = cfg
        self.rt = runtime
        self.start_epoch = 0
        self.final_metrics: dict[str, Any] | None = None
        self.source_scores: dict[str, Any] = {}  # the extra sources' last figures
        self.started = time.time()  # this process's start on the trial (see elapsed())
        self.time_before = 0.0  # the trial's running time before its checkpoint was restored
        self.step = 0  # optimiser steps taken (warm-up), restored from the checkpoint's metrics
        self.history: Any = None  # rank 0's HistoryWriter (None: nowhere to write)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Seeds, threads, device, model, optimiser and the input normalisation."""
        cfg, rank = self.cfg, self.rt.rank
        torch.manual_seed(cfg.seed * 1009 + rank)
        np.random.seed((cfg.seed * 1009 + rank) % 2**32)
        self.device = self.rt.device()
        on_gpu = self.device.type == "cuda"
        if not on_gpu:  # intra-op threads = the CPUs this worker holds
            torch.set_num_threads(cpu_threads(cfg))
        self.amp = cfg.optim.amp and on_gpu
        self.channels_last = cfg.optim.channels_last and on_gpu
        self.model = build_model(cfg)
        self.latency: dict[str, float] = {}  # measured by resume(), once it knows the checkpoint
        self.optimizer: torch.optim.Optimizer | None = None
        spec = input_spec(cfg)
        self.normalize = Normalize(spec["mean"], spec["std"])
        self.where = placement()
        history = getattr(self.rt, "history", None)
        self.history = history() if rank == 0 and history is not None else None

    def measure_latency(self) -> dict[str, float]:
        """``latency_ms`` (and its p90 and cost) when it is one of ``search.objectives``:
        the model's ONNX latency per image (:mod:`search.model.latency`), measured once, on rank 0,
        before training (the weights do not change it), and reported with every epoch.
        A trial resumed from a checkpoint reports that checkpoint's figures again: measured
        anew, they would differ from the epochs before, and Optuna and the trials table take
        the last epoch's while the history showed two.

        It is measured on the trial's node while other trials share it: a noisy figure,
        good enough to steer the search; the finalists' figure measured after the search
        (``latency.json``) is the clean one. Cost (export + timing, measured on 2 cores):
        0.02-0.35 s a trial, up to 1.2 s for the first one a process runs (imports)."""
        if LATENCY_MS not in self.cfg.search.objectives or self.rt.rank != 0:
            return {}
        saved = self.final_metrics or {}
        if isinstance(saved.get(LATENCY_MS), int | float):
            return {k: saved[k] for k in COSTS if k in saved}
        return model_latency(self.model, input_spec(self.cfg)["input_size"], IN_SEARCH).metrics()

    def resume(self) -> None:
        """Load the runtime's checkpoint, if any: weights, optimiser state, next epoch."""
        state = None
        with self.rt.restored() as restored:
            d = resumable(restored) if restored is not None else None
            if restored is not None and d is None:
                # The trial ended (its weights released) after the driver's last save: say
                # its last epoch again and end, as a trial past its last epoch does.
                self.final_metrics = checkpoint_metrics(restored)
                self.start_epoch = self.cfg.optim.epochs
            elif d is not None:
                load_weights(self.model, d)
                state = load_trainer_state(d)
                self.final_metrics = checkpoint_metrics(d)
                # Without its optimiser state (released), the epoch is the checkpoint's own
                # and the optimiser starts afresh from these weights.
                self.start_epoch = int(state["epoch"] if state is not None
                                       else (self.final_metrics or {}).get("epoch", 0))
                before = (self.final_metrics or {}).get("time_total_s")
                self.time_before = float(before) if isinstance(before, int | float) else 0.0
                # A checkpoint from before warm-up steps were counted: warm-up is over.
                self.step = int((self.final_metrics or {}).get("optim_steps", 2**31))
        self.latency = self.measure_latency()  # the bare model, before DDP or channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model = self.rt.prepare_model(self.model)
        self.optimizer = build_optimizer(self.model, self.cfg.optim)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    # ------------------------------------------------------------------ one epoch
    def train_one_epoch(self, epoch: int) -> dict[str, Any] | None:
        """One pass over this epoch's undersampled train split; ``None`` if told to stop."""
        cfg, rt = self.cfg, self.rt
        factor = lr_factor(cfg.optim, epoch)
        self.set_lr(factor)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        t0 = time.perf_counter()
        batches = _timed(training_batches(
            rt.dataset("train"), batch_size=cfg.optim.batch_size, device=self.device,
            normalize=self.normalize, channels_last=self.channels_last,
            prefetch_batches=cfg.data.prefetch_batches,
            # data.paired streams each FAKE beside its REAL: a shuffle buffer would part them.
            shuffle_buffer=None if cfg.data.paired else 4 * cfg.optim.batch_size,
            shuffle_seed=(cfg.seed * 7919 + epoch) * max(rt.world_size, 1) + rt.rank))
        for x, y in batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.model(x).float().squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.step < cfg.optim.warmup_steps:
                self.set_lr(factor * warmup_factor(cfg.optim, self.step))
            self.step += 1
            loss.backward()
            if cfg.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            loss_sum += loss.detach() * len(y)  # no .item(): keeps the GPU queue full
            seen += len(y)
            if rt.should_stop():
                return None
        totals = gather([(float(loss_sum), seen)])
        n_train = sum(n for _, n in totals)
        return {"epoch": epoch + 1, catalog.TRAIN_LOSS: sum(s for s, _ in totals) / max(n_train, 1),
                "train_images": n_train, "lr": self.base_lrs[0] * factor, "optim_steps": self.step,
                "train_time_s": time.perf_counter() - t0,
                # Where an epoch's time goes: waiting on the data stream (first batch = the
                # pipeline's start-up) vs evaluation.
                "data_wait_s": batches.wait, "data_first_batch_s": batches.first}

    def set_lr(self, factor: float) -> None:
        """Every parameter group at its base LR times ``factor``."""
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * factor

    def validate(self) -> tuple[dict[str, Any], tuple[list[str], np.ndarray, np.ndarray]]:
        """Metrics over every validation image (gathered from every worker first)."""
        t0 = time.perf_counter()
        # The bare module: ranks hold different numbers of validation rows, so no DDP hooks.
        ids, labels, probs = predict_split(
            unwrap(self.model), self.rt.dataset("val"), batch_size=self.cfg.optim.batch_size,
            device=self.device, normalize=self.normalize, amp=self.amp,
            channels_last=self.channels_last)
        metrics: dict[str, Any] = {"eval_time_s": time.perf_counter() - t0}
        if len(labels):
            metrics.update(catalog.split_metrics(detector_metrics(labels, probs)))
        return metrics, (ids, labels, probs)

    def validate_sources(self, epoch: int, in_source: Mapping[str, Any]) -> dict[str, Any]:
        """The extra sources' figures (:func:`source_metrics`), scored on the epochs
        :func:`scores_sources` picks. On the epochs between, the last figures are reported
        again (``sources_epoch`` says which epoch they are from): ASHA and TPE need the
        search metric in every report, and a stale figure keeps the trial comparable."""
        cfg = self.cfg
        if not cfg.data.extra_sources:
            return {}
        if scores_sources(epoch, cfg.optim.epochs, cfg.data.extra_every, bool(self.source_scores)):
            t0 = time.perf_counter()
            scored = {}
            for name in cfg.data.extra_sources:
                _, labels, probs = predict_split(
                    unwrap(self.model), self.rt.dataset(SOURCE_SPLIT.format(name)),
                    batch_size=cfg.optim.batch_size, device=self.device,
                    normalize=self.normalize, amp=self.amp, channels_last=self.channels_last)
                scored[name] = detector_metrics(labels, probs) if len(labels) else {}
            self.source_scores = {**source_metrics(in_source, scored), "sources_epoch": epoch + 1,
                                  "sources_time_s": time.perf_counter() - t0}
        else:  # the figures stay; the mean/worst follow this epoch's in-source AUC
            stale = {name: {m: self.source_scores[catalog.val(m, name)] for m in SOURCE_METRICS}
                     for name in cfg.data.extra_sources}
            self.source_scores = {**self.source_scores, **source_metrics(in_source, stale),
                                  "sources_time_s": 0.0}
        return dict(self.source_scores)

    def elapsed(self) -> float:
        """The trial's running time so far (s), across restores: the time it had run before
        its restored checkpoint, plus this process's time on it."""
        return self.time_before + time.time() - self.started

    def record(self, metrics: Mapping[str, Any]) -> None:
        """Write the epoch to the trial's own history, durably, before Tune hears of it
        (rank 0 only; a failure to write fails the epoch, as a failed checkpoint would)."""
        if self.history is not None and metrics.get("epoch") is not None:
            self.history.write(epoch_record(metrics, time_total_s=metrics.get("time_total_s")))

    def save(self, metrics: dict[str, Any], predictions: tuple[list[str], np.ndarray, np.ndarray]
             ) -> None:
        """Report the epoch with its checkpoint (written by rank 0 only), after writing it to
        the trial's own history."""
        metrics["time_total_s"] = self.elapsed()  # kept in the checkpoint for a restore
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            ckpt = None
            if self.rt.rank == 0:
                ckpt = Path(tmp)
                save_checkpoint(ckpt, self.model, self.cfg,
                                {"epoch": metrics["epoch"], "metrics": metrics})
                save_trainer_state(ckpt, metrics["epoch"], self.optimizer.state_dict())
                write_predictions(ckpt / PREDICTIONS, *predictions)
                self.record(metrics)
            self.rt.report(metrics, ckpt)

    # ------------------------------------------------------------------ the recipe
    def run(self) -> None:
        """Set up, resume, then train/validate/save every remaining epoch."""
        self.setup()
        self.resume()
        if self.start_epoch >= self.cfg.optim.epochs:
            # Interrupted after its last checkpoint but before Tune saw it end: say the final
            # epoch again so the restored trial ends with its metrics instead of an empty result.
            # Its history already holds it (written before its first report); written again,
            # it is the same record.
            if self.rt.rank == 0:
                self.record(self.final_metrics or {})
            self.rt.report(self.final_metrics or {}, None)
            return
        for epoch in range(self.start_epoch, self.cfg.optim.epochs):
            t0 = time.perf_counter()
            metrics = self.train_one_epoch(epoch)
            if metrics is None:
                return  # stopped by the scheduler mid-epoch
            val_metrics, predictions = self.validate()
            val_metrics.update(self.validate_sources(epoch, val_metrics))
            metrics.update(val_metrics, **self.latency, **self.where,
                           epoch_time_s=time.perf_counter() - t0)
            self.save(metrics, predictions)


def cpu_threads(cfg: ExperimentConfig) -> int:
    """Intra-op threads of a CPU worker: ``cluster.threads``, else the CPUs it holds."""
    return max(1, int(cfg.cluster.threads or cfg.cluster.cpus_per_worker))


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train entry point (each DDP worker): ``config = {"experiment": cfg.to_dict()}``."""
    Recipe(config_from_dict(config["experiment"]), TrainRuntime()).run()


class _timed:
    """Wrap a batch iterator, timing how long the consumer waits for each batch."""

    def __init__(self, it: Any) -> None:
        self.it = iter(it)
        self.wait = 0.0
        self.first = 0.0

    def __iter__(self) -> _timed:
        return self

    def __next__(self) -> Any:
        t = time.perf_counter()
        try:
            return next(self.it)
        finally:
            dt = time.perf_counter() - t
            if not self.wait:
                self.first = dt
            self.wait += dt


__all__ = ["SOURCE_SPLIT", "NormalizeCollate", "Recipe", "build_optimizer", "cpu_threads",
           "lr_factor", "scores_sources", "source_metrics", "train_loop", "training_batches",
           "warmup_factor"]
