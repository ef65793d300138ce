"""Per-layer profiles from each runtime's own profiler (its package's ``profile`` module: ``profile(path, settings,
x, runs)``), mapped back to the ONNX node and the PyTorch module.

- ONNX Runtime: ``SessionOptions.enable_profiling``; ``end_profiling()`` writes a Chrome-trace JSON whose ``Node``
  events named ``<node>_kernel_time`` carry each kernel's duration (µs) and ``args.op_name``. Rows are nodes of the
  optimised graph (fused nodes keep the name of the node they replace).
- OpenVINO: ``PERF_COUNT: True``; ``request.profiling_info`` lists every runtime-graph node with its ``real_time``
  and ``exec_type`` (the kernel, e.g. ``brgconv_avx512_I8``); the runtime model's ``originalLayersNames`` names the
  IR layers fused into it.
- TensorRT: an ``IProfiler`` whose ``report_layer_time(layer, ms)`` is called per layer after each execution; layer
  names are the ONNX node names TensorRT fused (``node_a + node_b``).

Every row is ``{layer, onnx_nodes, module, op_type, kernel, time_ms, share, order}`` where ``time_ms`` is the
median per inference over the profiled runs (robust to the spikes of a shared machine) and ``module`` the PyTorch
module path recovered from the names the export kept
(ONNX scopes ``/net/features/features.0/Conv`` → ``net.features.0``; OpenVINO's ``__module.net.features.0/...`` →
``net.features.0``), or ``None``. :func:`diff` joins two profiles of the same model by module (fp32 vs INT8: which
layers got slower; compute layers matched by kind and position, the rest by module).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.errors import UserError
from edgekd.runtimes import has_part, runtime_part
from edgekd.runtimes._profile import module_path

__all__ = ["diff", "kind", "module_path", "profile_artifact"]


def profile_artifact(path: Path, runtime: str, settings: dict[str, Any], sample_shape: Sequence[int],
                     runs: int = 100) -> list[dict[str, Any]]:
    """The per-layer profile of ``path`` in ``runtime`` on one input of ``sample_shape`` (batch 1); ``settings``
    as the device runner opens the runtime with (:func:`edgekd.bench.measure.runner_settings`)."""
    if not has_part(runtime, "profile"):
        readable = [name for name in RUNTIME_SPECS if has_part(name, "profile")]
        raise UserError(f"{path}: per-layer profiles are read from {', '.join(readable)}, not {runtime}")
    x = np.ascontiguousarray(np.random.default_rng(0).random((1, *sample_shape), dtype=np.float32))
    rows: list[dict[str, Any]] = runtime_part(runtime, "profile").profile(path, settings, x, runs)
    return rows


#: operator kinds that are the same layer in an fp32 and an INT8 graph, whatever the runtime fused or renamed
KINDS = {"conv": ("conv",), "matmul": ("gemm", "matmul", "fullyconnected", "innerproduct"),
         "pool": ("pool", "reducemean")}


def kind(op_type: str) -> str | None:
    """``conv``, ``matmul`` or ``pool`` for a compute operator (``Conv``, ``QLinearConv``, ``Convolution``,
    ``FullyConnectedQuantizedLegacy``, ``GlobalAveragePool``, ...), else None."""
    lowered = op_type.lower()
    return next((k for k, words in KINDS.items() if any(w in lowered for w in words)), None)


def _aligned(rows: list[dict[str, Any]]) -> dict[str, tuple[float, str]]:
    """``key → (ms, label)``: compute layers keyed by kind and position (``conv#2``), the rest by module."""
    seen: dict[str, int] = {}
    keyed: dict[str, tuple[float, str]] = {}
    for row in sorted(rows, key=lambda r: r["order"]):
        k = kind(row["op_type"])
        label = row["module"] or row["layer"]
        if k is not None:
            seen[k] = seen.get(k, 0) + 1
            key = f"{k}#{seen[k]}"
        else:
            key = f"other:{label}"
        ms, first = keyed.get(key, (0.0, label))
        keyed[key] = (ms + row["time_ms"], first)
    return keyed


def diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layer-by-layer change from profile ``a`` to ``b`` of the same model, the largest slow-down first.

    Runtimes fuse and rename differently in fp32 and INT8 graphs (ONNX Runtime names a fused Conv+Relu after the
    Relu, a quantized one ``..._quant``), so compute layers are matched by kind and position in execution order
    (the second convolution of ``a`` with the second of ``b``); other rows (normalisation, quantize/dequantize,
    reorders) by module. Rows: ``{layer, module_a, module_b, a_ms, b_ms, delta_ms, ratio}``, 0 ms where one side has
    no such row."""
    left, right = _aligned(a), _aligned(b)
    rows = []
    for key in dict.fromkeys([*left, *right]):
        (a_ms, a_label), (b_ms, b_label) = left.get(key, (0.0, None)), right.get(key, (0.0, None))
        rows.append({"layer": key, "module_a": a_label, "module_b": b_label, "a_ms": a_ms, "b_ms": b_ms,
                     "delta_ms": b_ms - a_ms, "ratio": b_ms / a_ms if a_ms > 0 else None})
    return sorted(rows, key=lambda r: -r["delta_ms"])
