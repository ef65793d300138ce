"""Agreement of edgekd's LiteRT session with LiteRT's own benchmark tool on the same ``.tflite`` (a script, not a test).

Exports the zoo's ``resnet8`` (1 channel, 28x28, random weights with a fixed seed) at ``--batch`` in each precision
given, timing each export, then per model ``--repeats`` times in alternating order (A B, B A, ...: drift biases
neither side): the wheel's ``benchmark_litert_model`` tool (``CompiledModel.run_by_name`` on the XNNPACK CPU
accelerator, run through the runtime package's ``native.compare`` as ``edgekd bench --compare-native`` runs it) and
edgekd's bench path (:func:`edgekd.bench.measure.bench_artifact`: the device runner in a fresh process with LiteRT's
session module, ``Interpreter.invoke`` with XNNPACK), both with ``--threads`` and ``--runs`` timed calls. With
``--run RUN_DIR`` the models are instead the LiteRT artifacts of a finished run (their batch, 1, as exported).
Records the medians, their relative differences and the median of those differences in ``results/<--name>.json``.
Goal: edgekd's median within 10 % of the tool's.

    python benchmarks/litert_agreement.py --precisions fp32 int8 --batch 8 --runs 1000 --repeats 5
    python benchmarks/litert_agreement.py --run runs/fmnist-litert --batch 1 --name litert-agreement-fmnist-deploy
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bench.measure import LocalTarget, bench_artifact
from edgekd.bench.native import agreement
from edgekd.config.recipe import BenchConfig
from edgekd.models import create
from edgekd.runtime import deployable
from edgekd.runtimes.litert.export import PRECISIONS, convert_fp32, quantize_model
from edgekd.runtimes.litert.native import compare
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


def run_artifacts(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The LiteRT artifacts a finished run built, by precision, as :func:`export_all` describes its own."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {a["precision"]: {"path": run_dir / a["path"], "bytes": a["bytes"], "artifact": a["name"]}
            for a in manifest["artifacts"] if a.get("runtime") == "litert" and a.get("status") == "ok"}


def bench_config(batch: int, runs: int) -> BenchConfig:
    return BenchConfig(batch_size=batch, runs=runs, warmup=max(10, runs // 10), max_seconds=120.0)


def edgekd_metrics(path: Path, batch: int, threads: int, runs: int) -> dict[str, Any]:
    """The bench stage's figures of ``path`` (device runner, local target)."""
    return bench_artifact(path, "litert", {"threads": threads}, bench_config(batch, runs), LocalTarget())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=PRECISIONS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", type=Path, help="time the LiteRT artifacts of this run directory instead")
    parser.add_argument("--name", default="litert-agreement", help="record name: results/<name>.json")
    args = parser.parse_args()
    figures: dict[str, Any] = {"batch": args.batch, "threads": args.threads, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        models = run_artifacts(args.run) if args.run else export_all(Path(tmp), args.precisions, args.batch)
        if args.run:
            figures["run"] = str(args.run)
        for precision, model in models.items():
            pairs = []
            for repeat in range(args.repeats):
                order = ("tool", "edgekd") if repeat % 2 == 0 else ("edgekd", "tool")
                got: dict[str, float] = {}
                metrics: dict[str, Any] = {}
                for side in order:
                    if side == "tool":
                        report = compare(model["path"], metrics, {"threads": args.threads},
                                         [args.batch, 1, 28, 28], args.runs)
                        got[side] = report["latency_ms"]["median"]
                    else:
                        metrics = edgekd_metrics(model["path"], args.batch, args.threads, args.runs)
                        got[side] = metrics["latency_ms"]["p50"]
                pairs.append({"tool_p50_ms": got["tool"], "edgekd_p50_ms": round(got["edgekd"], 4),
                              "difference": round(agreement(got["edgekd"], got["tool"]), 4)})
                print(precision, pairs[-1], flush=True)
            differences = [p["difference"] for p in pairs]
            figures[precision] = {**{k: v for k, v in model.items() if k != "path"}, "pairs": pairs,
                                  "median_difference": statistics.median(differences),
                                  "spread": [min(differences), max(differences)],
                                  "within_10_percent": abs(statistics.median(differences)) <= 0.10}
    source = (f"the LiteRT artifacts of run {args.run}" if args.run else "resnet8 (1x28x28, random weights)")
    path = write_record(args.name, title="LiteRT: edgekd session p50 vs the wheel's benchmark tool",
                        figures=figures,
                        notes=f"{source}; tool = ai_edge_litert.tools.benchmark_litert_model "
                              "(CompiledModel API, median printed to 0.01 ms) through "
                              "edgekd.runtimes.litert.native.compare; "
                              "edgekd = bench_artifact (device runner in a fresh process, LiteRT's session module: "
                              "Interpreter.invoke, XNNPACK)")
    print(path)


if __name__ == "__main__":
    main()
