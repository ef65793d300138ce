"""OpenVINO's native benchmark tool, ``benchmark_app``: run on the same IR, threads, precision and request layout as
edgekd's measurement, and its report parsed.

``benchmark_app`` ships with the ``openvino`` package (beside the Python interpreter). It is run with ``-hint none``
(``-nthreads`` is ignored under a performance hint), ``-nthreads``, ``-nstreams 1 -nireq 1 -api sync`` (one
synchronous request, as edgekd's loop), ``-infer_precision`` (the ``INFERENCE_PRECISION_HINT`` edgekd compiled
with), ``-shape`` (the static shape edgekd reshapes to) and ``-niter``. Its median comes from OpenVINO's own per-request
timer (``request.latency``), so it excludes the Python call that edgekd's wall-clock median includes; edgekd records
OpenVINO's figure beside its own (``runtime_reported_ms``) so the two can be told apart.

The report (Python or C++ tool): the ``Count``, ``Duration``, ``Latency`` block (``Median``/``Average``/``Min``/
``Max``, printed in ``ms``, or in ``us`` when the average is under 1 ms) and ``Throughput ... FPS``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtimes._native import NUMBER as _NUMBER
from edgekd.runtimes._native import to_ms as _ms

TOOL = "benchmark_app"


def parse_benchmark_app(text: str) -> dict[str, Any]:
    """``{count, duration_ms, latency_ms: {median, mean, min, max}, throughput_fps, first_inference_ms}``."""
    latency: dict[str, float] = {}
    for key, name in (("Median", "median"), ("Average", "mean"), ("Min", "min"), ("Max", "max")):
        found = re.search(rf"^\[ INFO \]\s+{key}:\s+{_NUMBER}\s*(ms|us|µs)\s*$", text, re.M)
        if found:
            latency[name] = _ms(found.group(1), found.group(2))
    if "median" not in latency:
        raise ValueError("benchmark_app report: no 'Median:' latency line (was the run interrupted?)")
    out: dict[str, Any] = {"latency_ms": latency}
    for key, pattern in (("count", rf"Count:\s+{_NUMBER} iterations"), ("duration_ms", rf"Duration:\s+{_NUMBER} ms"),
                         ("throughput_fps", rf"Throughput:\s+{_NUMBER} FPS"),
                         ("first_inference_ms", rf"First inference took {_NUMBER} ms")):
        found = re.search(pattern, text)
        if found:
            out[key] = int(float(found.group(1))) if key == "count" else float(found.group(1))
    return out


parse = parse_benchmark_app
"""The report parser of :data:`TOOL`."""


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
    """benchmark_app's parsed report (:func:`parse_benchmark_app`) and the command run."""
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


def compare(model: Path, metrics: dict[str, Any], options: dict[str, Any], shape: Sequence[int],
            niter: int) -> dict[str, Any]:
    """:func:`run_benchmark_app` on ``model`` as edgekd measured it (``metrics``: the device runner's figures, whose
    ``compute`` holds the device and the precision compiled in; ``options``: the runner options)."""
    return run_benchmark_app(model, device=metrics["compute"]["device"], threads=options.get("threads"),
                             precision_hint=metrics["compute"]["inference_precision"], shape=shape, niter=niter)
