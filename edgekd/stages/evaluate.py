"""Stage `evaluate`: test accuracy of every artifact, measured in that artifact's own runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.capabilities import runtime_libraries
from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.runtime import evaluate_accuracy
from edgekd.stages._failures import attempt, usable
from edgekd.stages._runtime import open_artifact, runtime_settings

if TYPE_CHECKING:
    from edgekd.runtime.base import Images


@register_stage
class Evaluate(Stage):
    name = "evaluate"
    order = 60
    needs = EVERY_EARLIER_STAGE
    description = "test accuracy of every artifact in its own runtime"
    libraries = ("torch", *runtime_libraries())

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.evaluate is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.evaluate is not None
        return {"evaluate": recipe.evaluate.model_dump(mode="json"), "runtimes": runtime_settings(device)}

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.evaluate
        assert cfg is not None
        test = ctx.data().test
        x, y = test.x, test.y.numpy()  # on-disk images are read batch by batch (runtime.predict)
        metrics: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for artifact in usable(ctx.artifacts):
            measured, failed = attempt(lambda: _accuracy(ctx, artifact, x, y, cfg.batch_size), ctx.log,
                                       f"{artifact.name}: evaluation")
            if failed is not None:
                failures[artifact.name] = failed
                continue
            assert measured is not None
            metrics[artifact.name] = measured
            ctx.log(f"{artifact.name} ({artifact.runtime}, computed in {measured['compute']['inference_precision']}): "
                    f"test accuracy {measured['accuracy']:.4f} on {len(y)} images")
        return StageResult(metrics=metrics, failures=failures)


def _accuracy(ctx: StageContext, artifact: Artifact, x: Images, y: np.ndarray, batch_size: int
              ) -> dict[str, Any]:
    """Test accuracy of ``artifact`` in its own runtime, with the runtime settings in force."""
    runner = open_artifact(ctx, artifact)
    try:
        return {"accuracy": evaluate_accuracy(runner, x, y, batch_size=batch_size), "test_samples": len(y),
                "compute": runner.describe()}
    finally:
        runner.close()
