"""What a deploy folder's model card records for OpenVINO, beside the runner options."""

from __future__ import annotations

from typing import Any

#: ``INFERENCE_PRECISION_HINT`` that computes an artifact as it was built: fp32 math for fp32 and int8 graphs and
#: for fp16 *weights* (decompressed to fp32), bf16 only for a bf16 artifact; never the plugin's default.
INFERENCE_PRECISION = {"fp32": "f32", "int8": "f32", "fp16": "f32", "bf16": "bf16"}


def settings(precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The runner options with the explicit inference precision ``predict.py`` compiles with."""
    return {**options, "inference_precision": INFERENCE_PRECISION.get(precision, "f32")}
