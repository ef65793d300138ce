"""The ``edgekd bench`` and ``edgekd profile`` commands: one artifact measured outside a run (on one device or a
fleet), printed as tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from edgekd._atomic import atomic_write_json
from edgekd.bench.preflight import preflight
from edgekd.cli_views import _table
from edgekd.config import BenchConfig, ExecutionConfig, load_device
from edgekd.errors import UserError


def bench_command(out: Console, artifact: Path, device_names: Sequence[str], *, runs: int, warmup: int,
                  min_seconds: float, batch_size: int, runtime: str | None, precision: str | None,
                  compare_native: bool, json_out: Path | None, execution: ExecutionConfig | None = None
                  ) -> dict[str, Any]:
    """Benchmark ``artifact`` on each device profile (a fleet: see :mod:`edgekd.bench.fleet`), one table per device;
    with ``compare_native`` (one device) also with the runtime's own benchmark tool.

    One device returns (and writes to ``json_out``) its metrics; several return ``{"devices": [{device, metrics}]}``.
    """
    from edgekd.bench.fleet import BenchJob, bench_fleet, check_fleet
    from edgekd.bench.standalone import describe_artifact
    from edgekd.executor import Executor
    from edgekd.stages._runtime import runner_options

    if not device_names:
        raise UserError("edgekd bench: give at least one --device")
    devices = [load_device(name) for name in device_names]
    what = describe_artifact(artifact, runtime, precision)
    if compare_native and len(devices) > 1:
        raise UserError("--compare-native compares on one device; give a single --device")
    tool = _native_tool(artifact, what["runtime"]) if compare_native else None
    check_fleet(devices, lambda _: [what["runtime"]])
    options = {d.name: runner_options(d, what["runtime"], what["precision"]) for d in devices}
    cfg = BenchConfig(runs=runs, warmup=warmup, min_seconds=min_seconds, batch_size=batch_size,
                      max_seconds=max(30.0, 2 * min_seconds))
    job = BenchJob(artifact.name, artifact, what["runtime"], options, what["sample_shape"])
    executor = Executor(execution)
    if len(devices) > 1:
        out.print(f"{len(devices)} devices pre-flighted; timing them on {executor.describe()} "
                  f"(remote devices in parallel, local ones one after another)", highlight=False)
    rows = bench_fleet(devices, [job], cfg, executor)
    for device, row in zip(devices, rows, strict=True):
        _print_metrics(out, artifact, what, device, row["metrics"])
    if tool is not None:
        _compare_native(out, tool, artifact, rows[0]["metrics"], options[devices[0].name], batch_size)
    if len(devices) == 1:
        report = {"artifact": str(artifact), **what, "device": devices[0].name, "metrics": rows[0]["metrics"]}
        result = rows[0]["metrics"]
    else:
        result = report = {"artifact": str(artifact), **what, "devices": [
            {"device": row["device"], "metrics": row["metrics"]} for row in rows]}
    if json_out is not None:
        atomic_write_json(json_out, report)
    return result


def _native_tool(artifact: Path, runtime: str) -> Any:
    """The runtime's native benchmark tool module, or a UserError listing the runtimes that have one."""
    from edgekd.runtimes import native_tools, runtime_part

    tools = native_tools()
    if runtime not in tools:
        listed = ", ".join(f"{name}: {tool}" for name, tool in tools.items())
        raise UserError(f"{artifact}: --compare-native runs the runtime's own benchmark tool ({listed}); "
                        f"this artifact runs in {runtime} (give --runtime for a format several runtimes open)")
    return runtime_part(runtime, "native")


def _print_metrics(out: Console, artifact: Path, what: dict[str, Any], device: Any, metrics: dict[str, Any]) -> None:
    """The table of one artifact on one device (and, for a runner-measured one, its cold start and memory)."""
    stats = metrics["latency_ms"]
    if device.access.kind == "adb":
        out.print(_table(f"edgekd bench on {device.name} ({metrics['target']}, {metrics['compute']['perf_binary']})",
                         ["artifact", "runs", "p50 ms", "p90 ms", "p99 ms", "mean ms"],
                         [[artifact.name, str(stats["runs"]), *(f"{stats[k]:.4f}" if stats[k] is not None else "—"
                                                                for k in ("p50", "p90", "p99", "mean"))]]))
        return
    compute = metrics["compute"].get("inference_precision", "?")
    rows = [[artifact.name, f"{what['runtime']}/{what['precision']}", compute,
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


def _compare_native(out: Console, tool: Any, artifact: Path, metrics: dict[str, Any], options: dict[str, Any],
                    batch_size: int) -> None:
    """Time ``artifact`` with the runtime's own tool, add its figures to ``metrics`` and print the agreement."""
    from edgekd.bench.native import agreement

    stats = metrics["latency_ms"]
    shape = [batch_size, *metrics["input"]["sample_shape"]]
    native = tool.compare(artifact, metrics, options, shape, stats["runs"])
    reported = metrics.get("runtime_reported_ms", {}).get("p50")
    median = native["latency_ms"]["median"]
    name = tool.TOOL
    metrics["native"] = {"tool": name, **native,
                         "edgekd_vs_native": agreement(stats["p50"], median),
                         "runtime_timer_vs_native": agreement(reported, median) if reported is not None else None}
    out.print(_table(f"median latency, edgekd vs {name} (same model, threads, precision, 1 sync request)",
                     ["edgekd p50 ms (wall clock)", "edgekd p50 ms (runtime's timer)", f"{name} median ms",
                      f"wall clock vs {name}", f"runtime's timer vs {name}"],
                     [[f"{stats['p50']:.4f}", f"{reported:.4f}" if reported is not None else "—", f"{median:.4f}",
                       f"{agreement(stats['p50'], median):+.1%}",
                       f"{agreement(reported, median):+.1%}" if reported is not None else "—"]]))
    out.print(f"{name}: " + " ".join(native["command"]), soft_wrap=True, highlight=False)


def _profile_of(artifact: Path, device: Any, runs: int, runtime: str | None) -> tuple[dict[str, Any], list[dict]]:
    from edgekd.bench.measure import runner_settings
    from edgekd.bench.profile import profile_artifact
    from edgekd.bench.standalone import describe_artifact
    from edgekd.stages._runtime import runner_options

    what = describe_artifact(artifact, runtime)
    preflight(device, [what["runtime"]])
    options = runner_options(device, what["runtime"], what["precision"])
    settings = runner_settings(what["runtime"], options)
    shape = what["sample_shape"] or _static_sample_shape(artifact, what["runtime"])
    return what, profile_artifact(artifact, what["runtime"], settings, shape, runs)


def _static_sample_shape(artifact: Path, runtime: str) -> list[int]:
    from edgekd.runtime import open_runner

    with open_runner(runtime, artifact) as runner:
        dims = list(runner.input_shape[1:])
    if any(d is None for d in dims):
        raise UserError(f"{artifact}: input dimensions {dims} are dynamic; profile an artifact of a run folder")
    return [int(d) for d in dims if d is not None]


def profile_command(out: Console, artifact: Path, device_name: str, *, against: Path | None, top: int, runs: int,
                    runtime: str | None, json_out: Path | None) -> dict[str, Any]:
    """The per-layer profile of ``artifact`` (and its diff with ``against``), as tables and optionally JSON."""
    device = load_device(device_name)
    if device.access.kind != "local":
        raise UserError(f"device {device.name}: per-layer profiles run on this machine in this version "
                        f"(access.kind {device.access.kind!r}); profile on the device with a local profile")
    what, rows = _profile_of(artifact, device, runs, runtime)
    total = sum(r["time_ms"] for r in rows)
    out.print(_table(f"{artifact} ({what['runtime']}/{what['precision']}): top {min(top, len(rows))} of {len(rows)} "
                     f"layers, {total:.4f} ms per inference in layers (medians of {runs} runs)",
                     ["layer", "module", "op", "kernel", "ms", "share"],
                     [[r["layer"][:60], r["module"] or "—", r["op_type"], str(r["kernel"] or "—"),
                       f"{r['time_ms']:.4f}", f"{r['share']:.1%}"] for r in rows[:top]]))
    report: dict[str, Any] = {"artifact": str(artifact), **what, "device": device.name, "runs": runs, "layers": rows}
    if against is not None:
        from edgekd.bench.profile import diff

        other_what, other_rows = _profile_of(against, device, runs, None)
        changes = diff(rows, other_rows)
        out.print(_table(f"layer by layer: {artifact.name} ({what['precision']}) → {against.name} "
                         f"({other_what['precision']}), largest slow-down first",
                         ["layer", "module A", "module B", "A ms", "B ms", "Δ ms", "B/A"],
                         [[c["layer"][:40], str(c["module_a"] or "—")[:40], str(c["module_b"] or "—")[:40],
                           f"{c['a_ms']:.4f}", f"{c['b_ms']:.4f}", f"{c['delta_ms']:+.4f}",
                           f"{c['ratio']:.2f}" if c["ratio"] is not None else "—"] for c in changes[:top]]))
        report["against"] = {"artifact": str(against), **other_what, "layers": other_rows, "diff": changes}
    if json_out is not None:
        atomic_write_json(json_out, report)
    return report
