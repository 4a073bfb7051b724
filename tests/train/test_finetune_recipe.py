"""The fine-tuning recipe's optimiser: a smaller LR for a pretrained backbone than for its
head, and a linear warm-up over the first optimiser steps (search/train/worker.py)."""

from __future__ import annotations

import pytest
import torch

from search.config import OptimConfig
from search.model.registry import create_model
from search.train.worker import build_optimizer, warmup_factor


def _groups(opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, float]:
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    return {name: lr_of[id(p)] for name, p in model.named_parameters() if id(p) in lr_of}


def test_backbone_gets_the_scaled_lr_and_the_head_keeps_lr() -> None:
    model = create_model("resnet10t", input_size=32, frozen_stages=0)
    opt = build_optimizer(model, OptimConfig(lr=1e-3, backbone_lr_scale=0.3))
    lrs = _groups(opt, model)
    backbone = [lr for n, lr in lrs.items() if n.startswith("backbone.")]
    assert backbone and backbone == pytest.approx([3e-4] * len(backbone))
    assert {lr for n, lr in lrs.items() if n.startswith("head.")} == {1e-3}
    assert opt.param_groups[0]["lr"] == 1e-3  # the lr a trial reports is the head's
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert all(p.ndim <= 1 for g in no_decay for p in g["params"])


def test_one_lr_keeps_the_two_groups_old_checkpoints_resume_into() -> None:
    model = create_model("custom_cnn", input_size=32, conv_blocks=2, base_width=8)
    assert len(build_optimizer(model, OptimConfig()).param_groups) == 2
    assert len(build_optimizer(model, OptimConfig(backbone_lr_scale=0.1)).param_groups) == 2


def test_frozen_parameters_are_left_out() -> None:
    model = create_model("resnet10t", input_size=32, frozen_stages=-1)
    opt = build_optimizer(model, OptimConfig(backbone_lr_scale=0.3))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.head.parameters()))


def test_linear_warmup_over_steps() -> None:
    cfg = OptimConfig(warmup_steps=4)
    assert [warmup_factor(cfg, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(OptimConfig(), 0) == 1.0
