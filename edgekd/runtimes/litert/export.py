"""PyTorch → LiteRT (``.tflite``): fp32, fp16 weights, INT8 dynamic-range and INT8 full-integer.

The float model is converted by ``litert_torch.convert`` (``torch.export`` capture, then the LiteRT converter); the
reduced precisions are rewritten from it by ``ai_edge_quantizer``:

- ``fp16``: weight-only float casting (``AlgorithmName.FLOAT_CASTING``, 16 bits) of conv and fully connected weights;
  activations and compute stay float32 unless the runtime chooses otherwise.
- ``int8-dynamic``: recipe ``dynamic_wi8_afp32`` (per-channel int8 weights, activations quantized on the fly).
- ``int8``: recipe ``static_wi8_ai8`` (int8 weights and activations) calibrated on a representative set; the model's
  own input and output tensors become int8 with their scale and zero point, so a caller quantizes its input and
  dequantizes the output (:mod:`edgekd.runtimes.litert.session`).

Like every edgekd artifact the model takes raw pixels in [0, 1], float32 (int8 for full-integer models), NCHW: the
normalisation is in the graph, and litert-torch keeps the PyTorch input layout at the model's boundary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from edgekd._atomic import atomic_write_bytes
from edgekd.errors import UserError
from edgekd.export._private import preserved_mode
from edgekd.runtime import deployable

Precision = Literal["fp32", "fp16", "int8", "int8-dynamic"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-dynamic")
"""The precisions :func:`export_tflite` writes."""

_LOWERING = re.compile(r"Lowering not found: (\S+)")
_USER_LINE = re.compile(r'File "([^"]+)", line (\d+), in \w+\n\s+(.+)')


def capture_error(exc: BaseException) -> str:
    """One line saying why ``torch.export`` or the LiteRT lowering refused a model, naming the operation: the aten
    op without a LiteRT lowering, or the model's source line that ``torch.export`` could not capture (or that a
    lowering failed on)."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    where = _USER_LINE.search(text)
    at = f"`{where.group(3).strip()}` ({Path(where.group(1)).name}:{where.group(2)})" if where else ""
    missing = _LOWERING.search(text)
    if missing:
        return f"LiteRT has no lowering for {missing.group(1)}" + (f" at {at}" if at else "")
    if "torch.export" in text or type(exc).__module__.startswith(("torch._dynamo", "torch.fx", "torch._export")):
        return f"torch.export cannot capture {at or 'the model'}: {first}"
    return f"LiteRT conversion failed{' at ' + at if at else ''}: {type(exc).__name__}: {first}"


def convert_fp32(model: nn.Module, example: torch.Tensor) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` (in eval mode) for inputs of ``example``'s shape, batch included.

    The batch is fixed: litert-torch's lowering of a broadcast against a symbolic batch fails, so an interpreter
    runs exactly this batch. A model that cannot be captured or lowered is a UserError of one line naming the
    operation (:func:`capture_error`).
    """
    import litert_torch

    try:
        with torch.no_grad():
            converted = litert_torch.convert(model.eval(), (example,))
    except Exception as exc:  # torch.export and the lowering raise many unrelated exception types
        raise UserError(f"{type(model).__name__}: {capture_error(exc)}") from exc
    return bytes(converted.model_content())


def quantize_model(fp32: bytes, precision: Precision, calibration: np.ndarray | None = None, *,
                   float_scopes: Sequence[str] = ()) -> bytes:
    """``fp32`` (a float ``.tflite`` flatbuffer) rewritten by ``ai_edge_quantizer`` in ``precision``.

    Args:
        fp32: the float model from :func:`convert_fp32`.
        precision: one of :data:`PRECISIONS` (``fp32`` returns ``fp32`` unchanged).
        calibration: for ``int8``, representative inputs (float32, NCHW, the model's input shape past the batch),
            fed in batches of the model's input batch size; a last partial batch is left out.
        float_scopes: for ``int8``, scope regexes of ops left unquantized (``AlgorithmName.NO_QUANTIZE``, each
            entry added after the recipe's, so it wins): they compute in float32 between a DEQUANTIZE and a
            QUANTIZE.
    """
    if precision == "fp32":
        return fp32
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    if precision == "fp16":
        q = quantizer.Quantizer(bytearray(fp32))
        q.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        return bytes(q.quantize(enable_progress_report=False).quantized_model or b"")
    if precision == "int8-dynamic":
        q = quantizer.Quantizer(bytearray(fp32), recipe.dynamic_wi8_afp32())
        return bytes(q.quantize(enable_progress_report=False).quantized_model or b"")
    if precision != "int8":
        raise UserError(f"LiteRT precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if calibration is None or len(calibration) == 0:
        raise UserError("LiteRT int8 (full-integer) needs a non-empty calibration set")
    q = quantizer.Quantizer(bytearray(fp32), recipe.static_wi8_ai8())
    for scope in float_scopes:
        q.update_quantization_recipe(regex=scope, operation_name=TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=AlgorithmName.NO_QUANTIZE)
    signature, input_name, batch = _signature_input(fp32)
    samples = np.asarray(calibration, dtype=np.float32)
    batches = [{input_name: np.ascontiguousarray(samples[i:i + batch])}
               for i in range(0, len(samples) - batch + 1, batch)]
    if not batches:
        raise UserError(f"LiteRT int8 calibration: {len(samples)} samples, fewer than the model's batch of {batch}")
    result = q.calibrate({signature: batches}, num_threads=1)
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model or b"")


def _signature_input(model: bytes) -> tuple[str, str, int]:
    """The model's first signature key, its input name and its input batch size (1 where the batch is dynamic)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    signature, io = next(iter(interpreter.get_signature_list().items()))
    runner = interpreter.get_signature_runner(signature)
    name = io["inputs"][0]
    detail = runner.get_input_details()[name]
    batch = int(detail["shape_signature"][0])
    return signature, name, batch if batch > 0 else 1


def export_tflite(net: nn.Module, mean: Sequence[float], std: Sequence[float], example: torch.Tensor, path: Path, *,
                  precision: Precision = "fp32", calibration: np.ndarray | None = None) -> Path:
    """Export ``deployable(net, mean, std)`` to a ``.tflite`` file at ``path`` in ``precision``, written atomically.

    Args:
        net: the plain network, fed normalised input; its train/eval mode is restored afterwards.
        mean, std: per-channel normalisation put in the graph, so the artifact takes raw pixels in [0, 1].
        example: an input batch in [0, 1] (float32 NCHW) fixing channels, spatial size and batch.
        path: the ``.tflite`` file to write.
        precision: ``fp32``, ``fp16`` (weights), ``int8`` (full-integer, needs ``calibration``) or ``int8-dynamic``.
        calibration: representative inputs in [0, 1] (float32 NCHW) for ``int8``.
    """
    if precision not in PRECISIONS:
        raise UserError(f"LiteRT precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    with preserved_mode(net):
        fp32 = convert_fp32(deployable(net, mean, std), example)
    atomic_write_bytes(path, quantize_model(fp32, precision, calibration))
    return Path(path)
