"""Whether TensorRT artifacts can be built and run on this host (the ``install`` requirement of its rows)."""

from __future__ import annotations

from edgekd.runtimes.tensorrt.runner import tensorrt_problem


def unavailable() -> str | None:
    """Why TensorRT artifacts cannot be built and run here (TensorRT >= 10 and a CUDA device are needed), in one
    line; None when they can. The same check the engine builder and the TensorRT tests make."""
    problem = tensorrt_problem()
    if problem is None:
        return None
    return (f"{problem}; engines are built on the device itself: pip install 'edgekd[tensorrt]' there, or JetPack's "
            f"python3-libnvinfer on a Jetson")
