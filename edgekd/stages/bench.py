"""Stage `bench`: latency of every artifact in its own runtime on the device, through the device runner (this machine
for a local profile, the board over ssh for an ssh one), with the protocol of :mod:`edgekd.bench.device_runner`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.bench.adb import AdbTarget, adb_runtimes
from edgekd.bench.measure import LocalTarget, bench_artifact, runner_settings
from edgekd.bench.profile import profile_artifact
from edgekd.bench.remote import SshTarget
from edgekd.capabilities import runtime_libraries
from edgekd.config import BenchConfig, Device, Recipe
from edgekd.data import DataBundle
from edgekd.errors import ConfigError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, ReportSection, Stage, StageResult, register_stage
from edgekd.report.measurement import layers_plot, measurement_section
from edgekd.report.sections import as_sections
from edgekd.runtimes import has_part
from edgekd.stages._failures import attempt, usable
from edgekd.stages._runtime import runner_options, runtime_settings


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
        return {"bench": smoke_bench(recipe.bench, smoke).model_dump(mode="json"),
                "runtimes": runtime_settings(device), "access": device.access.model_dump(mode="json")}

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        access = device.access
        if access.kind == "adb":
            others = [t.runtime for t in device.runtimes if t.runtime not in adb_runtimes()]
            if others:
                raise ConfigError("device", "runtimes", f"an adb device measures {', '.join(adb_runtimes())} "
                                  f"artifacts through its native benchmark binary; {', '.join(others)} cannot be "
                                  f"benchmarked there")
        for key in ("identity_file", "known_hosts"):
            path = getattr(access, key)
            if access.kind == "ssh" and path is not None and not path.expanduser().is_file():
                raise ConfigError("device", f"access.{key}", f"{path}: file not found")

    def report_plots(self, record: dict[str, Any], manifest: dict[str, Any], folder: Path) -> dict[str, Path]:
        path = layers_plot(manifest, folder / "layers.png")
        return {} if path is None else {"layers": path}

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        return as_sections(measurement_section(manifest, plots), summary=True)

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.bench is not None
        cfg = smoke_bench(ctx.recipe.bench, ctx.smoke)
        access = ctx.device.access
        metrics: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for artifact in usable(ctx.artifacts):
            if access.kind != "local" and ctx.device.runtime(artifact.runtime) is None:
                ctx.log(f"{artifact.name}: not measured on {ctx.device.name} (the profile offers no "
                        f"{artifact.runtime} runtime)")
                continue
            measured, failed = attempt(lambda: _latency(ctx, artifact, cfg), ctx.log, f"{artifact.name}: bench")
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
        return StageResult(metrics=metrics, failures=failures)


def _latency(ctx: StageContext, artifact: Artifact, cfg: BenchConfig) -> dict[str, Any]:
    """The device runner's statistics of ``artifact`` in its own runtime, on the device the profile reaches."""
    options = runner_options(ctx.device, artifact.runtime, artifact.precision)
    if ctx.device.access.kind == "adb":
        return AdbTarget(ctx.device.access).bench(ctx.path(artifact), artifact.runtime, options, cfg)
    target = SshTarget(ctx.device.access) if ctx.device.access.kind == "ssh" else LocalTarget()
    metrics = bench_artifact(ctx.path(artifact), artifact.runtime, options, cfg, target,
                             sample_shape=artifact.input["shape"][1:])
    if cfg.profile_layers:
        metrics["layers"] = _layers(ctx, artifact, options, cfg)
    return metrics


def _layers(ctx: StageContext, artifact: Artifact, options: dict[str, Any], cfg: BenchConfig) -> list[dict] | str:
    """The top layers of the artifact's per-layer profile, or why there is none."""
    if not has_part(artifact.runtime, "profile"):
        return f"not available (no per-layer profiler for {artifact.runtime} artifacts)"
    if ctx.device.access.kind != "local":
        return "not available (per-layer profiles run on a local device in this version)"
    rows = profile_artifact(ctx.path(artifact), artifact.runtime, runner_settings(artifact.runtime, options),
                            artifact.input["shape"][1:], runs=min(cfg.runs, 50))
    return rows[: cfg.profile_layers]
