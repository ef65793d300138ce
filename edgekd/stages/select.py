"""Stage `select`: the best artifact that meets the device's budgets.

Candidates are the artifacts whose runtime the device offers, except those of a comparison role (the prune stage's
baselines, other budgets, the unpruned student). An artifact meets the budgets when its file size, latency (at
``budgets.latency_stat``) and test accuracy are all within the device's limits; an unmeasured metric that a budget
needs counts as a failure. Among those that pass, the highest test accuracy wins; ties go to the lower
latency, then the smaller file.
"""

from __future__ import annotations

from typing import Any

from edgekd.config import Budgets, Device, Recipe
from edgekd.pipeline.artifacts import COMPARISON_ROLES, Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.stages._failures import usable


def budget_failures(artifact: Artifact, budgets: Budgets) -> list[str]:
    """Why ``artifact`` does not meet ``budgets`` (empty: it does)."""
    failures = []
    size_mb = artifact.bytes / 1e6
    if budgets.max_size_mb is not None and size_mb > budgets.max_size_mb:
        failures.append(f"size {size_mb:.3f} MB > {budgets.max_size_mb} MB")
    latency = artifact.metrics.get("latency_ms", {}).get(budgets.latency_stat)
    if budgets.max_latency_ms is not None:
        if latency is None:
            failures.append("latency not measured")
        elif latency > budgets.max_latency_ms:
            failures.append(f"latency {budgets.latency_stat} {latency:.3f} ms > {budgets.max_latency_ms} ms")
    accuracy = artifact.metrics.get("accuracy")
    if budgets.min_accuracy is not None:
        if accuracy is None:
            failures.append("accuracy not measured")
        elif accuracy < budgets.min_accuracy:
            failures.append(f"accuracy {accuracy:.4f} < {budgets.min_accuracy}")
    return failures


def rank_key(artifact: Artifact, budgets: Budgets) -> tuple[float, float, int]:
    """Sort key: higher accuracy first, then lower latency, then fewer bytes."""
    latency = artifact.metrics.get("latency_ms", {}).get(budgets.latency_stat, float("inf"))
    return (-artifact.metrics.get("accuracy", 0.0), latency, artifact.bytes)


@register_stage
class Select(Stage):
    name = "select"
    order = 80
    needs = EVERY_EARLIER_STAGE
    description = "pick the most accurate artifact that meets the device's budgets"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.evaluate is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        return {"budgets": device.budgets.model_dump(mode="json"), "runtimes": [r.runtime for r in device.runtimes]}

    def run(self, ctx: StageContext) -> StageResult:
        budgets = ctx.device.budgets
        offered = {r.runtime for r in ctx.device.runtimes}
        candidates = [a for a in usable(ctx.artifacts) if a.runtime in offered and a.role not in COMPARISON_ROLES]
        metrics: dict[str, dict[str, Any]] = {}
        passing = []
        for artifact in candidates:
            failures = budget_failures(artifact, budgets)
            metrics[artifact.name] = {"meets_budgets": not failures, "budget_failures": failures}
            if not failures:
                passing.append(artifact)
        selected = min(passing, key=lambda a: rank_key(a, budgets)) if passing else None
        if selected is not None:
            ctx.log(f"selected {selected.name}")
        else:
            ctx.log(f"no artifact meets the budgets of {ctx.device.name}")
        return StageResult(
            metrics=metrics,
            manifest={"selected": selected.name if selected else None},
            info={"candidates": [a.name for a in candidates], "passing": [a.name for a in passing],
                  "rule": "highest test accuracy among artifacts meeting every budget; ties: lower latency, "
                          "then smaller file"},
        )
