"""Stage `select`: the artifact to deploy, chosen by the device's budgets and the recipe's `select` objective.

Candidates are the artifacts whose runtime the device offers and that did not fail, except those of a comparison
role (the prune stage's baselines, other budgets, the unpruned student); the rules are in
:mod:`edgekd.stages._selection`. The selected artifact is copied into ``RUN/deploy/`` with ``MODEL_CARD.md``,
``model_card.json`` and a standalone ``predict.py`` (:mod:`edgekd.deploy`). In a smoke run the budgets are reported,
not enforced: when nothing meets them the objective ranks every artifact, so the whole path is still exercised.
Every choice reads validation accuracy; the manifest's ``selected_by`` names that split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.config import Device, Recipe
from edgekd.deploy import build_card, remove_deploy, write_deploy
from edgekd.pipeline.artifacts import COMPARISON_ROLES
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.hashing import artifact_files, sha256_file
from edgekd.pipeline.manifest import load_manifest
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, ReportSection, Stage, StageResult, register_stage
from edgekd.report.build import selection_lines
from edgekd.report.sections import as_sections
from edgekd.stages._failures import usable
from edgekd.stages._runtime import runner_options
from edgekd.stages._selection import (
    NOISE_CONFIDENCE,
    NOISE_RESAMPLES,
    SELECTED_BY,
    budget_failures,
    select_artifact,
)

DEPLOY_DIR = "deploy"


@register_stage
class Select(Stage):
    name = "select"
    order = 80
    needs = EVERY_EARLIER_STAGE
    description = "pick the artifact to deploy by budgets and objective; copy it to deploy/ with a model card"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.evaluate is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        return {"budgets": device.budgets.model_dump(mode="json"), "runtimes": [r.runtime for r in device.runtimes],
                "select": recipe.select.model_dump(mode="json"), "device": device.settings(),
                "selected_by": SELECTED_BY, "noise": {"confidence": NOISE_CONFIDENCE, "resamples": NOISE_RESAMPLES}}

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        return as_sections(selection_lines(manifest), summary=True)

    def run(self, ctx: StageContext) -> StageResult:
        budgets = ctx.device.budgets
        offered = {r.runtime for r in ctx.device.runtimes}
        candidates = [a for a in usable(ctx.artifacts) if a.runtime in offered and a.role not in COMPARISON_ROLES]
        metrics: dict[str, dict[str, Any]] = {}
        for artifact in candidates:
            failures = budget_failures(artifact, budgets)
            metrics[artifact.name] = {"meets_budgets": not failures, "budget_failures": failures}
        selection = select_artifact(candidates, budgets, ctx.recipe.select, device=ctx.device.name,
                                    enforce=not ctx.smoke)
        record = selection.record(ctx.recipe.select)
        ctx.log(selection.reason)
        dest = ctx.run_dir / DEPLOY_DIR
        files: list[Path] = []
        if selection.selected is None:
            remove_deploy(dest)
        else:
            files = self._deploy(ctx, selection.selected.name, record, metrics[selection.selected.name])
            ctx.log(f"deployed {selection.selected.name} to {dest}")
        return StageResult(
            metrics=metrics,
            manifest={"selected": record["selected"], "selected_by": SELECTED_BY, "selection": record},
            info={**record, "deploy": str(dest.relative_to(ctx.run_dir)) if files else None},
            files=files,
        )

    @staticmethod
    def _deploy(ctx: StageContext, name: str, selection: dict[str, Any], verdict: dict[str, Any]) -> list[Path]:
        """Write ``RUN/deploy/`` for the artifact ``name`` (``verdict``: its budget metrics); return its files."""
        manifest = load_manifest(ctx.run_dir)
        entry = next(a for a in manifest["artifacts"] if a["name"] == name)
        entry = {**entry, "metrics": {**entry["metrics"], **verdict}}
        sources = artifact_files(ctx.run_dir / entry["path"])
        records = ctx.records()
        card = build_card(
            manifest=manifest, artifact=entry, recipe=ctx.recipe.model_dump(mode="json"),
            device=ctx.device.settings(), records=records, selection=selection,
            files=[{"path": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sources],
            runtime_options=runner_options(ctx.device, entry["runtime"], entry["precision"]),
            class_names=list(ctx.data().class_names),
        )
        return write_deploy(ctx.run_dir / DEPLOY_DIR, sources, card)
