"""INT8 quantization: ONNX Runtime static PTQ (all INT8, or mixed precision from a per-node sensitivity table), NNCF
PTQ (plain or under an accuracy budget) and NNCF QAT.

Every function takes and writes deployable artifacts (normalisation inside, input in [0, 1]); calibration samples
come from the train split and are passed by the caller as a float32 NCHW array.
"""

from __future__ import annotations

from edgekd.quantize.mixed import (
    MixedPrecision,
    mixed_build,
    mixed_info,
    ort_mixed_precision,
    ranked_mixed_precision,
)
from edgekd.quantize.nncf_mixed import nncf_mixed_precision
from edgekd.quantize.nncf_quantize import nncf_ptq, nncf_ptq_with_accuracy_control, top1_validation
from edgekd.quantize.ort import ort_static_quantize
from edgekd.quantize.qat import nncf_qat_prepare, strip_qat_to_onnx
from edgekd.quantize.sensitivity import LayerSensitivity, SensitivityTable, ort_sensitivity

__all__ = [
    "LayerSensitivity",
    "MixedPrecision",
    "SensitivityTable",
    "mixed_build",
    "mixed_info",
    "nncf_mixed_precision",
    "nncf_ptq",
    "nncf_ptq_with_accuracy_control",
    "nncf_qat_prepare",
    "ort_mixed_precision",
    "ort_sensitivity",
    "ort_static_quantize",
    "ranked_mixed_precision",
    "strip_qat_to_onnx",
    "top1_validation",
]
