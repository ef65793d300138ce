"""Stage `distill`: train the student from the teacher with the recipe's weighted losses (Hinton KD by default).

With a teacher-assistant chain (TAKD) the student ends ``teacher → ta_1 → … → student``: the manual
``distill.assistants``, or (``distill.chain: auto``) the TA chosen by stage `select-assistant`. Each assistant is
trained in ``distill/step-<i>-<model>/``, the student in ``distill/student/``; a finished step is not redone when an
interrupted stage resumes. Assistants become torch artifacts of role ``assistant``, so later stages measure their
test accuracy and latency beside teacher and student (a TA costs one evaluation pass and one short benchmark, small
next to its training); only the student is exported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd import _distributed as dist
from edgekd.config import Device, ModelRef, Recipe
from edgekd.data import DataBundle
from edgekd.distill.assistants import ref_label
from edgekd.errors import ConfigError
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import TRAINING_SECTION, ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import as_sections, chain_section, training_line
from edgekd.stages._chain import selected_assistant, train_refs
from edgekd.stages._checks import check_losses, check_model
from edgekd.stages._models import check_net, check_refs, layout_name, load_plain_net, model_spec, write_torch_artifact
from edgekd.stages._training import smoke_config


def chain_models(ctx: StageContext) -> list[tuple[str, ModelRef]]:
    """The models the deployed student's chain trains, with their folder names (the student's is `student`)."""
    recipe = ctx.recipe
    assert recipe.distill is not None and recipe.student is not None
    assistants = [selected_assistant(ctx)] if recipe.distill.chain == "auto" else recipe.distill.assistants
    chain = [(f"step-{i}-{ref_label(ref)}", ref) for i, ref in enumerate(assistants, start=1)]
    return [*chain, ("student", recipe.student.model)]


@register_stage
class Distill(Stage):
    name = "distill"
    order = 20
    needs = ("train-teacher", "select-assistant")
    description = "train the student (through teacher assistants, if any): cross-entropy plus distillation losses"
    libraries = ("torch",)
    distributed = True

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.distill is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.distill is not None and recipe.student is not None
        # the auto chain's TA enters the key through select-assistant's output digest, not its search settings
        distill = recipe.distill.model_dump(mode="json", exclude={"auto_assistant", "assistants"})
        if recipe.distill.chain == "manual":
            distill["assistants"] = [ref.model_dump(mode="json") for ref in recipe.distill.assistants]
        return {"student": recipe.student.model_dump(mode="json"), "distill": distill}

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        assert recipe.distill is not None and recipe.student is not None
        losses = ", ".join(f"{t.weight}×{t.name}" for t in recipe.distill.losses) or "none"
        chain = " → ".join(["teacher", *(ref_label(r) for r in recipe.distill.assistants), "student"]) \
            if recipe.distill.chain == "manual" else "teacher → (selected TA) → student"
        return [f"student {recipe.student.model.name} {recipe.student.model.kwargs or ''}, epochs "
                f"{recipe.distill.train.epochs}, loss {recipe.distill.ce_weight}×CE + {losses}; chain {chain}"]

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        from edgekd.distill.losses import LOSSES

        distill, student = recipe.distill, recipe.student
        assert distill is not None and student is not None
        check_losses(distill.losses, "distill.losses")
        feature = [t.name for t in distill.losses if LOSSES.entry(t.name).meta["kind"] != "logit"]
        if distill.train.teacher_cache and feature:
            raise ConfigError("recipe", "distill.train.teacher_cache", f"true needs logit-only losses; "
                              f"{', '.join(feature)} read the live teacher's features (set it to null or false)")
        bundle = data()
        check_model(student.model, "student.model", bundle)
        for i, ref in enumerate(distill.assistants):
            check_model(ref, f"distill.assistants.{i}", bundle)

    def training_curve(self, record: dict[str, Any]) -> tuple[str, list[dict[str, float]]] | None:
        return "student", record["info"].get("history", [])

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        info, lines = record["info"], training_line(self.name, record["info"])
        training = [ReportSection(TRAINING_SECTION, lines)] if lines else []
        return training + (as_sections(chain_section(info)) if "steps" in info else [])

    def run(self, ctx: StageContext) -> StageResult:
        recipe = ctx.recipe
        assert recipe.distill is not None and recipe.student is not None
        data = ctx.data()
        teacher_artifact = ctx.artifact("teacher")
        teacher = None
        if teacher_artifact is not None and recipe.teacher is not None:
            teacher = (load_plain_net(ctx, teacher_artifact), recipe.teacher.model)
            check_net(teacher[0], data, f"teacher model {recipe.teacher.model.name!r}")
        chain = chain_models(ctx)
        check_refs([("student" if folder == "student" else "assistant", ref) for folder, ref in chain], data)
        config = smoke_config(recipe.distill.train, ctx.smoke)
        steps = train_refs(ctx.run_dir, data, chain, ctx.stage_dir, teacher=teacher, losses=recipe.distill.losses,
                           config=config, seed=recipe.seed, ce_weight=recipe.distill.ce_weight, console=ctx.console)
        student = steps[-1].record
        names = ["teacher" if teacher is not None else None, *(ref_label(ref) for _, ref in chain[:-1]), "student"]
        info = {
            "best_epoch": student["best_epoch"], "val_accuracy": student["val_accuracy"],
            "history": student["history"], "epochs": config.epochs, "numerics": student.get("numerics"),
            "losses": [term.name for term in recipe.distill.losses], "ce_weight": recipe.distill.ce_weight,
            "chain": [n for n in names if n is not None], "chain_source": recipe.distill.chain,
            "steps": [step.record for step in steps],
        }
        if not dist.is_main():  # under torchrun, rank 0 alone writes the artifacts
            return StageResult(info=info)
        artifacts = []
        for index, ((folder, ref), step) in enumerate(zip(chain, steps), start=1):
            spec = model_spec(ref, data)
            is_student = index == len(chain)
            name = "student" if is_student else f"assistant-{index}-{ref_label(ref)}"
            extra = {} if is_student else {"chain_step": index, "val_accuracy": step.record["val_accuracy"]}
            artifact = write_torch_artifact(ctx, step.net, spec, name=name, role=name if is_student else "assistant",
                                            info=extra)
            ctx.log(f"{folder} {spec['name']} ({layout_name(spec)}): {artifact.info['parameters']:,} parameters, "
                    "val accuracy "
                    f"{step.record['val_accuracy']:.4f}" + (" (finished earlier)" if step.record["reused"] else ""))
            artifacts.append(artifact)
        return StageResult(artifacts=artifacts, info=info)
