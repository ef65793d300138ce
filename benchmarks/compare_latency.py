"""Which artifact is faster, on a shared machine? Time several artifacts interleaved and compare each with the first.

The bench stage times artifacts one after the other, so on a machine whose load drifts (a shared VM) two artifacts
can swap places between runs. Here every artifact gets its own session in its runtime (ONNX Runtime for ``.onnx``,
OpenVINO for ``.xml``, told to compute in f32), and they are timed in blocks of 20 calls
(after 5 untimed ones, so each block is as warm as a one-model benchmark), the artifacts in a new random order each
round (:func:`edgekd.bench.latency.interleaved_calls`), so they share the machine's load. Printed per
artifact: p50 and p90 (ms, batch 1) and median(artifact) / median(first) with its 95 % bootstrap interval
(:func:`edgekd.bench.bootstrap.ratio_of_medians`, as ``edgekd check``).

    python benchmarks/compare_latency.py runs/lm/prune/student-unpruned-onnx-fp32/model.onnx \\
        runs/lm/export/student-onnx-fp32/model.onnx runs/lm/prune/student-merge-only-0.5-onnx-fp32/model.onnx
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from edgekd.bench.bootstrap import ratio_of_medians
from edgekd.bench.latency import INTERLEAVE_BLOCK as BLOCK
from edgekd.bench.latency import INTERLEAVE_BLOCK_WARMUP as BLOCK_WARMUP
from edgekd.bench.latency import interleaved_calls, latency_stats
from edgekd.capabilities import default_runtime
from edgekd.runtime import artifact_format, open_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path, nargs="+", help=".onnx or OpenVINO .xml files; the first is the "
                        "reference")
    parser.add_argument("--runs", type=int, default=500, help="timed calls per artifact (default 500, in blocks of 20)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runners = [open_runner(default_runtime(artifact_format(a)), a, threads=args.threads) for a in args.artifacts]
    try:
        calls = []
        for runner in runners:
            shape = [1, *(d or 1 for d in runner.input_shape[1:])]
            calls.append(functools.partial(runner, np.random.default_rng(0).random(shape, dtype=np.float32)))
        series = interleaved_calls(calls, rounds=max(1, args.runs // BLOCK), runs=BLOCK, warmup=args.warmup,
                                   block_warmup=BLOCK_WARMUP)
    finally:
        for runner in runners:
            runner.close()
    first = np.asarray(series[0]) / 1e6
    print(f"{len(runners)} artifacts, {args.threads} threads, {args.runs} interleaved calls each (batch 1)")
    for path, durations in zip(args.artifacts, series, strict=True):
        ms = np.asarray(durations) / 1e6
        stats = latency_stats(durations)
        ci = ratio_of_medians(first, ms)
        print(f"p50 {stats['p50']:.4f} ms  p90 {stats['p90']:.4f} ms  ×{ci.ratio:.3f} [{ci.low:.3f}, {ci.high:.3f}]  "
              f"{path}")


if __name__ == "__main__":
    main()
