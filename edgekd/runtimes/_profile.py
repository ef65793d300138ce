"""Shared machinery of the per-layer profilers (each runtime's profiler is its package's ``profile`` module): the
PyTorch module path in a node name and the rows of a profile.

Every row is ``{layer, onnx_nodes, module, op_type, kernel, time_ms, share, order}`` where ``time_ms`` is the
median per inference over the profiled runs (robust to the spikes of a shared machine) and ``module`` the PyTorch
module path recovered from the names the export kept (ONNX scopes ``/net/features/features.0/Conv`` →
``net.features.0``; OpenVINO's ``__module.net.features.0/...`` → ``net.features.0``), or ``None``. A profiler that
knows more adds ``nodes`` (the source-graph names the row stands for, the compute node it contains first) and
``role`` (:data:`ROLES`), which :mod:`edgekd.bench.saving` joins an fp32 and an INT8 profile by.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def module_path(name: str) -> str | None:
    """The PyTorch module path in a node name, or None: ``__module.net.fc/aten::linear/Add`` → ``net.fc``;
    ``/net/layer1/layer1.0/conv1/Conv`` → ``net.layer1.0.conv1`` (torch.onnx scopes repeat the parent's prefix)."""
    found = re.search(r"__module\.([\w.]+)", name)
    if found:
        return found.group(1)
    if not name.startswith("/"):
        return None
    scopes = [s for s in name.split("/")[1:-1] if s]
    path = ""
    previous = ""
    for scope in scopes:
        if previous and scope.startswith(previous + "."):
            path = path[: len(path) - len(previous)] + scope
        else:
            path = f"{path}.{scope}" if path else scope
        previous = scope
    return path or None


ROLES = ("compute", "quantize", "layout", "other")
"""What a profiled row does: a Conv/Gemm/MatMul kernel (fused or not), a quantize/dequantize step, a layout change the
runtime inserted (transpose, reorder), or any other operator."""


def layer_rows(samples: dict[str, list[float]], meta: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from each layer's per-inference times (ms): the median, robust to the spikes of a shared machine."""
    times = {layer: float(np.median(values)) if values else 0.0 for layer, values in samples.items()}
    total = sum(times.values()) or 1.0
    rows = []
    for order, (layer, spent) in enumerate(times.items()):  # insertion order: execution order of the first run
        info = meta[layer]
        modules = [m for m in (module_path(n) for n in info["onnx_nodes"] or [layer]) if m]
        row: dict[str, Any] = {"layer": layer, "onnx_nodes": info["onnx_nodes"],
                               "module": modules[0] if modules else None, "op_type": info["op_type"],
                               "kernel": info.get("kernel"), "time_ms": spent, "share": spent / total, "order": order}
        row.update({key: info[key] for key in ("nodes", "role") if key in info})
        rows.append(row)
    return sorted(rows, key=lambda r: -r["time_ms"])
