"""LiteRT's spec and capability rows."""

from __future__ import annotations

from edgekd.runtimes._table import Capability, RuntimeSpec, register

NAME = "litert"

SPEC = register(
    RuntimeSpec(NAME, formats=("litert",), suffixes={".tflite": "litert"}, device_kinds=("cpu",),
                default_device="CPU", profile_fields=(), module="ai_edge_litert", install="pip install ai-edge-litert",
                session="edgekd.runtimes.litert.session",
                libraries=("ai-edge-litert", "litert-torch", "ai-edge-quantizer"), rank=4),
    (Capability(NAME, "fp32", "litert", "export", ("litert",), "install",
                ".tflite from litert-torch, fp32, XNNPACK on the CPU"),
     Capability(NAME, "fp16", "litert", "export", ("litert",), "install",
                ".tflite, fp16 weights (ai-edge-quantizer float casting), dequantized to fp32 at load"),
     Capability(NAME, "int8", "litert", "quantize", ("aiq", "aiq-mixed"), "install",
                "full-integer .tflite: ai-edge-quantizer static_wi8_ai8, calibrated on the calibration images; "
                "aiq-mixed keeps ort-mixed's float nodes float")),
)
