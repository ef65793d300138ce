"""Agreement of ``edgekd bench`` with OpenVINO's ``benchmark_app`` on the same IRs (a script, not a test).

For each IR given, runs ``edgekd bench IR --device DEVICE --runs N --json`` and ``benchmark_app`` with the command
line ``edgekd bench --compare-native`` uses, ``--repeats`` times in alternating order (A B, B A, ...: a machine that
gets slower or faster during the run biases neither side), and prints, per IR, every pair of medians, the relative
difference of each pair (edgekd's wall-clock p50, and the p50 of OpenVINO's own per-request timer, which is what
benchmark_app reports) and the median and spread of those differences. Goal: edgekd's median within 10 % of
benchmark_app's.

Example (the Fashion-MNIST student's IRs of ``edgekd run pipelines/fmnist-quantize.yaml --device x86-cpu --smoke
--out /tmp/fq-smoke``)::

    python benchmarks/native_agreement.py /tmp/fq-smoke/export/student-openvino-fp32/model.xml \\
        /tmp/fq-smoke/quantize/student-openvino-int8-nncf/model.xml --runs 3000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.bench.native import agreement
from edgekd.runtimes.openvino.native import run_benchmark_app


def _edgekd(ir: Path, device: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run([sys.executable, "-m", "edgekd.cli", "bench", str(ir), "--device", device, "--runs", str(runs),
                        "--json", str(out)], check=True, capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
        return json.loads(out.read_text())["metrics"]


def _native(ir: Path, metrics: dict, runs: int) -> dict:
    compute = metrics["compute"]
    return run_benchmark_app(ir, device=compute["device"], threads=compute["threads"],
                             precision_hint=compute["inference_precision"],
                             shape=[metrics["batch_size"], *metrics["input"]["sample_shape"]], niter=runs)


def one(ir: Path, device: str, runs: int, native_first: bool, settings: dict) -> dict:
    native = _native(ir, settings, runs) if native_first else None
    metrics = _edgekd(ir, device, runs)
    native = native or _native(ir, metrics, runs)
    median = native["latency_ms"]["median"]
    return {"edgekd_p50": metrics["latency_ms"]["p50"], "edgekd_ov_timer_p50": metrics["runtime_reported_ms"]["p50"],
            "native_median": median, "diff": agreement(metrics["latency_ms"]["p50"], median),
            "timer_diff": agreement(metrics["runtime_reported_ms"]["p50"], median),
            "cv": metrics["latency_ms"]["cv"], "load": metrics["environment"]["load_average"][0],
            "order": "benchmark_app first" if native_first else "edgekd first"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("irs", nargs="+", type=Path)
    parser.add_argument("--device", default="x86-cpu")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for ir in args.irs:
        settings = _edgekd(ir, args.device, 20)  # the compile settings and shape edgekd uses (a short first run)
        rows = [one(ir, args.device, args.runs, i % 2 == 1, settings) for i in range(args.repeats)]
        for row in rows:
            print(f"{ir}: edgekd p50 {row['edgekd_p50']:.4f} ms (OpenVINO timer {row['edgekd_ov_timer_p50']:.4f}), "
                  f"benchmark_app median {row['native_median']:.4f} ms, diff {row['diff']:+.1%} (timer "
                  f"{row['timer_diff']:+.1%}), cv {row['cv']:.0%}, "
                  f"load {row['load']:.1f}, {row['order']}")
        for key, label in (("diff", "wall clock"), ("timer_diff", "OpenVINO's timer")):
            diffs = [r[key] for r in rows]
            print(f"{ir}: {label} vs benchmark_app: median diff {statistics.median(diffs):+.1%}, range "
                  f"{min(diffs):+.1%} .. {max(diffs):+.1%} over {len(rows)} repeats")


if __name__ == "__main__":
    main()
