"""What the device runner opens a LiteRT model with, and what the host adds to its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """Threads and delegate, as the local runner opens the same artifact."""
    return {"threads": options.get("threads"), "delegate": options.get("delegate", "xnnpack")}


def compute(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Nothing: the session's description already holds threads, delegate and the precision in force."""
    return {}


def artifact_precision(path: Path) -> str:
    """The precision label of a ``.tflite`` model found outside a run: ``int8`` for a full-integer or
    dynamic-range model, ``fp16`` where it holds float16 tensors, else ``fp32`` (read from its tensors)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    types = {np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    if np.dtype(np.int8) in types or np.dtype(np.uint8) in types:
        return "int8"
    return "fp16" if np.dtype(np.float16) in types else "fp32"
