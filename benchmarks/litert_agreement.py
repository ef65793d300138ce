"""Agreement of edgekd's LiteRT session with LiteRT's own benchmark tool on the same ``.tflite`` (a script, not a test).

Exports the zoo's ``resnet8`` (1 channel, 28x28, random weights with a fixed seed) at ``--batch`` in each precision
given, timing each export, then per model ``--repeats`` times in alternating order (A B, B A, ...: drift biases
neither side): the wheel's ``benchmark_litert_model`` tool (``CompiledModel.run_by_name`` on the XNNPACK CPU
accelerator) and edgekd's device-runner session (``Interpreter.invoke`` with XNNPACK, the device runner's timed loop),
both with ``--threads`` and ``--runs`` timed calls. Records the medians, their relative differences and the median
of those differences in ``results/litert-agreement.json``. Goal: edgekd's median within 10 % of the tool's.

    python benchmarks/litert_agreement.py --precisions fp32 int8 --batch 8 --runs 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bench.device_runner import summarize, timed_loop
from edgekd.bench.native import agreement
from edgekd.models import create
from edgekd.runtime import deployable
from edgekd.runtimes.litert.export import PRECISIONS, convert_fp32, quantize_model
from edgekd.runtimes.litert.native import run_benchmark_tool
from edgekd.runtimes.litert.session import LiteRtSession
from records import write_record  # benchmarks/ is on sys.path when this script runs


def export_all(folder: Path, precisions: list[str], batch: int) -> dict[str, dict[str, Any]]:
    torch.manual_seed(0)
    net = create("resnet8", num_classes=10, in_channels=1).eval()
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    t0 = time.perf_counter()
    fp32 = convert_fp32(deployable(net, [0.5], [0.25]), example)
    convert_s = time.perf_counter() - t0
    out = {}
    for precision in precisions:
        t0 = time.perf_counter()
        data = quantize_model(fp32, precision, rng.random((16 * batch, 1, 28, 28), dtype=np.float32))  # type: ignore[arg-type]
        path = folder / f"resnet8-{precision}.tflite"
        path.write_bytes(data)
        out[precision] = {"path": path, "bytes": len(data), "convert_s": round(convert_s, 2),
                          "quantize_s": round(time.perf_counter() - t0, 2)}
    return out


def session_p50(path: Path, batch: int, threads: int, runs: int) -> float:
    session = LiteRtSession(str(path), {"threads": threads})
    x = np.random.default_rng(1).random((batch, 1, 28, 28), dtype=np.float32)
    call, _, _ = session.bind(x)
    return float(summarize(timed_loop(call, warmup_runs=max(10, runs // 10), runs=runs))["p50"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=PRECISIONS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, Any] = {"batch": args.batch, "threads": args.threads, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        models = export_all(Path(tmp), args.precisions, args.batch)
        for precision, model in models.items():
            pairs = []
            for repeat in range(args.repeats):
                order = ("tool", "edgekd") if repeat % 2 == 0 else ("edgekd", "tool")
                got: dict[str, float] = {}
                for side in order:
                    if side == "tool":
                        report = run_benchmark_tool(model["path"], threads=args.threads, runs=args.runs,
                                                    warmup_runs=max(10, args.runs // 10))
                        got[side] = report["latency_ms"]["median"]
                    else:
                        got[side] = session_p50(model["path"], args.batch, args.threads, args.runs)
                pairs.append({"tool_p50_ms": got["tool"], "edgekd_p50_ms": round(got["edgekd"], 4),
                              "difference": round(agreement(got["edgekd"], got["tool"]), 4)})
                print(precision, pairs[-1], flush=True)
            differences = [p["difference"] for p in pairs]
            figures[precision] = {"bytes": model["bytes"], "convert_s": model["convert_s"],
                                  "quantize_s": model["quantize_s"], "pairs": pairs,
                                  "median_difference": statistics.median(differences),
                                  "spread": [min(differences), max(differences)],
                                  "within_10_percent": abs(statistics.median(differences)) <= 0.10}
    path = write_record("litert-agreement", title="LiteRT: edgekd session p50 vs the wheel's benchmark tool",
                        figures=figures,
                        notes="resnet8 (1x28x28, random weights); tool = ai_edge_litert.tools.benchmark_litert_model "
                              "(CompiledModel API, median printed to 0.01 ms); edgekd = LiteRtSession "
                              "(Interpreter.invoke, XNNPACK) in the device runner's timed loop")
    print(path)


if __name__ == "__main__":
    main()
