"""TensorRT's INT8 engines: built from a symmetric Q/DQ ONNX graph, calibrated by ONNX Runtime (``ort``: per
channel, symmetric activations, biases left float so no int32 DequantizeLinear), the same graph with ``ort-mixed``'s
float nodes left without Q/DQ (``nodes_to_exclude``) and their layers pinned to fp32 (``trt-mixed``, an engine of
the recipe; :func:`~edgekd.runtimes.tensorrt.exporter.build_engine`'s ``float_layers``), or the QAT+KD model's
graph (``qat``, needs ``torchao``). TensorRT 10 and 11 take INT8 from the Q/DQ nodes."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.quantize.jobs import NO_TORCHAO, Int8Build, Int8Job
from edgekd.quantize.mixed import ChosenEngine, MixedPrecision
from edgekd.quantize.ort import CalibrateMethod
from edgekd.runtimes.tensorrt.spec import NAME

MIXED = "trt-mixed"
"""The mixed-precision engine's name (``quantize.engines``) and the method part of its artifact's name."""


def int8_engine(qdq_onnx: Path, out: Path, device: str, float_layers: Sequence[str] = ()) -> Path:
    """An INT8 engine ``out/model.engine`` from a Q/DQ ONNX graph, built on the CUDA ``device`` (``cuda:N``), the
    layers of the ONNX nodes ``float_layers`` (left without Q/DQ in the graph) pinned to fp32."""
    from edgekd.runtimes.tensorrt.exporter import build_engine

    return build_engine(qdq_onnx, out / "model.engine", precision="int8",
                        timing_cache=out.parent / "tensorrt-timing.cache", device=device, float_layers=float_layers)


def symmetric_qdq(fp32_onnx: Path, out: Path, calibration: np.ndarray, calibrate_method: CalibrateMethod,
                  float_nodes: Sequence[str] = ()) -> Path:
    """The Q/DQ graph TensorRT builds INT8 from: ONNX Runtime's per-channel calibration with symmetric activations
    and float biases, the nodes ``float_nodes`` (names in the pre-processed graph) left without Q/DQ."""
    from edgekd.quantize import ort_static_quantize

    return ort_static_quantize(fp32_onnx, out, calibration, per_channel=True, symmetric_activations=True,
                               quantize_bias=False, calibrate_method=calibrate_method, nodes_to_exclude=float_nodes)


def mixed_engine(job: Int8Job) -> ChosenEngine:
    """``trt-mixed``'s engine: the Q/DQ graph with the given nodes left float (kept beside the engine as
    ``qdq.onnx``), built with their layers pinned to fp32 and scored in TensorRT; the float model's accuracy is the
    fp32 ONNX model's in ONNX Runtime (no fp32 engine is built for it). ``info.mixed.layers`` gives each float
    node's precision in the engine."""
    from edgekd.quantize.sensitivity import top1_accuracy

    def engine(fp32_onnx: Path, out: Path, float_nodes: tuple[str, ...], x: np.ndarray, y: np.ndarray,
               work: Path) -> tuple[MixedPrecision, dict[str, Any]]:
        from edgekd.runtime import evaluate_accuracy, open_runner

        qdq = symmetric_qdq(fp32_onnx, out.parent / "qdq.onnx", job.calibration, job.cfg.ort.calibrate_method,
                            float_nodes)
        path = int8_engine(qdq, out.parent, job.device, float_nodes)
        with open_runner(NAME, path, device=job.device) as runner:
            accuracy = evaluate_accuracy(runner, x, y, batch_size=64)
        # no fp32 engine is built for the choice: the float reference is the fp32 ONNX model the ranking read
        mixed = MixedPrecision(path, float_nodes, accuracy, top1_accuracy(fp32_onnx, x, y),
                               ((len(float_nodes), accuracy),))
        return mixed, {"layers": {node: "fp32" for node in float_nodes}}

    return engine


def plan(job: Int8Job) -> tuple[list[Int8Build], dict[str, str]]:
    """The engine of ONNX Runtime's symmetric calibration, and its mixed-precision one where the recipe asks (where
    this host can build engines); with no node kept float the mixed one is ``ort``'s engine."""
    from edgekd.quantize.mixed import chosen_build

    name, mixed = job.name(NAME, "ort"), MIXED in job.cfg.engines
    if job.unmet is not None:
        return [], {name: job.unmet, **({job.name(NAME, MIXED): job.unmet} if mixed else {})}
    builds = [Int8Build(name, NAME, NAME, lambda out: int8_engine(symmetric_qdq(
        job.fp32("onnx"), out / "qdq.onnx", job.calibration, job.cfg.ort.calibrate_method), out, job.device))]
    if mixed:
        builds.append(chosen_build(job, NAME, NAME, "model.engine", MIXED, mixed_engine(job), twin=name))
    return builds, {}


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
