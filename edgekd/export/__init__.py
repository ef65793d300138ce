"""Exporters: every artifact takes raw pixels in [0, 1] (float32, NCHW) and carries its normalisation inside.

``deployable(net, mean, std)`` is the network as every artifact exposes it; ``export_onnx``, ``export_openvino``
and ``build_engine`` (TensorRT) write the artifacts; ``check_parity`` compares an artifact with its reference.
"""

from __future__ import annotations

from edgekd.export.onnx import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from edgekd.export.openvino import export_openvino, save_openvino_ir
from edgekd.export.tensorrt import build_engine, inspect_onnx_precision
from edgekd.runtime.torch_artifact import Deployable, Normalize, deployable, save_torch_artifact

__all__ = [
    "Deployable",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Normalize",
    "build_engine",
    "check_parity",
    "deployable",
    "export_onnx",
    "export_openvino",
    "inspect_onnx_precision",
    "save_openvino_ir",
    "save_torch_artifact",
]
