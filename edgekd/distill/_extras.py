"""What losses declare in ``needs`` beyond logits and features: classifier heads and teacher class means.

See :data:`edgekd.distill.losses.EXTRAS`. The trainer resolves the static extras (heads, class means) once, before
training, and adds the batch's ``target`` at every step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.data import Split
from edgekd.distill.losses import EXTRAS, ClassMeans
from edgekd.errors import UserError

#: Attribute names zoo and torchvision-style models give their classifier.
_HEAD_NAMES = ("fc", "classifier", "head")


def classifier_head(net: nn.Module) -> nn.Linear:
    """The classifier of ``net``: ``fc``/``classifier``/``head`` when it is (or ends in) an ``nn.Linear``, else the
    last ``nn.Linear`` in ``named_modules()`` order."""
    for name in _HEAD_NAMES:
        module = getattr(net, name, None)
        if isinstance(module, nn.Linear):
            return module
        if isinstance(module, nn.Module):
            linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(net).__name__} has no nn.Linear classifier, which losses needing a head (catkd) use")
    return linears[-1]


def check_needs(needs: Iterable[str]) -> set[str]:
    """The set of needed extras; a ValueError names any the trainer cannot supply."""
    wanted = set(needs)
    unknown = sorted(wanted - set(EXTRAS))
    if unknown:
        raise ValueError(f"losses need unknown extra(s) {', '.join(unknown)}; supplied: {', '.join(sorted(EXTRAS))}")
    return wanted


@torch.no_grad()
def teacher_class_means(
    teacher: nn.Module,
    features: Any,
    split: Split,
    num_classes: int,
    *,
    normalize: nn.Module,
    batch_size: int = 512,
) -> list[Tensor]:
    """Per-class means of the teacher's tapped features over ``split`` (un-augmented, eval mode).

    ``features`` is the :class:`~edgekd.distill.taps.FeatureTaps` already hooked on ``teacher``; the means are
    accumulated by :class:`~edgekd.distill.losses.ClassMeans` in float64 and returned in float32.
    """
    device = next(teacher.parameters()).device
    means = ClassMeans(num_classes)
    for start in range(0, len(split), batch_size):
        teacher(normalize(split.x[start : start + batch_size].to(device)))
        means.update(features.features(), split.y[start : start + batch_size])
    return means.compute()
