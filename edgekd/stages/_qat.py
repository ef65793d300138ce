"""QAT+KD for the quantize stage: NNCF fake-quantizers on the torch student, fine-tuned with distillation.

The fp32 student (or the teacher) is the teacher of the fine-tuning; the loss is ``ce_weight * CE + sum(weight_i *
loss_i)`` over logit losses. The model is trained once and exported by each runtime package that asks for it (its
``quantize.qat_plan``).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from edgekd.config.quantize import QatConfig
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.errors import UserError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.stages._models import load_plain_net
from edgekd.stages._training import smoke_config


def logit_terms(qat: QatConfig) -> list[DistillTerm]:
    """The QAT distillation terms; only logit losses (the fake-quantized graph is not tapped)."""
    from edgekd.distill.losses import LOSSES, create

    terms = []
    for i, term in enumerate(qat.losses):
        kind = LOSSES.entry(term.name).meta["kind"]
        if kind != "logit":
            raise UserError(f"quantize.qat.losses.{i}: {term.name!r} is a {kind} loss; QAT distils logits only")
        terms.append(DistillTerm(term.weight, create(term.name, **term.params), kind))
    return terms


def train_qat(ctx: StageContext, qat: QatConfig, source: Artifact, calibration: np.ndarray) -> nn.Module:
    """The student with NNCF fake-quantizers, fine-tuned with KD; resumes from its checkpoint like any training."""
    from edgekd.quantize import nncf_qat_prepare

    data = ctx.data()
    teacher_artifact = source if qat.teacher == "student" else ctx.artifact("teacher")
    if teacher_artifact is None:
        raise UserError("quantize.qat.teacher: 'teacher' needs a teacher section in the recipe")
    teacher = load_plain_net(ctx, teacher_artifact)
    qmodel = nncf_qat_prepare(load_plain_net(ctx, source), calibration, mean=data.mean, std=data.std)
    config = smoke_config(qat.train, ctx.smoke)
    # NNCF's fake quantizers model the int8 rounding of float32 values: QAT trains in float32 unless the recipe asks
    config = config.model_copy(update={k: False for k in ("amp", "channels_last") if getattr(config, k) is None})
    Trainer(qmodel.train(), data, config, ctx.stage_dir / "qat", seed=ctx.recipe.seed,
            teacher=teacher, terms=logit_terms(qat), ce_weight=qat.ce_weight, console=ctx.console,
            label="qat+kd").fit()
    return qmodel.eval()
