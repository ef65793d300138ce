"""Stage `distill`: train the student from the teacher with the recipe's weighted losses (Hinton KD by default)."""

from __future__ import annotations

from typing import Any

from edgekd.config import Device, ModelRef, Recipe
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.errors import UserError
from edgekd.models import MODELS
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import Stage, StageResult, register_stage
from edgekd.stages._models import build_net, load_plain_net, write_torch_artifact
from edgekd.stages._training import smoke_config


def _default_taps(ref: ModelRef, role: str, index: int) -> list[str]:
    """The zoo's stage outputs of a model, for feature losses whose taps the recipe leaves out."""
    if ref.name not in MODELS:
        raise UserError(f"distill.losses.{index}: {role} {ref.name!r} is a user model: set {role}_taps explicitly")
    return list(MODELS.entry(ref.name).meta.get("default_taps", []))


def build_terms(recipe: Recipe) -> list[DistillTerm]:
    """The recipe's distillation losses, created from the registry, with paired feature taps."""
    from edgekd.distill.losses import LOSSES, create

    assert recipe.distill is not None and recipe.student is not None and recipe.teacher is not None
    terms: list[DistillTerm] = []
    for i, term in enumerate(recipe.distill.losses):
        kind = LOSSES.entry(term.name).meta["kind"]
        s_taps, t_taps = term.student_taps, term.teacher_taps
        if kind == "feature" and not s_taps:
            s_all = _default_taps(recipe.student.model, "student", i)
            t_all = _default_taps(recipe.teacher.model, "teacher", i)
            n = min(len(s_all), len(t_all))
            s_taps, t_taps = s_all[len(s_all) - n :], t_all[len(t_all) - n :]
        terms.append(DistillTerm(term.weight, create(term.name, **term.params), kind, s_taps, t_taps))
    return terms


@register_stage
class Distill(Stage):
    name = "distill"
    order = 20
    needs = ("train-teacher",)
    description = "train the student: cross-entropy plus distillation losses from the teacher"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.distill is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.distill is not None and recipe.student is not None
        return {"student": recipe.student.model_dump(mode="json"), "distill": recipe.distill.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> StageResult:
        recipe = ctx.recipe
        assert recipe.distill is not None and recipe.student is not None
        data = ctx.data()
        teacher_artifact = ctx.artifact("teacher")
        teacher = load_plain_net(ctx, teacher_artifact) if teacher_artifact is not None else None
        student, spec = build_net(recipe.student.model, data)
        terms = build_terms(recipe) if recipe.distill.losses else []
        config = smoke_config(recipe.distill.train, ctx.smoke)
        result = Trainer(student, data, config, ctx.stage_dir / "student", seed=recipe.seed, teacher=teacher,
                         terms=terms, ce_weight=recipe.distill.ce_weight, console=ctx.console,
                         label="student").fit()
        artifact = write_torch_artifact(ctx, student, spec, name="student", role="student", info={})
        ctx.log(f"student {spec['name']}: {artifact.info['parameters']:,} parameters, "
                f"val accuracy {result.best_val_accuracy:.4f}")
        losses = [term.name for term in recipe.distill.losses]
        return StageResult(artifacts=[artifact], info={
            "best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy, "history": result.history,
            "epochs": config.epochs, "losses": losses, "ce_weight": recipe.distill.ce_weight,
        })
