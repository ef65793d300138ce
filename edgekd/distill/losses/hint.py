"""Hint losses: the student's features, through a small learnable map, regress the teacher's (FitNets, V_kD).

The learnable maps are created lazily on the first call, from the shapes of the features seen then, on the
student features' device and dtype. The trainer therefore makes one probe call (under ``torch.no_grad()`` is fine)
before it builds the optimizer, and adds ``loss.parameters()`` to it. The teacher side never gets gradients.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from edgekd.distill.losses._base import FeatureLoss, Hparams, register
from edgekd.distill.losses._ops import embed, require_maps


def fitnets_connector(student: Tensor, teacher: Tensor, relu: bool) -> nn.Sequential:
    """Conv regressor from the student's ``(C, H, W)`` to the teacher's, then BN (and ReLU), as mdistiller's ConvReg.

    Same size: 1×1 conv. Student twice as large: 3×3 conv, stride 2. Student half as large: 4×4 transposed conv,
    stride 2. Any other size ratio: adaptive average pooling (student larger) or bilinear resizing (student smaller)
    to the teacher's size, then 1×1 conv (mdistiller uses a ``(1 + dH) x (1 + dW)`` valid conv when the student is
    larger, which grows huge for large ratios, and has no case for other smaller sizes).
    """
    s_channels, s_size = student.shape[1], tuple(student.shape[2:])
    t_channels, t_size = teacher.shape[1], tuple(teacher.shape[2:])
    layers: list[nn.Module]
    if s_size == t_size:
        layers = [nn.Conv2d(s_channels, t_channels, kernel_size=1)]
    elif s_size == (2 * t_size[0], 2 * t_size[1]):
        layers = [nn.Conv2d(s_channels, t_channels, kernel_size=3, stride=2, padding=1)]
    elif (2 * s_size[0], 2 * s_size[1]) == t_size:
        layers = [nn.ConvTranspose2d(s_channels, t_channels, kernel_size=4, stride=2, padding=1)]
    else:
        shrink = s_size[0] >= t_size[0] and s_size[1] >= t_size[1]
        resize = nn.AdaptiveAvgPool2d(t_size) if shrink else nn.Upsample(size=t_size, mode="bilinear")
        layers = [resize, nn.Conv2d(s_channels, t_channels, kernel_size=1)]
    layers.append(nn.BatchNorm2d(t_channels))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _FitNetsParams(Hparams):
    relu: bool = Field(True, description="end the connector with a ReLU (teacher hint taken after a ReLU)")


@register("fitnets", paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015")
class FitNets(FeatureLoss):
    """FitNets hint loss: mean squared error between the connected student feature map and the teacher's.

    Formula per tapped pair: ``mean((r(f_s) - f_t)^2)`` over all elements, ``r`` a conv + BN (+ ReLU) connector
    created on the first call (see :func:`fitnets_connector`); pairs are summed. Stage-wise FitNets training is
    replaced, as in mdistiller, by one joint loss. Defaults (mdistiller CIFAR-100): hint layer = middle stage,
    weight 100, CE weight 1.

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: fitnets, weight: 100, student_taps: [layer2], teacher_taps: [layer2]}
    """

    Params: ClassVar[type[Hparams]] = _FitNetsParams
    hp: _FitNetsParams

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        require_maps(self.name, student, teacher)
        connector = self.adapter(index, lambda: fitnets_connector(student, teacher, self.hp.relu), student)
        return F.mse_loss(connector(student), teacher)


@register(
    "vkd", paper="Miles, Elezi & Deng, VkD: Improving Knowledge Distillation using Orthogonal Projections, CVPR 2024"
)
class VkD(FeatureLoss):
    """V_kD: an orthogonal projection of the pooled student features regresses the standardised teacher features.

    Formula per tapped pair: ``smooth_l1(P z_s, LN(z_t))`` (mean), with ``z`` the spatially pooled features
    (token mean for ``(N, L, D)``), ``P`` a bias-free linear map ``D_s → D_t`` kept orthogonal (rows or columns
    orthonormal) by ``torch.nn.utils.parametrizations.orthogonal`` as in the official code, and ``LN`` a layer norm
    without affine parameters (the paper's task-specific normalisation for classification). Pairs are summed.
    No hyper-parameters; the official code weights this term 1.0 next to CE and a KD term of weight 1.0.

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: kd, weight: 1.0, params: {temperature: 1}}
            - {name: vkd, weight: 1.0, student_taps: [layer3], teacher_taps: [layer3]}
    """

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        z_student, z_teacher = embed(student), embed(teacher)
        projector = self.adapter(
            index, lambda: orthogonal(nn.Linear(z_student.shape[1], z_teacher.shape[1], bias=False)), z_student
        )
        return F.smooth_l1_loss(projector(z_student), F.layer_norm(z_teacher, z_teacher.shape[1:]))
