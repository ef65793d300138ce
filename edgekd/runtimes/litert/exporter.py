"""LiteRT's exporter: the ``.tflite`` model in fp32 or with fp16 weights (the row's precision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ExportConfig
from edgekd.export.build import register_exporter
from edgekd.runtimes.litert.export import export_tflite

EXPORTED = ("fp32", "fp16")
"""The precisions the export stage builds; INT8 comes from the quantize stage (:mod:`.quantize`)."""


@register_exporter("litert")
def litert_model(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig, *,
                 precision: str, device: str) -> Path:
    """``out/model.tflite`` in ``precision`` (fp32, or fp16 weights), for ``example``'s batch (one model for any CPU:
    ``device`` is not used)."""
    if precision not in EXPORTED:
        raise ValueError(f"the LiteRT exporter builds {', '.join(EXPORTED)}, not {precision}")
    return export_tflite(net, mean, std, example, out / "model.tflite", precision="fp16" if precision == "fp16"
                         else "fp32")
