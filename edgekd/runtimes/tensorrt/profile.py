"""TensorRT's per-layer profile: an ``IProfiler`` whose ``report_layer_time(layer, ms)`` is called per layer after
each execution; layer names are the ONNX node names TensorRT fused (``node_a + node_b``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.runtimes._profile import layer_rows
from edgekd.runtimes.tensorrt.spec import NAME


class _TensorRtProfiler:
    """Accumulates ``report_layer_time`` calls of TensorRT's ``IProfiler`` (created lazily: needs tensorrt)."""

    def __new__(cls) -> Any:
        import tensorrt as trt

        class Profiler(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: dict[str, list[float]] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times.setdefault(layer_name, []).append(ms)

        return Profiler()


def profile(path: Path, settings: dict[str, Any], x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-layer median time of ``runs`` executions of an engine (layer names: the ONNX nodes fused, ``a + b``)."""
    from edgekd.runtime import open_runner

    with open_runner(NAME, path, device=settings.get("device", "cuda:0")) as runner:
        profiler = _TensorRtProfiler()
        runner(x)
        runner.context.profiler = profiler  # type: ignore[attr-defined]  # a TensorRtRunner's execution context
        for _ in range(runs):
            runner(x)
    meta = {layer: {"onnx_nodes": [n.strip() for n in re.split(r" \+ ", layer)], "op_type": "TensorRT layer"}
            for layer in profiler.times}
    return layer_rows(profiler.times, meta)
