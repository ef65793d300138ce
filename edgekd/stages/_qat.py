"""QAT+KD for the quantize stage: NNCF fake-quantizers on the torch student, fine-tuned with distillation.

The fp32 student (or the teacher) is the teacher of the fine-tuning; the loss is ``ce_weight * CE + sum(weight_i *
loss_i)`` over logit losses. The model is trained once and exported twice: a plain QDQ ONNX graph (``nncf.strip``,
needs ``torchao``) for ONNX Runtime and TensorRT, and an INT8 OpenVINO IR.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from edgekd.config.quantize import QatConfig
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.errors import UserError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.stages._models import load_plain_net
from edgekd.stages._runtime import tensorrt_int8
from edgekd.stages._training import smoke_config

Builder = tuple[str, str, str, Callable[[Path], Path]]


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


def qat_builders(ctx: StageContext, qat: QatConfig, source: Artifact, calibration: np.ndarray,
                 runtimes: list[str], unmet: dict[str, str]) -> tuple[list[Builder], dict[str, str]]:
    """Builders of the QAT+KD artifacts the device asks for (the model is trained on first use, once), and why any
    other is not built; ``unmet``: ``runtime/int8`` → the hardware requirement this host does not meet."""
    data = ctx.data()
    example = data.val.x[:1]
    trained: dict[str, nn.Module] = {}

    def model() -> nn.Module:
        if "q" not in trained:
            trained["q"] = train_qat(ctx, qat, source, calibration)
        return trained["q"]

    def to_openvino(out: Path) -> Path:
        from edgekd.export.openvino import export_openvino

        return export_openvino(model(), out / "model.xml", compress_to_fp16=False, mean=data.mean, std=data.std,
                               example=example)

    def to_onnx(out: Path) -> Path:
        from edgekd.quantize import strip_qat_to_onnx

        return strip_qat_to_onnx(model(), data.mean, data.std, example, out / "model.onnx")

    builders: list[Builder] = []
    not_built: dict[str, str] = {}
    if "openvino" in runtimes:
        builders.append((f"{source.name}-openvino-int8-qat", "openvino", "openvino", to_openvino))
    no_torchao = "nncf.strip needs the torchao package (pip install torchao)"
    has_torchao = importlib.util.find_spec("torchao") is not None
    if "onnxruntime" in runtimes:
        name = f"{source.name}-onnx-int8-qat"
        if has_torchao:
            builders.append((name, "onnx", "onnxruntime", to_onnx))
        else:
            not_built[name] = no_torchao
    if "tensorrt" in runtimes:
        name = f"{source.name}-tensorrt-int8-qat"
        if (why := unmet.get("tensorrt/int8")) is not None:
            not_built[name] = why
        elif not has_torchao:
            not_built[name] = no_torchao
        else:
            builders.append((name, "tensorrt", "tensorrt", lambda out: tensorrt_int8(to_onnx(out), out, ctx.device)))
    return builders, not_built
