"""Post-training static INT8 quantization with ONNX Runtime's quantization tool (QDQ format).

``quant_pre_process`` (symbolic shape inference + graph optimisation, the step ONNX Runtime recommends) runs first;
then ``quantize_static`` inserts QuantizeLinear/DequantizeLinear pairs with QInt8 weights (per channel by default) and
activations whose scales come from the calibration batches. Static QDQ runs on every execution provider;
``quantize_dynamic`` would give ConvInteger, which many providers lack, so it is not offered.

Activations are QUInt8 (asymmetric), the type ONNX Runtime's CPU kernels compute in (MLAS U8×S8). With QInt8
activations the CPU provider first rewrites S8 tensors to U8 (``QDQS8ToU8Transformer``), but only a tensor with a
single consumer; a residual block's input feeds two, stays S8, and every Conv between a U8 and an S8 tensor fails the
fusion's same-type check (``ConvNodeGroupSelector``) and runs as DequantizeLinear → float Conv → QuantizeLinear, so a
residual network's INT8 graph can be slower than its fp32 one; with QUInt8 every Conv fuses into QLinearConv
(``tests/test_quantize.py`` checks this in ONNX Runtime's optimised graph). A graph for TensorRT needs signed symmetric
activations (QInt8, zero point 0) and float biases: ONNX Runtime quantizes biases to int32 behind a DequantizeLinear
by default (``QuantizeBias``), and TensorRT's ``IDequantizeLayer`` takes INT8, FP8 or INT4 inputs only.

Recipe snippet (symmetric activations are chosen when the device offers TensorRT)::

    quantize:
      engines: [ort]
      ort: {per_channel: true, calibrate_method: minmax}   # minmax | entropy | percentile
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from edgekd._atomic import atomic_path
from edgekd.quantize._private import check_calibration, check_suffix, onnx_input, quiet, split_batches

log = logging.getLogger(__name__)

CalibrateMethod = Literal["minmax", "entropy", "percentile"]

CALIBRATION_BATCH = 16
"""Samples per calibration batch for a model with a dynamic batch dimension."""


class _Batches:
    """An ONNX Runtime ``CalibrationDataReader``: ``{input_name: batch}`` dicts, then ``None``."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def prepare_float(fp32_onnx: Path, out: Path) -> Path:
    """``quant_pre_process`` of ``fp32_onnx`` written to ``out``: the float graph :func:`ort_static_quantize`
    quantizes, whose node names ``nodes_to_exclude`` refers to (the step is deterministic)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_suffix(fp32_onnx, ".onnx", "model to quantize")
    quant_pre_process(str(fp32_onnx), str(out))
    return Path(out)


def ort_static_quantize(fp32_onnx: Path, out: Path, calibration: np.ndarray, *, per_channel: bool = True,
                        symmetric_activations: bool, quantize_bias: bool = True,
                        calibrate_method: CalibrateMethod = "minmax", nodes_to_exclude: Sequence[str] = ()) -> Path:
    """Quantize the fp32 ONNX artifact ``fp32_onnx`` to a QDQ INT8 artifact at ``out`` (written atomically).

    Args:
        fp32_onnx: a deployable fp32 ONNX model (normalisation inside, one input).
        out: the ``.onnx`` file to write.
        calibration: float32 NCHW samples in [0, 1] from the train split.
        per_channel: one weight scale per output channel (else per tensor).
        symmetric_activations: signed activations with zero points fixed at 0 (QInt8, ``ActivationSymmetric``), as
            TensorRT needs; False gives asymmetric QUInt8 activations, which ONNX Runtime's CPU provider fuses into
            QLinearConv everywhere. Weights are always QInt8 and symmetric.
        quantize_bias: store biases as int32 (scale = input scale × weight scale) behind a DequantizeLinear, as ONNX
            Runtime's kernels fuse them; False keeps them float, as TensorRT needs.
        calibrate_method: how activation ranges are chosen: ``minmax`` (observed range), ``entropy`` (KL-divergence
            threshold, as TensorRT's entropy calibrator) or ``percentile`` (99.999th percentile of |x|).
        nodes_to_exclude: names of nodes of the pre-processed graph (:func:`prepare_float`) left in float.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_suffix(fp32_onnx, ".onnx", "model to quantize")
    check_suffix(out, ".onnx", "quantized model")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise ValueError(f"calibrate_method must be one of {', '.join(methods)}, got {calibrate_method!r}")
    input_name, fixed_batch = onnx_input(fp32_onnx)
    batches = split_batches(check_calibration(calibration), fixed_batch, CALIBRATION_BATCH)
    with tempfile.TemporaryDirectory(prefix="edgekd-ortq-") as work, atomic_path(out) as tmp:
        prepared = prepare_float(fp32_onnx, Path(work) / "prepared.onnx")
        with quiet() as chatter:
            quantize_static(str(prepared), str(tmp), _Batches(input_name, batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel,
                            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=methods[calibrate_method],
                            nodes_to_exclude=list(nodes_to_exclude),
                            extra_options={"ActivationSymmetric": symmetric_activations,
                                           "WeightSymmetric": True, "QuantizeBias": quantize_bias})
        log.debug("quantize_static: %s", chatter.getvalue())
    return Path(out)
