"""OpenVINO's per-node profile: ``PERF_COUNT: True``; ``request.profiling_info`` lists every runtime-graph node
with its ``real_time`` and ``exec_type`` (the kernel, e.g. ``brgconv_avx512_I8``); the runtime model's
``originalLayersNames`` names the IR layers fused into it.

Each row also names the source-graph nodes it stands for (``nodes``): those IR layer names, with the suffixes of
OpenVINO's and NNCF's own ops removed (``/WithoutBiases``, ``/DequantizationMultiply``, ``/fq_output_0``), so an IR
converted from ONNX gives ONNX node names (``/conv1/Conv/WithoutBiases`` → ``/conv1/Conv``); a name OpenVINO made up
(``Multiply_3866``, the Convolution a BatchNorm was folded into) is kept only when the row has no other, being
stable between an IR and its NNCF INT8 IR but not between two conversions. What does not map: an IR converted from
PyTorch names its layers by module scope (``__module.net.bn1/aten::batch_norm/...``), not by ONNX node, and a
Convolution's own scope is replaced by the folded BatchNorm's; such rows match another profile of an IR of the same
conversion only. ``role``: ``compute`` for convolution and matrix-multiply kernels, ``quantize`` for FakeQuantize
and Convert rows, ``layout`` for Reorder/Transpose rows, else ``other``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.runtimes._profile import layer_rows
from edgekd.runtimes.openvino.session import Session

_OWN_SUFFIX = re.compile(r"(/WithoutBiases|/DequantizationMultiply|/fq_\w+)$")
_MADE_UP = re.compile(r"^[A-Za-z]+_\d+$")
_COMPUTE = re.compile(r"conv|matmul|fullyconnected|gemm|innerproduct", re.IGNORECASE)
_ROLES = {"FakeQuantize": "quantize", "Convert": "quantize", "Reorder": "layout", "Transpose": "layout"}


def source_nodes(originals: list[str], op_type: str) -> tuple[list[str], str]:
    """The row's ``nodes`` and ``role`` from its IR layer names and runtime op type (see the module docstring)."""
    names = []
    for name in originals:
        while (stripped := _OWN_SUFFIX.sub("", name)) != name:
            name = stripped
        names.append(name)
    names = list(dict.fromkeys(names))
    named = [n for n in names if not _MADE_UP.match(n)]
    role = _ROLES.get(op_type) or ("compute" if _COMPUTE.search(op_type) else "other")
    return (named or names), role


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
                if info.node_name not in meta:
                    layers = originals.get(info.node_name, [info.node_name])
                    nodes, role = source_nodes(layers, info.node_type)
                    meta[info.node_name] = {"onnx_nodes": layers, "op_type": info.node_type,
                                            "kernel": info.exec_type, "nodes": nodes, "role": role}
    return layer_rows(times, meta)
