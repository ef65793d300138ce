"""ONNX Runtime's spec and capability rows."""

from __future__ import annotations

from edgekd.runtimes._table import Capability, RuntimeSpec, register

NAME = "onnxruntime"

SPEC = register(
    RuntimeSpec(NAME, formats=("onnx",), suffixes={".onnx": "onnx"}, device_kinds=("cpu",), default_device="CPU",
                profile_fields=("providers",), module="onnxruntime", install="pip install onnxruntime",
                session="edgekd.runtimes.onnxruntime.session", libraries=("onnxruntime",), rank=1,
                quantize_targets={"cpu": "CPU"},
                provider_packages={"CUDAExecutionProvider": "onnxruntime-gpu",
                                   "TensorrtExecutionProvider": "onnxruntime-gpu",
                                   "OpenVINOExecutionProvider": "onnxruntime-openvino",
                                   "DmlExecutionProvider": "onnxruntime-directml",
                                   "QNNExecutionProvider": "onnxruntime-qnn"}),
    (Capability(NAME, "fp32", "onnx", "export", ("onnx",), None, "ONNX graph, fp32"),
     Capability(NAME, "int8", "onnx", "quantize", ("ort", "ort-mixed", "nncf", "qat"), None,
                "Q/DQ ONNX graph: ONNX Runtime static quantization, NNCF PTQ, QAT")),
)
