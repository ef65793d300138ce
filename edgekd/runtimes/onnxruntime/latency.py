"""ONNX Runtime as a LayerMerge latency-table runtime: entries are timed as their fp32 ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import UserError


def table_options(precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The runner options of a table entry; ONNX Runtime entries are timed in fp32 only, with idle threads sleeping
    (``spinning`` off): an entry is timed interleaved with the unpruned network, and two sessions' spinning threads
    would take turns stealing each other's cores."""
    if precision != "fp32":
        raise UserError(f"LayerMerge latency table: onnxruntime entries are timed in fp32, not {precision}")
    return {**options, "spinning": False}


def entry_artifact(onnx_path: Path, folder: Path) -> Path:
    """The entry as ONNX Runtime opens it: the ONNX graph itself."""
    return onnx_path
