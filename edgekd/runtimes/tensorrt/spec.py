"""TensorRT's spec and capability rows."""

from __future__ import annotations

from edgekd.runtimes._table import Capability, RuntimeSpec, register

NAME = "tensorrt"

SPEC = register(
    RuntimeSpec(NAME, formats=("tensorrt",), suffixes={".engine": "tensorrt", ".plan": "tensorrt"},
                device_kinds=("cuda",), default_device="cuda:0", profile_fields=("device",), module="tensorrt",
                install="pip install tensorrt, or apt install python3-libnvinfer on a Jetson",
                session="edgekd.runtimes.tensorrt.session", libraries=("tensorrt",), rank=3, cpu_threaded=False,
                session_imports=("torch",), symmetric_int8=True,
                quantize_targets={"cuda": "ANY"}),
    (Capability(NAME, "fp32", "tensorrt", "export", ("tensorrt",), "install", "engine, fp32"),
     Capability(NAME, "fp16", "tensorrt", "export", ("tensorrt",), "install", "engine, fp16"),
     Capability(NAME, "int8", "tensorrt", "quantize", ("ort", "trt-mixed", "qat"), "install",
                "engine from a symmetric Q/DQ ONNX graph (ONNX Runtime calibration or QAT); trt-mixed keeps "
                "ort-mixed's float nodes without Q/DQ, their layers pinned to fp32")),
)
