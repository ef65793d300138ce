"""One :class:`Runner` interface over torch, ONNX Runtime, OpenVINO and TensorRT.

    >>> from edgekd.runtime import open_runner, evaluate_accuracy
    >>> with open_runner("onnxruntime", Path("model.onnx"), threads=2) as runner:
    ...     logits = runner(x)                       # float32 NCHW in [0, 1] -> float32 logits
    ...     acc = evaluate_accuracy(runner, x_test, y_test, batch_size=256)

``RUNTIMES`` holds each runtime's Runner (the ``runner`` module of its package in :mod:`edgekd.runtimes`) with its
formats, precisions, devices and options. Back ends are imported only when a runner of theirs is opened.
"""

from __future__ import annotations

import importlib

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
from edgekd.runtimes import RUNTIME_SPECS, runtime_module

for _name in RUNTIME_SPECS:
    importlib.import_module(runtime_module(_name, "runner"))

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
