"""The distillation loss zoo: ``create(name, **hparams)`` over the :data:`LOSSES` registry.

Every loss is a ``torch.nn.Module`` that returns its own term only; the trainer adds ``distill.ce_weight * CE`` and
multiplies each term by its recipe ``weight``. Two calling conventions (``LOSSES`` meta ``kind``):

- ``"logit"``: ``loss(student_logits, teacher_logits, target)`` — logits ``(N, C)``, labels ``(N,)``.
- ``"feature"``: ``loss(student_features, teacher_features, **extras)`` — lists with one tensor per tapped layer
  pair (from :class:`~edgekd.distill.taps.FeatureTaps`), summed over pairs unless the loss says otherwise.

Extension for losses that need more than features: a loss class declares ``needs`` (a frozenset of names from
:data:`EXTRAS`: ``target``, ``teacher_class_means``, ``student_head``, ``teacher_head``) and receives exactly those
as keyword arguments; ``needs`` is empty for all others, and ``loss_info(name)["needs"]`` lists it.

Progress: losses with a warm-up (``dkd``, ``luminet``) have ``set_epoch(epoch)`` with the 0-based epoch about to
run. Learnable parts (``fitnets`` connectors, ``vkd`` projectors, ``nd`` projector) are created lazily on the first
call from the shapes seen: make one probe call (``torch.no_grad()`` is fine) before building the optimizer, then add
``loss.parameters()`` to it. The teacher side never gets gradients: losses detach it.

Hyper-parameters are declared once per loss (a pydantic ``Params`` model with types, defaults, descriptions);
unknown names and bad values raise :class:`~edgekd.errors.UserError` naming the loss and its accepted hparams.
"""

from __future__ import annotations

# Importing the family modules registers their losses.
from edgekd.distill.losses import attention, batchwise, hint, kd, nd, relation  # noqa: F401
from edgekd.distill.losses._base import (
    EXTRAS,
    LOSSES,
    DistillLoss,
    FeatureLoss,
    Hparams,
    LogitLoss,
    create,
    loss_info,
)
from edgekd.distill.losses.nd import ClassMeans

__all__ = [
    "EXTRAS",
    "LOSSES",
    "ClassMeans",
    "DistillLoss",
    "FeatureLoss",
    "Hparams",
    "LogitLoss",
    "create",
    "loss_info",
]
