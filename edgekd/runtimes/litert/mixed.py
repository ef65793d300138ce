"""Mixed-precision full-integer LiteRT (``aiq-mixed``): ``ort-mixed``'s float nodes kept float by ai_edge_quantizer.

The ranking and the choice of float nodes are ONNX Runtime's (:func:`~edgekd.quantize.mixed.ort_choice`), over the
node names of the pre-processed fp32 ONNX graph (:func:`~edgekd.quantize.ort.prepare_float`). The ``.tflite`` model
is converted from the same network by litert-torch, so its ops carry other names and may come in another order (a
residual block's 1x1 shortcut conv runs before the block's first conv in the ``.tflite`` graph, after its second in
the ONNX one). An ONNX node is therefore mapped to the TFLite op holding its weights:

- candidates are the ops of its kind (``Conv`` → ``CONV_2D`` or ``DEPTHWISE_CONV_2D``, which the converter uses for a
  conv of one input channel per group; ``Gemm``/``MatMul`` → ``FULLY_CONNECTED``) whose constant weight tensor has
  the node's weight shape in TFLite's layout (``CONV_2D``: ``(O, kh, kw, I)``; ``DEPTHWISE_CONV_2D``:
  ``(1, kh, kw, O)``; ``FULLY_CONNECTED``: ``(N, K)``);
- of those, the op whose weights equal the node's per output channel up to a scale (each output channel's weights
  scaled to unit norm differ by at most :data:`TOLERANCE`), so a batch norm folded on one side only still matches;
- exactly one op must match; a node with none or several is not kept float, and ``info.mixed.unmapped`` says why
  (rather than guessing).

Each mapped op is kept float by a recipe entry of its own: the scope regex of exactly that op (ai_edge_quantizer
names an op by its output tensors, each followed by ``;``) with ``AlgorithmName.NO_QUANTIZE``, added after
``static_wi8_ai8``'s ``.*`` entry (the later entry wins). The quantizer then puts a DEQUANTIZE before the op and a
QUANTIZE after it; the op reads float32 input and weights. Every kept op is checked to read float32 in the written
model.

Use::

    path, kept, unmapped = aiq_mixed(fp32_tflite, fp32_onnx, out / "model.tflite", ("/net/conv1/Conv",),
                                     calibration, work_dir=tmp)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._atomic import atomic_write_bytes
from edgekd.errors import UserError

KINDS: dict[str, tuple[str, ...]] = {"Conv": ("CONV_2D", "DEPTHWISE_CONV_2D"), "Gemm": ("FULLY_CONNECTED",),
                                     "MatMul": ("FULLY_CONNECTED",)}
"""ONNX op type → the TFLite ops that can carry its weights."""

TOLERANCE = 1e-4
"""Largest difference between an ONNX node's and a TFLite op's weights, each output channel scaled to unit norm."""

_FLOAT32 = 0
"""TFLite's ``TensorType.FLOAT32``."""


@dataclass(frozen=True)
class TfliteOp:
    """One op of a ``.tflite`` graph: its index in the main subgraph, its name (``CONV_2D``, ...), its scope as
    ai_edge_quantizer matches it, the TFLite types of its inputs, and its constant weights (input 1; None if it has
    none)."""

    index: int
    name: str
    scope: str
    input_types: tuple[int, ...]
    weights: np.ndarray | None


def tflite_ops(model: bytes) -> list[TfliteOp]:
    """The ops of the main subgraph of ``model`` (a ``.tflite`` flatbuffer), read with ai_edge_quantizer's own
    flatbuffer helpers (so scopes are the ones its recipes match)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    flat = tfl.read_model(bytearray(model))
    graph = flat.subgraphs[0]
    ops = []
    for index, op in enumerate(graph.operators):
        code = flat.operatorCodes[op.opcodeIndex].builtinCode
        inputs = [i for i in op.inputs if i >= 0]
        weights = tfl.get_tensor_data(graph.tensors[inputs[1]], flat.buffers) if len(inputs) > 1 else None
        ops.append(TfliteOp(index, tfl.TFL_OP_CODE_TO_NAME.get(code, str(code)), tfl.get_op_scope(op, graph.tensors),
                            tuple(int(graph.tensors[i].type) for i in inputs), weights))
    return ops


def _tflite_layout(weights: np.ndarray, op_type: str, attributes: dict[str, Any], kind: str) -> np.ndarray | None:
    """An ONNX node's weights in the layout of a TFLite op ``kind``; None where that op cannot hold them."""
    if op_type == "Conv" and weights.ndim == 4:
        if kind == "CONV_2D":
            return weights.transpose(0, 2, 3, 1)
        out_channels, per_group = weights.shape[:2]
        if kind == "DEPTHWISE_CONV_2D" and per_group == 1:  # one input channel per group: (O, 1, kh, kw)
            return weights.transpose(1, 2, 3, 0)
        return None
    if op_type == "Gemm" and weights.ndim == 2 and kind == "FULLY_CONNECTED":
        return weights if attributes.get("transB", 0) else weights.T
    if op_type == "MatMul" and weights.ndim == 2 and kind == "FULLY_CONNECTED":
        return weights.T
    return None


def _unit_channels(weights: np.ndarray, kind: str) -> np.ndarray:
    """``weights`` as one row per output channel, each scaled to unit norm (a zero row stays zero)."""
    axis = 3 if kind == "DEPTHWISE_CONV_2D" else 0
    rows = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1).astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def map_nodes(prepared_onnx: Path, model: bytes, nodes: Sequence[str]) -> tuple[dict[str, TfliteOp], dict[str, str]]:
    """Each of ``nodes`` (names in ``prepared_onnx``) → the op of ``model`` holding its weights, and, for the nodes
    with no such op (or several), why (see the module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(prepared_onnx)).graph
    inits = {i.name: i for i in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    ops = tflite_ops(model)
    found: dict[str, TfliteOp] = {}
    why: dict[str, str] = {}
    for node_name in nodes:
        node = by_name.get(node_name)
        if node is None or node.op_type not in KINDS:
            why[node_name] = f"not a {'/'.join(KINDS)} node of the ONNX graph"
            continue
        if len(node.input) < 2 or node.input[1] not in inits:
            why[node_name] = "its weights are not a constant of the ONNX graph"
            continue
        weights = numpy_helper.to_array(inits[node.input[1]])
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        matches = []
        for op in ops:
            if op.name not in KINDS[node.op_type] or op.weights is None:
                continue
            expected = _tflite_layout(weights, node.op_type, attributes, op.name)
            if expected is None or expected.shape != op.weights.shape:
                continue
            if np.abs(_unit_channels(expected, op.name) - _unit_channels(op.weights, op.name)).max() <= TOLERANCE:
                matches.append(op)
        if len(matches) == 1:
            found[node_name] = matches[0]
        else:
            kinds = "/".join(KINDS[node.op_type])
            indices = ", ".join(str(m.index) for m in matches)
            why[node_name] = (f"no {kinds} op of the .tflite graph holds its weights {tuple(weights.shape)}"
                              if not matches else f"{len(matches)} {kinds} ops hold its weights (ops {indices})")
    return found, why


def float_recipe_entry(op: TfliteOp) -> str:
    """The scope regex matching exactly ``op`` in ai_edge_quantizer's recipes."""
    return "^" + re.escape(op.scope) + "$"


def aiq_mixed(fp32_tflite: Path, fp32_onnx: Path, out: Path, float_nodes: Sequence[str], calibration: np.ndarray, *,
              work_dir: Path) -> tuple[Path, dict[str, TfliteOp], dict[str, str]]:
    """Write to ``out`` the full-integer model of ``fp32_tflite`` (``static_wi8_ai8``) with the ops of
    ``float_nodes`` (node names of :func:`~edgekd.quantize.ort.prepare_float` of ``fp32_onnx``, the graph the
    ranking names) kept float. Returns the file, the nodes kept float with their ops, and the nodes with no op
    (:func:`map_nodes`) with why; the nodes of ``float_nodes`` mapped to one op keep their order."""
    from edgekd.quantize.ort import prepare_float
    from edgekd.runtimes.litert.export import quantize_model

    fp32 = Path(fp32_tflite).read_bytes()
    work_dir.mkdir(parents=True, exist_ok=True)
    found, why = map_nodes(prepare_float(fp32_onnx, work_dir / "float.onnx"), fp32, float_nodes)
    kept = {node: found[node] for node in float_nodes if node in found}
    quantized = quantize_model(fp32, "int8", calibration, float_scopes=[float_recipe_entry(op) for op in kept.values()])
    written = {op.index: op for op in tflite_ops(quantized)}
    for node, op in kept.items():
        # the quantizer inserts a DEQUANTIZE before each float op: find it by its scope, not its index
        same = [o for o in written.values() if o.scope == op.scope and o.name == op.name]
        if len(same) != 1 or any(t != _FLOAT32 for t in same[0].input_types):
            raise UserError(f"{fp32_tflite}: ai_edge_quantizer did not keep {op.name} op {op.index} (ONNX node "
                            f"{node!r}) in float32")
    atomic_write_bytes(out, quantized)
    return Path(out), kept, why
