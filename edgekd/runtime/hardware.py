"""Whether this host meets a capability's hardware requirement (``requires`` in :mod:`edgekd.capabilities`).

Back ends are imported only to answer: bf16 asks OpenVINO's ``OPTIMIZATION_CAPABILITIES`` or torch's oneDNN, TensorRT
asks for an importable TensorRT >= 10 and a CUDA device.
"""

from __future__ import annotations

from edgekd.capabilities import Capability
from edgekd.runtime.precision import bf16_unsupported
from edgekd.runtime.tensorrt_runner import tensorrt_problem


def tensorrt_unavailable() -> str | None:
    """Why TensorRT artifacts cannot be built and run here (TensorRT >= 10 and a CUDA device are needed), in one
    line; None when they can. The same check the engine builder and the TensorRT tests make."""
    problem = tensorrt_problem()
    if problem is None:
        return None
    return (f"{problem}; engines are built on the device itself: pip install 'edgekd[tensorrt]' there, or JetPack's "
            f"python3-libnvinfer on a Jetson")


def unmet_requirement(row: Capability, device: str) -> str | None:
    """Why ``row`` cannot be built and run on ``device`` of this host (one line), or None when it can."""
    if row.requires == "bf16":
        return bf16_unsupported(row.runtime, device)
    if row.requires == "tensorrt":
        return tensorrt_unavailable()
    return None
