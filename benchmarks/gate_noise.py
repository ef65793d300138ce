"""How noisy is latency on this machine? Re-measure one artifact and compare every series with the first one.

Each series is what the bench stage records (warm-up, then ``--runs`` timed calls with edgekd's timing loop); the
ratio of medians against the first series and its bootstrap interval are those of ``edgekd check``. Back to back
(the default) is what a CI gate sees between a baseline and a later run on the same machine; ``--interleave`` times
the series in blocks of 20 calls (after 5 untimed), in a new random order each round
(:func:`edgekd.bench.latency.interleaved_calls`), so they share the machine's load and only the noise within a
measurement remains. Use it to choose ``--latency-tol`` for a CI machine: the gate flags a ratio only when its whole
interval lies above ``1 + tol``.

    python benchmarks/gate_noise.py runs/quickstart/export/student-onnx-fp32/model.onnx --series 11
    python benchmarks/gate_noise.py runs/quickstart/export/student-onnx-fp32/model.onnx --series 11 --interleave
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from edgekd.bench.bootstrap import ratio_of_medians
from edgekd.bench.latency import INTERLEAVE_BLOCK as BLOCK
from edgekd.bench.latency import INTERLEAVE_BLOCK_WARMUP as BLOCK_WARMUP
from edgekd.bench.latency import interleaved_calls, time_calls
from edgekd.capabilities import default_runtime
from edgekd.runtime import artifact_format, open_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--runtime", default=None, help="default: onnxruntime for .onnx, openvino for .xml")
    parser.add_argument("--series", type=int, default=11, help="series; each after the first is compared with it")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per series (the quickstart bench: 200)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--interleave", action="store_true", help="blocks of 20 calls, in random order")
    parser.add_argument("--tol", type=float, default=10.0, help="latency tolerance, percent (default 10)")
    args = parser.parse_args()
    runtime = args.runtime or default_runtime(artifact_format(args.artifact))
    shape = [1, *(d or 1 for d in open_runner(runtime, args.artifact).input_shape[1:])]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    runners = [open_runner(runtime, args.artifact, threads=args.threads) for _ in range(args.series)]
    if args.interleave:
        series = interleaved_calls([functools.partial(r, x) for r in runners], rounds=max(1, args.runs // BLOCK),
                                   runs=BLOCK, warmup=args.warmup, block_warmup=BLOCK_WARMUP)
    else:
        series = [time_calls(functools.partial(r, x), warmup=args.warmup, runs=args.runs) for r in runners]
    first = np.asarray(series[0]) / 1e6
    print(f"{args.artifact} in {runtime}, {args.threads} threads, {len(first)} runs per series, "
          f"{'interleaved' if args.interleave else 'back to back'}; series 0 median {np.median(first):.4f} ms")
    flagged, widths = 0, []
    for i, s in enumerate(series[1:], start=1):
        ci = ratio_of_medians(first, np.asarray(s) / 1e6)
        widths.append(ci.width)
        flag = ci.low > 1 + args.tol / 100
        flagged += flag
        print(f"series {i:2d}: median {np.median(s) / 1e6:.4f} ms, ratio {ci.ratio:.3f} "
              f"[{ci.low:.3f}, {ci.high:.3f}] width {ci.width:.3f}{'  FLAGGED' if flag else ''}")
    print(f"interval width: median {np.median(widths):.3f}, max {max(widths):.3f}; flagged at {args.tol} %: "
          f"{flagged} of {len(widths)}")


if __name__ == "__main__":
    main()
