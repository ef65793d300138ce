"""LiteRT's INT8 engine: ``ai_edge_quantizer``'s full-integer recipe ``static_wi8_ai8`` (``aiq``) on the fp32
``.tflite`` model, calibrated on the quantize stage's calibration images (the same images every INT8 engine gets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgekd._atomic import atomic_write_bytes
from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.runtimes.litert.export import export_tflite, quantize_model
from edgekd.runtimes.litert.spec import NAME

METHOD = "aiq"
"""The method part of the INT8 artifact's name (``<source>-litert-int8-aiq``)."""

NO_QAT = "edgekd builds LiteRT INT8 by post-training calibration (aiq) only, not from the QAT+KD model"
"""Why the QAT+KD model is not exported to LiteRT."""


def fp32_intermediate(net: nn.Module, mean: Any, std: Any, example: Any, target_dir: Path) -> Path:
    """An fp32 ``.tflite`` to quantize when the export stage made none: ``target_dir/model.tflite``."""
    return export_tflite(net, mean, std, example, target_dir / "model.tflite", precision="fp32")


def full_integer(fp32: Path, out: Path, calibration: Any) -> Path:
    """``out`` (a ``.tflite`` file): ``fp32`` quantized to int8 weights and activations, int8 input and output,
    calibrated on ``calibration`` (float32 NCHW in [0, 1])."""
    atomic_write_bytes(out, quantize_model(fp32.read_bytes(), "int8", calibration))
    return out


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The full-integer model of the fp32 ``.tflite`` (where this host can build LiteRT models)."""
    name = job.name(NAME, METHOD)
    if job.unmet is not None:
        return [], {name: job.unmet}
    return [Int8Build(name, NAME, NAME, lambda out: full_integer(job.fp32(NAME), out / "model.tflite",
                                                                 job.calibration))], {}


def qat_plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """Nothing: the QAT+KD model is not exported to LiteRT (:data:`NO_QAT`)."""
    return [], {job.name(NAME, "qat"): NO_QAT}
