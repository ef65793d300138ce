"""Accuracy, size and export time of LiteRT artifacts of a tiny CNN trained on scikit-learn's digits (a script).

Trains the CNN of ``tests/test_litert.py`` (:func:`tests.test_litert.trained_digits_cnn`: 1400 training images, 392
held out, seed 0), exports it with :func:`edgekd.runtimes.litert.export.export_tflite` in every precision (batch 8;
INT8 calibrated on 256 training images) and records torch's and each artifact's held-out accuracy in LiteRT's
interpreter, its bytes and the seconds its export took, in ``results/litert-digits.json``::

    PYTHONPATH=. python benchmarks/litert_digits.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgekd.runtime import evaluate_accuracy
from edgekd.runtimes.litert.export import PRECISIONS, export_tflite
from edgekd.runtimes.litert.runner import LiteRtRunner
from records import write_record  # benchmarks/ is on sys.path when this script runs
from tests.test_litert import MEAN, STD, trained_digits_cnn


def main() -> None:
    net, x, y, train, test, torch_acc = trained_digits_cnn()
    figures: dict[str, Any] = {"torch_fp32_accuracy": torch_acc, "test_images": len(test)}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            path = export_tflite(net, MEAN, STD, torch.from_numpy(x[train[:8]]), Path(tmp) / f"{precision}.tflite",
                                 precision=precision, calibration=x[train[:256]])  # type: ignore[arg-type]
            seconds = time.perf_counter() - t0
            with LiteRtRunner(path, threads=1) as runner:
                accuracy = evaluate_accuracy(runner, x[test], y[test], batch_size=8)
                computed = runner.describe()["inference_precision"]
            figures[precision] = {"accuracy": accuracy, "accuracy_minus_torch": round(accuracy - torch_acc, 4),
                                  "bytes": path.stat().st_size, "export_s": round(seconds, 1),
                                  "inference_precision": computed}
            print(precision, figures[precision], flush=True)
    print(write_record("litert-digits", title="LiteRT artifacts of a digits CNN: accuracy, size, export time",
                       figures=figures, notes="TinyCnn (2 convs + linear), 8x8 digits, batch 8, 1 thread"))


if __name__ == "__main__":
    main()
