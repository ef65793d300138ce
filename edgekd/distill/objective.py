"""What the trainer minimises: ``ce_weight * CE + sum_i weight_i * loss_i`` over one (mixed) batch.

A logit loss gets ``(student_logits, teacher_logits, target)``; a feature loss gets the tapped features of both nets
(:class:`~edgekd.distill.taps.FeatureTaps`) plus the extras it declares in ``needs`` (:data:`EXTRAS`): the batch's
``target``, and, resolved once by :meth:`Objective.prepare`, the classifier heads and the teacher's class means.
Under mixup/CutMix the cross-entropy uses both labels and ``target`` is the label of the larger share
(:class:`~edgekd.distill.mixing.MixedBatch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.data import DataBundle
from edgekd.distill._extras import check_needs, classifier_head, teacher_class_means
from edgekd.distill.mixing import MixedBatch, mixed_cross_entropy
from edgekd.distill.taps import FeatureTaps


@dataclass
class DistillTerm:
    """One weighted distillation loss with the module paths it taps (feature losses only)."""

    weight: float
    loss: nn.Module
    kind: str
    student_taps: list[str] = field(default_factory=list)
    teacher_taps: list[str] = field(default_factory=list)


class Objective:
    """The weighted loss of a student (``net``) against an optional ``teacher``; hooks its taps until :meth:`close`."""

    def __init__(self, net: nn.Module, teacher: nn.Module | None, terms: list[DistillTerm], *, ce_weight: float,
                 label_smoothing: float) -> None:
        if terms and teacher is None:
            raise ValueError("distillation terms need a teacher")
        self.net, self.teacher, self.terms = net, teacher, terms
        self.ce_weight = ce_weight
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.taps = [
            (FeatureTaps(net, t.student_taps), FeatureTaps(teacher, t.teacher_taps))
            if t.kind == "feature" and teacher is not None
            else None
            for t in terms
        ]
        self.needs = [check_needs(getattr(term.loss, "needs", ())) for term in terms]
        self.extras: list[dict[str, Any]] = [{} for _ in terms]

    @property
    def logit_only(self) -> bool:
        """There are distillation terms and all of them read logits only (so cached teacher logits suffice)."""
        return bool(self.terms) and all(term.kind == "logit" for term in self.terms)

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the losses (connectors, projectors), once :meth:`probe` created them."""
        return [p for term in self.terms for p in term.loss.parameters() if p.requires_grad]

    def prepare(self, data: DataBundle, normalize: nn.Module, batch_size: int) -> None:
        """Resolve the extras that stay fixed during training: classifier heads, teacher class means (one teacher
        pass over the training split, ``batch_size`` images at a time)."""
        for i, (needs, taps) in enumerate(zip(self.needs, self.taps)):
            extras: dict[str, Any] = {}
            if "student_head" in needs:
                extras["student_head"] = classifier_head(self.net)
            if "teacher_head" in needs:
                assert self.teacher is not None
                extras["teacher_head"] = classifier_head(self.teacher)
            if "teacher_class_means" in needs:
                assert self.teacher is not None and taps is not None
                extras["teacher_class_means"] = teacher_class_means(
                    self.teacher, taps[1], data.train, data.num_classes, normalize=normalize, batch_size=batch_size)
            self.extras[i] = extras

    def probe(self, x: Tensor, y: Tensor) -> None:
        """One eval-mode forward without gradients, so losses with lazily built parts create their parameters."""
        if not any(term.kind == "feature" for term in self.terms):
            return
        modules = [self.net, *(term.loss for term in self.terms)]
        with torch.no_grad():
            for module in modules:
                module.eval()
            self(self.net, MixedBatch(x, y, y))
            for module in modules:
                module.train()

    def __call__(self, model: nn.Module, batch: MixedBatch, teacher_logits: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Total loss, student logits and teacher logits of a normalised batch; the teacher runs unless its logits
        are given. ``model`` is ``net`` itself or its DistributedDataParallel wrapper."""
        logits = model(batch.x)
        total = self.ce_weight * mixed_cross_entropy(self.criterion, logits, batch)
        if not self.terms:
            return total, logits, None
        if teacher_logits is None:
            assert self.teacher is not None
            with torch.no_grad():
                # float32, as the teacher-output cache stores them (bfloat16 under autocast): live and cached equal
                teacher_logits = self.teacher(batch.x).float()
        for term, taps, needs, extras in zip(self.terms, self.taps, self.needs, self.extras):
            if term.weight == 0:
                continue
            if taps is not None:
                kwargs = {**extras, **({"target": batch.target} if "target" in needs else {})}
                value = term.loss(taps[0].features(), taps[1].features(), **kwargs)
            else:
                value = term.loss(logits, teacher_logits, batch.target)
            total = total + term.weight * value
        return total, logits, teacher_logits

    def close(self) -> None:
        """Remove the feature hooks from both nets."""
        for taps in self.taps:
            if taps is not None:
                taps[0].close()
                taps[1].close()
