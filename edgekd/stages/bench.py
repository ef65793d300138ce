"""Stage `bench`: latency of every artifact in its own runtime on the device (warm-up, then timed runs)."""

from __future__ import annotations

from typing import Any

from edgekd.bench.latency import latency_stats, samples_ms, time_calls
from edgekd.config import BenchConfig, Device, Recipe
from edgekd.errors import UserError
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.stages._runtime import open_artifact


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

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.bench is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.bench is not None
        return {"bench": smoke_bench(recipe.bench, smoke).model_dump(mode="json"),
                "device": device.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.bench is not None
        if ctx.device.access.kind != "local":
            raise UserError(f"device {ctx.device.name}: access.kind {ctx.device.access.kind!r} is not supported by "
                            "the bench stage of this version; use a local device profile")
        cfg = smoke_bench(ctx.recipe.bench, ctx.smoke)
        x = ctx.data().test.x[: cfg.batch_size].numpy()
        metrics: dict[str, dict[str, Any]] = {}
        for artifact in ctx.artifacts:
            runner = open_artifact(ctx, artifact)
            try:
                durations = time_calls(lambda: runner(x), warmup=cfg.warmup, runs=cfg.runs,
                                       max_seconds=cfg.max_seconds)
            finally:
                runner.close()
            stats = latency_stats(durations)
            metrics[artifact.name] = {"latency_ms": stats, "batch_size": cfg.batch_size,
                                      "threads": ctx.device.threads, "samples_ms": samples_ms(durations)}
            ctx.log(f"{artifact.name} ({artifact.runtime}): p50 {stats['p50']:.3f} ms, p90 {stats['p90']:.3f} ms "
                    f"over {stats['runs']} runs")
        return StageResult(metrics=metrics)
