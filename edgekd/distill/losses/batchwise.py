"""Logit distillation that looks across the batch: LumiNet (batch-standardised logits) and SinKD (Sinkhorn distance).

Both follow their authors' official code (``ismail31416/LumiNet``, ``2018cx/SinKD``), including its scale factors.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edgekd.distill.losses._base import EpochWarmup, Hparams, LogitLoss, register


def batch_standardise(logits: Tensor, eps: float = 1e-5) -> Tensor:
    """LumiNet's "perception": each class's logit standardised over the batch, ``(z - mean_b) / sqrt(var_b + eps)``."""
    mean = logits.mean(dim=0, keepdim=True)
    var = logits.var(dim=0, unbiased=False, keepdim=True)
    return (logits - mean) / torch.sqrt(var + eps)


class _LumiNetParams(Hparams):
    alpha: float = Field(31.0, ge=0, description="scale; the KL term is multiplied by alpha² (official code)")
    temperature: float = Field(4.0, gt=0, description="softmax temperature T")
    warmup_epochs: int = Field(20, ge=0, description="linear warm-up of the whole term over this many epochs (0: off)")


@register(
    "luminet",
    paper="Hossain et al., LumiNet: The Bright Side of Perceptual Knowledge Distillation, arXiv 2023",
)
class LumiNet(EpochWarmup, LogitLoss):
    """LumiNet: KD on logits re-expressed relative to the batch ("perception"), so intra-class relations transfer.

    Formula: ``q = (z - mean_batch(z)) / sqrt(var_batch(z) + 1e-5)`` per class (biased variance over the batch),
    then ``min((epoch + 1) / warmup_epochs, 1) * alpha^2 * (1/N) sum_i KL(softmax(q_t/T) || softmax(q_s/T))``.
    As in the official code the scale is ``alpha^2`` (not ``T^2``). Defaults (official ``cfg.py``): alpha 31,
    T 4, 20 warm-up epochs, CE weight 2 (CIFAR-100 ResNet32x4→ResNet8x4 uses alpha 34). The batch statistics make
    the value depend on the batch: use batches of more than a handful of samples.

    Recipe::

        distill:
          ce_weight: 2.0
          losses:
            - {name: luminet, weight: 1.0, params: {alpha: 31, temperature: 4, warmup_epochs: 20}}
    """

    Params: ClassVar[type[Hparams]] = _LumiNetParams
    hp: _LumiNetParams

    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        hp = self.hp
        log_p_student = F.log_softmax(batch_standardise(student) / hp.temperature, dim=1)
        p_teacher = F.softmax(batch_standardise(teacher) / hp.temperature, dim=1)
        kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
        return self.warmup_factor * hp.alpha**2 * kl


def sinkhorn_plan(kernel: Tensor, iterations: int) -> Tensor:
    """Alternately normalise the rows and the columns of a positive matrix ``iterations`` times (Sinkhorn-Knopp)."""
    plan = kernel
    for _ in range(iterations):
        plan = plan / plan.sum(dim=1, keepdim=True)
        plan = plan / plan.sum(dim=0, keepdim=True)
    return plan


class _SinKDParams(Hparams):
    temperature: float = Field(2.0, gt=0, description="softmax temperature T")
    epsilon: float = Field(0.1, gt=0, description="entropic regularisation of the transport plan")
    iterations: int = Field(20, ge=1, description="Sinkhorn normalisation rounds")


@register(
    "sinkd",
    paper="Cui et al., Sinkhorn Distance Minimization for Knowledge Distillation, LREC-COLING 2024",
)
class SinKD(LogitLoss):
    """SinKD: batch-wise Sinkhorn distance between student and teacher probability vectors.

    Formula: with ``p = softmax(z / T)`` per sample, the cost between student sample ``i`` and teacher sample ``j`` is
    ``W_ij = ||p_s[i] - p_t[j]||_1``; the plan ``P`` is ``exp(-W / epsilon)`` after ``iterations`` rounds of
    row-then-column normalisation; the loss is ``sum_ij P_ij W_ij`` (a sum, not a mean, as in the official code).
    Gradients flow through both ``W`` and ``P``. The official code scales this by ``0.0008 * 20 / 8 = 0.002``; that
    factor is the recipe weight here. Defaults (official code): T 2, epsilon 0.1, 20 rounds.
    Identical teacher and student do not give 0 (the entropic plan puts mass off the diagonal); the loss is
    smallest there for a fixed teacher.

    Recipe::

        distill:
          losses:
            - {name: sinkd, weight: 0.002, params: {temperature: 2, epsilon: 0.1, iterations: 20}}
    """

    Params: ClassVar[type[Hparams]] = _SinKDParams
    hp: _SinKDParams

    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        hp = self.hp
        p_student = F.softmax(student / hp.temperature, dim=1)
        p_teacher = F.softmax(teacher / hp.temperature, dim=1)
        cost = torch.cdist(p_student, p_teacher, p=1)
        plan = sinkhorn_plan(torch.exp(-cost / hp.epsilon), hp.iterations)
        return (plan * cost).sum()
