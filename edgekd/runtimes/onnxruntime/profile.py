"""ONNX Runtime's per-node profile: ``SessionOptions.enable_profiling``; ``end_profiling()`` writes a Chrome-trace
JSON whose ``Node`` events named ``<node>_kernel_time`` carry each kernel's duration (µs) and ``args.op_name``. Rows
are nodes of the optimised graph (fused nodes keep the name of the node they replace).

Each row also names the source-graph nodes it stands for (``nodes``) and its ``role``: a row of a Conv/Gemm/MatMul
kernel stands for the compute node of the source graph it contains first, also when ONNX Runtime named the fused
kernel after the activation it absorbed (``/relu/Relu_output_0_nchwc`` is a Conv: the compute node is found upstream
of the Relu, one without a row of its own); a QuantizeLinear/DequantizeLinear row is ``quantize``; a node ONNX Runtime
inserted (``Transpose``, ``ReorderInput``/``ReorderOutput``, named after no source node) is ``layout``. Elementwise
nodes fused into a kernel (an Add or Relu absorbed by a Conv) have no row: their time is the kernel's."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtimes._profile import layer_rows
from edgekd.runtimes.onnxruntime.session import Session

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_COMPUTE_KERNEL = re.compile(r"conv|gemm|matmul", re.IGNORECASE)

_ORT_SUFFIXES = re.compile(r"(_nchwc|_quant|_token_\d+|_output_\d+|_Fused\w*)$")


def onnx_origin(name: str, nodes: set[str], producers: dict[str, str]) -> list[str]:
    """The ONNX node(s) of the source graph behind a node of ONNX Runtime's optimised graph: the name itself, or
    the name with the suffixes ORT's fusions append (``_nchwc``, ``_quant``, ``_token_N``) removed, or the node
    producing the tensor it is named after (``<node>_output_0``); [] when none is found."""
    candidate = name
    while True:
        if candidate in nodes:
            return [candidate]
        if candidate in producers:
            return [producers[candidate]]
        shorter = _ORT_SUFFIXES.sub("", candidate)
        if shorter == candidate:
            return []
        candidate = shorter


def _compute_upstream(start: str, graph: Any, timed: set[str]) -> str | None:
    """The compute node a fused kernel named after ``start`` contains: the compute nodes reached walking up from
    ``start`` through non-compute nodes, one without a row of its own (``timed``) preferred, the latest in graph
    order first."""
    by_name = {n.name: n for n in graph.node}
    producer = {out: n.name for n in graph.node for out in n.output}
    order = {n.name: i for i, n in enumerate(graph.node)}
    found, seen, todo = [], set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        if node.op_type in COMPUTE_OPS:
            found.append(name)
            continue
        if node.op_type in QDQ_OPS and name != start:
            continue
        todo += [producer[i] for i in node.input if i in producer]
    if not found:
        return None
    return max(found, key=lambda n: (n not in timed, order[n]))


def source_nodes(meta: dict[str, dict[str, Any]], graph: Any) -> None:
    """Add ``nodes`` and ``role`` to each row's ``meta`` (see the module docstring)."""
    ops = {n.name: n.op_type for n in graph.node}
    timed = {info["onnx_nodes"][0] for info in meta.values() if info["onnx_nodes"]}
    for info in meta.values():
        origin = info["onnx_nodes"]
        if not origin:
            info["nodes"], info["role"] = [], "layout"
            continue
        if info["op_type"] in QDQ_OPS or ops.get(origin[0]) in QDQ_OPS:
            info["nodes"], info["role"] = list(origin), "quantize"
            continue
        compute = origin[0] if ops.get(origin[0]) in COMPUTE_OPS else None
        if compute is None and _COMPUTE_KERNEL.search(info["op_type"]):
            compute = _compute_upstream(origin[0], graph, timed)
        info["nodes"] = list(dict.fromkeys([*([compute] if compute else []), *origin]))
        info["role"] = "compute" if compute else "other"


def profile(path: Path, settings: dict[str, Any], x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-node median time (ms per inference) of ``runs`` inferences of ``x`` in ONNX Runtime."""
    with tempfile.TemporaryDirectory(prefix="edgekd-ortprof-") as tmp:
        session = Session(str(path), settings, profile_prefix=str(Path(tmp) / "ort"))
        call, _, _ = session.bind(x)
        for _ in range(runs + 1):  # the first run (allocations) is profiled too: dropped below
            call()
        trace = Path(session.session.end_profiling())
        events = json.loads(trace.read_text())
    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        node = event["name"][: -len("_kernel_time")]
        counts[node] = counts.get(node, 0) + 1
        if counts[node] == 1:  # the first call: allocations and caches, not steady state
            meta[node] = {"onnx_nodes": [node], "op_type": event.get("args", {}).get("op_name", "?"),
                          "kernel": event.get("args", {}).get("provider")}
            times[node] = []
            continue
        times[node].append(float(event["dur"]) / 1e3)
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = {n.name for n in graph.node}
    producers = {out: n.name for n in graph.node for out in n.output}
    for node, info in meta.items():
        info["onnx_nodes"] = onnx_origin(node, names, producers)
        info["runtime_node"] = node
    source_nodes(meta, graph)
    if not times:
        raise UserError(f"{path}: ONNX Runtime's profile has no node events (profiling unsupported by the provider?)")
    return layer_rows(times, meta)
