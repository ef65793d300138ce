"""Small tensor helpers shared by the feature losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from edgekd.errors import UserError


def embed(features: Tensor) -> Tensor:
    """Vectors ``(N, D)`` from a tapped output: spatial mean of ``(N, C, H, W)``, token mean of ``(N, L, D)``."""
    if features.dim() == 4:
        return features.mean(dim=(2, 3))
    if features.dim() == 3:
        return features.mean(dim=1)
    return features.flatten(1)


def match_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool whichever map is larger (per axis) down to the other's height and width."""
    height = min(student.shape[2], teacher.shape[2])
    width = min(student.shape[3], teacher.shape[3])
    if student.shape[2:] != (height, width):
        student = F.adaptive_avg_pool2d(student, (height, width))
    if teacher.shape[2:] != (height, width):
        teacher = F.adaptive_avg_pool2d(teacher, (height, width))
    return student, teacher


def require_maps(name: str, *tensors: Tensor) -> None:
    """UserError unless every tensor is a 4-D feature map (the recipe tapped a layer of the wrong kind)."""
    for tensor in tensors:
        if tensor.dim() != 4:
            raise UserError(
                f"loss {name!r} needs (N, C, H, W) feature maps from its taps; got shape {tuple(tensor.shape)} "
                "(tap a convolution or a block, not a pooled or linear layer)"
            )
