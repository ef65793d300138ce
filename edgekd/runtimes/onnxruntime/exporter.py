"""ONNX Runtime's exporter: the fp32 ONNX graph (TorchScript exporter, simplified where the config says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ExportConfig
from edgekd.export.build import register_exporter
from edgekd.export.onnx import export_onnx_for


@register_exporter("onnx")
def onnx_graph(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig, *,
               precision: str, device: str) -> Path:
    """``out/model.onnx``, fp32."""
    return export_onnx_for(net, mean, std, example, out, cfg)
