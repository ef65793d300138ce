"""Stage `train-teacher`: train the teacher with cross-entropy (or take it from a checkpoint as is).

The teacher is first checked on one batch: (N, classes) logits, or exit 2 before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd import _distributed as dist
from edgekd.config import Device, Recipe
from edgekd.data import DataBundle
from edgekd.distill.trainer import Trainer, accuracy, last_epoch_record
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import TRAINING_SECTION, ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import training_line
from edgekd.runtime import Normalize
from edgekd.stages._chain import split_accuracy
from edgekd.stages._checks import check_model
from edgekd.stages._models import build_net, layout_name, write_torch_artifact
from edgekd.stages._training import smoke_config


@register_stage
class TrainTeacher(Stage):
    name = "train-teacher"
    order = 10
    description = "train the teacher with cross-entropy; best epoch on validation"
    libraries = ("torch",)
    distributed = True

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.teacher is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.teacher is not None
        return recipe.teacher.model_dump(mode="json")

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        assert recipe.teacher is not None
        epochs = recipe.teacher.train.epochs if recipe.teacher.train else "none (used as is from its checkpoint)"
        return [f"teacher {recipe.teacher.model.name} {recipe.teacher.model.kwargs or ''}, epochs {epochs}"]

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        assert recipe.teacher is not None
        check_model(recipe.teacher.model, "teacher.model", data())

    def training_curve(self, record: dict[str, Any]) -> tuple[str, list[dict[str, float]]] | None:
        return "teacher", record["info"].get("history", [])

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        lines = training_line(self.name, record["info"])
        return [ReportSection(TRAINING_SECTION, lines)] if lines else []

    def run(self, ctx: StageContext) -> StageResult:
        teacher = ctx.recipe.teacher
        assert teacher is not None
        data = ctx.data()
        net, spec = build_net(teacher.model, data, seed=ctx.recipe.seed)
        info: dict[str, Any] = {}
        if teacher.train is not None:
            config = smoke_config(teacher.train, ctx.smoke)
            result = Trainer(net, data, config, ctx.stage_dir / "teacher", seed=ctx.recipe.seed,
                             console=ctx.console, label="teacher").fit()
            info = {"best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
                    **last_epoch_record(result.history), "history": result.history, "epochs": config.epochs,
                    "memory": result.memory, "numerics": result.numerics}
        else:
            info = {"val_accuracy": accuracy(net, data.val, Normalize(data.mean, data.std)), "trained": False}
        if not dist.is_main():  # under torchrun, rank 0 alone writes the artifact
            return StageResult(info=info)
        info["test_accuracy"] = split_accuracy(net, data.test, data)  # reported, never chosen on
        artifact = write_torch_artifact(ctx, net, spec, name="teacher", role="teacher", info={})
        ctx.log(f"teacher {spec['name']} ({layout_name(spec)}): {artifact.info['parameters']:,} parameters, "
                f"val accuracy {info['val_accuracy']:.4f}, test accuracy {info['test_accuracy']:.4f}")
        return StageResult(artifacts=[artifact], info=info)
