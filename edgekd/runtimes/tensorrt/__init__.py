"""TensorRT: engines built on the device from ONNX graphs (fp32, fp16, INT8 from Q/DQ graphs)."""
