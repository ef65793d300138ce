"""Latency of one in-process call, measured with ``time.perf_counter_ns`` and summarised in milliseconds.

The protocol and statistics are those of the device runner (:mod:`edgekd.bench.device_runner`, the one place they
are written): percentiles by numpy's linear interpolation between order statistics (as trtexec and Olive), ``std``
the population standard deviation, ``cv`` = std / mean, ``throughput_per_s`` = batch / mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edgekd.bench.device_runner import summarize, timed_loop

Clock = Callable[[], int]


def latency_stats(durations_ns: Sequence[int] | np.ndarray, batch_size: int = 1) -> dict[str, float | int]:
    """``{p50, p90, p95, p99, mean, std, min, max, runs, cv, throughput_per_s}`` of ``durations_ns`` (ms)."""
    return summarize(durations_ns, batch_size)


def measure_latency(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float = 30.0,
                    warmup_seconds: float = 0.0, min_seconds: float = 0.0, batch_size: int = 1,
                    clock: Clock = time.perf_counter_ns) -> dict[str, float | int]:
    """Warm ``fn`` up (``warmup`` calls and ``warmup_seconds``), time calls until ``runs`` calls and ``min_seconds``
    have passed or ``max_seconds`` (at least one), and return :func:`latency_stats`. ``clock`` (ns) is injectable."""
    return summarize(timed_loop(fn, warmup, warmup_seconds, runs, min_seconds, max_seconds, clock=clock), batch_size)
