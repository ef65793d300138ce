"""Budgets of training stages in a smoke run."""

from __future__ import annotations

from edgekd.config import TrainConfig


def smoke_config(config: TrainConfig, smoke: bool) -> TrainConfig:
    """In a smoke run: one epoch without warm-up (the data are already cut to small subsets by the runner)."""
    if not smoke:
        return config
    return config.model_copy(update={"epochs": 1, "warmup_epochs": 0, "milestones": []})
