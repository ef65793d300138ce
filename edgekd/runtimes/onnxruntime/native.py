"""ONNX Runtime's native benchmark tool, ``onnxruntime_perf_test`` (the adb path runs it on a phone): its report
parsed.

``Session creation time cost``, ``Average inference time cost``, ``Total inference requests``/``Total iterations``
and the ``-s`` statistics ``Min/Max/P50/P90/P95/P99/P999 Latency is X sec``.
"""

from __future__ import annotations

import re
from typing import Any

from edgekd.runtimes._native import NUMBER as _NUMBER

TOOL = "onnxruntime_perf_test"


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


parse = parse_onnxruntime_perf_test
"""The report parser of :data:`TOOL`."""
