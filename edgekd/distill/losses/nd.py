"""ND loss: push the norm and the direction of the student's embeddings toward the teacher's class means.

The loss needs the teacher's class means (computed once, before training, over the training split with
:class:`ClassMeans`) and the batch's labels. When student and teacher embeddings differ in width, a projector
(BN, dropout 0.5, linear; the official ``EmbTrans``) is created lazily on the first call: the trainer makes one probe
call before it builds the optimizer and adds ``loss.parameters()`` to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from edgekd.distill.losses._base import FeatureLoss, register
from edgekd.distill.losses._ops import embed
from edgekd.errors import UserError


class ClassMeans:
    """Running per-class means of tapped teacher features, one ``(num_classes, D)`` table per tapped layer.

    Usage (teacher in eval mode, taps from :class:`~edgekd.distill.taps.FeatureTaps`)::

        means = ClassMeans(num_classes)
        with torch.no_grad():
            for x, y in train_batches:
                teacher(x)
                means.update(taps.features(), y)
        teacher_class_means = means.compute()
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._sums: list[Tensor] = []
        self._counts = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, features: Sequence[Tensor], target: Tensor) -> None:
        """Add one batch: ``features`` one tensor per tapped layer, ``target`` the labels ``(N,)``."""
        vectors = [embed(f.detach()).to(dtype=torch.float64, device="cpu") for f in features]
        if not self._sums:
            self._sums = [torch.zeros(self.num_classes, v.shape[1], dtype=torch.float64) for v in vectors]
        labels = target.detach().to("cpu")
        for total, v in zip(self._sums, vectors):
            total.index_add_(0, labels, v)
        self._counts += torch.bincount(labels, minlength=self.num_classes).to(torch.float64)

    def compute(self) -> list[Tensor]:
        """The float32 means; a UserError names the classes that never appeared."""
        missing = [str(k) for k in range(self.num_classes) if self._counts[k] == 0]
        if missing or not self._sums:
            raise UserError(f"loss 'nd': no training samples of class(es) {', '.join(missing) or 'any'}")
        return [(total / self._counts.unsqueeze(1)).float() for total in self._sums]


def embedding_projector(student_dim: int, teacher_dim: int) -> nn.Module:
    """The official ``EmbTrans`` head: BN → dropout 0.5 → linear (zero bias); identity when the widths match."""
    if student_dim == teacher_dim:
        return nn.Identity()
    linear = nn.Linear(student_dim, teacher_dim)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(student_dim), nn.Dropout(0.5), linear)


@register(
    "nd", paper="Wang et al., Improving Knowledge Distillation via Regularizing Feature Norm and Direction, arXiv 2023"
)
class ND(FeatureLoss):
    """ND loss: align the student embedding with the unit teacher class mean and stretch it to the larger norm.

    Formula per tapped pair, for sample ``i`` of class ``y_i`` with student embedding ``s_i`` (pooled, projected
    to the teacher's width if needed), teacher embedding ``t_i`` and teacher class mean ``c_y``:
    ``(1/N) sum_i [1 - <s_i, c_y / ||c_y||> / max(||s_i||, ||t_i||)]``; pairs are summed. The loss is 0 exactly
    when ``s_i`` points along ``c_y`` and is at least as long as ``t_i``. Tap the embedding (the input of the
    classifier). Needs ``target`` and ``teacher_class_means`` (see :class:`ClassMeans`). Defaults (official CIFAR
    code, "KD++"): weight 1 next to KD (T 4, weight 1) and CE (weight 1).

    Recipe::

        distill:
          ce_weight: 1.0
          losses:
            - {name: kd, weight: 1.0, params: {temperature: 4}}
            - {name: nd, weight: 1.0, student_taps: [layer3], teacher_taps: [layer3]}
    """

    needs: ClassVar[frozenset[str]] = frozenset({"target", "teacher_class_means"})

    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        s, t = embed(student), embed(teacher)
        projector = self.adapter(index, lambda: embedding_projector(s.shape[1], t.shape[1]), s)
        s = projector(s)
        means = extras["teacher_class_means"][index].to(device=s.device, dtype=s.dtype)
        if means.shape[1] != s.shape[1]:
            raise ValueError(f"loss 'nd': class means have width {means.shape[1]}, embeddings {s.shape[1]}")
        directions = nn.functional.normalize(means, dim=1)[extras["target"]]
        longest = torch.maximum(s.norm(dim=1), t.norm(dim=1))
        return (1 - (s * directions).sum(dim=1) / longest).mean()
