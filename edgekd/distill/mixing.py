"""Mixup and CutMix on a batch, seeded, for "consistent teaching": teacher and student see the same mixed images.

Beyer et al., "Knowledge distillation: A good teacher is patient and consistent", CVPR 2022: the teacher must score
exactly the view the student is trained on (same crop, same mixing), which is what makes aggressive mixing help
distillation. The trainer mixes the (augmented) global batch once and feeds the result to both networks; the
cross-entropy uses the mixed targets ``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``.

- Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): ``x = lam x_a + (1 - lam) x_b``,
  ``lam ~ Beta(alpha, alpha)``.
- CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features",
  ICCV 2019): a box of area ``(1 - lam) H W`` (side ratio ``sqrt(1 - lam)``, centre uniform, clipped at the border)
  is pasted from ``x_b``; ``lam`` is then recomputed as the share of pixels kept from ``x_a``.

Partners are paired as in timm's batch mode: sample ``i`` with sample ``N - 1 - i`` (``x.flip(0)``). With both
alphas set, each batch uses one of the two, CutMix with probability 1/2 (timm's ``switch_prob``). Every random number
comes from the caller's ``torch.Generator`` (one 62-bit draw seeds NumPy's Beta sampler), so a batch is a pure
function of the generator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MixedBatch:
    """A batch after mixing: images, the labels of both partners, and the share ``lam`` of ``y_a``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float = 1.0

    @property
    def target(self) -> Tensor:
        """The label of the larger share (``y_a`` when ``lam >= 0.5``): what losses taking one label per sample get."""
        return self.y_a if self.lam >= 0.5 else self.y_b

    def rows(self, start: int, stop: int) -> MixedBatch:
        """Samples ``start:stop`` (one rank's part of the global batch)."""
        return MixedBatch(self.x[start:stop], self.y_a[start:stop], self.y_b[start:stop], self.lam)

    def to(self, device: torch.device) -> MixedBatch:
        """The batch on ``device``."""
        return MixedBatch(self.x.to(device), self.y_a.to(device), self.y_b.to(device), self.lam)


def mix_batch(
    x: Tensor, y: Tensor, *, generator: torch.Generator, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0
) -> MixedBatch:
    """Mixup or CutMix of an NCHW batch (see the module docstring); unmixed, with no draw, when both alphas are 0."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return MixedBatch(x, y, y)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if not use_cutmix:
        return mixup(x, y, lam)
    top, bottom, left, right = cutmix_box(x.shape[-2], x.shape[-1], lam, rng)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
    return MixedBatch(mixed, y, y.flip(0), kept)


def mixup(x: Tensor, y: Tensor, lam: float) -> MixedBatch:
    """Mixup of a batch with its reverse at a given ``lam``: ``x_i' = lam x_i + (1 - lam) x_{N-1-i}``."""
    return MixedBatch(lam * x + (1.0 - lam) * x.flip(0), y, y.flip(0), lam)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of CutMix's box: sides ``sqrt(1 - lam)`` times the image's, centre uniform."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def mixed_cross_entropy(criterion: nn.Module, logits: Tensor, batch: MixedBatch) -> Tensor:
    """``lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)`` (one term when unmixed)."""
    if batch.lam == 1.0:
        return criterion(logits, batch.y_a)
    return batch.lam * criterion(logits, batch.y_a) + (1.0 - batch.lam) * criterion(logits, batch.y_b)
