"""Whether a built TensorRT engine computes in the precision it was asked for, read from its layers.

TensorRT 10's weakly typed builder flags (``BuilderFlag.FP16``, ``BuilderFlag.INT8``) only *allow* reduced-precision
kernels: where none is faster, or the GPU has no fast fp16 or int8, the engine silently stays in fp32 under an fp16 or
int8 label. So the engine's own layer list (the engine inspector's, as
:func:`edgekd.runtimes.tensorrt.session.layer_precisions` reads it) is checked after the build:

- ``fp16`` / ``int8``: at least one compute layer (a convolution or matrix product; every layer when the inspector
  names none, e.g. one fused Myelin graph) reads that type;
- ``fp32``: no layer reads a reduced type (fp16, bf16, int8, fp8, int4, fp4);
- an inspector answer without any data type is itself a failure: the precision cannot be shown.
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
