"""Cross-check with the vendor's own tool: OpenVINO's ``benchmark_app`` on the same IR, threads, precision and
request layout as edgekd's measurement.

``benchmark_app`` ships with the ``openvino`` package (beside the Python interpreter). It is run with ``-hint none``
(``-nthreads`` is ignored under a performance hint), ``-nthreads``, ``-nstreams 1 -nireq 1 -api sync`` (one
synchronous request, as edgekd's loop), ``-infer_precision`` (the ``INFERENCE_PRECISION_HINT`` edgekd compiled
with), ``-shape`` (the static shape edgekd reshapes to) and ``-niter``. Its median comes from OpenVINO's own per-request
timer (``request.latency``), so it excludes the Python call that edgekd's wall-clock median includes; edgekd records
OpenVINO's figure beside its own (``runtime_reported_ms``) so the two can be told apart.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.bench.parsers import parse_benchmark_app
from edgekd.errors import RuntimeFailure, UserError


def benchmark_app_path() -> Path:
    """``benchmark_app`` beside this Python (the ``openvino`` wheel's entry point), else on PATH."""
    beside = Path(sys.executable).parent / "benchmark_app"
    found = beside if beside.exists() else (Path(p) if (p := shutil.which("benchmark_app")) else None)
    if found is None:
        raise UserError("benchmark_app not found beside this Python or on PATH (it ships with the openvino package)")
    return found


def benchmark_app_args(model: Path, *, device: str, threads: int | None, precision_hint: str,
                       shape: Sequence[int], niter: int) -> list[str]:
    """The command line that matches edgekd's OpenVINO measurement of ``model``."""
    args = [str(benchmark_app_path()), "-m", str(model), "-d", device, "-hint", "none", "-nstreams", "1",
            "-nireq", "1", "-api", "sync", "-infer_precision", precision_hint,
            "-shape", "[" + ",".join(str(int(d)) for d in shape) + "]", "-niter", str(niter)]
    if threads is not None:
        args += ["-nthreads", str(threads)]
    return args


def run_benchmark_app(model: Path, *, device: str, threads: int | None, precision_hint: str,
                      shape: Sequence[int], niter: int, timeout: float = 600) -> dict[str, Any]:
    """benchmark_app's parsed report (:func:`edgekd.bench.parsers.parse_benchmark_app`) and the command run."""
    args = benchmark_app_args(model, device=device, threads=threads, precision_hint=precision_hint, shape=shape,
                              niter=niter)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"benchmark_app did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeFailure(f"benchmark_app failed (exit {done.returncode}: {tail[0]})")
    report = parse_benchmark_app(done.stdout + done.stderr)
    report["command"] = args
    return report


def agreement(edgekd_ms: float, native_ms: float) -> float:
    """Relative difference of edgekd's median from the native tool's: ``(edgekd - native) / native``."""
    return (edgekd_ms - native_ms) / native_ms
