"""Relational KD: transfer the geometry of the batch (pairwise distances, triplet angles), not the points."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edgekd.distill.losses._base import FeatureLoss, Hparams, register
from edgekd.distill.losses._ops import embed


def normalised_distances(points: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise Euclidean distances ``(N, N)`` (zero diagonal) divided by the mean of the non-zero ones."""
    squared = points.pow(2).sum(dim=1)
    dist = (squared.unsqueeze(1) + squared.unsqueeze(0) - 2 * points @ points.t()).clamp(min=eps).sqrt()
    dist = dist * (1 - torch.eye(len(points), device=points.device, dtype=points.dtype))
    return dist / dist[dist > 0].mean()


def triplet_angles(points: Tensor) -> Tensor:
    """``cos`` of the angle at ``e_i`` between ``e_j - e_i`` and ``e_k - e_i`` for all ``(i, j, k)``, flattened.

    Zero difference vectors (``j == i`` or ``k == i``) give 0, as in the reference implementations.
    """
    unit = F.normalize(points.unsqueeze(0) - points.unsqueeze(1), p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2)).flatten()


class _RKDParams(Hparams):
    distance_weight: float = Field(25.0, ge=0, description="weight of the distance-wise term")
    angle_weight: float = Field(50.0, ge=0, description="weight of the angle-wise term")


@register("rkd", paper="Park, Kim, Lu & Cho, Relational Knowledge Distillation, CVPR 2019")
class RKD(FeatureLoss):
    """Relational KD: match normalised pairwise distances and triplet angles of the batch's embeddings.

    Formula per tapped pair, with ``e`` the pooled, flattened features (spatial mean of ``(N, C, H, W)``):
    ``distance_weight * smooth_l1(psi_D(e_s), psi_D(e_t)) + angle_weight * smooth_l1(psi_A(e_s), psi_A(e_t))``,
    ``psi_D`` the pairwise distances divided by their mean over non-zero entries, ``psi_A`` the cosines of all
    triplet angles; smooth-L1 averaged over all entries. Pairs are summed. Student and teacher dimensions may differ.
    Defaults (the paper's metric-learning setting, mdistiller): distance 25, angle 50, term weight 1
    (torchdistill's CIFAR config: 1 and 2). Needs batches of at least 2 distinct samples.

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: rkd, weight: 1.0, params: {distance_weight: 25, angle_weight: 50},
               student_taps: [layer3], teacher_taps: [layer3]}
    """

    Params: ClassVar[type[Hparams]] = _RKDParams
    hp: _RKDParams

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        e_student, e_teacher = embed(student), embed(teacher)
        loss = student.new_zeros(())
        if self.hp.distance_weight:
            distance = F.smooth_l1_loss(normalised_distances(e_student), normalised_distances(e_teacher))
            loss = loss + self.hp.distance_weight * distance
        if self.hp.angle_weight:
            angle = F.smooth_l1_loss(triplet_angles(e_student), triplet_angles(e_teacher))
            loss = loss + self.hp.angle_weight * angle
        return loss
