"""Stage `bench`: latency of every artifact in its own runtime on the device (warm-up, then timed runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgekd.bench.latency import latency_stats, samples_ms, time_calls
from edgekd.config import BenchConfig, Device, Recipe
from edgekd.data import DataBundle
from edgekd.errors import ConfigError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.stages._failures import attempt, usable
from edgekd.stages._runtime import open_artifact, runtime_settings


def smoke_bench(cfg: BenchConfig, smoke: bool) -> BenchConfig:
    """A short benchmark in a smoke run."""
    if not smoke:
        return cfg
    return cfg.model_copy(update={"warmup": min(cfg.warmup, 3), "runs": min(cfg.runs, 20), "max_seconds": 5.0})


@register_stage
class Bench(Stage):
    name = "bench"
    order = 70
    needs = EVERY_EARLIER_STAGE
    description = "latency of every artifact in its own runtime on the device"
    libraries = ("torch", "onnxruntime", "openvino", "tensorrt")

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.bench is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.bench is not None
        return {"bench": smoke_bench(recipe.bench, smoke).model_dump(mode="json"),
                "runtimes": runtime_settings(device), "access": device.access.model_dump(mode="json")}

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        if device.access.kind != "local":
            raise ConfigError("device", "access.kind", f"{device.access.kind!r} is not supported by the bench stage of "
                              "this version; use a local device profile")

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.bench is not None
        cfg = smoke_bench(ctx.recipe.bench, ctx.smoke)
        x = ctx.data().test.x[: cfg.batch_size].numpy()
        metrics: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for artifact in usable(ctx.artifacts):
            measured, failed = attempt(lambda: _latency(ctx, artifact, x, cfg), ctx.log, f"{artifact.name}: bench")
            if failed is not None:
                failures[artifact.name] = failed
                continue
            assert measured is not None
            metrics[artifact.name] = measured
            stats = measured["latency_ms"]
            ctx.log(f"{artifact.name} ({artifact.runtime}, computed in {measured['compute']['inference_precision']}): "
                    f"p50 {stats['p50']:.3f} ms, p90 {stats['p90']:.3f} ms over {stats['runs']} runs")
        return StageResult(metrics=metrics, failures=failures)


def _latency(ctx: StageContext, artifact: Artifact, x: np.ndarray, cfg: BenchConfig) -> dict[str, Any]:
    """Latency statistics (and the samples, for the CI gate) of ``artifact`` in its own runtime, with the runtime
    settings in force."""
    runner = open_artifact(ctx, artifact)
    try:
        durations = time_calls(lambda: runner(x), warmup=cfg.warmup, runs=cfg.runs, max_seconds=cfg.max_seconds)
        return {"latency_ms": latency_stats(durations), "batch_size": cfg.batch_size,
                "threads": ctx.device.threads, "samples_ms": samples_ms(durations), "compute": runner.describe()}
    finally:
        runner.close()
