"""OpenVINO's INT8 engines: NNCF PTQ on the IR (``nncf``), NNCF accuracy-controlled PTQ (``nncf_ac``, with the
recipe's ``accuracy_control``), NNCF PTQ with the nodes ranked most sensitive left in float (``nncf-mixed``, an
engine of the recipe), and the INT8 IR of the QAT+KD model (``qat``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.runtimes.openvino.spec import NAME


def fp32_intermediate(net: nn.Module, mean: Any, std: Any, example: Any, target_dir: Path) -> Path:
    """An fp32 IR to quantize when the export stage made none: ``target_dir/model.xml``."""
    from edgekd.runtimes.openvino.exporter import export_openvino

    return export_openvino(net, target_dir / "model.xml", compress_to_fp16=False, mean=mean, std=std,
                           example=example)


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """NNCF PTQ of the fp32 IR for the profile's device, and the accuracy-controlled and mixed-precision ones where
    asked."""
    from edgekd.quantize import mixed_build, nncf_mixed_precision, nncf_ptq, nncf_ptq_with_accuracy_control

    cfg = job.cfg
    builds = [Int8Build(job.name(NAME, "nncf"), NAME, NAME, lambda out: nncf_ptq(
        job.fp32(NAME), out / "model.xml", job.calibration, subset_size=cfg.nncf.subset_size,
        preset=cfg.nncf.preset, fast_bias_correction=cfg.nncf.fast_bias_correction,
        target_device=job.nncf_target))]
    if cfg.accuracy_control is not None:
        def controlled(out: Path) -> Path:
            ir_fp32 = job.fp32(NAME)
            val_x, val_y = job.val()
            return nncf_ptq_with_accuracy_control(ir_fp32, out / "model.xml", job.calibration, val_x, val_y,
                                                  max_drop=job.max_drop(ir_fp32), subset_size=cfg.nncf.subset_size,
                                                  preset=cfg.nncf.preset, target_device=job.nncf_target)

        builds.append(Int8Build(job.name(NAME, "nncf_ac"), NAME, NAME, controlled))
    if "nncf-mixed" in cfg.engines:
        builds.append(mixed_build(job, NAME, NAME, "model.xml", "nncf-mixed", engine=nncf_mixed_precision,
                                  engine_options={"subset_size": cfg.nncf.subset_size, "preset": cfg.nncf.preset,
                                                  "fast_bias_correction": cfg.nncf.fast_bias_correction,
                                                  "target_device": job.nncf_target}))
    return builds, {}


def qat_plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The QAT+KD model as an INT8 IR."""
    from edgekd.runtimes.openvino.exporter import export_openvino

    def build(out: Path) -> Path:
        return export_openvino(job.qat_model(), out / "model.xml", compress_to_fp16=False, mean=job.mean,
                               std=job.std, example=job.example)

    return [Int8Build(job.name(NAME, "qat"), NAME, NAME, build)], {}
