"""Machinery shared by the quantizers: calibration checks, batching and the input of a model file."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtime import first_line


def check_calibration(x: np.ndarray, what: str = "calibration") -> np.ndarray:
    """``x`` if it is a non-empty float32 NCHW batch in [0, 1] (the artifact contract), else a ValueError."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{what} data must be a non-empty float32 NCHW array, got "
                         f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(f"{what} data must be raw pixels in [0, 1] (artifacts normalise inside), got values in "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x


def split_batches(x: np.ndarray, fixed_batch: int | None, batch_size: int = 1) -> list[np.ndarray]:
    """``x`` cut into batches of ``fixed_batch`` (a model with a static batch; an incomplete tail is dropped) or of
    ``batch_size``."""
    step = fixed_batch or batch_size
    batches = [x[i:i + step] for i in range(0, len(x), step)]
    if fixed_batch is not None:
        batches = [b for b in batches if len(b) == fixed_batch]
        if not batches:
            raise ValueError(f"the model has a fixed batch of {fixed_batch} but only {len(x)} samples were given")
    return batches


def onnx_input(path: Path) -> tuple[str, int | None]:
    """Name and static batch size (``None`` if dynamic) of the single input of the ONNX model at ``path``."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for a corrupt file
        raise UserError(f"{path}: not a readable ONNX model ({first_line(exc)})") from exc
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{path}: expected a model with one input, found {len(inputs)}")
    batch = inputs[0].type.tensor_type.shape.dim[0]
    return inputs[0].name, (batch.dim_value if batch.HasField("dim_value") else None)


def check_suffix(path: Path, expected: str, role: str) -> None:
    """A UserError unless ``path`` ends in ``expected`` (e.g. ``.onnx``)."""
    if Path(path).suffix.lower() != expected:
        raise UserError(f"{path}: the {role} must be a {expected} file")


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture what a quantizer prints to stdout (ONNX Runtime's calibrators, NNCF's progress bars) and silence its
    logs below ERROR (root and ``nncf`` loggers), so the command line's output stays edgekd's; yields the text."""
    loggers = [logging.getLogger(), logging.getLogger("nncf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def nncf_options(preset: str, target_device: str) -> dict[str, Any]:
    """``nncf.quantize`` keyword arguments for a ``preset`` (performance, mixed) and a ``target_device`` name."""
    import nncf

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ValueError(f"preset must be one of {', '.join(presets)}, got {preset!r}")
    try:
        device = nncf.TargetDevice[target_device]
    except KeyError:
        raise ValueError(f"target_device must be one of ANY, CPU, GPU, NPU, got {target_device!r}") from None
    return {"preset": presets[preset], "target_device": device}
