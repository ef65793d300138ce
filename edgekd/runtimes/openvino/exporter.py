"""OpenVINO IR export (``model.xml`` + ``model.bin``) from an ONNX artifact or a torch network.

``ov.save_model`` compresses weights to FP16 unless told otherwise; edgekd always passes ``compress_to_fp16``
explicitly, so the precision recorded in the manifest is the one in the file. FP16 compression halves the ``.bin``
(weights stored as f16 and decompressed at load; the CPU plugin still computes in its own inference precision).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekd.export._private import atomic_files, preserved_mode
from edgekd.export.build import register_exporter
from edgekd.export.onnx import INPUT_NAME, OUTPUT_NAME
from edgekd.runtime import deployable

if TYPE_CHECKING:
    import openvino as ov


def save_openvino_ir(model: ov.Model, path: Path, *, compress_to_fp16: bool) -> Path:
    """Write ``model`` as ``path`` (``.xml``) + its ``.bin`` atomically, input/output named ``input``/``logits``."""
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"expected a classifier with one input and one output, got {len(model.inputs)} inputs "
                         f"and {len(model.outputs)} outputs")
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    with atomic_files(path, ".bin") as staged:
        ov.save_model(model, str(staged), compress_to_fp16=compress_to_fp16)
    return path


def export_openvino(source: Path | nn.Module, path: Path, *, compress_to_fp16: bool,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    example: torch.Tensor | None = None, dynamic_batch: bool | None = None) -> Path:
    """Convert ``source`` to an OpenVINO IR at ``path`` (``.xml``; the ``.bin`` lies beside it).

    Args:
        source: an ONNX artifact (already deployable: its input shape and normalisation are kept as they are) or a
            plain torch network fed normalised input, exported as ``deployable(source, mean, std)``; a network from
            :func:`~edgekd.quantize.nncf_qat_prepare` gives an INT8 IR (FakeQuantize, int8 weights).
        path: the ``.xml`` file to write.
        compress_to_fp16: store the weights as FP16 (``True``) or FP32 (``False``). No default on purpose.
        mean, std, example: for a torch ``source`` only: the normalisation and an input batch in [0, 1].
        dynamic_batch: for a torch ``source`` only: make the batch dimension dynamic (default ``True``).
    """
    import openvino as ov

    if isinstance(source, nn.Module):
        if mean is None or std is None or example is None:
            raise ValueError("exporting a torch network to OpenVINO needs mean, std and example")
        shape = [-1 if dynamic_batch in (None, True) else example.shape[0], *example.shape[1:]]
        with preserved_mode(source), torch.no_grad(), warnings.catch_warnings():
            # OpenVINO's torch frontend traces with torch.jit, which warns about itself and about NNCF's quantizers
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            model = ov.convert_model(deployable(source, mean, std), example_input=example,
                                     input=[ov.PartialShape(shape)])
    else:
        if mean is not None or std is not None or example is not None or dynamic_batch is not None:
            raise ValueError("mean, std, example and dynamic_batch apply to a torch source; an ONNX source carries "
                             "its own normalisation and input shape")
        if Path(source).suffix != ".onnx":
            raise ValueError(f"an OpenVINO export source is a torch network or an .onnx file, got {source}")
        model = ov.convert_model(str(source))
    return save_openvino_ir(model, path, compress_to_fp16=compress_to_fp16)


def _ir(compress_to_fp16: bool) -> Any:
    def build(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: Any, *,
              precision: str, device: str) -> Path:
        return export_openvino(net, out / "model.xml", compress_to_fp16=compress_to_fp16, mean=mean, std=std,
                               example=example, dynamic_batch=cfg.dynamic_batch)

    build.__name__ = "openvino_fp16_ir" if compress_to_fp16 else "openvino_ir"
    return build


#: the IR of fp32 and bf16 artifacts is the same (fp32 weights; the runner computes bf16 artifacts in bf16);
#: ``openvino-fp16`` stores fp16 weights (computed in fp16 where the device can, else in f32)
register_exporter("openvino")(_ir(compress_to_fp16=False))
register_exporter("openvino-fp16")(_ir(compress_to_fp16=True))
