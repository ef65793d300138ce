"""OpenVINO as a LayerMerge latency-table runtime: entries are converted to an fp32 IR and compiled with the
explicit inference precision of the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import UserError

PRECISIONS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
"""Table precision → OpenVINO ``INFERENCE_PRECISION_HINT``."""


def table_options(precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The runner options of a table entry, with the explicit inference precision (UserError for an unsupported or
    contradicting precision)."""
    if precision not in PRECISIONS:
        raise UserError(f"LayerMerge latency table: OpenVINO precision {precision!r} is not one of "
                        f"{', '.join(PRECISIONS)}")
    wanted = PRECISIONS[precision]
    if options.get("inference_precision", wanted) not in {wanted, precision}:
        raise UserError(f"LayerMerge latency table: inference_precision {options['inference_precision']!r} "
                        f"contradicts precision {precision!r}")
    return {**options, "inference_precision": wanted}


def entry_artifact(onnx_path: Path, folder: Path) -> Path:
    """The entry as an fp32 IR in ``folder``."""
    from edgekd.runtimes.openvino.exporter import export_openvino

    return export_openvino(onnx_path, folder / "entry.xml", compress_to_fp16=False)
