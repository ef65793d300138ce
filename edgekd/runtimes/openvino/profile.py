"""OpenVINO's per-node profile: ``PERF_COUNT: True``; ``request.profiling_info`` lists every runtime-graph node
with its ``real_time`` and ``exec_type`` (the kernel, e.g. ``brgconv_avx512_I8``); the runtime model's
``originalLayersNames`` names the IR layers fused into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.runtimes._profile import layer_rows
from edgekd.runtimes.openvino.session import Session


def profile(path: Path, settings: dict[str, Any], x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-node median ``real_time`` (ms per inference) of ``runs`` inferences of ``x`` in OpenVINO."""
    import openvino as ov

    config = {**(settings.get("config") or {}), "PERF_COUNT": True}
    session = Session(str(path), {**settings, "config": config}, shape=x.shape)
    originals = {}
    for op in session.compiled.get_runtime_model().get_ordered_ops():
        names = op.get_rt_info()["originalLayersNames"].astype(str)
        originals[op.get_friendly_name()] = [n for n in names.split(",") if n] or [op.get_friendly_name()]
    request = session.compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))
    request.infer()  # the first inference (allocations) is not counted
    times: dict[str, list[float]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for _ in range(runs):
        request.infer()
        for info in request.profiling_info:  # the counters of the last inference
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                times.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e3)
                meta.setdefault(info.node_name, {"onnx_nodes": originals.get(info.node_name, [info.node_name]),
                                                 "op_type": info.node_type, "kernel": info.exec_type})
    return layer_rows(times, meta)
