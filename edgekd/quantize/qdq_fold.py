"""Lean QDQ graphs: weight quantization folded into int8 initializers, batch norms folded into the weight scales.

The TorchScript export of a QAT model (``nncf.strip`` NATIVE) keeps float weights behind ``QuantizeLinear`` and a
``BatchNormalization`` after every convolution (its weights are fake-quantized before the norm, so the exporter
cannot fuse the two): the file is ~4× the size of a PTQ artifact, and ONNX Runtime cannot fuse
DQ → Conv → BN → Q into an integer convolution. Two exact rewrites make it the graph PTQ writes:

* :func:`fold_weight_quantizers`: a ``QuantizeLinear`` of a constant is replaced by its value, computed as the ONNX
  spec defines it, ``q = saturate(round_half_to_even(w / scale) + zero_point)``, per tensor or along ``axis``,
  saturated to the zero point's type (int8, or uint8 when absent); the ``DequantizeLinear`` behind it then reads an
  int8 initializer and the float weight is dropped. ONNX Runtime's own constant folding (basic level, offline
  ``optimized_model_filepath``) does this too, which the tests use as the independent expectation; onnxslim does not.
* :func:`fold_batch_norms`: ``BN(Conv(x, DQ(q, s)), γ, β, μ, σ²)`` with symmetric weights (zero point 0, per output
  channel or per tensor) equals ``Conv(x, DQ(q', s·|k|), β + (b − μ)·k)`` with ``k = γ / sqrt(σ² + ε)`` and
  ``q' = sign(k)·q`` per output channel (the sign goes into the integers so every scale stays positive, as TensorRT
  and integer kernels expect). Only the float rounding of ``s·|k|`` changes, so logits agree to ~1e-6 relative; a
  channel with ``k = 0``, a negated ``-128`` or an asymmetric weight leaves that norm in place.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


class _Graph:
    """Index of an ONNX graph: constant values (initializers, through ``Identity``) and the consumers of a name."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.values: dict[str, np.ndarray] = {n: numpy_helper.to_array(i) for n, i in self.inits.items()}
        for node in self.graph.node:
            if node.op_type == "Identity" and node.input[0] in self.values:
                self.values[node.output[0]] = self.values[node.input[0]]
        self.outputs = {o.name for o in self.graph.output}

    def uses(self) -> Counter[str]:
        """How many node inputs (and graph outputs) read each name."""
        count = Counter(name for node in self.graph.node for name in node.input if name)
        count.update(self.outputs)
        return count

    def const(self, node: Any, i: int) -> np.ndarray | None:
        """Value of input ``i`` of ``node`` if it is a constant; None if absent or computed."""
        return self.values.get(node.input[i]) if len(node.input) > i and node.input[i] else None

    def add(self, name: str, value: np.ndarray) -> str:
        """Add (or replace) initializer ``name`` holding ``value``; returns ``name``."""
        from onnx import numpy_helper

        if name in self.inits:
            self.graph.initializer.remove(self.inits[name])
        self.inits[name] = numpy_helper.from_array(value, name)
        self.graph.initializer.append(self.inits[name])
        self.values[name] = value
        return name

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads and initializers nobody reads (graph outputs count as read)."""
        while True:
            uses = self.uses()
            dead = [n for n in self.graph.node if not any(uses[o] for o in n.output)]
            if not dead:
                break
            for node in dead:
                self.graph.node.remove(node)
        uses = self.uses()
        for name in [n for n in self.inits if not uses[n]]:
            self.graph.initializer.remove(self.inits.pop(name))
            self.values.pop(name)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _per_axis(value: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast along ``axis`` of an ``ndim``-D tensor (a scalar stays one)."""
    if value.ndim == 0:
        return value
    shape = [1] * ndim
    shape[axis % ndim] = value.size
    return value.reshape(shape)


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1) -> np.ndarray:
    """ONNX ``QuantizeLinear`` (opset 13+, int8/uint8): ``saturate(round_half_to_even(x / scale) + zero_point)``."""
    zp = np.zeros((), np.uint8) if zero_point is None else zero_point
    low, high = _RANGES[zp.dtype]
    q = np.rint(x / _per_axis(scale, axis, x.ndim)) + _per_axis(zp, axis, x.ndim).astype(np.float32)
    return np.clip(q, low, high).astype(zp.dtype)


def fold_weight_quantizers(model: Any) -> int:
    """Replace every ``QuantizeLinear`` of a constant (with constant scale and zero point) by an integer
    initializer, in place; drops the float tensors left unread. Returns how many were folded."""
    g = _Graph(model)
    folded = 0
    for node in [n for n in g.graph.node if n.op_type == "QuantizeLinear"]:
        x, scale = g.const(node, 0), g.const(node, 1)
        zp = g.const(node, 2)
        if x is None or scale is None or (len(node.input) > 2 and node.input[2] and zp is None):
            continue
        if (zp is not None and zp.dtype not in _RANGES) or any(a.name != "axis" for a in node.attribute):
            continue  # int16, int4, float8, blocked (opset 21): not written by the exporters edgekd uses
        g.add(node.output[0], quantize_linear(x, scale, zp, _attr(node, "axis", 1)))
        g.graph.node.remove(node)
        folded += 1
    g.prune()
    return folded


def _symmetric_weight_dq(g: _Graph, conv: Any, uses: Counter[str]) -> Any | None:
    """The ``DequantizeLinear`` feeding ``conv``'s weight, if it reads constant int8 data with zero point 0 (per
    output channel or per tensor) and nothing else reads it or its data."""
    dq = next((n for n in g.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == conv.input[1]), None)
    if (dq is None or uses[dq.output[0]] != 1 or uses[dq.input[0]] != 1
            or any(a.name != "axis" for a in dq.attribute)):
        return None
    q, scale, zp = g.const(dq, 0), g.const(dq, 1), g.const(dq, 2)
    if q is None or q.dtype != np.int8 or scale is None or (zp is not None and np.any(zp != 0)):
        return None
    if scale.ndim != 0 and _attr(dq, "axis", 1) % q.ndim != 0:
        return None
    return dq


def fold_batch_norms(model: Any) -> int:
    """Fold each inference ``BatchNormalization`` that is the only reader of a ``Conv`` with symmetric int8
    weights behind a ``DequantizeLinear`` into that weight's scale and the conv's bias, in place (formula in the
    module docstring). Returns how many were folded."""
    g = _Graph(model)
    producer = {o: n for n in g.graph.node for o in n.output}
    folded = 0
    for bn in [n for n in g.graph.node if n.op_type == "BatchNormalization"]:
        uses = g.uses()
        conv = producer.get(bn.input[0])
        params = [g.const(bn, i) for i in range(1, 5)]
        if (conv is None or conv.op_type != "Conv" or uses[conv.output[0]] != 1 or _attr(bn, "training_mode", 0)
                or len(bn.output) != 1 or any(p is None for p in params)):
            continue
        bias = g.const(conv, 2)
        dq = _symmetric_weight_dq(g, conv, uses)
        if dq is None or (len(conv.input) > 2 and conv.input[2] and bias is None):
            continue
        gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
        k = gamma / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
        q, scale = g.values[dq.input[0]], np.asarray(g.values[dq.input[1]], np.float64)
        flip = (k < 0).reshape(-1, *[1] * (q.ndim - 1))
        if not np.all(np.isfinite(k)) or np.any(k == 0) or np.any(flip & (q == -128)):
            continue
        new_scale = (np.broadcast_to(scale, k.shape) * np.abs(k)).astype(np.float32)
        new_bias = (beta + ((0.0 if bias is None else bias.astype(np.float64)) - mean) * k).astype(np.float32)
        base = conv.output[0]
        dq.input[:] = [g.add(f"{base}.weight_q", np.where(flip, -q, q).astype(np.int8)),
                       g.add(f"{base}.weight_scale", new_scale),
                       g.add(f"{base}.weight_zero_point", np.zeros(k.shape, np.int8))]
        del dq.attribute[:]
        dq.attribute.append(_axis0())
        conv.input[:] = [conv.input[0], conv.input[1], g.add(f"{base}.bias", new_bias)]
        conv.output[0] = bn.output[0]
        g.graph.node.remove(bn)
        folded += 1
    g.prune()
    return folded


def _axis0() -> Any:
    from onnx import helper

    return helper.make_attribute("axis", 0)


def inline_constant_identities(model: Any) -> int:
    """Make readers of ``Identity(initializer)`` (the TorchScript exporter writes one per shared constant) read the
    initializer itself, in place, and drop those nodes. Returns how many were dropped."""
    g = _Graph(model)
    source = {n.output[0]: n.input[0] for n in g.graph.node
              if n.op_type == "Identity" and n.input[0] in g.inits and n.output[0] not in g.outputs}
    for node in g.graph.node:
        node.input[:] = [source.get(name, name) for name in node.input]
    before = len(g.graph.node)
    g.prune()
    return before - len(g.graph.node)


def lean_qdq(model: Any) -> dict[str, int]:
    """All folds, in place: constant identities, weight quantizers (so batch norms then see int8 weights), batch
    norms. Returns how many of each were folded."""
    return {"identities": inline_constant_identities(model), "weight_quantizers": fold_weight_quantizers(model),
            "batch_norms": fold_batch_norms(model)}
