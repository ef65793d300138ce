"""Stage `evaluate`: validation and test accuracy of every artifact, measured in that artifact's own runtime.

Validation (metric ``val_accuracy``) is the split carved from train with the recipe's seed, the one training chose
its epochs on; every later choice (select, budgets) reads it. Test (metric ``accuracy``) is reported only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd.capabilities import runtime_libraries
from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.runtime import evaluate_accuracy
from edgekd.stages._failures import attempt, usable
from edgekd.stages._runtime import open_artifact, runtime_settings

if TYPE_CHECKING:
    from edgekd.data import Split


@register_stage
class Evaluate(Stage):
    name = "evaluate"
    order = 60
    needs = EVERY_EARLIER_STAGE
    description = "validation and test accuracy of every artifact in its own runtime"
    libraries = ("torch", *runtime_libraries())

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.evaluate is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.evaluate is not None
        return {"evaluate": recipe.evaluate.model_dump(mode="json"), "runtimes": runtime_settings(device),
                "splits": ["val", "test"]}

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.evaluate
        assert cfg is not None
        data = ctx.data()
        splits = {"val": data.val, "test": data.test}  # on-disk images are read batch by batch (runtime.predict)
        metrics: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for artifact in usable(ctx.artifacts):
            measured, failed = attempt(lambda: _accuracy(ctx, artifact, splits, cfg.batch_size), ctx.log,
                                       f"{artifact.name}: evaluation")
            if failed is not None:
                failures[artifact.name] = failed
                continue
            assert measured is not None
            metrics[artifact.name] = measured
            ctx.log(f"{artifact.name} ({artifact.runtime}, computed in {measured['compute']['inference_precision']}): "
                    f"validation accuracy {measured['val_accuracy']:.4f} on {measured['val_samples']} images, "
                    f"test accuracy {measured['accuracy']:.4f} on {measured['test_samples']} images")
        return StageResult(metrics=metrics, failures=failures)


def _accuracy(ctx: StageContext, artifact: Artifact, splits: dict[str, Split], batch_size: int) -> dict[str, Any]:
    """Validation and test accuracy of ``artifact`` in its own runtime, with the runtime settings in force."""
    runner = open_artifact(ctx, artifact)
    try:
        val, test = splits["val"], splits["test"]
        return {"val_accuracy": evaluate_accuracy(runner, val.x, val.y.numpy(), batch_size=batch_size),
                "val_samples": len(val),
                "accuracy": evaluate_accuracy(runner, test.x, test.y.numpy(), batch_size=batch_size),
                "test_samples": len(test), "compute": runner.describe()}
    finally:
        runner.close()
