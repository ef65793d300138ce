"""Where the network looks: spatial attention maps (AT) and class activation maps (CAT-KD)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from edgekd.distill.losses._base import FeatureLoss, Hparams, register
from edgekd.distill.losses._ops import match_spatial, require_maps
from edgekd.errors import UserError


def attention_map(features: Tensor, p: float) -> Tensor:
    """``normalize(mean_c |f|^p)`` flattened per sample: the unit-L2 spatial attention vector of AT."""
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


class _ATParams(Hparams):
    p: float = Field(2.0, gt=0, description="exponent of the activation-based attention map")


@register(
    "at",
    paper="Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of Convolutional "
    "Neural Networks via Attention Transfer, ICLR 2017",
)
class AT(FeatureLoss):
    """Attention transfer: match the normalised spatial attention maps of student and teacher.

    Formula per tapped pair: ``a = normalize(flatten(mean_c |f|^p))`` (unit L2 norm per sample), loss
    ``mean((a_s - a_t)^2)`` over batch and positions; pairs are summed. When the spatial sizes differ, the larger
    map is adaptive-average-pooled to the smaller (mdistiller). No learnable parts; channel counts may differ.
    Defaults (mdistiller CIFAR-100): p 2, weight 1000, CE weight 1, the outputs of every stage tapped.

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: at, weight: 1000, params: {p: 2},
               student_taps: [layer1, layer2, layer3], teacher_taps: [layer1, layer2, layer3]}
    """

    Params: ClassVar[type[Hparams]] = _ATParams
    hp: _ATParams

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        require_maps(self.name, student, teacher)
        student, teacher = match_spatial(student, teacher)
        return (attention_map(student, self.hp.p) - attention_map(teacher, self.hp.p)).pow(2).mean()


def class_activation_maps(features: Tensor, head: nn.Linear) -> Tensor:
    """``CAM[n, k] = sum_c W[k, c] f[n, c]``: the classifier applied at every position (no bias), ``(N, K, H, W)``."""
    if head.weight.shape[1] != features.shape[1]:
        raise UserError(
            f"loss 'catkd': the classifier takes {head.weight.shape[1]} features but the tapped map has "
            f"{features.shape[1]} channels; tap the layer whose pooled output feeds the classifier"
        )
    return torch.einsum("nchw,kc->nkhw", features, head.weight)


class _CATKDParams(Hparams):
    resolution: int = Field(2, ge=1, description="side of the CAMs after adaptive average pooling")
    normalize: bool = Field(False, description="L2-normalise each pooled CAM before the MSE (the paper's CAT-KD: off)")


@register("catkd", paper="Guo et al., Class Attention Transfer Based Knowledge Distillation, CVPR 2023")
class CATKD(FeatureLoss):
    """CAT-KD: transfer the teacher's class activation maps, pooled to a tiny resolution.

    Formula: ``CAM = W f`` per position (``W`` the classifier weights, bias left out as in the CAM definition and the
    official models' bias-free 1×1 classifiers), both sides adaptive-average-pooled to ``resolution × resolution``,
    optionally L2-normalised per map, then ``mean((CAM_s - CAM_t)^2)``. Takes one tapped pair: the last feature maps,
    the ones the classifier pools. Needs ``student_head`` and ``teacher_head`` (the ``nn.Linear`` classifiers); the
    student's classifier weights get gradients from this term too. Defaults (official CIFAR-100 configs):
    resolution 2, no normalisation, CE weight 1; weight 15 (ResNet32x4→ResNet8x4) down to 0.7 (ResNet56→ResNet20);
    ImageNet: resolution 4, weight 0.5.

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: catkd, weight: 15, params: {resolution: 2}, student_taps: [layer3], teacher_taps: [layer3]}
    """

    Params: ClassVar[type[Hparams]] = _CATKDParams
    hp: _CATKDParams
    needs: ClassVar[frozenset[str]] = frozenset({"student_head", "teacher_head"})
    max_pairs: ClassVar[int | None] = 1

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        require_maps(self.name, student, teacher)
        with torch.no_grad():
            cam_teacher = class_activation_maps(teacher, extras["teacher_head"])
        cam_student = class_activation_maps(student, extras["student_head"])
        size = (self.hp.resolution, self.hp.resolution)
        cam_student = F.adaptive_avg_pool2d(cam_student, size)
        cam_teacher = F.adaptive_avg_pool2d(cam_teacher, size)
        if self.hp.normalize:
            cam_student = F.normalize(cam_student, dim=(2, 3))  # type: ignore[arg-type]  # stub says int; norm takes a tuple
            cam_teacher = F.normalize(cam_teacher, dim=(2, 3))  # type: ignore[arg-type]  # stub says int; norm takes a tuple
        return F.mse_loss(cam_student, cam_teacher)
