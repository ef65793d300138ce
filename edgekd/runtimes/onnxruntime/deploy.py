"""What a deploy folder's model card records for ONNX Runtime, beside the runner options."""

from __future__ import annotations

from typing import Any


def settings(precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The runner options and the graph optimisation level every edgekd session uses."""
    return {**options, "graph_optimization_level": "ORT_ENABLE_ALL"}
