"""Opening any artifact in its own runtime with the device profile's settings."""

from __future__ import annotations

from typing import Any

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.config import Device
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.runtime import Runner, open_runner
from edgekd.runtimes import has_part, runtime_part


def runner_options(device: Device, runtime: str, precision: str) -> dict[str, Any]:
    """Threads, execution providers, device name and compute precision for an artifact of ``precision`` in
    ``runtime``, as the device profile and the precision policy (:mod:`edgekd.runtime.precision`) set them."""
    options: dict[str, Any] = {"threads": device.threads} if RUNTIME_SPECS[runtime].cpu_threaded else {}
    target = device.runtime(runtime)
    if target is not None:
        fields = RUNTIME_SPECS[runtime].profile_fields
        if "providers" in fields and target.providers:
            options["providers"] = list(target.providers)
        if "device" in fields:
            options["device"] = target.device
    if has_part(runtime, "precision"):  # the runtime's own compute precision for the artifact's label
        device_name = options.get("device", RUNTIME_SPECS[runtime].default_device)
        options.update(runtime_part(runtime, "precision").runner_options(precision, device_name))
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
