"""The ``edgekd bench`` and ``edgekd profile`` commands: one artifact measured outside a run, printed as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from edgekd._atomic import atomic_write_json
from edgekd.cli_views import _table
from edgekd.config import BenchConfig, load_device
from edgekd.errors import UserError


def _target(device: Any) -> Any:
    from edgekd.bench.measure import LocalTarget
    from edgekd.bench.remote import SshTarget

    if device.access.kind == "ssh":
        return SshTarget(device.access)
    if device.access.kind == "adb":
        raise UserError(f"device {device.name}: adb targets are not benchmarked by this version; use ssh or local")
    return LocalTarget()


def bench_command(out: Console, artifact: Path, device_name: str, *, runs: int, warmup: int, min_seconds: float,
                  batch_size: int, runtime: str | None, precision: str | None, compare_native: bool,
                  json_out: Path | None) -> dict[str, Any]:
    """Benchmark ``artifact`` on the device profile; with ``compare_native`` also with benchmark_app."""
    from edgekd.bench.measure import bench_artifact
    from edgekd.bench.native import agreement, run_benchmark_app
    from edgekd.bench.standalone import describe_artifact
    from edgekd.stages._runtime import runner_options

    device = load_device(device_name)
    what = describe_artifact(artifact, runtime, precision)
    if compare_native and what["runtime"] != "openvino":
        raise UserError(f"{artifact}: --compare-native runs OpenVINO's benchmark_app; this artifact runs in "
                        f"{what['runtime']} (give --runtime openvino for an ONNX file)")
    options = runner_options(device, what["runtime"], what["precision"])
    cfg = BenchConfig(runs=runs, warmup=warmup, min_seconds=min_seconds, batch_size=batch_size,
                      max_seconds=max(30.0, 2 * min_seconds))
    metrics = bench_artifact(artifact, what["runtime"], options, cfg, _target(device), what["sample_shape"])
    stats = metrics["latency_ms"]
    rows = [[artifact.name, f"{what['runtime']}/{what['precision']}", metrics["compute"].get("inference_precision", "?"),
             str(stats["runs"]), *(f"{stats[k]:.4f}" for k in ("p50", "p90", "p99", "mean", "std")),
             f"{stats['throughput_per_s']:.0f}", f"{stats['cv']:.1%}" + (" unstable" if metrics["stability"]["unstable"]
                                                                          else "")]]
    out.print(_table(f"edgekd bench on {device.name} ({metrics['target']}; {what['source']})",
                     ["artifact", "runtime", "compute", "runs", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms",
                      "per s", "cv"], rows))
    cold, memory = metrics["cold_start"], metrics["memory"]
    out.print(f"cold start {cold['cold_start_ms']:.1f} ms (load {cold['load_ms']:.1f} + first inference "
              f"{cold['first_inference_ms']:.2f}); peak RSS {memory['peak_rss_mb']:.1f} MB ({memory['method']}); "
              f"harness overhead p50 {metrics['harness_overhead_ms']['p50'] * 1e3:.2f} µs; load average "
              f"{metrics['environment'].get('load_average')}")
    if compare_native:
        shape = [batch_size, *metrics["input"]["sample_shape"]]
        native = run_benchmark_app(artifact, device=metrics["compute"]["device"], threads=options.get("threads"),
                                   precision_hint=metrics["compute"]["inference_precision"], shape=shape,
                                   niter=stats["runs"])
        reported = metrics.get("runtime_reported_ms", {}).get("p50")
        median = native["latency_ms"]["median"]
        metrics["native"] = {"tool": "benchmark_app", **native,
                             "edgekd_vs_native": agreement(stats["p50"], median)}
        out.print(_table("median latency, edgekd vs benchmark_app (same IR, threads, precision, 1 sync request)",
                         ["edgekd p50 ms (wall clock)", "edgekd p50 ms (OpenVINO's own timer)",
                          "benchmark_app median ms", "difference"],
                         [[f"{stats['p50']:.4f}", f"{reported:.4f}" if reported is not None else "—", f"{median:.4f}",
                           f"{agreement(stats['p50'], median):+.1%}"]]))
        out.print("benchmark_app: " + " ".join(native["command"]), soft_wrap=True, highlight=False)
    if json_out is not None:
        atomic_write_json(json_out, {"artifact": str(artifact), **what, "device": device.name, "metrics": metrics})
    return metrics
