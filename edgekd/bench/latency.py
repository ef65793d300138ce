"""Latency of one call, measured with ``time.perf_counter_ns`` and summarised in milliseconds.

The statistics match Olive's latency metrics (avg/min/max/p50/p90/p99) and trtexec's percentiles: percentiles use
numpy's default linear interpolation between order statistics, and ``std`` is the population standard deviation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

Clock = Callable[[], int]

#: most latency samples kept per artifact in the manifest (bench metric ``samples_ms``)
MAX_SAMPLES = 1000


def latency_stats(durations_ns: Sequence[int] | np.ndarray) -> dict[str, float | int]:
    """``{p50, p90, p99, mean, min, max, std}`` in milliseconds and ``runs`` (count) of ``durations_ns``."""
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.ndim != 1 or ms.size == 0:
        raise ValueError("latency statistics need a non-empty 1-D sequence of durations")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "min": float(ms.min()), "max": float(ms.max()), "std": float(ms.std()), "runs": int(ms.size)}


def time_calls(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float | None = None,
               clock: Clock = time.perf_counter_ns) -> list[int]:
    """Call ``fn`` ``warmup`` times untimed, then time up to ``runs`` calls; the durations in nanoseconds.

    With ``max_seconds`` the timed loop stops early once that much time has passed (at least one run is always
    timed), so fewer than ``runs`` durations may come back. ``clock`` (nanoseconds) is injectable for tests.
    """
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    for _ in range(warmup):
        fn()
    deadline = None if max_seconds is None else clock() + int(max_seconds * 1e9)
    durations: list[int] = []
    for _ in range(runs):
        start = clock()
        fn()
        end = clock()
        durations.append(end - start)
        if deadline is not None and end >= deadline:
            break
    return durations


def measure_latency(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float | None = None,
                    clock: Clock = time.perf_counter_ns) -> dict[str, float | int]:
    """:func:`latency_stats` of :func:`time_calls` (same arguments)."""
    return latency_stats(time_calls(fn, warmup=warmup, runs=runs, max_seconds=max_seconds, clock=clock))


def samples_ms(durations_ns: Sequence[int] | np.ndarray, limit: int = MAX_SAMPLES) -> list[float]:
    """The durations in milliseconds (rounded to 0.1 µs), for the manifest: at most ``limit`` of them.

    A longer series is thinned to ``limit`` samples evenly spaced in time, so drift over the run stays visible and
    the manifest stays small.
    """
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.size > limit:
        ms = ms[np.linspace(0, ms.size - 1, limit).round().astype(int)]
    return [round(float(v), 4) for v in ms]
