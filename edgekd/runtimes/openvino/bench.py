"""What the device runner compiles an OpenVINO model with, and what the host adds to its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.runtimes.openvino.runner import compile_config


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """The device and the exact compile config (explicit ``INFERENCE_PRECISION_HINT``) of the local runner."""
    device = options.get("device", "CPU").upper()
    return {"device": device, "config": compile_config(device, options.get("threads"),
                                                       options.get("inference_precision", "f32"))}


def compute(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Nothing: the device runner's description already holds the precision in force, as compiled."""
    return {}


def artifact_precision(path: Path) -> str:
    """The precision label of an IR found outside a run: ``int8`` with FakeQuantize nodes, ``fp16`` with f16
    weights."""
    text = path.read_text(errors="replace")
    return "int8" if 'type="FakeQuantize"' in text else ("fp16" if 'element_type="f16"' in text else "fp32")
