"""ONNX Runtime's per-node profile: ``SessionOptions.enable_profiling``; ``end_profiling()`` writes a Chrome-trace
JSON whose ``Node`` events named ``<node>_kernel_time`` carry each kernel's duration (µs) and ``args.op_name``. Rows
are nodes of the optimised graph (fused nodes keep the name of the node they replace)."""

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
    if not times:
        raise UserError(f"{path}: ONNX Runtime's profile has no node events (profiling unsupported by the provider?)")
    return layer_rows(times, meta)
