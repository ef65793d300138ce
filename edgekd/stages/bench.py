"""Stage `bench`: latency of every artifact in its own runtime on the device, through the device runner (this machine
for a local profile, the board over ssh for an ssh one), with the protocol of :mod:`edgekd.bench.device_runner`;
then, with ``bench.fleet``, on each further device of the fleet (:mod:`edgekd.bench.fleet`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.bench.adb import adb_runtimes
from edgekd.bench.fleet import BenchJob, bench_fleet, check_fleet, measure
from edgekd.bench.measure import runner_settings
from edgekd.bench.profile import profile_artifact
from edgekd.capabilities import runtime_libraries
from edgekd.config import BenchConfig, Device, Recipe, load_device
from edgekd.data import DataBundle
from edgekd.errors import ConfigError, UserError
from edgekd.executor import Executor
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, ReportSection, Stage, StageResult, register_stage
from edgekd.report.int8 import int8_section, sensitivity_latency_plot
from edgekd.report.measurement import layers_plot, measurement_section
from edgekd.report.sections import as_sections
from edgekd.runtimes import has_part
from edgekd.stages._failures import attempt, usable
from edgekd.stages._runtime import runner_options, runtime_settings
from edgekd.stages._saved import saved_per_layer


def smoke_bench(cfg: BenchConfig, smoke: bool) -> BenchConfig:
    """A short benchmark in a smoke run."""
    if not smoke:
        return cfg
    return cfg.model_copy(update={"warmup": min(cfg.warmup, 3), "runs": min(cfg.runs, 20), "max_seconds": 5.0,
                                  "warmup_seconds": min(cfg.warmup_seconds, 0.5),
                                  "min_seconds": min(cfg.min_seconds, 0.5)})


@register_stage
class Bench(Stage):
    name = "bench"
    order = 70
    needs = EVERY_EARLIER_STAGE
    description = "latency of every artifact in its own runtime on the device"
    libraries = ("torch", *runtime_libraries())

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.bench is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.bench is not None
        cfg = smoke_bench(recipe.bench, smoke)
        config: dict[str, Any] = {"bench": cfg.model_dump(mode="json", exclude={"fleet"}),
                                  "runtimes": runtime_settings(device), "access": device.access.model_dump(mode="json")}
        if cfg.fleet:
            config["fleet"] = [load_device(name).model_dump(mode="json") for name in cfg.fleet]
        return config

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        access = device.access
        if access.kind == "adb":
            others = [t.runtime for t in device.runtimes if t.runtime not in adb_runtimes()]
            if others:
                raise ConfigError("device", "runtimes", f"an adb device measures {', '.join(adb_runtimes())} "
                                  f"artifacts through its native benchmark binary; {', '.join(others)} cannot be "
                                  f"benchmarked there")
        for name in recipe.bench.fleet if recipe.bench is not None else []:
            try:
                member = load_device(name)
            except UserError as exc:
                raise ConfigError("recipe", "bench.fleet", str(exc)) from None
            if member.name == device.name:
                raise ConfigError("recipe", "bench.fleet", f"{name}: device {member.name} is the run's own device, "
                                  f"already timed; list only the other devices")
        for key in ("identity_file", "known_hosts"):
            path = getattr(access, key)
            if access.kind == "ssh" and path is not None and not path.expanduser().is_file():
                raise ConfigError("device", f"access.{key}", f"{path}: file not found")

    def report_plots(self, record: dict[str, Any], manifest: dict[str, Any], folder: Path) -> dict[str, Path]:
        found = {"layers": layers_plot(manifest, folder / "layers.png"),
                 "int8_layers": sensitivity_latency_plot(manifest, folder / "int8_layers.png")}
        return {key: path for key, path in found.items() if path is not None}

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        return as_sections(measurement_section(manifest, plots), summary=True) + \
            as_sections(int8_section(manifest, plots))

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.bench is not None
        cfg = smoke_bench(ctx.recipe.bench, ctx.smoke)
        access = ctx.device.access
        metrics: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        profiles: dict[str, list[dict[str, Any]]] = {}
        for artifact in usable(ctx.artifacts):
            if access.kind != "local" and ctx.device.runtime(artifact.runtime) is None:
                ctx.log(f"{artifact.name}: not measured on {ctx.device.name} (the profile offers no "
                        f"{artifact.runtime} runtime)")
                continue
            measured, failed = attempt(lambda: _latency(ctx, artifact, cfg, profiles), ctx.log,
                                       f"{artifact.name}: bench")
            if failed is not None:
                failures[artifact.name] = failed
                continue
            assert measured is not None
            metrics[artifact.name] = measured
            stats = measured["latency_ms"]
            stability = measured.get("stability", {})
            flag = f", {stability['note']}" if stability.get("unstable") else ""
            precision = measured["compute"].get("inference_precision")
            ctx.log(f"{artifact.name} ({artifact.runtime}, computed in {precision}, "
                    f"{measured['target']}): p50 {stats['p50']:.3f} ms, p90 {stats['p90']:.3f} ms over "
                    f"{stats['runs']} runs{flag}")
        for artifact in usable(ctx.artifacts):
            if artifact.name in metrics and artifact.name in profiles:
                saved, _ = attempt(lambda: saved_per_layer(ctx, artifact, profiles, runs=min(cfg.runs, 50)), ctx.log,
                                   f"{artifact.name}: latency saved per layer")
                if saved is not None:
                    metrics[artifact.name]["latency_saved"] = saved
                    ctx.log(f"{artifact.name}: {saved['saved_ms']:+.4f} ms per inference in layers against "
                            f"{saved['float_artifact']} in {saved['float_runtime']}")
        if cfg.fleet:
            _fleet(ctx, cfg, metrics)
        return StageResult(metrics=metrics, failures=failures)


def _fleet(ctx: StageContext, cfg: BenchConfig, metrics: dict[str, dict[str, Any]]) -> None:
    """Time every usable artifact on each device of ``bench.fleet`` that offers its runtime (pre-flighted first,
    one executor task per remote device); each artifact's ``metrics.fleet`` maps a device name to its metrics (or
    ``{"error": why}``)."""
    devices = [load_device(name) for name in cfg.fleet]
    artifacts = usable(ctx.artifacts)
    check_fleet(devices, lambda d: sorted({a.runtime for a in artifacts if d.runtime(a.runtime) is not None}))
    jobs = [BenchJob(a.name, ctx.path(a), a.runtime,
                     {d.name: runner_options(d, a.runtime, a.precision) for d in devices
                      if d.runtime(a.runtime) is not None}, a.input["shape"][1:]) for a in artifacts]
    executor = Executor(ctx.recipe.execution)
    ctx.log(f"fleet: {', '.join(d.name for d in devices)} pre-flighted; timing on {executor.describe()}")
    for row in bench_fleet(devices, jobs, cfg.model_copy(update={"fleet": []}), executor, keep_going=True):
        entry = metrics.setdefault(row["artifact"], {}).setdefault("fleet", {})
        if "error" in row:
            entry[row["device"]] = {"error": row["error"]}
            ctx.log(f"{row['artifact']} on {row['device']}: bench failed: {row['error']}")
            continue
        entry[row["device"]] = row["metrics"]
        stats = row["metrics"]["latency_ms"]
        ctx.log(f"{row['artifact']} on {row['device']} ({row['metrics']['target']}): p50 {stats['p50']:.3f} ms, "
                f"p90 {stats['p90']:.3f} ms over {stats['runs']} runs")


def _latency(ctx: StageContext, artifact: Artifact, cfg: BenchConfig, profiles: dict[str, list[dict[str, Any]]]
             ) -> dict[str, Any]:
    """The device runner's statistics of ``artifact`` in its own runtime, on the device the profile reaches; its full
    per-layer profile, where taken, goes to ``profiles``."""
    options = runner_options(ctx.device, artifact.runtime, artifact.precision)
    metrics = measure(ctx.device, BenchJob(artifact.name, ctx.path(artifact), artifact.runtime,
                                           {ctx.device.name: options}, artifact.input["shape"][1:]), cfg)
    if ctx.device.access.kind == "adb":
        return metrics
    if cfg.profile_layers:
        metrics["layers"] = _layers(ctx, artifact, options, cfg, profiles)
    return metrics


def _layers(ctx: StageContext, artifact: Artifact, options: dict[str, Any], cfg: BenchConfig,
            profiles: dict[str, list[dict[str, Any]]]) -> list[dict] | str:
    """The top layers of the artifact's per-layer profile (all of them kept in ``profiles``), or why there is
    none."""
    if not has_part(artifact.runtime, "profile"):
        return f"not available (no per-layer profiler for {artifact.runtime} artifacts)"
    if ctx.device.access.kind != "local":
        return "not available (per-layer profiles run on a local device in this version)"
    rows = profile_artifact(ctx.path(artifact), artifact.runtime, runner_settings(artifact.runtime, options),
                            artifact.input["shape"][1:], runs=min(cfg.runs, 50))
    profiles[artifact.name] = rows
    return rows[: cfg.profile_layers]
