"""TensorRT's native benchmark tool, ``trtexec``: its report parsed.

The ``=== Performance summary ===`` lines (``Throughput: N qps``; ``Latency``, ``Enqueue Time``, ``H2D Latency``,
``GPU Compute Time``, ``D2H Latency`` with ``min/max/mean/median/percentile(P%)``) and the ``coefficient of
variance`` warning of an unstable GPU compute time.
"""

from __future__ import annotations

import re
from typing import Any

from edgekd.runtimes._native import NUMBER as _NUMBER

TOOL = "trtexec"

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


parse = parse_trtexec
"""The report parser of :data:`TOOL`."""
