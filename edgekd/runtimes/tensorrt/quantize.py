"""TensorRT's INT8 engines: built from a symmetric Q/DQ ONNX graph, calibrated by ONNX Runtime (``ort``: per
channel, symmetric activations, biases left float so no int32 DequantizeLinear) or the QAT+KD model's graph
(``qat``, needs ``torchao``). TensorRT 10 and 11 take INT8 from the Q/DQ nodes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgekd.quantize.jobs import NO_TORCHAO, Int8Build, Int8Job
from edgekd.runtimes.tensorrt.spec import NAME


def int8_engine(qdq_onnx: Path, out: Path, device: str) -> Path:
    """An INT8 engine ``out/model.engine`` from a Q/DQ ONNX graph, built on the CUDA ``device`` (``cuda:N``)."""
    from edgekd.runtimes.tensorrt.exporter import build_engine

    return build_engine(qdq_onnx, out / "model.engine", precision="int8",
                        timing_cache=out.parent / "tensorrt-timing.cache", device=device)


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The engine of ONNX Runtime's symmetric calibration (where this host can build engines)."""
    from edgekd.quantize import ort_static_quantize

    name = job.name(NAME, "ort")
    if job.unmet is not None:
        return [], {name: job.unmet}
    return [Int8Build(name, NAME, NAME, lambda out: int8_engine(ort_static_quantize(
        job.fp32("onnx"), out / "qdq.onnx", job.calibration, per_channel=True, symmetric_activations=True,
        quantize_bias=False, calibrate_method=job.cfg.ort.calibrate_method), out, job.device))], {}


def qat_plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The engine of the QAT+KD model's plain Q/DQ graph."""
    from edgekd.quantize import strip_qat_to_onnx

    name = job.name(NAME, "qat")
    if job.unmet is not None:
        return [], {name: job.unmet}
    if importlib.util.find_spec("torchao") is None:
        return [], {name: NO_TORCHAO}

    def build(out: Path) -> Path:
        qdq = strip_qat_to_onnx(job.qat_model(), job.mean, job.std, job.example, out / "model.onnx")
        return int8_engine(qdq, out, job.device)

    return [Int8Build(name, NAME, NAME, build)], {}
