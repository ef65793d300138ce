"""Learning-rate schedules per optimisation step: linear warm-up, then cosine, multi-step or constant."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from edgekd.config import TrainConfig


def lr_factor(step: int, *, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate at optimisation step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps``; cosine: ``0.5 (1 + cos(pi (step - w) / (total - w)))`` (SGDR without
    restarts, Loshchilov & Hutter 2017); multi-step: ``gamma ** (number of milestones passed)``.
    """
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "multistep":
        passed = sum(step >= m * steps_per_epoch for m in config.milestones)
        return config.gamma**passed
    return 1.0


def make_scheduler(optimizer: Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A LambdaLR stepping once per optimisation step."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, config=config, steps_per_epoch=steps_per_epoch))
