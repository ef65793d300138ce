"""Per-operator LiteRT profile: the ``Run Order`` table of ``benchmark_model --enable_op_profiling=true``.

The Python interpreter of ``ai-edge-litert`` exposes no op profiler and the wheel's Python benchmark tool has no op
profiling, so per-operator timings come from TFLite's C++ ``benchmark_model`` (the Android binary run over adb, or a
Linux build on a board). Its ``ProfilingListener`` (``tensorflow/lite/tools/benchmark/profiling_listener.cc``)
prints ``Operator-wise Profiling Info for Regular Benchmark Runs:`` followed by the summarizer's tables
(``tensorflow/lite/profiling/profile_summarizer.cc`` over ``StatsCalculator`` in ``xla/tsl/util/stats_calculator.cc``):
a ``Run Order`` table whose header names its columns in brackets (``[node type] [first] [avg ms] [%] [cdf%] [mem KB]
[times called] [Name]``, with a ``[start]`` column in older releases), one row per node, columns right-aligned with
spaces (tabs in older releases), the name last as ``[output tensors]:<node index>`` for a TFLite kernel or
``Delegate/<XNNPACK operator>:<index>`` for a node inside the XNNPACK delegate. Node types and names may hold
single spaces (``Convolution (NHWC, QC8) IGEMM``).
"""

from __future__ import annotations

import re
from typing import Any

SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_COLUMN = re.compile(r"\[([^\]]+)\]")
_VALUE = r"[-+]?\d+(?:\.\d+)?%?"
_KEYS = {"start": "start_ms", "first": "first_ms", "avg ms": "avg_ms", "%": "percent", "cdf%": "cdf_percent",
         "mem KB": "mem_kb", "times called": "times_called"}


def parse_op_profile(text: str) -> list[dict[str, Any]]:
    """Rows ``{node_type, name, node_index, first_ms, avg_ms, percent, cdf_percent, mem_kb, times_called}`` (plus
    ``start_ms`` where the table has it) of the ``Run Order`` table after :data:`SECTION`, in run order.
    ``node_index`` is the integer after the name's last ``:`` (None where there is none). A text without the
    section or its table is a ValueError."""
    at = text.find(SECTION)
    if at < 0:
        raise ValueError(f"no '{SECTION}' section (run benchmark_model with --enable_op_profiling=true)")
    lines = text[at + len(SECTION):].splitlines()
    header = next((i for i, line in enumerate(lines) if "[node type]" in line and "[Name]" in line), None)
    if header is None:
        raise ValueError("no Run Order header ('[node type] ... [Name]') after the operator-wise profiling section")
    columns = _COLUMN.findall(lines[header])
    numeric = columns[1:-1]
    row = re.compile(r"^\s*(?P<type>\S.*?)\s+(?P<values>(?:" + _VALUE + r"\s+){" + str(len(numeric)) + r"})"
                     r"(?P<name>\S.*?)\s*$")
    rows = []
    for line in lines[header + 1:]:
        if not line.strip():
            break
        match = row.match(line)
        if match is None:
            raise ValueError(f"Run Order row does not have {len(columns)} columns: {line.strip()!r}")
        values = [float(v.rstrip("%")) for v in match.group("values").split()]
        name = match.group("name")
        index = re.search(r":(\d+)$", name)
        entry: dict[str, Any] = {"node_type": match.group("type"), "name": name,
                                 "node_index": int(index.group(1)) if index else None}
        for column, value in zip(numeric, values):
            entry[_KEYS.get(column, column)] = value
        if "times_called" in entry:
            entry["times_called"] = int(entry["times_called"])
        rows.append(entry)
    return rows


def by_node_type(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds per node type per run: the sum over its rows of ``avg_ms`` × ``times_called``, largest first."""
    totals: dict[str, float] = {}
    for r in rows:
        totals[r["node_type"]] = totals.get(r["node_type"], 0.0) + r["avg_ms"] * r.get("times_called", 1)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
