"""LiteRT's own benchmark tool, shipped in the ``ai-edge-litert`` wheel, and a parser of its report.

The tool is ``ai_edge_litert/tools/benchmark_litert_model.py`` (run as ``python -m
ai_edge_litert.tools.benchmark_litert_model``): it loads the model as a ``CompiledModel`` on the CPU accelerator
(XNNPACK) with ``--num_threads``, runs ``--warmup_runs`` then ``--num_runs`` calls of ``run_by_name`` on random
input, each timed with ``time.perf_counter``, and prints a ``BENCHMARK RESULTS`` block on stdout (source:
``ai_edge_litert/tools/benchmark_litert_model.py`` in the ``ai-edge-litert`` 2.3.0 wheel, function
``run_benchmark``)::

    Model initialization:  5.29 ms
    Warmup (first):        0.27 ms
    Warmup (avg):          1.82 ms (10 runs)
    Inference (avg):       1.32 ms (100 runs)
    Inference (min):       0.19 ms
    Inference (max):       40.27 ms
    Inference (median):    0.19 ms
    Inference (std):       5.34 ms
    Inference (p5):        0.19 ms
    Inference (p95):       1.08 ms
    Throughput:            2.26 MB/s
    Fully accelerated:     True

Every figure is printed with two decimals in milliseconds, so a model faster than about 0.1 ms per call is timed
coarsely; the median is ``statistics.median`` and p5/p95 interpolate linearly between order statistics.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.errors import RuntimeFailure, UserError

TOOL = "benchmark_litert_model"
"""The tool's name (its fixtures are ``tests/fixtures/bench/benchmark_litert_model_*.txt``)."""
TOOL_MODULE = f"ai_edge_litert.tools.{TOOL}"
"""The benchmark tool's module in the ``ai-edge-litert`` wheel."""

_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_FIELDS = {
    "init_ms": r"Model initialization:\s+" + _NUMBER + r" ms",
    "warmup_first_ms": r"Warmup \(first\):\s+" + _NUMBER + r" ms",
    "warmup_mean_ms": r"Warmup \(avg\):\s+" + _NUMBER + r" ms",
    "mean": r"Inference \(avg\):\s+" + _NUMBER + r" ms",
    "min": r"Inference \(min\):\s+" + _NUMBER + r" ms",
    "max": r"Inference \(max\):\s+" + _NUMBER + r" ms",
    "median": r"Inference \(median\):\s+" + _NUMBER + r" ms",
    "std": r"Inference \(std\):\s+" + _NUMBER + r" ms",
    "p5": r"Inference \(p5\):\s+" + _NUMBER + r" ms",
    "p95": r"Inference \(p95\):\s+" + _NUMBER + r" ms",
}
_LATENCY = ("mean", "min", "max", "median", "std", "p5", "p95")


def parse_benchmark_litert_model(text: str) -> dict[str, Any]:
    """``{init_ms, warmup_first_ms, warmup_mean_ms, warmup_runs, runs, latency_ms: {mean, min, max, median, std, p5,
    p95}, throughput_mb_s, fully_accelerated}`` from the tool's report; a report without its ``Inference (median)``
    line is a ValueError."""
    found = {key: re.search(pattern, text) for key, pattern in _FIELDS.items()}
    if found["median"] is None:
        raise ValueError("no 'Inference (median): N ms' line in the LiteRT benchmark report")
    values = {key: float(m.group(1)) for key, m in found.items() if m is not None}
    report: dict[str, Any] = {key: values.get(key) for key in ("init_ms", "warmup_first_ms", "warmup_mean_ms")}
    report["latency_ms"] = {key: values[key] for key in _LATENCY if key in values}
    runs = re.search(r"Inference \(avg\):.*\((\d+) runs\)", text)
    warmups = re.search(r"Warmup \(avg\):.*\((\d+) runs\)", text)
    report["runs"] = int(runs.group(1)) if runs else None
    report["warmup_runs"] = int(warmups.group(1)) if warmups else None
    throughput = re.search(r"Throughput:\s+" + _NUMBER + r" MB/s", text)
    report["throughput_mb_s"] = float(throughput.group(1)) if throughput else None
    accelerated = re.search(r"Fully accelerated:\s+(True|False)", text)
    report["fully_accelerated"] = accelerated.group(1) == "True" if accelerated else None
    return report


def failure_line(output: str) -> str:
    """The line of the tool's output that says why it failed: the last one naming an error (its log is mostly INFO
    lines from the accelerator registry), else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("INFO")]
    return (errors or lines or ["no output"])[-1]


def benchmark_args(model: Path, *, threads: int, runs: int, warmup_runs: int) -> list[str]:
    """The command line running the wheel's benchmark tool on ``model`` with this Python."""
    if threads < 1 or runs < 1 or warmup_runs < 0:
        raise UserError(f"LiteRT benchmark: threads and runs must be >= 1 and warmup_runs >= 0, got {threads}, "
                        f"{runs}, {warmup_runs}")
    return [sys.executable, "-m", TOOL_MODULE, f"--model={model}", f"--num_threads={threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup_runs}"]


def run_benchmark_tool(model: Path, *, threads: int = 1, runs: int = 100, warmup_runs: int = 10,
                       timeout: float = 600) -> dict[str, Any]:
    """The tool's parsed report (:func:`parse_benchmark_litert_model`) on ``model``, with the command run."""
    if not Path(model).exists():
        raise UserError(f"{model}: artifact not found")
    args = benchmark_args(Path(model), threads=threads, runs=runs, warmup_runs=warmup_runs)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"LiteRT benchmark tool did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeFailure(f"LiteRT benchmark tool failed (exit {done.returncode}: "
                             f"{failure_line(done.stderr + done.stdout)})")
    report = parse_benchmark_litert_model(done.stdout)
    report["command"] = args
    return report


parse = parse_benchmark_litert_model
"""The report parser of :data:`TOOL`."""


def compare(model: Path, metrics: dict[str, Any], options: dict[str, Any], shape: Sequence[int],
            niter: int) -> dict[str, Any]:
    """:func:`run_benchmark_tool` on ``model`` as edgekd measured it (``options``: the runner options, whose threads
    the tool gets; ``niter``: edgekd's timed runs). The tool runs the model's own input shape, the only one a
    fixed-batch LiteRT model takes, on the XNNPACK CPU accelerator: edgekd's ``none`` delegate is not the same
    measurement (a UserError)."""
    if options.get("delegate", "xnnpack") != "xnnpack":
        raise UserError(f"{model}: {TOOL} runs the XNNPACK CPU accelerator; edgekd measured delegate "
                        f"{options['delegate']!r}")
    return run_benchmark_tool(Path(model), threads=options.get("threads") or 1, runs=max(1, niter))
