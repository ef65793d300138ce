"""Stage `report`: report.md, report.html and plots from the run directory's manifest and stage records."""

from __future__ import annotations

from typing import Any

from edgekd.config import Device, Recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.manifest import load_manifest
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.report import write_report


@register_stage
class Report(Stage):
    name = "report"
    order = 90
    needs = EVERY_EARLIER_STAGE
    description = "report.md / report.html with tables and plots"
    libraries = ("matplotlib",)

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.report is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.report is not None
        return {"report": recipe.report.model_dump(mode="json"), "budgets": device.budgets.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.report is not None
        records, _ = ctx.records(), ctx.artifacts  # the report reads everything before it
        manifest = load_manifest(ctx.run_dir)
        files = write_report(ctx.run_dir, manifest, records, html=ctx.recipe.report.html)
        ctx.log(f"wrote {ctx.run_dir / 'report.md'}")
        return StageResult(files=files)
