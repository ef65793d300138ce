"""LiteRT's INT8 engines: ``ai_edge_quantizer``'s full-integer recipe ``static_wi8_ai8`` (``aiq``) on the fp32
``.tflite`` model, calibrated on the quantize stage's calibration images (the same images every INT8 engine gets),
and the same with ``ort-mixed``'s float nodes left unquantized (``aiq-mixed``, an engine of the recipe;
:mod:`edgekd.runtimes.litert.mixed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgekd._atomic import atomic_write_bytes
from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.quantize.mixed import ChosenEngine, MixedPrecision
from edgekd.runtimes.litert.export import export_tflite, quantize_model
from edgekd.runtimes.litert.spec import NAME

METHOD = "aiq"
"""The method part of the INT8 artifact's name (``<source>-litert-int8-aiq``)."""

MIXED = "aiq-mixed"
"""The mixed-precision engine's name (``quantize.engines``) and the method part of its artifact's name."""

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


def litert_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the ``.tflite`` model in LiteRT's interpreter (XNNPACK, one thread)."""
    from edgekd.runtime import evaluate_accuracy, open_runner

    with open_runner(NAME, model, threads=1) as runner:
        return evaluate_accuracy(runner, x, y, batch_size=64)


def mixed_engine(job: Int8Job) -> ChosenEngine:
    """``aiq-mixed``'s engine: the full-integer model with the given ONNX nodes' ops left float
    (:func:`~edgekd.runtimes.litert.mixed.aiq_mixed`), scored with the fp32 ``.tflite`` in LiteRT; ``info.mixed``
    adds ``ops`` (each float node's TFLite op) and ``unmapped`` (the nodes with no op, and why)."""
    from edgekd.runtimes.litert.mixed import aiq_mixed

    def engine(fp32_onnx: Path, out: Path, float_nodes: tuple[str, ...], x: np.ndarray, y: np.ndarray,
               work: Path) -> tuple[MixedPrecision, dict[str, Any]]:
        fp32 = job.fp32(NAME)
        path, kept, unmapped = aiq_mixed(fp32, fp32_onnx, out, float_nodes, job.calibration, work_dir=work)
        accuracy = litert_accuracy(path, x, y)
        mixed = MixedPrecision(path, tuple(kept), accuracy, litert_accuracy(fp32, x, y), ((len(kept), accuracy),))
        return mixed, {"ops": {node: {"index": op.index, "op": op.name} for node, op in kept.items()},
                       "unmapped": unmapped}

    return engine


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The full-integer model of the fp32 ``.tflite``, and its mixed-precision one where the recipe asks (where this
    host can build LiteRT models); with no node kept float the mixed one is ``aiq``'s graph."""
    from edgekd.quantize.mixed import chosen_build

    name, mixed = job.name(NAME, METHOD), MIXED in job.cfg.engines
    if job.unmet is not None:
        return [], {name: job.unmet, **({job.name(NAME, MIXED): job.unmet} if mixed else {})}
    builds = [Int8Build(name, NAME, NAME, lambda out: full_integer(job.fp32(NAME), out / "model.tflite",
                                                                   job.calibration))]
    if mixed:
        builds.append(chosen_build(job, NAME, NAME, "model.tflite", MIXED, mixed_engine(job), twin=name))
    return builds, {}


def qat_plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """Nothing: the QAT+KD model is not exported to LiteRT (:data:`NO_QAT`)."""
    return [], {job.name(NAME, "qat"): NO_QAT}
