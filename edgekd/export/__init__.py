"""Exporters: every artifact takes raw pixels in [0, 1] (float32, NCHW) and carries its normalisation inside.

``deployable(net, mean, std)`` is the network as every artifact exposes it; ``export_onnx`` writes the ONNX graph
every other format starts from (each runtime's own exporter is its package's ``exporter`` module, e.g.
:mod:`edgekd.runtimes.openvino.exporter`); ``check_parity`` compares an artifact with its reference.
"""

from __future__ import annotations

from edgekd.export.onnx import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from edgekd.runtime.torch_artifact import Deployable, Normalize, deployable, save_torch_artifact

__all__ = [
    "Deployable",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Normalize",
    "check_parity",
    "deployable",
    "export_onnx",
    "save_torch_artifact",
]
