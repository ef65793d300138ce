"""What the device runner opens a TensorRT engine with, and what the host adds to its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import UserError


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """The CUDA device (``cuda`` or ``cuda:N``, default ``cuda:0``); threads do not apply to a GPU."""
    device = str(options.get("device") or "cuda:0").lower()
    if not device.startswith("cuda"):
        raise UserError(f"TensorRT engines run on a CUDA device (cuda or cuda:N), not {device!r}")
    return {"device": device}


def compute(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Nothing: the session's description already holds the engine's layer precisions."""
    return {}


def artifact_precision(path: Path) -> str:
    """The precision label of an artifact found outside a run: not read from the file, so ``fp32``."""
    return "fp32"
