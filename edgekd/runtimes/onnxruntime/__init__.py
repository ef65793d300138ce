"""ONNX Runtime: fp32 ONNX graphs from the ONNX exporter and INT8 Q/DQ graphs from its own static quantization."""
