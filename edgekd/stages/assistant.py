"""Stage `select-assistant`: choose the teacher assistant of the `auto` chain (AMD-style; see
:mod:`edgekd.distill.assistants` for what is selected and why).

Each candidate, and the student as the curve's low anchor, is trained cheaply with KD from the teacher in its own
resumable sub-run (``select-assistant/candidate-<i>-<model>/``, ``select-assistant/student-anchor/``), one task
each of :mod:`edgekd.executor` (Ray tasks, or in sequence without Ray). The choice is written to
``select-assistant/assistant.json``; stage `distill` reads it from there. Every candidate's parameters, scale,
validation accuracy, NPSDs and score go to the stage info (manifest) and the report.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekd._atomic import atomic_write_json
from edgekd.config import Device, ModelRef, Recipe
from edgekd.distill.assistants import CRITERION, Point, candidate_refs, choose, ref_label
from edgekd.executor import Executor
from edgekd.models import count_parameters
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import as_sections, assistant_section
from edgekd.stages._chain import SELECTION_FILE, candidate_task, split_accuracy
from edgekd.stages._models import build_net, load_plain_net
from edgekd.stages._training import smoke_config


@register_stage
class SelectAssistant(Stage):
    name = "select-assistant"
    order = 15
    needs = ("train-teacher",)
    description = "pick a teacher assistant between teacher and student by performance vs scale (AMD-style)"
    libraries = ("torch",)

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.distill is not None and recipe.distill.auto_assistant is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.distill is not None and recipe.distill.auto_assistant is not None
        assert recipe.student is not None and recipe.teacher is not None
        return {
            "teacher": recipe.teacher.model.model_dump(mode="json"),
            "student": recipe.student.model.model_dump(mode="json"),
            "auto_assistant": recipe.distill.auto_assistant.model_dump(mode="json"),
            "losses": [term.model_dump(mode="json") for term in recipe.distill.losses],
            "ce_weight": recipe.distill.ce_weight,
        }

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        info = record["info"]
        return as_sections(assistant_section(info)) if "candidates" in info else []

    def run(self, ctx: StageContext) -> StageResult:
        recipe = ctx.recipe
        assert recipe.distill is not None and recipe.student is not None and recipe.teacher is not None
        auto = recipe.distill.auto_assistant
        assert auto is not None
        data = ctx.data()
        teacher_artifact = ctx.artifact("teacher")
        assert teacher_artifact is not None, "select-assistant runs after train-teacher"
        teacher = load_plain_net(ctx, teacher_artifact)
        teacher_params = count_parameters(teacher)

        def parameters(ref: ModelRef) -> int:
            return count_parameters(build_net(ref, data)[0])

        candidates = candidate_refs(recipe.teacher.model, recipe.student.model, parameters,
                                    explicit=auto.candidates, widths=auto.widths, max_candidates=auto.max_candidates)
        train = data.train if auto.limit_train is None else data.train.subset(auto.limit_train, recipe.seed)
        cheap = replace(data, train=train)  # same validation split and normalisation as the teacher's
        config = smoke_config(auto.train, ctx.smoke)
        models = [(f"candidate-{i}-{ref_label(ref)}", ref) for i, (ref, _) in enumerate(candidates, start=1)]
        models.append(("student-anchor", recipe.student.model))
        executor = Executor(recipe.execution)
        ctx.log(f"{len(models)} model(s), {config.epochs} epoch(s) of KD from the teacher on {len(cheap.train)} "
                f"images each; executor: {executor.describe()}")
        accuracies = executor.map(
            candidate_task,
            [(ctx.run_dir, ctx.stage_dir, folder, ref, recipe.distill.losses, config, recipe.seed,
              recipe.distill.ce_weight) for folder, ref in models],
            shared=(cheap, (teacher, recipe.teacher.model)),
            on_done=lambda i, acc: ctx.log(f"{models[i][0]}: validation accuracy {acc:.4f}"))
        val = {folder: acc for (folder, _), acc in zip(models, accuracies)}

        top = Point(1.0, split_accuracy(teacher, data.val, data))
        student_params = parameters(recipe.student.model)
        bottom = Point(student_params / teacher_params, val["student-anchor"])
        points = [Point(n / teacher_params, val[folder]) for (folder, _), (_, n) in zip(models, candidates)]
        best, scores = choose(points, top, bottom)
        rows = [{"name": ref_label(ref), "model": ref.model_dump(mode="json"), "parameters": n,
                 "scale": p.scale, "log_scale": math.log(p.scale), "val_accuracy": p.accuracy, **s,
                 "selected": i == best}
                for i, ((ref, n), p, s) in enumerate(zip(candidates, points, scores))]
        chosen = rows[best]
        atomic_write_json(ctx.run_dir / SELECTION_FILE, {
            "model": chosen["model"], "parameters": chosen["parameters"], "scale": chosen["scale"],
            "score": chosen["score"], "criterion": CRITERION,
        })
        ctx.log(f"selected {chosen['name']} ({chosen['parameters']:,} parameters, scale {chosen['scale']:.3f}, "
                f"score {chosen['score']:.4f})")
        return StageResult(files=[ctx.run_dir / SELECTION_FILE], info={
            "selected": chosen["name"], "criterion": CRITERION, "candidates": rows,
            "teacher": {"parameters": teacher_params, "scale": 1.0, "val_accuracy": top.accuracy},
            "student": {"parameters": student_params, "scale": bottom.scale, "val_accuracy": bottom.accuracy},
            "epochs": config.epochs, "train_images": len(cheap.train),
        })
