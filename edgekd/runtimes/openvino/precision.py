"""OpenVINO under the precision policy (:mod:`edgekd.runtime.precision`): the explicit inference precision every
runner is compiled with, and whether the device computes in bf16."""

from __future__ import annotations

from typing import Any

from edgekd.runtime import precision as policy


def runner_options(precision: str, device: str) -> dict[str, Any]:
    """The ``inference_precision`` an artifact of ``precision`` is compiled with on ``device``."""
    return {"inference_precision": policy.openvino_hint(precision, device)}


def bf16_unsupported(device: str) -> str | None:
    """Why OpenVINO ``device`` cannot compute in bf16 here (its ``OPTIMIZATION_CAPABILITIES`` lack ``BF16``)."""
    caps = policy.openvino_capabilities(device)
    if "BF16" in caps:
        return None
    shown = ", ".join(sorted(caps)) or "device not available"
    return f"OpenVINO {device} reports no BF16 capability here (OPTIMIZATION_CAPABILITIES: {shown})"
