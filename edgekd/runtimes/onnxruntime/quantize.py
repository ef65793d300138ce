"""ONNX Runtime's INT8 engines: its own static Q/DQ quantization (``ort``), the same with the most sensitive nodes in
float (``ort-mixed``), NNCF PTQ on the ONNX graph (``nncf``), and the plain Q/DQ graph of the QAT+KD model (``qat``,
needs ``torchao`` for ``nncf.strip``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgekd.quantize.jobs import NO_TORCHAO, Int8Build, Int8Job
from edgekd.runtimes.onnxruntime.spec import NAME


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The post-training INT8 graphs the recipe's engines ask for."""
    from edgekd.quantize import mixed_build, nncf_ptq, ort_static_quantize

    cfg, builds = job.cfg, []
    if "ort" in cfg.engines:
        builds.append(Int8Build(job.name("onnx", "ort"), "onnx", NAME, lambda out: ort_static_quantize(
            job.fp32("onnx"), out / "model.onnx", job.calibration, **job.ort_options())))
    if "nncf" in cfg.engines:
        builds.append(Int8Build(job.name("onnx", "nncf"), "onnx", NAME, lambda out: nncf_ptq(
            job.fp32("onnx"), out / "model.onnx", job.calibration, subset_size=cfg.nncf.subset_size,
            preset=cfg.nncf.preset, fast_bias_correction=cfg.nncf.fast_bias_correction)))
    if "ort-mixed" in cfg.engines:
        # with no node in float it is the graph of ``ort``: built once
        builds.append(mixed_build(job, "onnx", NAME, "model.onnx", "ort-mixed",
                                  twin=job.name("onnx", "ort") if "ort" in cfg.engines else None))
    return builds, {}


def qat_onnx(job: Int8Job, out: Path) -> Path:
    """The QAT+KD model stripped to a plain Q/DQ ONNX graph, ``out/model.onnx``."""
    from edgekd.quantize import strip_qat_to_onnx

    return strip_qat_to_onnx(job.qat_model(), job.mean, job.std, job.example, out / "model.onnx")


def qat_plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The QAT+KD model as a plain Q/DQ ONNX graph."""
    name = job.name("onnx", "qat")
    if importlib.util.find_spec("torchao") is None:
        return [], {name: NO_TORCHAO}
    return [Int8Build(name, "onnx", NAME, lambda out: qat_onnx(job, out))], {}
