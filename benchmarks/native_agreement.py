"""Agreement of ``edgekd bench`` with OpenVINO's ``benchmark_app`` on the same IRs (a script, not a test).

For each IR given, runs ``edgekd bench IR --device DEVICE --runs N --compare-native`` ``--repeats`` times (edgekd
first, then benchmark_app, alternately) and prints, per IR, every pair of medians, the relative difference of each
pair and the median and spread of those differences. Goal: edgekd's median within 10 % of benchmark_app's.

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


def one(ir: Path, device: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run([sys.executable, "-m", "edgekd.cli", "bench", str(ir), "--device", device, "--runs", str(runs),
                        "--compare-native", "--json", str(out)], check=True, capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
        metrics = json.loads(out.read_text())["metrics"]
    return {"edgekd_p50": metrics["latency_ms"]["p50"], "edgekd_ov_timer_p50": metrics["runtime_reported_ms"]["p50"],
            "native_median": metrics["native"]["latency_ms"]["median"], "diff": metrics["native"]["edgekd_vs_native"],
            "cv": metrics["latency_ms"]["cv"], "load": metrics["environment"]["load_average"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("irs", nargs="+", type=Path)
    parser.add_argument("--device", default="x86-cpu")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for ir in args.irs:
        rows = [one(ir, args.device, args.runs) for _ in range(args.repeats)]
        for row in rows:
            print(f"{ir}: edgekd p50 {row['edgekd_p50']:.4f} ms (OpenVINO timer {row['edgekd_ov_timer_p50']:.4f}), "
                  f"benchmark_app median {row['native_median']:.4f} ms, diff {row['diff']:+.1%}, cv {row['cv']:.0%}, "
                  f"load {row['load']:.1f}")
        diffs = [r["diff"] for r in rows]
        print(f"{ir}: median diff {statistics.median(diffs):+.1%}, range {min(diffs):+.1%} .. {max(diffs):+.1%} "
              f"over {len(rows)} repeats")


if __name__ == "__main__":
    main()
