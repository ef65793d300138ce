"""OpenVINO's spec and capability rows."""

from __future__ import annotations

from edgekd.runtimes._table import Capability, RuntimeSpec, register

NAME = "openvino"

SPEC = register(
    RuntimeSpec(NAME, formats=("openvino", "onnx"), suffixes={".xml": "openvino", ".onnx": "onnx"},
                device_kinds=("cpu", "gpu", "npu"), default_device="CPU", profile_fields=("device",),
                module="openvino", install="pip install openvino", session="edgekd.runtimes.openvino.session",
                libraries=("openvino",),
                rank=2, quantize_targets={"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}),
    (Capability(NAME, "fp32", "openvino", "export", ("openvino",), None, "IR, fp32 weights and compute"),
     Capability(NAME, "bf16", "openvino", "export", ("openvino",), "bf16", "IR, fp32 weights, bf16 compute"),
     Capability(NAME, "fp16", "openvino", "export", ("openvino-fp16",), None,
                "IR, fp16 weights (computed in fp16 where the device has it, else f32)"),
     Capability(NAME, "int8", "openvino", "quantize", ("nncf", "nncf_ac", "nncf-mixed", "qat"), None,
                "INT8 IR: NNCF PTQ, accuracy-controlled PTQ, QAT")),
)
