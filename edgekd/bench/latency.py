"""Latency of one in-process call, measured with ``time.perf_counter_ns`` and summarised in milliseconds.

The protocol and statistics are those of the device runner (:mod:`edgekd.bench.device_runner`, the one place they
are written): percentiles by numpy's linear interpolation between order statistics (as trtexec and Olive), ``std``
the population standard deviation, ``cv`` = std / mean, ``throughput_per_s`` = batch / mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edgekd.bench.device_runner import summarize, thin_samples, timed_loop

Clock = Callable[[], int]

#: most latency samples kept per artifact in the manifest (bench metric ``samples_ms``)
MAX_SAMPLES = 1000
#: timed calls per block, and untimed calls before each, where :func:`interleaved_calls` compares different models
INTERLEAVE_BLOCK, INTERLEAVE_BLOCK_WARMUP = 20, 5


def latency_stats(durations_ns: Sequence[int] | np.ndarray, batch_size: int = 1) -> dict[str, float | int]:
    """``{p50, p90, p95, p99, mean, std, min, max, runs, cv, throughput_per_s}`` of ``durations_ns`` (ms)."""
    return summarize(durations_ns, batch_size)


def measure_latency(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float = 30.0,
                    warmup_seconds: float = 0.0, min_seconds: float = 0.0, batch_size: int = 1,
                    clock: Clock = time.perf_counter_ns) -> dict[str, float | int]:
    """Warm ``fn`` up (``warmup`` calls and ``warmup_seconds``), time calls until ``runs`` calls and ``min_seconds``
    have passed or ``max_seconds`` (at least one), and return :func:`latency_stats`. ``clock`` (ns) is injectable."""
    return summarize(timed_loop(fn, warmup, warmup_seconds, runs, min_seconds, max_seconds, clock=clock), batch_size)


def time_calls(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float = 30.0,
               clock: Clock = time.perf_counter_ns) -> list[int]:
    """The durations (ns) of the protocol's timed loop: ``warmup`` untimed calls, then ``runs`` timed ones (or fewer
    once ``max_seconds`` have passed; at least one)."""
    return timed_loop(fn, warmup, 0.0, runs, 0.0, max_seconds, clock=clock)


def interleaved_calls(fns: Sequence[Callable[[], object]], *, rounds: int, runs: int = 1, warmup: int = 20,
                      block_warmup: int = 0, seed: int = 0, clock: Clock = time.perf_counter_ns) -> list[list[int]]:
    """Durations (ns) of ``rounds · runs`` timed calls of each of ``fns``, after ``warmup`` untimed calls of each.
    Every round takes the functions in a fresh seeded random order, each for a block of ``block_warmup`` untimed and
    ``runs`` timed calls. Every series then sees the same load of a shared machine, and none keeps a fixed place in
    a periodic pattern of it: the way to compare latencies fairly where the load drifts between measurements taken
    one after the other. Where the functions are different models, blocks with a warm-up keep each block's timing
    warm (caches, the runtime's thread pool) as a one-model benchmark is; a block of one call measures cold calls."""
    if rounds < 1 or runs < 1 or warmup < 0 or block_warmup < 0:
        raise ValueError(f"need rounds >= 1, runs >= 1 and warm-ups >= 0; got {rounds}, {runs}, {warmup}, "
                         f"{block_warmup}")
    for fn in fns:
        for _ in range(warmup):
            fn()
    rng = np.random.default_rng(seed)
    series: list[list[int]] = [[] for _ in fns]
    for _ in range(rounds):
        for i in rng.permutation(len(fns)):
            series[i] += time_calls(fns[i], warmup=block_warmup, runs=runs, clock=clock)
    return series


def samples_ms(durations_ns: Sequence[int] | np.ndarray, limit: int = MAX_SAMPLES) -> list[float]:
    """The durations in milliseconds for the manifest (the CI gate's samples): :func:`thin_samples`."""
    return thin_samples(durations_ns, limit)
