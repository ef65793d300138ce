"""Stage `evaluate`: test accuracy of every artifact, measured in that artifact's own runtime."""

from __future__ import annotations

from typing import Any

from edgekd.config import Device, Recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.runtime import evaluate_accuracy
from edgekd.stages._runtime import open_artifact


@register_stage
class Evaluate(Stage):
    name = "evaluate"
    order = 60
    needs = EVERY_EARLIER_STAGE
    description = "test accuracy of every artifact in its own runtime"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.evaluate is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.evaluate is not None
        return {"evaluate": recipe.evaluate.model_dump(mode="json"), "device": device.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.evaluate
        assert cfg is not None
        test = ctx.data().test
        x, y = test.x.numpy(), test.y.numpy()
        metrics: dict[str, dict[str, Any]] = {}
        for artifact in ctx.artifacts:
            runner = open_artifact(ctx, artifact)
            try:
                acc = evaluate_accuracy(runner, x, y, batch_size=cfg.batch_size)
            finally:
                runner.close()
            metrics[artifact.name] = {"accuracy": acc, "test_samples": len(y)}
            ctx.log(f"{artifact.name} ({artifact.runtime}): test accuracy {acc:.4f} on {len(y)} images")
        return StageResult(metrics=metrics)
