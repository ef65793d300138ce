"""Soft-target distillation on logits: classic KD, its decoupled form DKD, and function matching.

Both return their own term only; the recipe adds the cross-entropy (``distill.ce_weight``) and the term's weight.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edgekd.distill.losses._base import EpochWarmup, Hparams, LogitLoss, register
from edgekd.errors import UserError


def softmax_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``KL(softmax(t/T) || softmax(s/T))``, summed over classes and averaged over the batch."""
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean")


def tempered_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, summed over classes and averaged over the batch."""
    return softmax_kl(student, teacher, temperature) * temperature**2


class _KDParams(Hparams):
    temperature: float = Field(4.0, gt=0, description="softmax temperature T")


@register("kd", paper="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, NIPS DL Workshop 2015")
class KD(LogitLoss):
    """Hinton's knowledge distillation: tempered KL divergence from the teacher's soft targets, times T².

    Formula: ``T^2 * (1/N) * sum_i sum_c p_t[i,c] * log(p_t[i,c] / p_s[i,c])`` with ``p = softmax(z / T)``.
    The same value as mdistiller's ``KD``, RepDistiller's ``DistillKL`` and torchdistill's ``KDLoss`` soft term
    (``KLDivLoss(reduction="batchmean")`` times T²). Defaults: T = 4 (mdistiller CIFAR: ce 0.1, kd 0.9).

    Recipe::

        distill:
          ce_weight: 0.1
          losses:
            - {name: kd, weight: 0.9, params: {temperature: 4}}
    """

    Params: ClassVar[type[Hparams]] = _KDParams
    hp: _KDParams

    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        return tempered_kl(student, teacher, self.hp.temperature)


class _FunctionMatchingParams(Hparams):
    temperature: float = Field(1.0, gt=0, description="softmax temperature T of teacher and student")


@register(
    "function_matching",
    paper="Beyer et al., Knowledge distillation: A good teacher is patient and consistent, CVPR 2022",
)
class FunctionMatching(LogitLoss):
    """Function matching: KL divergence from the teacher's to the student's softmax on the same mixed view.

    Formula: ``(1/N) * sum_i sum_c p_t[i,c] * log(p_t[i,c] / p_s[i,c])`` with ``p = softmax(z / T)``, where
    teacher and student score the same augmented, mixup/CutMix-mixed images. The labels play no part: the student
    matches the teacher's function on whatever images the mixing makes. Unlike ``kd`` the value is not rescaled by
    ``T^2`` (at the paper's ``T = 1`` the two coincide).

    A recipe using it must set ``distill.ce_weight: 0`` (no label term) and mixup or CutMix in ``distill.train``
    (the "consistent" views); the recipe check refuses anything else. The teacher's logits of each view are cached
    (``augment_views``), so a long ("patient") schedule costs about as much as plain training.

    Recipe::

        distill:
          ce_weight: 0.0
          losses:
            - {name: function_matching, weight: 1.0, params: {temperature: 1.0}}
          train:
            epochs: 200
            augment: {crop_padding: 2, hflip: true, mixup_alpha: 1.0, cutmix_alpha: 1.0}
            augment_views: 16
    """

    Params: ClassVar[type[Hparams]] = _FunctionMatchingParams
    hp: _FunctionMatchingParams

    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        return softmax_kl(student, teacher, self.hp.temperature)


class _DKDParams(Hparams):
    alpha: float = Field(1.0, ge=0, description="weight of TCKD (target-class term)")
    beta: float = Field(8.0, ge=0, description="weight of NCKD (non-target-class term)")
    temperature: float = Field(4.0, gt=0, description="softmax temperature T")
    warmup_epochs: int = Field(20, ge=0, description="linear warm-up of the whole term over this many epochs (0: off)")


@register("dkd", paper="Zhao et al., Decoupled Knowledge Distillation, CVPR 2022")
class DKD(EpochWarmup, LogitLoss):
    """Decoupled KD: target-class (TCKD) and non-target-class (NCKD) terms weighted separately.

    Formula, with ``p = softmax(z / T)`` and target ``y``:

    - TCKD: binary KL between ``b = [p_y, 1 - p_y]`` of teacher and student,
    - NCKD: KL between the softmaxes over the non-target classes only (``p_c / (1 - p_y)``, ``c != y``),
      computed as in mdistiller by subtracting 1000 from the target logit before the softmax,

    each summed over the batch, times ``T^2 / N``. Loss ``= min((epoch + 1) / warmup_epochs, 1) * (alpha * TCKD +
    beta * NCKD)`` (0-based epochs, see :meth:`set_epoch`). KD itself equals ``TCKD + (1 - p_y^teacher) * NCKD``.
    NCKD needs at least two non-target classes: 2-class problems are rejected (mdistiller issue #60).
    Defaults (mdistiller CIFAR-100): alpha 1, beta 8, T 4, 20 warm-up epochs, CE weight 1; per pair beta
    differs (ResNet56→ResNet20: 2, VGG13→VGG8: 6).

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: dkd, weight: 1.0, params: {alpha: 1, beta: 8, temperature: 4, warmup_epochs: 20}}
    """

    Params: ClassVar[type[Hparams]] = _DKDParams
    hp: _DKDParams

    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        classes = student.shape[1]
        if classes < 3:
            raise UserError(
                f"loss 'dkd': NCKD is undefined for {classes} classes (no distribution over a single non-target "
                "class); use 'kd' for this data set"
            )
        hp = self.hp
        temperature = hp.temperature
        is_target = F.one_hot(target, classes).bool()
        tckd = _binary_kl(student / temperature, teacher / temperature, is_target)
        masked_s = student / temperature - 1000.0 * is_target
        masked_t = teacher / temperature - 1000.0 * is_target
        nckd = F.kl_div(F.log_softmax(masked_s, dim=1), F.softmax(masked_t, dim=1), reduction="sum")
        scale = temperature**2 / student.shape[0]
        return self.warmup_factor * scale * (hp.alpha * tckd + hp.beta * nckd)


def _binary_kl(student: Tensor, teacher: Tensor, is_target: Tensor) -> Tensor:
    """Sum over the batch of KL([p_y, 1 - p_y] teacher || student), from logits (log-space for stability)."""

    def log_binary(logits: Tensor) -> Tensor:
        total = torch.logsumexp(logits, dim=1)
        target = logits.masked_fill(~is_target, float("-inf")).logsumexp(dim=1)
        rest = logits.masked_fill(is_target, float("-inf")).logsumexp(dim=1)
        return torch.stack([target - total, rest - total], dim=1)

    log_t = log_binary(teacher)
    return F.kl_div(log_binary(student), log_t, reduction="sum", log_target=True)
