"""Opening any artifact in its own runtime with the device profile's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.config import Device
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.runtime import Runner, open_runner
from edgekd.runtime.precision import openvino_hint

#: runtimes whose CPU thread count the device profile sets (TensorRT runs on the GPU)
CPU_THREADED = frozenset({"torch", "onnxruntime", "openvino"})


def runner_options(device: Device, runtime: str, precision: str) -> dict[str, Any]:
    """Threads, execution providers, device name and compute precision for an artifact of ``precision`` in
    ``runtime``, as the device profile and the precision policy (:mod:`edgekd.runtime.precision`) set them."""
    options: dict[str, Any] = {"threads": device.threads} if runtime in CPU_THREADED else {}
    target = device.runtime(runtime)
    if target is not None:
        fields = RUNTIME_SPECS[runtime].profile_fields
        if "providers" in fields and target.providers:
            options["providers"] = list(target.providers)
        if "device" in fields:
            options["device"] = target.device
    if runtime == "openvino":
        options["inference_precision"] = openvino_hint(precision, options.get("device", "CPU"))
    if runtime == "torch":
        options["inference_precision"] = "bf16" if precision == "bf16" else "f32"
    return options


def runtime_settings(device: Device) -> dict[str, Any]:
    """What a measurement depends on in a device profile: each runtime's runner options per precision (threads,
    providers, device, compute precision). Budgets, names and descriptions stay out of the cache keys."""
    return {target.runtime: {p: runner_options(device, target.runtime, p) for p in target.precisions}
            for target in device.runtimes}


def open_artifact(ctx: StageContext, artifact: Artifact) -> Runner:
    """A runner for ``artifact`` in its own runtime, computing in the artifact's precision."""
    return open_runner(artifact.runtime, ctx.path(artifact),
                       **runner_options(ctx.device, artifact.runtime, artifact.precision))


def tensorrt_int8(qdq_onnx: Path, out: Path, device: Device) -> Path:
    """An INT8 TensorRT engine from a Q/DQ ONNX graph (TensorRT 10 and 11 take INT8 from the Q/DQ nodes), built on
    the CUDA device the profile ``device`` names."""
    from edgekd.export.tensorrt import build_engine

    return build_engine(qdq_onnx, out / "model.engine", precision="int8",
                        timing_cache=out.parent / "tensorrt-timing.cache", device=tensorrt_device(device))


def tensorrt_device(device: Device) -> str:
    """The CUDA device (``cuda:N``) the profile ``device`` names for TensorRT (its default when it names none)."""
    return str(runner_options(device, "tensorrt", "fp32").get("device", RUNTIME_SPECS["tensorrt"].default_device))
