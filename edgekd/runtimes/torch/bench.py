"""What the device runner opens a torch artifact with, and what the host adds to its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """The torch runner's options as they are (the session opens edgekd's own runner)."""
    return dict(options)


def compute(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Nothing: the runner's description already holds device, threads and precision."""
    return {}


def artifact_precision(path: Path) -> str:
    """The precision label of an artifact found outside a run: not read from the file, so ``fp32``."""
    return "fp32"
