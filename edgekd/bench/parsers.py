"""Parsers of the vendors' benchmark reports, so edgekd's figures can be set beside theirs.

- OpenVINO ``benchmark_app`` (Python or C++): the ``Count``, ``Duration``, ``Latency`` block (``Median``/``Average``/
  ``Min``/``Max``, printed in ``ms``, or in ``us`` when the average is under 1 ms) and ``Throughput ... FPS``.
- TensorRT ``trtexec``: the ``=== Performance summary ===`` lines (``Throughput: N qps``; ``Latency``, ``Enqueue
  Time``, ``H2D Latency``, ``GPU Compute Time``, ``D2H Latency`` with ``min/max/mean/median/percentile(P%)``) and the
  ``coefficient of variance`` warning of an unstable GPU compute time.
- ONNX Runtime ``onnxruntime_perf_test``: ``Session creation time cost``, ``Average inference time cost``, ``Total
  inference requests``/``Total iterations`` and the ``-s`` statistics ``Min/Max/P50/P90/P95/P99/P999 Latency is
  X sec``.

Every figure is returned in milliseconds; a report without its headline figure is a ValueError naming what is
missing.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_UNIT_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3, "sec": 1e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


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


_TRT_METRICS = {"Latency": "latency", "Enqueue Time": "enqueue", "H2D Latency": "h2d",
                "GPU Compute Time": "gpu_compute", "D2H Latency": "d2h"}


def parse_trtexec(text: str) -> dict[str, Any]:
    """``{throughput_qps, latency: {...}, gpu_compute: {...}, ..., cv_percent}``; each metric as ``{min, max,
    mean, median, p90, p95, p99}`` (those printed) in ms."""
    out: dict[str, Any] = {}
    found = re.search(rf"Throughput:\s+{_NUMBER} qps", text)
    if found:
        out["throughput_qps"] = float(found.group(1))
    for label, name in _TRT_METRICS.items():
        line = re.search(rf"\] {re.escape(label)}: (min.*)$", text, re.M) or \
            re.search(rf"^{re.escape(label)}: (min.*)$", text, re.M)
        if not line:
            continue
        stats: dict[str, float] = {}
        for key, value in re.findall(rf"(min|max|mean|median|percentile\(\d+(?:\.\d+)?%\))\s*=?\s*{_NUMBER} ms",
                                     line.group(1)):
            q = re.match(r"percentile\((\d+(?:\.\d+)?)%\)", key)
            stats[f"p{float(q.group(1)):g}" if q else key] = float(value)
        out[name] = stats
    if "latency" not in out and "gpu_compute" not in out:
        raise ValueError("trtexec report: no '=== Performance summary ===' Latency or GPU Compute Time line")
    cv = re.search(rf"coefficient of variance = {_NUMBER}%", text)
    if cv:
        out["cv_percent"] = float(cv.group(1))
    return out


def parse_onnxruntime_perf_test(text: str) -> dict[str, Any]:
    """``{requests, mean_ms, session_creation_ms, latency_ms: {min, max, p50, p90, p95, p99, p999}}``."""
    out: dict[str, Any] = {}
    mean = re.search(rf"Average (?:inference )?time cost:\s*{_NUMBER}\s*ms", text)
    if not mean:
        raise ValueError("onnxruntime_perf_test report: no 'Average inference time cost' line")
    out["mean_ms"] = float(mean.group(1))
    requests = re.search(rf"Total (?:inference requests|iterations):\s*{_NUMBER}", text)
    if requests:
        out["requests"] = int(float(requests.group(1)))
    session = re.search(rf"Session creation time cost:\s*{_NUMBER}\s*s", text)
    if session:
        out["session_creation_ms"] = float(session.group(1)) * 1e3
    latency = {key.lower(): float(value) * 1e3
               for key, value in re.findall(rf"(Min|Max|P\d+) Latency is\s*{_NUMBER}\s*s", text)}
    if latency:
        out["latency_ms"] = latency
    return out
