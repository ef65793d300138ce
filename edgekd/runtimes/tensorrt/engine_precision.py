"""Whether a built TensorRT engine computes in the precision it was asked for, read from its layers.

TensorRT 10's weakly typed builder flags (``BuilderFlag.FP16``, ``BuilderFlag.INT8``) only *allow* reduced-precision
kernels: where none is faster, or the GPU has no fast fp16 or int8, the engine silently stays in fp32 under an fp16 or
int8 label. So the engine's own layer list (the engine inspector's, as
:func:`edgekd.runtimes.tensorrt.session.layer_precisions` reads it) is checked after the build:

- ``fp16`` / ``int8``: at least one compute layer (a convolution or matrix product; every layer when the inspector
  names none, e.g. one fused Myelin graph) reads that type;
- ``fp32``: no layer reads a reduced type (fp16, bf16, int8, fp8, int4, fp4);
- an inspector answer without any data type is itself a failure: the precision cannot be shown.

An int8 engine with nodes kept in float (``trt-mixed``) is also checked for those nodes: each layer named after one
reads fp32 only (:func:`float_layer_problem`).
"""

from __future__ import annotations

from typing import Any

#: words of a layer's type or name that mark a compute layer (TensorRT 10 names fused kernels e.g. CaskConvolution,
#: CaskGemmConvolution, gemm, MatrixMultiply)
COMPUTE_WORDS = ("convolution", "gemm", "matrixmultiply", "matmul", "fullyconnected")
REDUCED = frozenset({"fp16", "bf16", "int8", "fp8", "int4", "fp4"})


def compute_layers(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layers that do the arithmetic (convolutions, matrix products); all typed layers when none is named so."""
    typed = [layer for layer in layers if layer["inputs"] or layer["outputs"]]
    named = [layer for layer in typed
             if any(word in f"{layer['type']} {layer['name']}".lower().replace("_", "") for word in COMPUTE_WORDS)]
    return named or typed


def engine_precision_problem(layers: list[dict[str, Any]], precision: str) -> str | None:
    """Why an engine with ``layers`` (``{name, type, inputs, outputs, tactic}`` each) is not a ``precision`` engine,
    in one line; None when it is."""
    typed = [layer for layer in layers if layer["inputs"] or layer["outputs"]]
    if not typed:
        return (f"the engine inspector reported no data type for any of its {len(layers)} layer(s), so the engine "
                f"cannot be shown to compute in {precision} (was it built with ProfilingVerbosity.DETAILED?)")
    if precision == "fp32":
        reduced = [layer["name"] for layer in typed if REDUCED & set(layer["inputs"])]
        if reduced:
            return (f"the fp32 engine reads reduced-precision data in {len(reduced)} layer(s) "
                    f"({', '.join(reduced[:3])}{', ...' if len(reduced) > 3 else ''})")
        return None
    compute = compute_layers(layers)
    if any(precision in layer["inputs"] for layer in compute):
        return None
    seen = sorted({t for layer in compute for t in layer["inputs"]})
    return (f"TensorRT built no {precision} layer: its {len(compute)} compute layer(s) read "
            f"{', '.join(seen) or 'nothing'} (the GPU has no fast {precision} kernels for them, or the graph keeps "
            f"them in float); the engine would be {precision} in name only")


def _names_node(layer_name: str, node: str) -> bool:
    """Whether an inspector layer name names ONNX node ``node``: the name itself, or one of the parts TensorRT
    joins with `` + `` when it fuses layers."""
    return node in (part.strip() for part in layer_name.split(" + "))


def float_layer_problem(layers: list[dict[str, Any]], nodes: list[str] | tuple[str, ...]) -> str | None:
    """Why the engine with ``layers`` (inspector layers, as for :func:`engine_precision_problem`) does not compute
    each of ``nodes`` (ONNX node names kept in float) in fp32, in one line; None when every layer named after one
    reads fp32 only. A layer computes in the type it reads (as :func:`~edgekd.runtimes.tensorrt.session.
    precision_counts` counts it): a float layer may still write int8 where TensorRT fuses the next node's quantizer
    into it. A node no layer names cannot be shown to be float, so it is a problem too."""
    missing, reduced = [], []
    for node in nodes:
        found = [layer for layer in layers if _names_node(layer["name"], node)]
        if not found:
            missing.append(node)
        elif any(set(layer["inputs"]) - {"fp32"} for layer in found):
            reduced.append(f"{node} ({', '.join(sorted({t for layer in found for t in layer['inputs']}))})")
    if missing:
        return (f"no layer of the engine is named after the float node(s) {', '.join(missing)}, so their precision "
                f"cannot be shown")
    if reduced:
        return f"the float node(s) {', '.join(reduced)} do not compute in fp32 in the engine"
    return None
