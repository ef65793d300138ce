"""The precision label policy, written down once, and which hardware offers which compute precision.

**Policy.** An artifact's ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``) is the precision it was built for,
and every runner is told to compute in it explicitly — never the runtime's own default (OpenVINO's CPU plugin computes
in bf16 wherever the CPU reports ``BF16``, e.g. AVX-512 BF16 or AMX, unless told ``f32``):

- ``fp32``: fp32 weights, fp32 compute (OpenVINO ``INFERENCE_PRECISION_HINT: f32``);
- ``bf16``: fp32 weights, bf16 compute (OpenVINO hint ``bf16``; torch CPU autocast to bfloat16); built only where the
  hardware computes in bf16 natively;
- ``fp16``: fp16 weights; fp16 compute where the device computes in fp16 (GPUs, NPUs, CPUs reporting ``FP16``), else
  fp32 compute — the manifest then records ``weights: fp16`` and ``compute: f32``;
- ``int8``: int8 weights and activations at the quantized operations, the rest of the graph in fp32.

What actually ran is recorded beside every measurement (``metrics.compute``: the runner's :meth:`describe`).
"""

from __future__ import annotations

from functools import cache

from edgekd.runtimes import RUNTIME_SPECS, has_part, runtime_part

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
"""Every precision an artifact can be labelled with (DESIGN.md manifest ``precision``)."""

WEIGHTS: dict[str, str] = {"fp32": "fp32", "bf16": "fp32", "fp16": "fp16", "int8": "int8"}
"""Artifact precision → the precision its weights are stored in."""


@cache
def openvino_capabilities(device: str = "CPU") -> frozenset[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of ``device`` (e.g. ``{"FP32", "BF16", "INT8", ...}``); empty if the
    device is not available."""
    import openvino as ov

    core = ov.Core()
    kind = device.upper().split(".")[0]
    if kind not in {d.split(".")[0] for d in core.available_devices}:
        return frozenset()
    return frozenset(str(c) for c in core.get_property(device.upper(), "OPTIMIZATION_CAPABILITIES"))


def openvino_hint(precision: str, device: str = "CPU") -> str:
    """The ``INFERENCE_PRECISION_HINT`` an artifact of ``precision`` is compiled with on OpenVINO ``device``."""
    if precision == "bf16":
        return "bf16"
    if precision == "fp16" and "FP16" in openvino_capabilities(device):
        return "f16"
    return "f32"  # fp32, int8 (non-quantized parts), fp16 weights on a device without fp16 arithmetic


@cache
def torch_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively in PyTorch's oneDNN kernels: on x86, AVX-512 BF16 or AMX (oneDNN's own
    bf16 check also accepts plain AVX-512, where bf16 is emulated and slower than fp32); elsewhere oneDNN's check."""
    import platform

    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() in {"x86_64", "amd64"}:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_unsupported(runtime: str, device: str = "CPU") -> str | None:
    """Why ``runtime`` cannot compute in bf16 on ``device`` here (one line), or None when it can: the runtime
    package's ``precision.bf16_unsupported(device)``."""
    if has_part(runtime, "precision"):
        why: str | None = runtime_part(runtime, "precision").bf16_unsupported(device)
        return why
    offered = [name for name in RUNTIME_SPECS if has_part(name, "precision")]
    return f"runtime {runtime!r} has no bf16 mode in edgekd (bf16 is built for {' and '.join(offered)})"
