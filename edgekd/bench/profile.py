"""Per-layer profiles from each runtime's own profiler, mapped back to the ONNX node and the PyTorch module.

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

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtimes.onnxruntime.session import Session as OrtSession
from edgekd.runtimes.openvino.session import Session as OpenVinoSession


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


def _rows(samples: dict[str, list[float]], meta: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from each layer's per-inference times (ms): the median, robust to the spikes of a shared machine."""
    times = {layer: float(np.median(values)) if values else 0.0 for layer, values in samples.items()}
    total = sum(times.values()) or 1.0
    rows = []
    for order, (layer, spent) in enumerate(times.items()):  # insertion order: execution order of the first run
        info = meta[layer]
        modules = [m for m in (module_path(n) for n in info["onnx_nodes"] or [layer]) if m]
        rows.append({"layer": layer, "onnx_nodes": info["onnx_nodes"], "module": modules[0] if modules else None,
                     "op_type": info["op_type"], "kernel": info.get("kernel"), "time_ms": spent,
                     "share": spent / total, "order": order})
    return sorted(rows, key=lambda r: -r["time_ms"])


def profile_onnxruntime(path: Path, settings: dict[str, Any], x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-node median time (ms per inference) of ``runs`` inferences of ``x`` in ONNX Runtime."""
    with tempfile.TemporaryDirectory(prefix="edgekd-ortprof-") as tmp:
        session = OrtSession(str(path), settings, profile_prefix=str(Path(tmp) / "ort"))
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
    return _rows(times, meta)


def profile_openvino(path: Path, settings: dict[str, Any], x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-node median ``real_time`` (ms per inference) of ``runs`` inferences of ``x`` in OpenVINO."""
    import openvino as ov

    config = {**(settings.get("config") or {}), "PERF_COUNT": True}
    session = OpenVinoSession(str(path), {**settings, "config": config}, shape=x.shape)
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
    return _rows(times, meta)


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


def profile_tensorrt(path: Path, x: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Per-layer median time of ``runs`` executions of an engine (layer names: the ONNX nodes fused, ``a + b``)."""
    from edgekd.runtime import open_runner

    with open_runner("tensorrt", path) as runner:
        profiler = _TensorRtProfiler()
        runner(x)
        runner.context.profiler = profiler  # type: ignore[attr-defined]  # a TensorRtRunner's execution context
        for _ in range(runs):
            runner(x)
    meta = {layer: {"onnx_nodes": [n.strip() for n in re.split(r" \+ ", layer)], "op_type": "TensorRT layer"}
            for layer in profiler.times}
    return _rows(profiler.times, meta)


def profile_artifact(path: Path, runtime: str, settings: dict[str, Any], sample_shape: Sequence[int],
                     runs: int = 100) -> list[dict[str, Any]]:
    """The per-layer profile of ``path`` in ``runtime`` on one input of ``sample_shape`` (batch 1)."""
    x = np.ascontiguousarray(np.random.default_rng(0).random((1, *sample_shape), dtype=np.float32))
    if runtime == "onnxruntime":
        return profile_onnxruntime(path, settings, x, runs)
    if runtime == "openvino":
        return profile_openvino(path, settings, x, runs)
    if runtime == "tensorrt":
        return profile_tensorrt(path, x, runs)
    raise UserError(f"{path}: per-layer profiles are read from onnxruntime, openvino and tensorrt, not {runtime}")


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
