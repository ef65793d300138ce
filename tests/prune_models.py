"""A user model the LayerMerge analysis refuses (two conv branches joined by a concat), for the prune stage's check."""

from __future__ import annotations

import torch
from torch import nn


class TwoBranches(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], 1))


def two_branches(num_classes: int, in_channels: int = 1) -> nn.Module:
    return TwoBranches(num_classes, in_channels)
