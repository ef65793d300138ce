"""What the device runner opens an ONNX Runtime session with, and what the host adds to its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.runtimes.onnxruntime.runner import PROVIDER_ALIASES, graph_precision


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """Threads and full provider names (with their options) from the runner options edgekd opens the same artifact
    with locally."""
    providers = [PROVIDER_ALIASES.get(p.lower(), p) for p in options.get("providers", ["CPUExecutionProvider"])]
    per = {PROVIDER_ALIASES.get(k.lower(), k): dict(v) for k, v in (options.get("provider_options") or {}).items()}
    return {"threads": options.get("threads"), "providers": providers, "provider_options": per}


def compute(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The threads asked and the precision ONNX Runtime computes this graph in (read from the graph on the host)."""
    return {"threads": options.get("threads"), "inference_precision": graph_precision(path)}


def artifact_precision(path: Path) -> str:
    """The precision label of an ONNX graph found outside a run: ``int8`` for Q/DQ, ``fp16`` for float16 weights."""
    return {"int8+f32": "int8", "f16": "fp16"}.get(graph_precision(path), "fp32")
