"""Opening any artifact in its own runtime with the device profile's settings."""

from __future__ import annotations

from typing import Any

from edgekd.config import Device
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.runtime import Runner, open_runner


def runner_options(device: Device, runtime: str) -> dict[str, Any]:
    """Threads, execution providers and device name for ``runtime`` as the device profile sets them."""
    options: dict[str, Any] = {"threads": device.threads}
    target = device.runtime(runtime)
    if target is not None:
        if runtime == "onnxruntime" and target.providers:
            options["providers"] = list(target.providers)
        if runtime in {"openvino", "tensorrt"}:
            options["device"] = target.device
    return options


def open_artifact(ctx: StageContext, artifact: Artifact) -> Runner:
    """A runner for ``artifact`` in its own runtime."""
    return open_runner(artifact.runtime, ctx.path(artifact), **runner_options(ctx.device, artifact.runtime))
