"""One :class:`Runner` interface over torch, ONNX Runtime, OpenVINO and TensorRT.

    >>> from edgekd.runtime import open_runner, evaluate_accuracy
    >>> with open_runner("onnxruntime", Path("model.onnx"), threads=2) as runner:
    ...     logits = runner(x)                       # float32 NCHW in [0, 1] -> float32 logits
    ...     acc = evaluate_accuracy(runner, x_test, y_test, batch_size=256)

``RUNTIMES`` is the capability table (formats, precisions, devices, options of each runtime). Back ends are
imported only when a runner of theirs is opened.
"""

from __future__ import annotations

from edgekd.runtime import openvino_runner, ort_runner, tensorrt_runner, torch_runner  # noqa: F401  (fill RUNTIMES)
from edgekd.runtime.base import (
    FORMAT_SUFFIXES,
    RUNTIMES,
    Bound,
    Runner,
    artifact_format,
    evaluate_accuracy,
    first_line,
    open_runner,
    predict,
)
from edgekd.runtime.torch_artifact import (
    Deployable,
    Normalize,
    deployable,
    load_torch_artifact,
    save_torch_artifact,
)

__all__ = [
    "Bound",
    "Deployable",
    "FORMAT_SUFFIXES",
    "RUNTIMES",
    "Normalize",
    "Runner",
    "artifact_format",
    "deployable",
    "evaluate_accuracy",
    "first_line",
    "load_torch_artifact",
    "open_runner",
    "predict",
    "save_torch_artifact",
]
